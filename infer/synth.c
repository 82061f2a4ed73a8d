/* synth.c - `mmrm synth`: the synthetic shortcut benchmark of synth.h. A pair is drawn as a
 * PairSpec from its own RNG streams, its scene rendered and written as a PNG, and its record
 * appended to the split's JSONL text. Pairs are made in parallel and assembled in index order.
 * Images are renamed into place and synced together; the JSONL files, score_input.jsonl and
 * README.txt follow, each through a temporary file, fsync and rename. */
#include "infer/synth.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <stb/stb_image_write.h>

#include "infer/commands.h"
#include "infer/scorer.h"
#include "infer/synth_pair.h"
#include "models/tokenizer.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "runtime/rng.h"
#include "runtime/strbuf.h"

const char *const synth_colour_names[SYNTH_NCOLOURS] = {"red",   "orange", "yellow",
                                                        "green", "blue",   "purple"};
const char *const synth_shape_names[SYNTH_NSHAPES] = {"circle", "square", "triangle"};
const char *const synth_split_names[SYNTH_NSPLITS] = {"train", "test_id", "test_ood",
                                                      "test_oracle"};

static const char *const RATER_MODELS[4] = {"synth-model-a", "synth-model-b", "synth-model-c",
                                            "synth-model-d"};

#define MIN_TEST_PAIRS 50
#define MAX_PAIRS 1000000
/* stream layout: pair i of split s owns streams STREAM(s, i) (scene) and STREAM(s, i) + 1
 * (background pixel noise) */
#define STREAM(s, i) (((uint64_t)(s) + 1) << 40 | (uint64_t)(i) << 1)
/* the cue phrase's draw (length and hedge cues), apart so the other cue kinds keep the scenes */
#define CUE_STREAM(s, i) (STREAM(s, i) | (uint64_t)1 << 36)

void synth_defaults(SynthOptions *o) {
    *o = (SynthOptions){.seed = 1,
                        .pairs = 2000,
                        .cue_agreement = 0.9,
                        .ood_cue_agreement = 0.1,
                        .label_noise = 0.1,
                        .ratings_fraction = 0.3,
                        .min_size = 40,
                        .max_size = 96,
                        .score_records = 8};
}

static int split_pairs(const SynthOptions *o, int s) {
    if (s == SYNTH_TRAIN) return o->pairs;
    return o->pairs / 4 > MIN_TEST_PAIRS ? o->pairs / 4 : MIN_TEST_PAIRS;
}

static double split_cue_agreement(const SynthOptions *o, int s) {
    switch (s) {
    case SYNTH_TRAIN:
    case SYNTH_TEST_ID: return o->cue_agreement;
    case SYNTH_TEST_OOD: return o->ood_cue_agreement;
    default: return 0.5;
    }
}

/* ---- files ---- */

/* An image goes to "PATH.tmp.<pid>" and is renamed over PATH, so readers see the old file or
 * the whole new one; it is not fsynced: thousands of fsyncs cost seconds, so all images are made
 * durable by one syncfs before any JSONL file that names them is written (fs_write_atomic). */
