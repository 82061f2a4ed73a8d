/* score.c - `mmrm score`: every response of every scoring record ({prompt, img_path,
 * responses}) through the reward model, one output line per response
 * ({"prompt", "img_path", "response", "score"}, the reference's format) or with --grouped
 * one line per record ({"prompt", "img_path", "responses", "scores"}). This file is the
 * command line and the driver; continuing what earlier runs wrote (the skipped lines, the
 * torn last line, the lock) is score_resume.c, the part files of several ranks and their
 * merge into the output are score_merge.c.
 *
 * The output is a log that a rerun continues: what it holds is skipped and new lines are
 * appended with an fsync after each chunk, so a killed run loses at most the chunk in flight.
 *
 * Several ranks (mpirun/srun): every rank loads the model and the input; rank 0 alone takes
 * the lock and reads what is done, and broadcasts which responses are left. The work is cut
 * into chunks of whole records exactly as a single process cuts it (so every forward holds
 * the same sequences, and the scores are bitwise those of one process), and the chunks go
 * through the communicator's work queue (comm.h): rank 0 hands out chunk indices on request
 * and scores chunks itself between its answers, so a faster rank takes more. Each rank
 * appends its lines to its own part file, and rank 0 merges the parts into the output at the
 * end.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "infer/commands.h"
#include "infer/score_merge.h"
#include "infer/score_resume.h"
#include "infer/scorer.h"
#include "models/records.h"
#include "runtime/comm.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "runtime/strbuf.h"

static const char usage_text[] =
    "usage: mmrm score --model DIR --input IN.jsonl --output OUT.jsonl [options]\n"
    "\n"
    "Scores every response of every record {\"prompt\", \"img_path\", \"responses\": [...]}\n"
    "with the reward model in DIR. Writes one line per response\n"
    "  {\"prompt\", \"img_path\", \"response\", \"score\"}\n"
    "or with --grouped one line per record {\"prompt\", \"img_path\", \"responses\", \"scores\"}\n"
    "(a response the template rejects gets score null there). A rerun continues OUT: what it\n"
    "holds is skipped, a torn last line left by a crash is removed, new lines are appended.\n"
    "Records that cannot be scored (missing or undecodable image, ...) are reported as\n"
    "IN:line: reason and counted; they do not stop the run.\n"
    "\n"
    "Under mpirun/srun the ranks share the work dynamically: each writes its lines to\n"
    "OUT.parts/rank-R, and rank 0 appends them to OUT in input order at the end. A killed\n"
    "job's parts are kept and merged by the rerun (with any number of ranks).\n"
    "\n"
    "options:\n"
    "  --model DIR             the reward model (config.json, weights, tokenizer file)\n"
    "  --input IN.jsonl        the records to score\n"
    "  --output OUT.jsonl      created, or continued when it exists\n"
    "  --grouped               one line per record with \"scores\" in response order\n"
    "  --blank-image           show every record the blank white image as one tile (the\n"
    "                          model's text-only scores); images are not read\n"
    "%s"
    "  --help                  this text\n";

static int usage_error(const char *fmt, const char *arg) {
    return scorer_cli_usage_error(usage_text, fmt, arg);
}

static int fail(void) {
    fprintf(stderr, "mmrm: error: %s\n", mmrm_last_error());
    return 1;
}

/* ---- writing lines ---- */

/* s as a JSON string; the text is valid UTF-8 (the reader checked it), so only quotes,
 * backslashes and control characters need escapes */
static void put_json_str(StrBuf *b, const char *s) {
    sb_putc(b, '"');
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        sb_append(b, run, (size_t)(s - run));
        switch (c) {
        case '"': sb_puts(b, "\\\""); break;
        case '\\': sb_puts(b, "\\\\"); break;
        case '\n': sb_puts(b, "\\n"); break;
        case '\t': sb_puts(b, "\\t"); break;
        case '\r': sb_puts(b, "\\r"); break;
        default: sb_printf(b, "\\u%04x", c);
        }
        run = s + 1;
    }
    sb_append(b, run, (size_t)(s - run));
    sb_putc(b, '"');
}

/* %.9g round-trips a float; JSON has no NaN or infinity, so those are null */
static void put_score(StrBuf *b, const ScoreOut *o) {
    if (o->status != SCORE_OK || !isfinite(o->score)) sb_puts(b, "null");
    else sb_printf(b, "%.9g", (double)o->score);
}

