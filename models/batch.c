/* batch.c - the batch pipeline of batch.h: the scan (image headers and templates, on
 * num_workers threads), each epoch's order and a rank's share of a step, building a batch
 * (decode, tile, template, row layout) and the ordered prefetch queue.
 *
 * Threads. One mutex guards the schedule (next batch to claim, next to deliver, slot states)
 * and the cached order of the epoch being claimed. Batch k (counted from the loader's first
 * step) is always built in slot k % nslots and is claimed only while fewer than nslots
 * batches are claimed and not yet released, so a slot is never shared: building runs
 * unlocked, and what a batch holds depends only on k, never on the worker that built it.
 */
#include "models/batch.h"

#include <limits.h>
#include <omp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "runtime/rng.h"

/* RNG stream of epoch e's order: "shuf" in the high half, e in the low half */
#define SHUFFLE_STREAM ((uint64_t)0x73687566 << 32)
/* bound on num_workers and prefetch: every slot holds a whole batch's pixels */
#define MAX_WORKERS 64
/* the template's own bound on image tokens; keeps tokens_per_tile x tiles an int */
#define MAX_TILE_TOKENS (1 << 20)

static const char *const g_skip_names[BATCH_NSKIP] = {
    "image unreadable", "image block cut by max_length", "prompt too long for max_length",
    "<IMG_CONTEXT> written in the text"};

const char *batch_skip_name(BatchSkip s) {
    return (unsigned)s < BATCH_NSKIP ? g_skip_names[s] : "unknown reason";
}

/* a pair that passed the scan */
typedef struct {
    size_t pair;
    int tiles;
} Usable;

enum { SLOT_FREE, SLOT_BUILDING, SLOT_READY, SLOT_FAILED };
enum { BUILD_OK = 0, BUILD_ERROR = -1, BUILD_STOPPED = 1 };

typedef struct {
    Batch b;
    int state;
    const Usable **plan;   /* (P) the pairs to build, in order */
    size_t pixel_cap;      /* floats b.pixels holds */
    long late;             /* pairs of this batch left out: the image failed to decode */
    char late_msg[512];    /* the first of them */
    char err[1024];        /* why the build failed */
} Slot;

struct BatchLoader {
    const PairSet *ps;
    const Tokenizer *tok;
    BatchOptions opt;
    int img_context_id;
    float *blank_pixels;   /* (1, 3, S, S) with blank_rows */
    Usable *usable;        /* (n) */
    size_t n;
    BatchStats stats;
    /* schedule */
    long G;                /* pairs per step over all ranks */
    BatchCursor first;     /* the first step: start, moved on when its epoch has no step left */
    long first_steps;      /* steps left in the first epoch */
    long jobs;             /* batches in all; LONG_MAX when endless */
    long next_job;         /* next batch to claim */
    long next_out;         /* next batch to deliver */
    int held;              /* the caller holds batch next_out - 1 */
    BatchCursor cursor;
    size_t *order;         /* (n) the order of epoch order_epoch */
    long order_epoch;
    Slot *slots;
    int nslots;
    /* workers */
    pthread_t *threads;
    int nthreads;
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* a batch may be claimed, or stop */
    pthread_cond_t done_cv; /* a batch was built or failed */
    atomic_int stop;
    int failed;
    char err[1024];        /* synchronous mode: why the last build failed */
};