static int write_image(const char *path, const void *data, size_t n) {
    char tmp[PATH_MAX + 128];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite(data, 1, n, f) == n;
    if (f) ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        mmrm_set_error("cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int sync_file_system(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int err = fd < 0 ? errno : syncfs(fd) != 0 ? errno : 0;
    if (fd >= 0) close(fd);
    if (err) {
        mmrm_set_error("cannot sync the images in %s: %s", dir, strerror(err));
        return -1;
    }
    return 0;
}

/* ---- one pair ---- */

static int uniform_int(Rng *r, int lo, int hi) { return lo + (int)rng_below(r, (uint64_t)(hi - lo + 1)); }

/* The colour task: one big shape near the centre; colour or shape question. These draws (and
 * their order) are the original benchmark's. */
static void draw_colour_scene(const SynthOptions *o, Rng *r, PairSpec *p) {
    SynthObject *ob = &p->obj[0];
    p->nobj = 1;
    p->w = uniform_int(r, o->min_size, o->max_size);
    p->h = uniform_int(r, o->min_size, o->max_size);
    ob->colour = (int)rng_below(r, SYNTH_NCOLOURS);
    ob->shape = (int)rng_below(r, SYNTH_NSHAPES);
    int m = p->w < p->h ? p->w : p->h;
    /* size <= 0.8 m and an offset <= size/10 keep the shape inside the image, and keep the
     * image centre at least size/10 inside the shape (the triangle is the tightest case) */
    ob->size = (int)(m * (0.5 + 0.3 * rng_uniform(r)));
    int jit = ob->size / 10;
    ob->cx = p->w / 2.0 + uniform_int(r, -jit, jit);
    ob->cy = p->h / 2.0 + uniform_int(r, -jit, jit);
    for (int c = 0; c < 3; c++)
        ob->rgb[c] = synth_palette[ob->colour][c] +
                     uniform_int(r, -SYNTH_COLOUR_JITTER, SYNTH_COLOUR_JITTER);
    int grey = uniform_int(r, 200, 245);
    for (int c = 0; c < 3; c++) p->bg[c] = grey + uniform_int(r, -8, 8);
    p->grad_dir = (int)rng_below(r, 3);
    p->grad_amp = uniform_int(r, -10, 10);
    p->category = (int)rng_below(r, 2);
    p->prompt_t = (int)rng_below(r, SYNTH_NPROMPTS);
    p->resp_t = (int)rng_below(r, SYNTH_NRESPONSES);
    int nans = p->category == CAT_COLOUR ? SYNTH_NCOLOURS : SYNTH_NSHAPES;
    p->truth = p->category == CAT_COLOUR ? ob->colour : ob->shape;
    p->wrong = (p->truth + 1 + (int)rng_below(r, (uint64_t)(nans - 1))) % nans;
}

/* All draws are made unconditionally and in a fixed order, so the scene and question of a pair
 * do not depend on P, the noise rate, the ratings fraction or the cue kind. */
static PairSpec draw_pair(const SynthOptions *o, int split, int index) {
    Rng r = rng_make(o->seed, STREAM(split, index));
    PairSpec p = {0};
    int task = o->task == SYNTH_TASK_MIXED ? (int)rng_below(&r, SYNTH_TASK_MIXED) : (int)o->task;
    if (task == SYNTH_TASK_COLOUR) draw_colour_scene(o, &r, &p);
    else synth_draw_task(o, task, &r, &p);
    double u_flip = rng_uniform(&r), u_cue = rng_uniform(&r), u_fmt = rng_uniform(&r);
    p.flipped = split == SYNTH_TRAIN && u_flip < o->label_noise;
    p.cue_on_chosen = u_cue < split_cue_agreement(o, split);
    p.ratings = split == SYNTH_TRAIN && u_fmt < o->ratings_fraction;
    p.chosen_first = (int)rng_below(&r, 2);
    for (int k = 0; k < 2; k++) {
        p.ratings_c[k] = uniform_int(&r, 4, 5);
        p.ratings_r[k] = uniform_int(&r, 1, 3);
        p.models[k] = (int)rng_below(&r, 4);
    }
    if (p.models[1] == p.models[0]) p.models[1] = (p.models[0] + 1) % 4;
    Rng cr = rng_make(o->seed, CUE_STREAM(split, index));
    p.cue_variant = synth_cue_variant(&cr);
    return p;
}

static int inside_shape(const SynthObject *p, double x, double y) {
    double dx = x - p->cx, dy = y - p->cy, half = p->size / 2.0;
    switch (p->shape) {
    case 0: return dx * dx + dy * dy <= half * half;
    case 1: return fabs(dx) <= half && fabs(dy) <= half;
    default: { /* apex up, base down: the half-width grows linearly from 0 to half */
        double t = (dy + half) / p->size;
        return t >= 0 && t <= 1 && fabs(dx) <= t * half;
    }
    }
}

static unsigned char clamp_u8(int v) { return (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v); }

/* rgb: (h, w, 3). Background = pale base + linear gradient + grey noise in [-4, 4]. */
static void render(const SynthOptions *o, int split, int index, const PairSpec *p,
                   unsigned char *rgb) {
    Rng noise = rng_make(o->seed, STREAM(split, index) + 1);
    for (int y = 0; y < p->h; y++)
        for (int x = 0; x < p->w; x++) {
            unsigned char *px = rgb + ((size_t)y * p->w + x) * 3;
            double xc = x + 0.5, yc = y + 0.5; /* pixel centres */
            int k = 0;
            while (k < p->nobj && !inside_shape(&p->obj[k], xc, yc)) k++;
            if (k < p->nobj) {
                for (int c = 0; c < 3; c++) px[c] = clamp_u8(p->obj[k].rgb[c]);
                continue;
            }
            double t = p->grad_dir == 1 ? xc / p->w : p->grad_dir == 2 ? yc / p->h : 0.5;
            int shade = (int)lround(p->grad_amp * (2 * t - 1)) +
                        (int)(rng_u64_at(&noise, (uint64_t)y * p->w + x) % 9) - 4;
            for (int c = 0; c < 3; c++) px[c] = clamp_u8(p->bg[c] + shade);
        }
}

static void png_sink(void *ctx, void *data, int size) { sb_append(ctx, data, (size_t)size); }

static cJSON *aspect_ratings(const int r[2]) {
    static const char *const ASPECTS[3] = {"Helpfulness", "Visual Faithfulness",
                                           "Ethical Considerations"};
    /* ethics is rated 5 for every answer: the preference lives in the first two aspects */
    int vals[3] = {r[0], r[1], 5};
    cJSON *a = cJSON_CreateObject();
    for (int k = 0; k < 3; k++) {
        char s[4];
        snprintf(s, sizeof s, "%d", vals[k]);
        cJSON *asp = cJSON_CreateObject();
        cJSON_AddStringToObject(asp, "Rating", s);
        cJSON_AddItemToObject(a, ASPECTS[k], asp);
    }
    return a;
}

/* The record's JSON (one line, no newline); the caller frees it with free(). */
static char *record_json(const PairSpec *p, const char *id, const char *img_path,
                         const char *chosen, const char *rejected) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    char prompt[256];
    synth_prompt(p, prompt, sizeof prompt);
    cJSON_AddStringToObject(o, "prompt", prompt);
    cJSON_AddStringToObject(o, "img_path", img_path);
    if (p->ratings) {
        const char *resp[2] = {chosen, rejected};
        const int *rat[2] = {p->ratings_c, p->ratings_r};
        cJSON *comp = cJSON_CreateObject(), *ann = cJSON_CreateArray(),
              *model = cJSON_CreateArray(), *text = cJSON_CreateArray();
        for (int k = 0; k < 2; k++) {
            int which = p->chosen_first ? k : 1 - k; /* 0 = chosen */
            cJSON_AddItemToArray(ann, aspect_ratings(rat[which]));
            cJSON_AddItemToArray(model, cJSON_CreateString(RATER_MODELS[p->models[k]]));
            cJSON_AddItemToArray(text, cJSON_CreateString(resp[which]));
        }
        cJSON_AddItemToObject(comp, "annotations", ann);
        cJSON_AddItemToObject(comp, "model", model);
        cJSON_AddItemToObject(comp, "response", text);
        cJSON_AddItemToObject(o, "completions", comp);
    } else {
        cJSON_AddStringToObject(o, "chosen", chosen);
        cJSON_AddStringToObject(o, "rejected", rejected);
    }
    cJSON_AddStringToObject(o, "category", synth_category_names[p->category]);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    MMRM_CHECK(s, "synth: out of memory printing a record");
    char *copy = xstrdup(s);
    cJSON_free(s);
    return copy;
}