/* ---- the command ---- */

typedef struct {
    long scored, done_before, truncated, nonfinite, lines_written;
    long failed[SCORE_NSTATUS];  /* responses, by status */
    long failed_records;         /* records whose image failed */
} Counts;

/* Counts one record's results and appends its lines: per response the scored ones, or with
 * grouped one line holding every score (null for a rejected response) unless the image
 * failed. tag: the record's input line when the lines go to a part file, else -1;
 * resp_index: the group's responses' indices in the record (a rerun scores only some). */
static void put_lines(StrBuf *b, const ScoreRecord *rec, const ScoreGroup *gr,
                      const int *resp_index, const ScoreOut *go, int grouped, long tag,
                      Counts *c) {
    if (go[0].status == SCORE_IMAGE_FAILED) c->failed_records++;
    for (int j = 0; j < gr->n; j++) {
        int ok = go[j].status == SCORE_OK;
        c->failed[go[j].status] += !ok;
        c->scored += ok;
        c->truncated += ok && go[j].truncated;
        c->nonfinite += ok && !isfinite(go[j].score);
    }
    if (grouped) {
        if (go[0].status == SCORE_IMAGE_FAILED) return;
        score_put_tag(b, tag, 0);
        sb_puts(b, "{\"prompt\": ");
        put_json_str(b, rec->prompt);
        sb_puts(b, ", \"img_path\": ");
        put_json_str(b, rec->img_path);
        sb_puts(b, ", \"responses\": [");
        for (int j = 0; j < gr->n; j++) {
            if (j) sb_puts(b, ", ");
            put_json_str(b, gr->responses[j]);
        }
        sb_puts(b, "], \"scores\": [");
        for (int j = 0; j < gr->n; j++) {
            if (j) sb_puts(b, ", ");
            put_score(b, &go[j]);
        }
        sb_puts(b, "]}\n");
        c->lines_written++;
        return;
    }
    for (int j = 0; j < gr->n; j++) {
        if (go[j].status != SCORE_OK) continue;
        score_put_tag(b, tag, resp_index[j]);
        sb_puts(b, "{\"prompt\": ");
        put_json_str(b, rec->prompt);
        sb_puts(b, ", \"img_path\": ");
        put_json_str(b, rec->img_path);
        sb_puts(b, ", \"response\": ");
        put_json_str(b, gr->responses[j]);
        sb_puts(b, ", \"score\": ");
        put_score(b, &go[j]);
        sb_puts(b, "}\n");
        c->lines_written++;
    }
}

/* the final counts: what was scored, skipped, failed (by reason) and how fast */
static void report(const Counts *c, const ScoreSet *ss, const char *input, const char *output,
                   long total_responses, int max_length, const ScorerStats *st, double secs,
                   int world) {
    long failed = 0;
    for (int s = 1; s < SCORE_NSTATUS; s++) failed += c->failed[s];
    mmrm_log("%s: %ld records read, %zu loaded (%ld responses): %ld responses scored now, %ld "
             "already in %s, %ld failed; %ld line%s appended", input, ss->load.records, ss->n,
             total_responses, c->scored, c->done_before, output, failed, c->lines_written,
             c->lines_written == 1 ? "" : "s");
    for (int s = 1; s < SCORE_NSTATUS; s++) {
        if (!c->failed[s]) continue;
        if (s == SCORE_IMAGE_FAILED)
            mmrm_log("  failed: %ld responses of %ld records: %s", c->failed[s],
                     c->failed_records, score_status_name((ScoreStatus)s));
        else
            mmrm_log("  failed: %ld responses: %s", c->failed[s],
                     score_status_name((ScoreStatus)s));
    }
    for (int s = 0; s < REC_NREASONS; s++)
        if (ss->load.skipped[s])
            mmrm_log("  not loaded: %ld records: %s (the first: %s)", ss->load.skipped[s],
                     rec_reason_name((RecReason)s), ss->load.first_skip[s]);
    if (c->truncated)
        mmrm_log("  %ld responses were cut to --max-length %d (scored; the final <|im_end|> is "
                 "kept)", c->truncated, max_length);
    if (c->nonfinite)
        mmrm_warn("%ld scores are not finite (written as null): the model's weights may be "
                  "broken", c->nonfinite);
    char ranks[48] = "";
    if (world > 1) snprintf(ranks, sizeof ranks, " (summed over %d ranks)", world);
    if (st->forwards > 0)
        mmrm_log("throughput: %ld responses in %.2f s = %.1f responses/s | %ld forwards of %.1f "
                 "sequences, %ld tokens computed for %ld in the rows (%ld padded) | images "
                 "%.2f s, forwards %.2f s%s", c->scored, secs,
                 secs > 0 ? (double)c->scored / secs : 0.0, st->forwards,
                 (double)st->sequences / (double)st->forwards, st->computed, st->tokens,
                 st->padded, st->image_seconds, st->forward_seconds, ranks);
}