/* Messages are kept in fixed buffers; a very long path may cut one short, which is fine. */
static void msgf(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void msgf(char *buf, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

/* "pair 12 (train.jsonl:13)" */
static void pair_where(const PairSet *ps, size_t i, char *buf, size_t cap) {
    if (ps && i < ps->n)
        msgf(buf, cap, "pair %zu (%s:%d)", i, ps->load.files[ps->pairs[i].file],
             ps->pairs[i].line);
    else
        msgf(buf, cap, "pair %zu", i);
}

/* Sets "<where>: <the current error><tail>". The current message is copied first: it lives
 * in the buffer that mmrm_set_error writes. */
static void error_at(const char *where, const char *tail) {
    char cause[1024];
    msgf(cause, sizeof cause, "%s", mmrm_last_error());
    mmrm_set_error("%s: %s%s", where, cause, tail);
}

/* ---------------------------------------------------------------- order */

void batch_shuffle(uint64_t seed, long epoch, size_t n, size_t *order) {
    for (size_t i = 0; i < n; i++) order[i] = i;
    Rng r = rng_make(seed, SHUFFLE_STREAM | (uint32_t)epoch);
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)rng_below(&r, i), t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
}

/* the cursor after a step that starts at c */
static BatchCursor step_after(const BatchLoader *L, BatchCursor c) {
    c.pos += L->G;
    if ((long)L->n - c.pos < L->G) c = (BatchCursor){c.epoch + 1, 0};
    return c;
}

static BatchCursor job_cursor(const BatchLoader *L, long k) {
    if (k < L->first_steps) return (BatchCursor){L->first.epoch, L->first.pos + k * L->G};
    k -= L->first_steps;
    long steps = L->stats.steps_per_epoch;
    return (BatchCursor){L->first.epoch + 1 + k / steps, k % steps * L->G};
}

/* Fills s's plan for batch k: the rank's block of the step's slice of the epoch's order.
 * Called under the lock (or by the only thread), in increasing k, so one cached order
 * suffices. */
static void claim(BatchLoader *L, long k, Slot *s) {
    BatchCursor at = job_cursor(L, k);
    if (at.epoch != L->order_epoch) {
        if (L->opt.shuffle) batch_shuffle(L->opt.seed, at.epoch, L->n, L->order);
        else for (size_t i = 0; i < L->n; i++) L->order[i] = i;
        L->order_epoch = at.epoch;
    }
    size_t from = (size_t)at.pos + (size_t)L->opt.rank * L->opt.pairs;
    for (int j = 0; j < L->opt.pairs; j++) s->plan[j] = &L->usable[L->order[from + j]];
    s->b.at = at;
    s->b.next = step_after(L, at);
    s->state = SLOT_BUILDING;
}

/* ---------------------------------------------------------------- rows */

static void rows_alloc(BatchRows *r, BatchLayout layout, int B, int max_length) {
    size_t cap = (size_t)B * max_length;
    r->lengths = xcalloc(B, sizeof *r->lengths);
    if (layout == BATCH_PADDED) {
        r->ids = xcalloc(cap, sizeof *r->ids);
    } else {
        r->packed = xcalloc(cap, sizeof *r->packed);
        r->positions = xcalloc(cap, sizeof *r->positions);
        r->cu_seqlens = xcalloc(B + 1, sizeof *r->cu_seqlens);
    }
}

static void rows_free(BatchRows *r) {
    free(r->lengths);
    free(r->ids);
    free(r->packed);
    free(r->positions);
    free(r->cu_seqlens);
}

/* Templates one row into r as row b. Padded rows are written max_length apart and moved to
 * their final stride by rows_finish, once the longest row is known. */
static int put_row(const BatchLoader *L, BatchRows *r, int b, size_t pair, const char *response,
                   int n_image_tokens) {
    const BatchOptions *o = &L->opt;
    const Pair *p = &L->ps->pairs[pair];
    int *dst = r->ids ? r->ids + (size_t)b * o->max_length : r->packed + r->total;
    int len = template_encode(L->tok, o->template_kind, o->system_message, p->prompt, response, n_image_tokens,
                              o->max_length, dst, o->max_length, NULL);
    if (len < 0) {
        char where[384];
        pair_where(L->ps, pair, where, sizeof where);
        error_at(where, " (a row that passed the scan)");
        return -1;
    }
    r->lengths[b] = len;
    r->total += len;
    return 0;
}

static void rows_finish(BatchRows *r, int B, int stride, int t_bucket, int pad_id) {
    r->B = B;
    r->T = 0;
    for (int b = 0; b < B; b++)
        if (r->lengths[b] > r->T) r->T = r->lengths[b];
    long t = rm_bucket_round(r->T, t_bucket);
    r->T = t < stride ? (int)t : stride;
    if (r->ids) {
        /* row b moves down from b * stride to b * T (T <= stride): it never overlaps a row
         * already placed, and its padding ends before row b + 1's source */
        for (int b = 0; b < B; b++) {
            int *dst = r->ids + (size_t)b * r->T;
            memmove(dst, r->ids + (size_t)b * stride, (size_t)r->lengths[b] * sizeof *dst);
            for (int t = r->lengths[b]; t < r->T; t++) dst[t] = pad_id;
        }
    } else {
        r->cu_seqlens[0] = 0;
        for (int b = 0; b < B; b++) {
            r->cu_seqlens[b + 1] = r->cu_seqlens[b] + r->lengths[b];
            for (int t = 0; t < r->lengths[b]; t++) r->positions[r->cu_seqlens[b] + t] = t;
        }
    }
}

/* ---------------------------------------------------------------- building */

static int build(BatchLoader *L, Slot *s) {
    const BatchOptions *o = &L->opt;
    Batch *b = &s->b;
    size_t tile_floats = (size_t)3 * o->image.image_size * o->image.image_size, need = 0;
    for (int j = 0; j < o->pairs; j++) need += (size_t)s->plan[j]->tiles * tile_floats;
    if (need > s->pixel_cap) {
        free(b->pixels);
        b->pixels = xmalloc(need * sizeof *b->pixels);
        s->pixel_cap = need;
    }
    b->rows.total = b->blank.total = 0;
    s->late = 0;
    s->late_msg[0] = '\0';
    int kept = 0;
    size_t tile0 = 0;
    char where[384];
    for (int j = 0; j < o->pairs; j++) {
        if (atomic_load(&L->stop)) return BUILD_STOPPED;
        const Usable *u = s->plan[j];
        const Pair *p = &L->ps->pairs[u->pair];
        pair_where(L->ps, u->pair, where, sizeof where);
        Image img;
        if (image_load(p->image, &img) != 0) {
            if (o->on_bad == REC_ON_BAD_FAIL) {
                error_at(where, " (on_bad_record = fail)");
                return BUILD_ERROR;
            }
            if (!s->late++)
                msgf(s->late_msg, sizeof s->late_msg, "%s: %s", where, mmrm_last_error());
            continue;
        }
        int nt = image_num_tiles(img.w, img.h, &o->image);
        if (nt != u->tiles) {
            mmrm_set_error("%s: %s decodes to %d x %d pixels, %d tiles, where its header "
                           "gave %d (did the file change during the run?)", where, p->image,
                           img.w, img.h, nt, u->tiles);
            image_free(&img);
            return BUILD_ERROR;
        }
        int got = image_preprocess(&img, &o->image, b->pixels + tile0 * tile_floats, nt);
        image_free(&img);
        if (got != nt) {
            error_at(where, "");
            return BUILD_ERROR;
        }
        for (int k = 0; k < 2; k++) {
            const char *response = k ? p->rejected : p->chosen;
            if (put_row(L, &b->rows, 2 * kept + k, u->pair, response, o->tokens_per_tile * nt) ||
                (o->blank_rows &&
                 put_row(L, &b->blank, 2 * kept + k, u->pair, response, o->tokens_per_tile)))
                return BUILD_ERROR;
        }
        b->tiles[kept] = nt;
        b->pair[kept] = u->pair;
        b->margin[kept] = p->margin;
        b->image_of[2 * kept] = b->image_of[2 * kept + 1] = kept;
        kept++;
        tile0 += (size_t)nt;
    }
    b->P = b->n_images = kept;
    rows_finish(&b->rows, 2 * kept, o->max_length, o->t_bucket, L->tok->pad_id);
    if (o->blank_rows) rows_finish(&b->blank, 2 * kept, o->max_length, o->t_bucket, L->tok->pad_id);
    return batch_check(b, L->ps, L->img_context_id, o->tokens_per_tile) ? BUILD_ERROR : BUILD_OK;
}

int batch_check(const Batch *b, const PairSet *ps, int img_context_id, int tokens_per_tile) {
    char where[384];
    for (int blank = 0; blank < 2; blank++) {
        const BatchRows *r = blank ? &b->blank : &b->rows;
        for (int s = 0; s < r->B; s++) {
            int im = b->image_of[s], count = 0;
            if (im != s / 2 || im >= b->n_images) {
                mmrm_set_error("batch sequence %d shows image %d of %d; sequences 2i and 2i+1 "
                               "show pair i's image", s, im, b->n_images);
                return -1;
            }
            const int *row = r->ids ? r->ids + (size_t)s * r->T : r->packed + r->cu_seqlens[s];
            for (int t = 0; t < r->lengths[s]; t++) count += row[t] == img_context_id;
            int tiles = blank ? 1 : b->tiles[im];
            if (count != tiles * tokens_per_tile) {
                pair_where(ps, b->pair[im], where, sizeof where);
                mmrm_set_error("%s, %s%s row (sequence %d): %d <IMG_CONTEXT> tokens, but its "
                               "image has %d tile%s x %d tokens = %d (the rows and the tiling "
                               "disagree)", where, blank ? "blank-image " : "",
                               s % 2 ? "rejected" : "chosen", s, count, tiles,
                               tiles == 1 ? "" : "s", tokens_per_tile, tiles * tokens_per_tile);
                return -1;
            }
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- the queue */

/* hands s's batch to the caller (lock held) */
static void deliver(BatchLoader *L, Slot *s) {
    if (s->late) {
        L->stats.skipped[BATCH_SKIP_IMAGE] += s->late;
        char *first = L->stats.first_skip[BATCH_SKIP_IMAGE];
        if (!first[0]) msgf(first, sizeof L->stats.first_skip[0], "%s", s->late_msg);
        mmrm_log("skipped %ld pair%s of a batch (it holds %d): %s", s->late,
                 s->late == 1 ? "" : "s", s->b.P, s->late_msg);
    }
    L->next_out++;
    L->cursor = s->b.next;
}

static void *worker(void *arg) {
    BatchLoader *L = arg;
    /* A worker is one unit of parallelism: the image ops' OpenMP regions run on one thread
     * inside it, so W workers use W cores instead of W thread teams competing for them. */
    omp_set_num_threads(1);
    pthread_mutex_lock(&L->mu);
    while (!atomic_load(&L->stop)) {
        if (L->failed || L->next_job >= L->jobs ||
            L->next_job - L->next_out + L->held >= L->nslots) {
            pthread_cond_wait(&L->work_cv, &L->mu);
            continue;
        }
        long k = L->next_job++;
        Slot *s = &L->slots[k % L->nslots];
        claim(L, k, s);
        pthread_mutex_unlock(&L->mu);
        int rc = build(L, s);
        if (rc == BUILD_ERROR) msgf(s->err, sizeof s->err, "%s", mmrm_last_error());
        pthread_mutex_lock(&L->mu);
        if (rc == BUILD_STOPPED) break;
        s->state = rc == BUILD_OK ? SLOT_READY : SLOT_FAILED;
        L->failed |= rc != BUILD_OK;
        pthread_cond_broadcast(&L->done_cv);
    }
    pthread_mutex_unlock(&L->mu);
    return NULL;
}

static int next_sync(BatchLoader *L, const Batch **out) {
    if (L->failed) {
        mmrm_set_error("%s", L->err);
        return -1;
    }
    if (L->next_out >= L->jobs) return 0;
    Slot *s = &L->slots[0];
    claim(L, L->next_out, s);
    if (build(L, s) != BUILD_OK) {
        L->failed = 1;
        msgf(L->err, sizeof L->err, "%s", mmrm_last_error());
        return -1;
    }
    deliver(L, s);
    *out = &s->b;
    return 1;
}

int batch_loader_next(BatchLoader *L, const Batch **out) {
    *out = NULL;
    if (!L->nthreads) return next_sync(L, out);
    pthread_mutex_lock(&L->mu);
    if (L->held) {
        L->slots[(L->next_out - 1) % L->nslots].state = SLOT_FREE;
        L->held = 0;
        pthread_cond_broadcast(&L->work_cv);
    }
    int rc = 0;
    if (L->next_out < L->jobs) {
        Slot *s = &L->slots[L->next_out % L->nslots];
        while (s->state != SLOT_READY && s->state != SLOT_FAILED)
            pthread_cond_wait(&L->done_cv, &L->mu);
        if (s->state == SLOT_FAILED) {
            mmrm_set_error("%s", s->err);
            rc = -1;
        } else {
            deliver(L, s);
            L->held = 1;
            *out = &s->b;
            rc = 1;
        }
    }
    pthread_mutex_unlock(&L->mu);
    return rc;
}

BatchCursor batch_loader_cursor(const BatchLoader *L) { return L->cursor; }

const BatchStats *batch_loader_stats(const BatchLoader *L) { return &L->stats; }

/* ---------------------------------------------------------------- the scan */

typedef struct {
    BatchLoader *L;
    int t, nt;                       /* this thread takes pairs t, t + nt, ... */
    signed char *why;                /* (pairs) -1 usable, else a BatchSkip */
    int *tiles;                      /* (pairs) */
    long truncated;
    size_t first[BATCH_NSKIP];       /* the thread's first pair skipped per reason */
    char msg[BATCH_NSKIP][512];
    size_t err_at;                   /* the thread's first pair with a hard error, or SIZE_MAX */
    char err[1024];
} ScanPart;

static int skip_of(int template_code) {
    switch (template_code) {
    case TEMPLATE_IMAGE_CUT: return BATCH_SKIP_IMAGE_CUT;
    case TEMPLATE_NO_ROOM: return BATCH_SKIP_NO_ROOM;
    case TEMPLATE_IMAGE_TOKEN_TEXT: return BATCH_SKIP_IMAGE_TOKEN_TEXT;
    default: return -1;
    }
}

static void scan_skip(ScanPart *sp, size_t i, int why, const char *what) {
    sp->why[i] = (signed char)why;
    if (sp->first[why] != SIZE_MAX) return;
    char where[384];
    pair_where(sp->L->ps, i, where, sizeof where);
    sp->first[why] = i;
    msgf(sp->msg[why], sizeof sp->msg[why], "%s: %s", where, what);
}

/* 0, or -1 for a hard error (a tokenizer or options the template cannot use) */
static int scan_pair(ScanPart *sp, size_t i, int *row) {
    const BatchOptions *o = &sp->L->opt;
    const Pair *p = &sp->L->ps->pairs[i];
    int w, h;
    char what[512];
    if (image_info(p->image, &w, &h) != 0) { /* the message names the file */
        msgf(what, sizeof what, "%s", mmrm_last_error());
        scan_skip(sp, i, BATCH_SKIP_IMAGE, what);
        return 0;
    }
    if (w > IMAGE_MAX_SIDE || h > IMAGE_MAX_SIDE || (long long)w * h > IMAGE_MAX_PIXELS) {
        msgf(what, sizeof what, "%s: image is %d x %d pixels, over the decoder's limit",
                 p->image, w, h);
        scan_skip(sp, i, BATCH_SKIP_IMAGE, what);
        return 0;
    }
    int nt = image_num_tiles(w, h, &o->image);
    long truncated = 0;
    for (int k = 0; k < 2; k++) {
        TemplateInfo info;
        int rc = template_encode(sp->L->tok, o->template_kind, o->system_message, p->prompt,
                                 k ? p->rejected : p->chosen, o->tokens_per_tile * nt,
                                 o->max_length, row, o->max_length, &info);
        if (rc >= 0) {
            truncated += info.truncated > 0;
            continue;
        }
        int why = skip_of(rc);
        if (why < 0) {
            char where[384];
            pair_where(sp->L->ps, i, where, sizeof where);
            sp->err_at = i;
            msgf(sp->err, sizeof sp->err, "%s: %s", where, mmrm_last_error());
            return -1;
        }
        msgf(what, sizeof what, "%s response: %s", k ? "rejected" : "chosen",
                 mmrm_last_error());
        scan_skip(sp, i, why, what);
        return 0;
    }
    sp->why[i] = -1;
    sp->tiles[i] = nt;
    sp->truncated += truncated;
    return 0;
}

static void *scan_part(void *arg) {
    ScanPart *sp = arg;
    int *row = xmalloc((size_t)sp->L->opt.max_length * sizeof *row);
    for (size_t i = (size_t)sp->t; i < sp->L->ps->n; i += (size_t)sp->nt)
        if (scan_pair(sp, i, row)) break;
    free(row);
    return NULL;
}

/* Scans every pair into L->usable and L->stats. Parts take interleaved pairs and the merge
 * keeps the lowest pair index per message, so the result is the same for any thread
 * count. */
static int scan(BatchLoader *L) {
    size_t np = L->ps->n;
    int nt = L->opt.num_workers > 1 ? L->opt.num_workers : 1;
    if ((size_t)nt > np) nt = np ? (int)np : 1;
    signed char *why = xmalloc(np ? np : 1);
    int *tiles = xmalloc((np ? np : 1) * sizeof *tiles);
    ScanPart *parts = xcalloc(nt, sizeof *parts);
    pthread_t *th = xcalloc(nt, sizeof *th);
    for (int t = 0; t < nt; t++) {
        parts[t] = (ScanPart){.L = L, .t = t, .nt = nt, .why = why, .tiles = tiles,
                              .err_at = SIZE_MAX};
        for (int r = 0; r < BATCH_NSKIP; r++) parts[t].first[r] = SIZE_MAX;
    }
    for (int t = 1; t < nt; t++)
        if (pthread_create(&th[t], NULL, scan_part, &parts[t]))
            MMRM_FATAL("batch scan: cannot start a thread");
    scan_part(&parts[0]);
    for (int t = 1; t < nt; t++) pthread_join(th[t], NULL);

    int rc = 0;
    size_t err_at = SIZE_MAX, first_bad = SIZE_MAX;
    const char *err = NULL, *bad_msg = NULL;
    BatchStats *st = &L->stats;
    for (int t = 0; t < nt; t++) {
        if (parts[t].err_at < err_at) err_at = parts[t].err_at, err = parts[t].err;
        st->truncated += parts[t].truncated;
    }
    for (int r = 0; r < BATCH_NSKIP; r++) {
        const ScanPart *best = &parts[0];
        for (int t = 1; t < nt; t++)
            if (parts[t].first[r] < best->first[r]) best = &parts[t];
        if (best->first[r] == SIZE_MAX) continue;
        msgf(st->first_skip[r], sizeof st->first_skip[r], "%s", best->msg[r]);
        if (best->first[r] < first_bad) first_bad = best->first[r], bad_msg = best->msg[r];
    }
    if (err) {
        mmrm_set_error("%s", err);
        rc = -1;
    } else if (bad_msg && L->opt.on_bad == REC_ON_BAD_FAIL) {
        mmrm_set_error("%s (on_bad_record = fail)", bad_msg);
        rc = -1;
    } else {
        L->usable = xmalloc((np ? np : 1) * sizeof *L->usable);
        for (size_t i = 0; i < np; i++) {
            if (why[i] < 0) L->usable[L->n++] = (Usable){i, tiles[i]};
            else st->skipped[(int)why[i]]++;
        }
    }
    st->pairs = np;
    st->usable = L->n;
    free(th);
    free(parts);
    free(tiles);
    free(why);
    return rc;
}

/* ---------------------------------------------------------------- open and close */

static int check_options(const PairSet *ps, const Tokenizer *tok, const BatchOptions *o) {
    if (!ps || !tok || !o) {
        mmrm_set_error("batch_loader_open: a pair set, a tokenizer and options are needed");
        return -1;
    }
    if (o->pairs < 1 || o->world < 1 || o->rank < 0 || o->rank >= o->world ||
        (long long)o->pairs * o->world > INT_MAX) {
        mmrm_set_error("batch options: %d pairs per rank, rank %d of %d (need pairs >= 1 and "
                       "0 <= rank < world)", o->pairs, o->rank, o->world);
        return -1;
    }
    if (image_num_tiles(1, 1, &o->image) < 1) return -1;
    if (o->t_bucket < 0) {
        mmrm_set_error("batch options: t_bucket %d (need >= 0; 0 or 1: no rounding)", o->t_bucket);
        return -1;
    }
    if (o->max_length < 1 || o->tokens_per_tile < 1 || o->tokens_per_tile > MAX_TILE_TOKENS) {
        mmrm_set_error("batch options: max_length %d, tokens_per_tile %d (need max_length >= 1 "
                       "and 1 <= tokens_per_tile <= %d)", o->max_length, o->tokens_per_tile,
                       MAX_TILE_TOKENS);
        return -1;
    }
    if ((o->layout != BATCH_PADDED && o->layout != BATCH_PACKED) ||
        (o->on_bad != REC_ON_BAD_SKIP && o->on_bad != REC_ON_BAD_FAIL) || o->epochs < 0 ||
        o->num_workers < 0 || o->num_workers > MAX_WORKERS || o->prefetch < 0 ||
        o->prefetch > MAX_WORKERS || o->start.epoch < 0 || o->start.pos < 0) {
        mmrm_set_error("batch options: layout %d, on_bad %d, epochs %d, num_workers %d, "
                       "prefetch %d, start (%ld, %ld) (need a known layout and policy, "
                       "0 <= num_workers, prefetch <= %d, non-negative epochs and cursor)",
                       (int)o->layout, (int)o->on_bad, o->epochs, o->num_workers, o->prefetch,
                       o->start.epoch, o->start.pos, MAX_WORKERS);
        return -1;
    }
    if (tok->pad_id < 0 && o->layout == BATCH_PADDED) {
        mmrm_set_error("the tokenizer has no pad id, which the padded layout needs (use the "
                       "packed layout, or give the tokenizer a pad_id)");
        return -1;
    }
    return 0;
}

static void summarise(BatchLoader *L) {
    BatchStats *st = &L->stats;
    const BatchOptions *o = &L->opt;
    char skips[384] = "";
    int len = 0; /* the reason names are short: the four always fit */
    for (int r = 0; r < BATCH_NSKIP; r++)
        if (st->skipped[r])
            len += snprintf(skips + len, sizeof skips - len, "%s%ld %s", len ? ", " : "",
                            st->skipped[r], batch_skip_name(r));
    msgf(st->summary, sizeof st->summary,
             "batches: %zu pairs, %zu usable%s%s%s; %ld row%s cut to max_length %d; %d rank%s x "
             "%d pairs = %ld per step: %ld steps per epoch, %zu pairs per epoch left out",
             st->pairs, st->usable, len ? " (skipped: " : "", skips, len ? ")" : "",
             st->truncated, st->truncated == 1 ? "" : "s", o->max_length, o->world,
             o->world == 1 ? "" : "s", o->pairs, L->G, st->steps_per_epoch, st->tail);
    mmrm_log("%s", st->summary);
    for (int r = 0; r < BATCH_NSKIP; r++)
        if (st->first_skip[r][0]) mmrm_log("first %s: %s", batch_skip_name(r), st->first_skip[r]);
}

static void slot_alloc(BatchLoader *L, Slot *s) {
    const BatchOptions *o = &L->opt;
    int P = o->pairs;
    s->plan = xcalloc(P, sizeof *s->plan);
    s->b.tiles = xcalloc(P, sizeof *s->b.tiles);
    s->b.pair = xcalloc(P, sizeof *s->b.pair);
    s->b.margin = xcalloc(P, sizeof *s->b.margin);
    s->b.image_of = xcalloc(2 * P, sizeof *s->b.image_of);
    rows_alloc(&s->b.rows, o->layout, 2 * P, o->max_length);
    if (o->blank_rows) {
        rows_alloc(&s->b.blank, o->layout, 2 * P, o->max_length);
        s->b.blank_image_of = xcalloc(2 * P, sizeof *s->b.blank_image_of);
        s->b.blank_pixels = L->blank_pixels;
    }
}

static void loader_free(BatchLoader *L) {
    for (int i = 0; i < L->nslots; i++) {
        Slot *s = &L->slots[i];
        free(s->plan);
        free(s->b.tiles);
        free(s->b.pair);
        free(s->b.margin);
        free(s->b.image_of);
        free(s->b.pixels);
        free(s->b.blank_image_of);
        rows_free(&s->b.rows);
        rows_free(&s->b.blank);
    }
    free(L->slots);
    free(L->threads);
    free(L->order);
    free(L->usable);
    free(L->blank_pixels);
    pthread_mutex_destroy(&L->mu);
    pthread_cond_destroy(&L->work_cv);
    pthread_cond_destroy(&L->done_cv);
    free(L);
}

BatchLoader *batch_loader_open(const PairSet *ps, const Tokenizer *tok, const BatchOptions *opt) {
    if (check_options(ps, tok, opt)) return NULL;
    BatchLoader *L = xcalloc(1, sizeof *L);
    L->ps = ps;
    L->tok = tok;
    L->opt = *opt;
    pthread_mutex_init(&L->mu, NULL);
    pthread_cond_init(&L->work_cv, NULL);
    pthread_cond_init(&L->done_cv, NULL);
    L->img_context_id = tokenizer_special_id(tok, "<IMG_CONTEXT>");
    if (L->img_context_id < 0 || scan(L)) goto fail;

    const BatchOptions *o = &L->opt;
    BatchStats *st = &L->stats;
    L->G = (long)o->pairs * o->world;
    st->steps_per_epoch = (long)L->n / L->G;
    st->tail = L->n % (size_t)L->G;
    summarise(L);
    if (st->steps_per_epoch == 0) {
        mmrm_set_error("%zu usable pairs of %zu, fewer than one step needs (%d ranks x %d "
                       "pairs); see the skip counts: %s", L->n, st->pairs, o->world, o->pairs,
                       st->summary);
        goto fail;
    }
    if ((size_t)o->start.pos > L->n) {
        mmrm_set_error("cursor (epoch %ld, pos %ld) is past the end of the epoch's %zu pairs "
                       "(was it saved with another data set or max_length?)", o->start.epoch,
                       o->start.pos, L->n);
        goto fail;
    }
    L->first = o->start;
    if ((long)L->n - L->first.pos < L->G) L->first = (BatchCursor){L->first.epoch + 1, 0};
    L->first_steps = ((long)L->n - L->first.pos) / L->G;
    if (!o->epochs) L->jobs = LONG_MAX;
    else if (L->first.epoch >= o->epochs) L->jobs = 0;
    else L->jobs = L->first_steps + (o->epochs - L->first.epoch - 1) * st->steps_per_epoch;
    L->cursor = L->first;
    L->order = xmalloc(L->n * sizeof *L->order);
    L->order_epoch = -1;

    if (o->blank_rows) {
        Image blank;
        ImageConfig one = {o->image.image_size, 1, 1, 0, 0};
        image_blank(IMAGE_BLANK_SIZE, IMAGE_BLANK_SIZE, &blank);
        L->blank_pixels = xmalloc((size_t)3 * one.image_size * one.image_size * sizeof(float));
        int got = image_preprocess(&blank, &one, L->blank_pixels, 1);
        image_free(&blank);
        if (got != 1) goto fail;
    }
    L->nthreads = o->num_workers;
    L->nslots = L->nthreads ? (o->prefetch ? o->prefetch : (L->nthreads > 2 ? L->nthreads : 2)) + 1
                            : 1;
    L->slots = xcalloc(L->nslots, sizeof *L->slots);
    for (int i = 0; i < L->nslots; i++) slot_alloc(L, &L->slots[i]);
    L->threads = xcalloc(L->nthreads ? L->nthreads : 1, sizeof *L->threads);
    for (int i = 0; i < L->nthreads; i++)
        if (pthread_create(&L->threads[i], NULL, worker, L))
            MMRM_FATAL("batch loader: cannot start worker thread %d", i);
    return L;
fail:
    loader_free(L);
    return NULL;
}

void batch_loader_close(BatchLoader *L) {
    if (!L) return;
    pthread_mutex_lock(&L->mu);
    atomic_store(&L->stop, 1);
    pthread_cond_broadcast(&L->work_cv);
    pthread_mutex_unlock(&L->mu);
    for (int i = 0; i < L->nthreads; i++) pthread_join(L->threads[i], NULL);
    loader_free(L);
}

/* ---------------------------------------------------------------- the model's view */

void batch_rm_view(const Batch *b, RmBatch *out) {
    MMRM_CHECK(b->rows.ids, "batch_rm_view: the model takes the padded layout, this batch is "
               "packed");
    *out = (RmBatch){b->rows.B, b->rows.T, b->rows.ids, b->rows.lengths,
                     b->n_images, b->tiles, b->pixels, b->image_of, NULL};
}

void batch_rm_view_blank(const Batch *b, RmBatch *out) {
    static const int one_tile = 1;
    MMRM_CHECK(b->blank.ids && b->blank_pixels, "batch_rm_view_blank: needs a padded batch "
               "built with blank_rows");
    *out = (RmBatch){b->blank.B, b->blank.T, b->blank.ids, b->blank.lengths,
                     1, &one_tile, b->blank_pixels, b->blank_image_of, NULL};
}