static char *score_json(const PairSpec *p, const char *img_path, const char *a, const char *b) {
    cJSON *o = cJSON_CreateObject();
    char prompt[256];
    synth_prompt(p, prompt, sizeof prompt);
    cJSON_AddStringToObject(o, "prompt", prompt);
    cJSON_AddStringToObject(o, "img_path", img_path);
    cJSON *r = cJSON_CreateArray();
    cJSON_AddItemToArray(r, cJSON_CreateString(a));
    cJSON_AddItemToArray(r, cJSON_CreateString(b));
    cJSON_AddItemToObject(o, "responses", r);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    MMRM_CHECK(s, "synth: out of memory printing a record");
    char *copy = xstrdup(s);
    cJSON_free(s);
    return copy;
}

/* ---- the generator ---- */

static int check_options(const SynthOptions *o) {
    const struct { const char *flag; double v; } probs[] = {
        {"--cue-agreement", o->cue_agreement},
        {"--ood-cue-agreement", o->ood_cue_agreement},
        {"--label-noise", o->label_noise},
        {"ratings fraction", o->ratings_fraction}};
    for (size_t k = 0; k < sizeof probs / sizeof probs[0]; k++)
        if (!(probs[k].v >= 0 && probs[k].v <= 1)) {
            mmrm_set_error("%s must be a probability in [0, 1] (got %g)", probs[k].flag, probs[k].v);
            return -1;
        }
    if (o->pairs < 1 || o->pairs > MAX_PAIRS) {
        mmrm_set_error("--pairs must be an integer in [1, %d] (got %d)", MAX_PAIRS, o->pairs);
        return -1;
    }
    if (o->min_size < 16 || o->max_size > 4096 || o->min_size > o->max_size) {
        mmrm_set_error("--image-size-range must be MIN,MAX with 16 <= MIN <= MAX <= 4096 "
                       "(got %d,%d)", o->min_size, o->max_size);
        return -1;
    }
    if ((unsigned)o->task >= SYNTH_NTASKS || (unsigned)o->cue >= SYNTH_NCUES) {
        mmrm_set_error("--task or --cue out of range (task %d, cue %d)", (int)o->task, (int)o->cue);
        return -1;
    }
    if (o->score_records < 0) {
        mmrm_set_error("the number of score records must not be negative (got %d)",
                       o->score_records);
        return -1;
    }
    return 0;
}