/* Every rank's counts and scorer statistics summed into every rank's (done_before is rank
 * 0's alone: it read the output). */
static void sum_over_ranks(const Comm *cm, Counts *c, ScorerStats *st) {
    if (cm->world == 1) return;
    long *n[] = {&c->scored, &c->truncated, &c->nonfinite, &c->lines_written,
                 &c->failed_records, &st->forwards, &st->sequences, &st->tokens, &st->padded, &st->computed,
                 &st->images, &st->tiles};
    enum { NL = sizeof n / sizeof n[0], NV = NL + SCORE_NSTATUS + 2 };
    double v[NV];
    for (int i = 0; i < NL; i++) v[i] = (double)*n[i];
    for (int s = 0; s < SCORE_NSTATUS; s++) v[NL + s] = (double)c->failed[s];
    v[NV - 2] = st->image_seconds;
    v[NV - 1] = st->forward_seconds;
    comm_allreduce_sum_f64(cm, v, NV);
    for (int i = 0; i < NL; i++) *n[i] = (long)v[i];
    for (int s = 0; s < SCORE_NSTATUS; s++) c->failed[s] = (long)v[NL + s];
    st->image_seconds = v[NV - 2];
    st->forward_seconds = v[NV - 1];
}

/* The work units: chunk k is records [at[k], at[k + 1]) of those with responses left, whole
 * records ending where the responses fill whole forwards or pass 4 forwards' worth. Every
 * rank computes the same plan, and a single process scores the chunks in order, so each
 * forward holds the same sequences however many ranks run. */
static size_t *plan_chunks(const size_t *sel_start, size_t n, int B, size_t *nchunks) {
    size_t *at = xmalloc((n + 1) * sizeof *at), k = 0, r = 0;
    while (r < n) {
        size_t begin = r;
        int ng = 0, nresp = 0;
        for (; r < n && ng < 4 * B && !(nresp >= B && (nresp % B == 0 || nresp >= 4 * B));
             r++) {
            int m = (int)(sel_start[r + 1] - sel_start[r]);
            if (m == 0) continue;
            ng++;
            nresp += m;
        }
        if (ng == 0) break;
        at[k++] = begin;
    }
    at[k] = r;
    *nchunks = k;
    return at;
}

/* What scoring a chunk needs; each rank has its own. */
typedef struct {
    const ScoreSet *ss;
    const char *input;
    int grouped, tagged;       /* tagged: lines go to a part file, with their tags */
    int fd;                    /* where lines go */
    const char *path;
    Scorer *sc;
    const char **sel;          /* (to_score) the responses left, record by record */
    const int *sel_index;      /* (to_score) their indices in their records */
    const size_t *sel_start;   /* (n + 1) record r's are sel[sel_start[r] .. sel_start[r + 1]) */
    const size_t *at;          /* (nchunks + 1) the plan */
    size_t nchunks;
    ScoreOut *outs;            /* (to_score) */
    ScoreGroup *groups;        /* (4B) */
    size_t *grec;              /* (4B) */
    char (*msg)[SCORER_MSG_LEN]; /* (4B) */
    StrBuf buf;
    Counts c;
    int tty;                   /* a progress bar is drawn on stderr */
    Progress *prog;            /* rank 0's */
} Run;

/* The work queue's task (u is the Run): scores chunk k and appends its lines (one write, then
 * fsync). The number of responses it held, or -1 with the error set. */