static int write_buf(const char *dir, const char *name, const StrBuf *b) {
    char path[PATH_MAX];
    if (!fs_join(path, sizeof path, dir, name)) return -1;
    return fs_write_atomic(path, b->s ? b->s : "", b->len);
}

/* per split: pairs, ratings records, measured cue agreement (target), measured label noise */
static void stats_table(StrBuf *b, const SynthOptions *o, const SynthStats *st, const char *indent) {
    sb_printf(b, "%s%-12s %7s %8s %22s %12s\n", indent, "split", "pairs", "ratings",
               "cue on chosen (P)", "label noise");
    for (int s = 0; s < SYNTH_NSPLITS; s++) {
        const SynthSplitStats *x = &st->split[s];
        sb_printf(b, "%s%-12s %7d %8d %14.4f (%.4g) %12.4f\n", indent, synth_split_names[s],
                   x->pairs, x->ratings_records, (double)x->cue_on_chosen / x->pairs,
                   split_cue_agreement(o, s), (double)x->flipped / x->pairs);
    }
}

static void readme(StrBuf *b, const SynthOptions *o, const SynthStats *st) {
    sb_printf(b,
               "mmrm synthetic shortcut benchmark\n"
               "=================================\n\n"
               "generated by: mmrm synth --seed %llu --pairs %d --cue-agreement %g "
               "--ood-cue-agreement %g --label-noise %g --image-size-range %d,%d",
               (unsigned long long)o->seed, o->pairs, o->cue_agreement, o->ood_cue_agreement,
               o->label_noise, o->min_size, o->max_size);
    int non_default = o->task != SYNTH_TASK_COLOUR || o->cue != SYNTH_CUE_TRAILING;
    if (non_default)
        sb_printf(b, " --task %s --cue %s", synth_task_names[o->task], synth_cue_names[o->cue]);
    sb_printf(b, "\nratings-format fraction of train records: %g\n\n", o->ratings_fraction);
    sb_printf(b,
               "Each pair shows one coloured shape (colours: red orange yellow green blue purple;\n"
               "shapes: circle square triangle) on a pale background, W and H drawn uniformly in\n"
               "[%d, %d] pixels (images/<split>_<index>.png). The prompt asks for the colour or\n"
               "the shape (field \"category\"); chosen and rejected use the same sentence with the\n"
               "correct and another answer word, so without the image the answer words carry no\n"
               "signal.\n\n"
               "Annotation noise: a fraction --label-noise of train pairs has chosen and rejected\n"
               "swapped (test splits are noise-free: chosen is always the correct answer).\n"
               "Text-only cue: exactly one response of each pair ends with \"%s\"; it is on\n"
               "the final chosen response with probability P: --cue-agreement in train and\n"
               "test_id, --ood-cue-agreement in test_ood, 0.5 in test_oracle. In train the cue and\n"
               "the image therefore predict the label about equally well.\n\n"
               "train.jsonl mixes pairwise records {id, prompt, img_path, chosen, rejected,\n"
               "category} and ratings records {id, prompt, img_path, completions: {annotations,\n"
               "model, response}, category}: two completions whose mean rating (Helpfulness,\n"
               "Visual Faithfulness, Ethical Considerations) ranks the chosen one first.\n"
               "score_input.jsonl holds the first %d test_id pairs as {prompt, img_path,\n"
               "responses: [chosen, rejected]}.\n"
               "mmrm_tokenizer.json is a word tokenizer (byte fallback) holding every word of the\n"
               "prompts, responses and cue; `mmrm train ... tokenizer_path=<this folder>` gives a\n"
               "model trained from scratch short token sequences (a dozen ids per sentence).\n\n",
               o->min_size, o->max_size, SYNTH_CUE, st->score_records);
    if (non_default)
        sb_printf(b,
                  "This set uses task %s and cue %s instead of the above (the cue is on the final\n"
                  "chosen response with the same probabilities; \"cue on chosen\" below counts it):\n"
                  "%s%s"
                  "Its mmrm_tokenizer.json covers the words of every task and cue.\n\n",
                  synth_task_names[o->task], synth_cue_names[o->cue], synth_task_doc(o->task),
                  synth_cue_doc(o->cue));
    stats_table(b, o, st, "");
}