static long score_chunk(void *ctx, size_t k) {
    Run *u = ctx;
    int ng = 0;
    long nresp = 0;
    for (size_t r = u->at[k]; r < u->at[k + 1]; r++) {
        int m = (int)(u->sel_start[r + 1] - u->sel_start[r]);
        if (m == 0) continue;
        const ScoreRecord *rec = &u->ss->recs[r];
        u->groups[ng] = (ScoreGroup){rec->prompt, rec->image, u->sel + u->sel_start[r], m};
        u->grec[ng++] = r;
        nresp += m;
    }
    if (ng == 0) return 0;
    if (scorer_score(u->sc, u->groups, ng, u->outs + u->sel_start[u->grec[0]], u->msg)) return -1;
    /* put_lines counts what it formats; a chunk whose write fails (a full disk) was not
     * appended, and the final report must not say it was */
    Counts before = u->c;
    sb_reset(&u->buf);
    for (int g = 0; g < ng; g++) {
        size_t r = u->grec[g];
        const ScoreRecord *rec = &u->ss->recs[r];
        if (u->msg[g][0]) {
            if (u->tty) fputs("\r\033[K", stderr);
            mmrm_warn("%s:%d: %s", u->input, rec->line, u->msg[g]);
        }
        put_lines(&u->buf, rec, &u->groups[g], u->sel_index + u->sel_start[r],
                  u->outs + u->sel_start[r], u->grouped, u->tagged ? rec->line : -1, &u->c);
    }
    if (fs_write_fd(u->fd, u->buf.s, u->buf.len, u->path)) {
        u->c = before;
        return -1;
    }
    if (fsync(u->fd) != 0) {
        mmrm_set_error("%s: fsync failed (%s)", u->path, strerror(errno));
        u->c = before;
        return -1;
    }
    return nresp;
}

/* the work queue's report on rank 0: responses scored by any rank */
static void chunk_done(void *ctx, long responses) { progress_add(((Run *)ctx)->prog, responses); }

/* Rank 0 before any scoring: the lock, a killed merge finished or undone, OUT and the part
 * files read; todo[i] = 1 for every response (in input order) not written yet.
 * hdr = {responses, records, responses done, part files in use}. The fd, or -1. */
static int find_work(const ScoreSet *ss, const char *output, const PartDirs *pd, int grouped,
                     int world, unsigned char *todo, long hdr[4]) {
    int fd = score_open_locked(output);
    if (fd < 0) return -1;
    KeySet done = {0};
    long existing = 0, part_lines = 0;
    int nparts = 0, parts = 0;
    if (parts_recover(pd, output, fd) || score_read_done(output, grouped, 0, &done, &existing) ||
        parts_prepare(pd, output, world > 1, grouped, &done, &parts, &nparts, &part_lines))
        goto fail;
    long total = 0, done_before = 0;
    for (size_t r = 0; r < ss->n; r++) {
        const ScoreRecord *rec = &ss->recs[r];
        unsigned char *t = todo + total;
        total += rec->nresponses;
        if (grouped) {
            int took = keyset_take(&done, key_record(rec->prompt, rec->img_path, rec->responses,
                                                    rec->nresponses));
            memset(t, !took, (size_t)rec->nresponses);
            done_before += took ? rec->nresponses : 0;
            continue;
        }
        for (int j = 0; j < rec->nresponses; j++) {
            t[j] = !keyset_take(&done, key_triple(rec->prompt, rec->img_path, rec->responses[j]));
            done_before += !t[j];
        }
    }
    keyset_free(&done);
    if (nparts)
        mmrm_log("%s: %d part file%s of an interrupted run hold%s %ld line%s: kept, and merged "
                 "into %s at the end", pd->live, nparts, nparts == 1 ? "" : "s",
                 nparts == 1 ? "s" : "", part_lines, part_lines == 1 ? "" : "s", output);
    if (existing || part_lines)
        mmrm_log("%s holds %ld line%s: %ld of %ld responses are already scored, %ld to go",
                 output, existing + part_lines, existing + part_lines == 1 ? "" : "s",
                 done_before, total, total - done_before);
    hdr[0] = total;
    hdr[1] = (long)ss->n;
    hdr[2] = done_before;
    hdr[3] = parts;
    return fd;
fail:
    keyset_free(&done);
    close(fd);
    return -1;
}