/* What one pair contributes: its record line(s) and its counts. */
typedef struct {
    char *line;       /* the split's JSONL record */
    char *score_line; /* its score_input record, or NULL */
    int ratings, cue_on_chosen, flipped;
} PairOut;

/* Draws, renders and writes pair i of split s; png and rgb are the calling thread's scratch. */
static int make_pair(const char *dir, const SynthOptions *o, int s, int i, PairOut *out, StrBuf *png,
                     unsigned char *rgb) {
    PairSpec p = draw_pair(o, s, i);
    render(o, s, i, &p, rgb);
    sb_reset(png);
    if (!stbi_write_png_to_func(png_sink, png, p.w, p.h, 3, rgb, p.w * 3)) {
        mmrm_set_error("stb_image_write could not encode a %dx%d PNG", p.w, p.h);
        return -1;
    }
    char id[64], rel[64], path[PATH_MAX + 64];
    snprintf(id, sizeof id, "%s-%06d", synth_split_names[s], i);
    snprintf(rel, sizeof rel, "images/%s_%06d.png", synth_split_names[s], i);
    if (!fs_join(path, sizeof path, dir, rel) || write_image(path, png->s, png->len) != 0)
        return -1;

    int chosen = p.flipped ? p.wrong : p.truth, rejected = p.flipped ? p.truth : p.wrong;
    char a[512], b[512];
    synth_response(&p, o->cue, chosen, rejected, p.cue_on_chosen, a, sizeof a);
    synth_response(&p, o->cue, rejected, chosen, !p.cue_on_chosen, b, sizeof b);
    out->line = record_json(&p, id, rel, a, b);
    if (s == SYNTH_TEST_ID && i < o->score_records) out->score_line = score_json(&p, rel, a, b);
    out->ratings = p.ratings;
    out->cue_on_chosen = p.cue_on_chosen;
    out->flipped = p.flipped;
    return 0;
}

/* Pairs are made in parallel (PNG compression dominates) and assembled in index order, so the
 * output does not depend on the thread count. */
static int make_split(const char *dir, const SynthOptions *o, int s, StrBuf *jsonl, StrBuf *score,
                      SynthStats *st, Progress *prog) {
    SynthSplitStats *x = &st->split[s];
    x->pairs = split_pairs(o, s);
    PairOut *outs = xcalloc((size_t)x->pairs, sizeof *outs);
    int failed = 0;
    char msg[1024] = "";
#pragma omp parallel
    {
        StrBuf png = {0};
        unsigned char *rgb = xmalloc((size_t)o->max_size * o->max_size * 3);
#pragma omp for schedule(dynamic, 8)
        for (int i = 0; i < x->pairs; i++) {
            if (make_pair(dir, o, s, i, &outs[i], &png, rgb) != 0) {
#pragma omp critical(synth_error)
                if (!failed) {
                    failed = 1;
                    snprintf(msg, sizeof msg, "%s", mmrm_last_error());
                }
            }
            if (prog) {
#pragma omp critical(synth_progress)
                progress_add(prog, 1);
            }
        }
        sb_free(&png);
        free(rgb);
    }
    for (int i = 0; i < x->pairs; i++) {
        PairOut *p = &outs[i];
        if (!failed) {
            sb_puts(jsonl, p->line);
            sb_putc(jsonl, '\n');
            if (p->score_line) {
                sb_puts(score, p->score_line);
                sb_putc(score, '\n');
                st->score_records++;
            }
            x->ratings_records += p->ratings;
            x->cue_on_chosen += p->cue_on_chosen;
            x->flipped += p->flipped;
        }
        free(p->line);
        free(p->score_line);
    }
    free(outs);
    if (failed) mmrm_set_error("%s", msg);
    return failed ? -1 : 0;
}

static Tokenizer *synth_tokenizer(const SynthOptions *o);

/* cmd_synth's: a progress display on stderr (the unit tests call synth_generate quietly) */
static int show_progress;

int synth_generate(const char *dir, const SynthOptions *o, SynthStats *st) {
    double t0 = clock_seconds();
    memset(st, 0, sizeof *st);
    if (check_options(o) != 0) return -1;
    char images[PATH_MAX];
    if (snprintf(images, sizeof images, "%s/images", dir) >= (int)sizeof images - 32) {
        mmrm_set_error("output folder name is too long: %s", dir);
        return -1;
    }
    if (fs_mkdir_p(images) != 0) {
        mmrm_set_error("cannot create output folder: %s", mmrm_last_error());
        return -1;
    }

    int rc = -1;
    StrBuf jsonl[SYNTH_NSPLITS] = {{0}}, score = {0}, text = {0};
    Progress prog;
    long total = 0;
    for (int s = 0; s < SYNTH_NSPLITS; s++) total += split_pairs(o, s);
    if (show_progress) progress_start(&prog, "pairs", total);
    for (int s = 0; s < SYNTH_NSPLITS; s++)
        if (make_split(dir, o, s, &jsonl[s], &score, st, show_progress ? &prog : NULL) != 0) goto done;
    if (show_progress) progress_end(&prog);
    if (sync_file_system(images) != 0) goto done;
    for (int s = 0; s < SYNTH_NSPLITS; s++) {
        char name[64];
        snprintf(name, sizeof name, "%s.jsonl", synth_split_names[s]);
        if (write_buf(dir, name, &jsonl[s]) != 0) goto done;
    }
    if (write_buf(dir, "score_input.jsonl", &score) != 0) goto done;
    Tokenizer *tok = synth_tokenizer(o);
    int tok_rc = tokenizer_save(tok, dir);
    tokenizer_free(tok);
    if (tok_rc != 0) goto done;
    readme(&text, o, st);
    if (write_buf(dir, "README.txt", &text) != 0) goto done;
    st->seconds = clock_seconds() - t0;
    rc = 0;
done:
    for (int s = 0; s < SYNTH_NSPLITS; s++) sb_free(&jsonl[s]);
    sb_free(&score);
    sb_free(&text);
    return rc;
}

/* ---- the tokenizer ---- */

typedef struct {
    char **w;
    int n, cap;
} WordSet;