static int score_main(const Comm *cm, int argc, char **argv) {
    const char *model = NULL, *input = NULL, *output = NULL;
    int grouped = 0, blank = 0;
    ScorerCli cli = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = scorer_cli_option(&cli, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf(usage_text, SCORER_CLI_USAGE);
            return 0;
        } else if (!strcmp(a, "--grouped")) {
            grouped = 1;
        } else if (!strcmp(a, "--blank-image")) {
            blank = 1;
        } else if (!strcmp(a, "--model") || !strcmp(a, "--input") || !strcmp(a, "--output")) {
            if (i + 1 >= argc) return usage_error("%s needs a value", a);
            const char **dst = a[2] == 'm' ? &model : a[2] == 'i' ? &input : &output;
            *dst = argv[++i];
        } else {
            return usage_error("score: unknown option '%s'", a);
        }
    }
    if (!model) return usage_error("score: %s is missing", "--model");
    if (!input) return usage_error("score: %s is missing", "--input");
    if (!output) return usage_error("score: %s is missing", "--output");
    struct stat si, so;
    if (stat(input, &si) == 0 && stat(output, &so) == 0 && si.st_dev == so.st_dev &&
        si.st_ino == so.st_ino) {
        mmrm_set_error("--input and --output are the same file (%s)", output);
        return fail();
    }

    RewardModel m;
    Tokenizer *tok;
    Device dev;
    int bf16 = 0;
    if (scorer_cli_device(&cli, cm->local_rank, &dev, &bf16)) return 2;
    if (scorer_load_model_adapter(model, cli.adapter, dev, bf16, &m, &tok)) return fail();
    ScorerOptions so_opt;
    scorer_cli_options(&cli, &m.cfg, &so_opt);
    so_opt.blank = blank;
    Scorer *sc = scorer_new(&m, tok, &so_opt);
    if (!sc) {
        tokenizer_free(tok);
        rm_free(&m);
        return fail();
    }
    ScoreSet ss;
    RecordOptions ropt = {.image_root = cli.image_root, .on_bad_record = REC_ON_BAD_SKIP};
    int rc = 1, fd = -1, pfd = -1;
    char *ppath = NULL;
    PartDirs pd;
    parts_init(&pd, output);
    if (scoreset_load(&ss, &input, 1, &ropt)) {
        fail();
        goto out_model;
    }
    long total = 0;
    for (size_t r = 0; r < ss.n; r++) total += ss.recs[r].nresponses;
    unsigned char *todo = xcalloc((size_t)(total ? total : 1), 1);
    long hdr[4] = {0};
    if (cm->rank == 0 && (fd = find_work(&ss, output, &pd, grouped, cm->world, todo, hdr)) < 0) {
        fail();
        goto out_todo;
    }
    comm_broadcast(cm, hdr, sizeof hdr, 0);
    if (hdr[0] != total || hdr[1] != (long)ss.n) {
        mmrm_set_error("rank %d loaded %zu records (%ld responses) from %s but rank 0 loaded %ld "
                       "(%ld): every rank must read the same input", cm->rank, ss.n, total, input,
                       hdr[1], hdr[0]);
        fail();
        goto out_todo;
    }
    comm_broadcast(cm, todo, (size_t)total, 0);
    int parts = (int)hdr[3];
    if (parts && (pfd = parts_open(&pd, cm->rank, &ppath)) < 0) {
        fail();
        goto out_todo;
    }

    /* what is left: per record the responses (grouped: all or none) */
    long to_score = 0;
    const char **sel = xmalloc((size_t)(total ? total : 1) * sizeof *sel);
    int *sel_index = xmalloc((size_t)(total ? total : 1) * sizeof *sel_index);
    size_t *sel_start = xmalloc((ss.n + 1) * sizeof *sel_start);
    for (size_t r = 0, i = 0; r < ss.n; r++) {
        sel_start[r] = (size_t)to_score;
        for (int j = 0; j < ss.recs[r].nresponses; j++, i++) {
            if (!todo[i]) continue;
            sel_index[to_score] = j;
            sel[to_score++] = ss.recs[r].responses[j];
        }
    }
    sel_start[ss.n] = (size_t)to_score;
    int B = so_opt.batch_size;
    size_t nchunks;
    size_t *at = plan_chunks(sel_start, ss.n, B, &nchunks);
    Run u = {.ss = &ss, .input = input, .grouped = grouped, .tagged = parts,
             .fd = parts ? pfd : fd, .path = parts ? ppath : output, .sc = sc, .sel = sel,
             .sel_index = sel_index, .sel_start = sel_start, .at = at, .nchunks = nchunks,
             .outs = xmalloc((size_t)(to_score ? to_score : 1) * sizeof(ScoreOut)),
             .groups = xmalloc((size_t)4 * B * sizeof(ScoreGroup)),
             .grec = xmalloc((size_t)4 * B * sizeof(size_t)),
             .msg = xmalloc((size_t)4 * B * sizeof *u.msg)};
    u.c.done_before = hdr[2];
    if (cm->world > 1)
        mmrm_log("%d ranks (%s): %zu chunks of up to 4 forwards, handed out on request",
                 cm->world, comm_kind_name(cm->kind), nchunks);
    Progress prog;
    progress_start(&prog, "responses", cm->rank == 0 ? to_score : 0);
    u.tty = prog.tty;
    u.prog = &prog;
    long *chunks_of = xcalloc((size_t)cm->world, sizeof *chunks_of);
    double t0 = clock_seconds();
    rc = comm_work_queue(cm, nchunks, score_chunk, chunk_done, &u, chunks_of);
    if (rc == 0 && cm->world > 1 && cm->rank == 0) {
        StrBuf b = {0};
        for (int r = 0; r < cm->world; r++) sb_printf(&b, "%s%ld", r ? ", " : "", chunks_of[r]);
        mmrm_log("chunks scored by ranks 0..%d: %s", cm->world - 1, b.s);
        sb_free(&b);
    }
    free(chunks_of);
    rc = rc ? fail() : 0;
    double secs = clock_seconds() - t0;
    if (cm->rank == 0) progress_end(&prog);
    if (pfd >= 0 && close(pfd) != 0 && rc == 0) {
        mmrm_set_error("%s: close failed (%s)", ppath, strerror(errno));
        rc = fail();
    }
    pfd = -1;
    ScorerStats st = *scorer_stats(sc);
    /* a rank that failed skips the collectives: its exit aborts the job (comm.h); so when the
     * sum completes, every rank has written and synced all its lines */
    if (cm->world > 1 && rc == 0) sum_over_ranks(cm, &u.c, &st);
    if (cm->rank == 0 && parts && rc == 0) {
        long merged;
        if (parts_merge(&pd, output, fd, &merged)) rc = fail();
        u.c.lines_written = merged;
        if (merged) mmrm_log("merged %ld line%s of the part files into %s", merged,
                             merged == 1 ? "" : "s", output);
    }
    if (cm->rank == 0 && fd >= 0) {
        if (close(fd) != 0 && rc == 0) {
            mmrm_set_error("%s: close failed (%s)", output, strerror(errno));
            rc = fail();
        }
        fd = -1;
    }
    if (cm->rank == 0)
        report(&u.c, &ss, input, output, total, so_opt.max_length, &st, secs, cm->world);
    /* the workers wait for the merge, so a merge that fails ends the job with its error */
    if (cm->world > 1 && rc == 0) comm_barrier(cm);
    sb_free(&u.buf);
    free(u.outs);
    free(u.msg);
    free(u.grec);
    free(u.groups);
    free(at);
    free(sel);
    free(sel_index);
    free(sel_start);
out_todo:
    if (fd >= 0) close(fd);
    if (pfd >= 0) close(pfd);
    free(ppath);
    free(todo);
    scoreset_free(&ss);
out_model:
    parts_free(&pd);
    scorer_free(sc);
    tokenizer_free(tok);
    rm_free(&m);
    return rc;
}

int cmd_score(int argc, char **argv) {
    Comm comm;
    comm_init(&comm, &argc, &argv);
    if (comm.rank > 0) mmrm_set_quiet(1); /* rank 0 tells the story; warnings still show */
    int rc = score_main(&comm, argc, argv);
    /* a failing rank skips comm_finalize: its non-zero exit then ends every rank (comm.h) */
    if (rc == 0) comm_finalize(&comm);
    return rc;
}