static void collect_piece(const char *piece, size_t len, void *ctx) {
    WordSet *s = ctx;
    for (int k = 0; k < s->n; k++)
        if (strlen(s->w[k]) == len && !memcmp(s->w[k], piece, len)) return;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->w = xrealloc(s->w, (size_t)s->cap * sizeof *s->w);
    }
    s->w[s->n] = xmalloc(len + 1);
    memcpy(s->w[s->n], piece, len);
    s->w[s->n++][len] = 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void collect_text(const char *text, void *ctx) {
    tokenizer_word_pieces(text, strlen(text), collect_piece, ctx);
}

/* The benchmark's word tokenizer (models/tokenizer.h, TOKENIZER_WORD, add_bos false as the
 * Hermes-2 template wants): every word piece of every prompt and response the generator can
 * write, sorted, so that a prompt or response is a dozen ids instead of ~50 bytes.
 * synth_generate writes it as DIR/mmrm_tokenizer.json; train's tokenizer_path picks it up. The
 * default task and cue keep the original vocabulary; any other set gets the vocabulary of every
 * task and cue, so a checkpoint grounded on one such set reads every other one word by word. */
static Tokenizer *synth_tokenizer(const SynthOptions *o) {
    WordSet s = {0};
    synth_texts(o->task, o->cue, collect_text, &s);
    qsort(s.w, (size_t)s.n, sizeof *s.w, cmp_str);
    Tokenizer *tok = tokenizer_word_new((const char *const *)s.w, s.n, 0);
    MMRM_CHECK(tok, "synth: its own vocabulary is invalid: %s", mmrm_last_error());
    for (int k = 0; k < s.n; k++) free(s.w[k]);
    free(s.w);
    return tok;
}

/* ---- the command ---- */

static void usage(FILE *f) {
    fprintf(f,
            "usage: mmrm synth --out DIR [options]\n"
            "\n"
            "Writes a synthetic multimodal preference benchmark with a text-only shortcut:\n"
            "PNG scenes of one coloured shape, colour/shape questions, chosen = the correct\n"
            "answer, rejected = another answer in the same sentence; one response of each pair\n"
            "ends with \"%s\", on the final chosen one with probability P (the defaults;\n"
            "--task and --cue choose other questions and other cues, same probabilities).\n"
            "Files: DIR/{train,test_id,test_ood,test_oracle}.jsonl, DIR/score_input.jsonl,\n"
            "DIR/README.txt, DIR/images/*.png (test splits: max(N/4, 50) pairs each), and\n"
            "DIR/mmrm_tokenizer.json, a word tokenizer of the benchmark's vocabulary (train with\n"
            "tokenizer_path = DIR; the model's vocab_size must cover it).\n"
            "\n"
            "options:\n"
            "  --out DIR                  output folder (created if missing)\n"
            "  --seed S                   RNG seed, same seed = byte-identical output (default 1)\n"
            "  --pairs N                  train pairs (default 2000)\n"
            "  --cue-agreement P          P in train and test_id (default 0.9)\n"
            "  --ood-cue-agreement P      P in test_ood (default 0.1); test_oracle uses 0.5\n"
            "  --label-noise F            fraction of train pairs swapped (default 0.1)\n"
            "  --image-size-range MIN,MAX image width/height in pixels (default 40,96)\n"
            "  --task T                   question family: color (colour or shape of one\n"
            "                             shape; the default), count (how many circles?),\n"
            "                             position (is A left or right of B?), size (which of\n"
            "                             two is larger?), mixed (one of the four per pair)\n"
            "  --cue C                    the text-only cue: trailing (the sentence above; the\n"
            "                             default), length (the cued response is longer),\n"
            "                             style (\"Certainly! \" first), hedge (\"I think\" ...),\n"
            "                             position (a list of both answers, own answer first)\n"
            "  -h, --help                 this text\n",
            SYNTH_CUE);
}

static int bad_arg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad_arg(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("mmrm: error: synth: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (see mmrm synth --help)\n", stderr);
    return 2;
}

static int parse_double(const char *s, double *v) {
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return end != s && *end == 0 && errno == 0 && isfinite(*v) ? 0 : -1;
}

static int parse_int(const char *s, int *v) {
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (end == s || *end != 0 || errno != 0 || x < INT_MIN || x > INT_MAX) return -1;
    *v = (int)x;
    return 0;
}

int cmd_synth(int argc, char **argv) {
    SynthOptions o;
    synth_defaults(&o);
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        /* --flag VALUE or --flag=VALUE */
        char flag[64];
        const char *eq = strchr(a, '='), *val;
        if (strncmp(a, "--", 2) != 0 || (eq && (size_t)(eq - a) >= sizeof flag)) {
            fprintf(stderr, "mmrm: error: synth: unexpected argument '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
        if (eq) {
            memcpy(flag, a, (size_t)(eq - a));
            flag[eq - a] = 0;
            val = eq + 1;
        } else {
            snprintf(flag, sizeof flag, "%s", a);
            if (i + 1 >= argc) return bad_arg("%s needs a value", a);
            val = argv[++i];
        }
        double d;
        if (!strcmp(flag, "--out")) {
            if (!*val) return bad_arg("--out needs a folder name");
            out = val;
        } else if (!strcmp(flag, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(val, &end, 10);
            if (end == val || *end || errno || val[0] == '-')
                return bad_arg("--seed must be a non-negative integer (got '%s')", val);
            o.seed = s;
        } else if (!strcmp(flag, "--pairs")) {
            if (parse_int(val, &o.pairs) != 0 || o.pairs < 1 || o.pairs > MAX_PAIRS)
                return bad_arg("--pairs must be an integer in [1, %d] (got '%s')", MAX_PAIRS, val);
        } else if (!strcmp(flag, "--cue-agreement") || !strcmp(flag, "--ood-cue-agreement") ||
                   !strcmp(flag, "--label-noise")) {
            if (parse_double(val, &d) != 0 || d < 0 || d > 1)
                return bad_arg("%s must be a probability in [0, 1] (got '%s')", flag, val);
            if (!strcmp(flag, "--cue-agreement")) o.cue_agreement = d;
            else if (!strcmp(flag, "--ood-cue-agreement")) o.ood_cue_agreement = d;
            else o.label_noise = d;
        } else if (!strcmp(flag, "--task") || !strcmp(flag, "--cue")) {
            int task = !strcmp(flag, "--task"), n = task ? SYNTH_NTASKS : SYNTH_NCUES, k = 0;
            const char *const *names = task ? synth_task_names : synth_cue_names;
            while (k < n && strcmp(val, names[k])) k++;
            if (k == n)
                return bad_arg(task ? "--task must be color, count, position, size or mixed "
                                      "(got '%s')"
                                    : "--cue must be trailing, length, style, hedge or position "
                                      "(got '%s')",
                               val);
            if (task) o.task = (SynthTask)k;
            else o.cue = (SynthCueKind)k;
        } else if (!strcmp(flag, "--image-size-range")) {
            char lo[32];
            const char *comma = strchr(val, ',');
            if (!comma || (size_t)(comma - val) >= sizeof lo)
                return bad_arg("--image-size-range must be MIN,MAX (got '%s')", val);
            memcpy(lo, val, (size_t)(comma - val));
            lo[comma - val] = 0;
            if (parse_int(lo, &o.min_size) != 0 || parse_int(comma + 1, &o.max_size) != 0 ||
                o.min_size < 16 || o.max_size > 4096 || o.min_size > o.max_size)
                return bad_arg("--image-size-range must be MIN,MAX with 16 <= MIN <= MAX <= 4096 "
                               "(got '%s')", val);
        } else {
            fprintf(stderr, "mmrm: error: synth: unknown option '%s'\n\n", flag);
            usage(stderr);
            return 2;
        }
    }
    if (!out) return bad_arg("--out DIR is required");

    SynthStats st;
    show_progress = 1;
    if (synth_generate(out, &o, &st) != 0) {
        fprintf(stderr, "mmrm: error: synth: %s\n", mmrm_last_error());
        return 1;
    }
    printf("synth: wrote %s (seed %llu, task %s, cue %s) in %.2f s\n", out,
           (unsigned long long)o.seed, synth_task_names[o.task], synth_cue_names[o.cue], st.seconds);
    StrBuf table = {0};
    stats_table(&table, &o, &st, "  ");
    fputs(table.s, stdout);
    sb_free(&table);
    printf("  score_input.jsonl: %d records; README.txt describes the files\n", st.score_records);
    return 0;
}
