/* scorer.c - groups of (image, prompt, responses) to rewards: images decoded and tiled once
 * per group, responses templated into rows, rows packed into right-padded forwards of up to
 * batch_size sequences that reference their group's tiles, and the progress display that
 * score and eval share.
 *
 * Memory stays bounded by one forward: a group's tiles are held only while some pending row
 * still refers to them, and a forward is run as soon as batch_size rows are pending. */
#include "infer/scorer.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/checkpoint.h"
#include "runtime/error.h"
#include "runtime/strbuf.h"

typedef struct Held {
    float *px; /* (tiles, 3, S, S) */
    int tiles;
    int rows;  /* pending rows that show it */
} Held;

struct Scorer {
    RewardModel *m;
    const Tokenizer *tok;
    ScorerOptions o;
    TemplateKind kind;
    const char *system;  /* the model config's system message, NULL: the template's */
    int tpt;             /* <IMG_CONTEXT> tokens per tile */
    size_t tile_floats;  /* 3 x S x S */
    int pad_id;
    Graph g;
    float *blank_px;     /* (1, 3, S, S) in blank mode */
    float *blank_feat;   /* (1, tpt, 4C) its ViT features, in host memory: the ViT is
                          * frozen at inference, so they are computed once */
    /* the forward being assembled: B = batch_size rows at stride max_length */
    int npending;
    long pending_tokens; /* tokens of the pending rows */
    int *rows;           /* (B, max_length) */
    int *lengths;        /* (B) */
    int *held_of;        /* (B) index into held; 0 in blank mode */
    ScoreOut **dst;      /* (B) where each row's score goes */
    Held *held;          /* (B + 1): at most one image per pending row, plus the current one */
    int nheld;
    /* the forward's inputs */
    int *ids, *tiles, *image_of, *image_index;
    float *pixels;
    size_t pixel_cap;
    ScorerStats st;
};

static const char *const STATUS_NAMES[SCORE_NSTATUS] = {
    "scored", "image unreadable", "image block cut by max_length",
    "no room for a response token", "<IMG_CONTEXT> written in the text",
};

const char *score_status_name(ScoreStatus s) {
    return (unsigned)s < SCORE_NSTATUS ? STATUS_NAMES[s] : "unknown status";
}

void scorer_default_options(const ModelConfig *cfg, ScorerOptions *o) {
    memset(o, 0, sizeof *o);
    o->batch_size = 8;
    o->share_prefix = o->packing = 1;
    o->max_length = cfg->llm.max_positions < 4096 ? cfg->llm.max_positions : 4096;
    o->image = (ImageConfig){.image_size = cfg->image_size, .min_num = 1, .max_num = 6,
                             .dynamic = 1, .use_thumbnail = 1};
    if (cfg->has_tiling) /* the model's own (a trained checkpoint: its training's) */
        o->image = (ImageConfig){.image_size = cfg->image_size,
                                 .min_num = cfg->min_dynamic_patch,
                                 .max_num = cfg->max_dynamic_patch,
                                 .dynamic = cfg->dynamic_image_size,
                                 .use_thumbnail = cfg->use_thumbnail};
}

static int check_options(const RewardModel *m, const ScorerOptions *o) {
    const ModelConfig *cfg = &m->cfg;
    if (o->batch_size < 1) {
        mmrm_set_error("batch size %d (it must be at least 1)", o->batch_size);
        return -1;
    }
    if (o->max_tokens < 0) {
        mmrm_set_error("max_tokens %ld (it must be 0, no limit, or positive)", o->max_tokens);
        return -1;
    }
    if (o->max_length < 1 || o->max_length > cfg->llm.max_positions) {
        mmrm_set_error("max_length %d outside [1, %d] (the model's max_position_embeddings)",
                       o->max_length, cfg->llm.max_positions);
        return -1;
    }
    /* a forward's T never passes max_length; a larger bucket would only grow the packed
     * stream's tail (RewardModel.t_bucket is not capped) */
    if (o->t_bucket < 0 || o->t_bucket > o->max_length) {
        mmrm_set_error("t_bucket %d (--t-bucket) outside [0, %d] (0: auto; at most max_length)",
                       o->t_bucket, o->max_length);
        return -1;
    }
    const ImageConfig *ic = &o->image;
    if (ic->image_size != cfg->image_size) {
        mmrm_set_error("image_size %d differs from the model's %d (tiles must match the "
                       "position embedding)", ic->image_size, cfg->image_size);
        return -1;
    }
    if (ic->min_num < 1 || ic->min_num > ic->max_num || ic->max_num > IMAGE_MAX_NUM) {
        mmrm_set_error("dynamic tiles %d..%d (need 1 <= min_dynamic_patch <= max_dynamic_patch "
                       "<= %d)", ic->min_num, ic->max_num, IMAGE_MAX_NUM);
        return -1;
    }
    return 0;
}

/* The tokenizer must produce ids the model embeds, with the model's <IMG_CONTEXT>, and fit
 * the template's BOS convention (checked by templating an empty sample). */
static int check_tokenizer(const Scorer *s) {
    const ModelConfig *cfg = &s->m->cfg;
    if (s->tok->vocab_size > cfg->llm.vocab) {
        mmrm_set_error("the tokenizer has %d ids but the model embeds %d (vocab_size): is the "
                       "tokenizer file from another model?", s->tok->vocab_size, cfg->llm.vocab);
        return -1;
    }
    int ctx = tokenizer_special_id(s->tok, "<IMG_CONTEXT>");
    if (ctx < 0) return -1;
    /* a published config.json has no img_context_token_id: the tokenizer's id is adopted */
    if (config_adopt_img_context(&s->m->cfg, ctx)) return -1;
    int *row = xmalloc((size_t)s->o.max_length * sizeof *row);
    int rc = template_encode(s->tok, s->kind, s->system, "", "", s->tpt, s->o.max_length, row,
                             s->o.max_length, NULL);
    free(row);
    return rc == TEMPLATE_ERROR ? -1 : 0;
}

/* the plan-cache lookups between begin and end are this scorer's (the cache and its
 * counters are the process's, shared with any other scorer) */
static void plans_begin(Scorer *s) {
    long h, m;
    device_plan_stats(s->g.device, &h, &m);
    s->st.plan_hits -= h, s->st.plan_misses -= m;
}

static void plans_end(Scorer *s) {
    long h, m;
    device_plan_stats(s->g.device, &h, &m);
    s->st.plan_hits += h, s->st.plan_misses += m;
}

Scorer *scorer_new(RewardModel *m, const Tokenizer *tok, const ScorerOptions *o) {
    if (check_options(m, o)) return NULL;
    TemplateKind kind;
    if (template_parse(m->cfg.template_name, &kind)) return NULL;
    Scorer *s = xcalloc(1, sizeof *s);
    s->m = m;
    s->tok = tok;
    s->o = *o;
    if (s->o.t_bucket == 0) /* training's rule (train/setup.c t_bucket) */
        s->o.t_bucket = m->ps.device == DEV_CPU ? 1 : o->max_length < RM_T_BUCKET_GPU ? o->max_length : RM_T_BUCKET_GPU;
    s->kind = kind;
    s->system = config_system_message(&m->cfg);
    s->tpt = config_tokens_per_tile(&m->cfg);
    s->tile_floats = (size_t)3 * o->image.image_size * o->image.image_size;
    /* padding is never read (attention and pooling stop at each row's length); it only has
     * to be a valid id that is not <IMG_CONTEXT> */
    s->pad_id = tok->pad_id >= 0 ? tok->pad_id : 0;
    if (check_tokenizer(s)) {
        free(s);
        return NULL;
    }
    int B = o->batch_size;
    s->rows = xmalloc((size_t)B * o->max_length * sizeof *s->rows);
    s->ids = xmalloc((size_t)B * o->max_length * sizeof *s->ids);
    s->lengths = xmalloc((size_t)B * sizeof *s->lengths);
    s->held_of = xmalloc((size_t)B * sizeof *s->held_of);
    s->dst = xmalloc((size_t)B * sizeof *s->dst);
    s->held = xcalloc((size_t)B + 1, sizeof *s->held);
    s->tiles = xmalloc(((size_t)B + 1) * sizeof *s->tiles);
    s->image_of = xmalloc((size_t)B * sizeof *s->image_of);
    s->image_index = xmalloc(((size_t)B + 1) * sizeof *s->image_index);
    if (o->blank) {
        Image blank;
        image_blank(IMAGE_BLANK_SIZE, IMAGE_BLANK_SIZE, &blank);
        ImageConfig one = o->image;
        one.dynamic = 0;
        s->blank_px = xmalloc(s->tile_floats * sizeof *s->blank_px);
        int n = image_preprocess(&blank, &one, s->blank_px, 1);
        image_free(&blank);
        if (n != 1) MMRM_FATAL("blank image gave %d tiles: %s", n, mmrm_last_error());
    }
    graph_init(&s->g, m->ps.device, (size_t)64 << 20, 0);
    /* a model with bf16 weight copies (--precision bf16): bf16 GEMMs and activations
     * stored in bf16, as in bf16 training */
    if (m->ps.w16) {
        graph_set_precision(&s->g, KP_BF16);
        graph_set_act_dtype(&s->g, DT_BF16);
    }
    graph_set_grad(&s->g, 0);
    s->g.training = 0;
    if (o->blank) {
        plans_begin(s);
        Tensor *f = rm_vit_features(m, &s->g, s->blank_px, 1);
        size_t bytes = f->numel * sizeof(float);
        s->blank_feat = xmalloc(bytes); /* host memory, like every RmBatch input */
        memcpy(s->blank_feat, graph_host(&s->g, f), bytes);
        graph_reset(&s->g);
        plans_end(s);
    }
    return s;
}

static void held_clear(Scorer *s) {
    for (int i = 0; i < s->nheld; i++) free(s->held[i].px);
    s->nheld = 0;
}

void scorer_free(Scorer *s) {
    if (!s) return;
    if (s->g.device != DEV_CPU && s->st.forwards > 0) /* the count training logs too */
        mmrm_log("plans: %ld hits, %ld misses", s->st.plan_hits, s->st.plan_misses);
    held_clear(s);
    graph_free(&s->g);
    free(s->rows);
    free(s->ids);
    free(s->lengths);
    free(s->held_of);
    free(s->dst);
    free(s->held);
    free(s->tiles);
    free(s->image_of);
    free(s->image_index);
    free(s->pixels);
    free(s->blank_px);
    free(s->blank_feat);
    free(s);
}

const ScorerStats *scorer_stats(const Scorer *s) { return &s->st; }
const ScorerOptions *scorer_options(const Scorer *s) { return &s->o; }

/* Runs the pending rows as one forward and writes their scores. Images that no row of a
 * later forward can show are released; with keep_last the newest held image (the group
 * being templated) stays. */
static int flush(Scorer *s, int keep_last) {
    int B = s->npending, L = s->o.max_length, T = 0, tb = s->o.t_bucket;
    if (B == 0) return 0;
    for (int b = 0; b < B; b++)
        if (s->lengths[b] > T) T = s->lengths[b];
    long t = rm_bucket_round(T, tb); /* ids has room for B x max_length */
    T = t < L ? (int)t : L;
    for (int b = 0; b < B; b++) {
        int *dst = s->ids + (size_t)b * T;
        memcpy(dst, s->rows + (size_t)b * L, (size_t)s->lengths[b] * sizeof *dst);
        for (int t = s->lengths[b]; t < T; t++) dst[t] = s->pad_id;
        s->st.tokens += s->lengths[b];
    }
    int n_images = 0;
    const float *pixels;
    if (s->o.blank) {
        n_images = 1;
        s->tiles[0] = 1;
        for (int b = 0; b < B; b++) s->image_of[b] = 0;
        pixels = s->blank_px;
    } else {
        /* the held images some row shows, in order, copied into one pixel buffer */
        size_t need = 0;
        for (int h = 0; h < s->nheld; h++) {
            s->image_index[h] = s->held[h].rows > 0 ? n_images++ : -1;
            if (s->held[h].rows > 0) need += (size_t)s->held[h].tiles * s->tile_floats;
        }
        if (need > s->pixel_cap) {
            free(s->pixels);
            s->pixels = xmalloc(need * sizeof *s->pixels);
            s->pixel_cap = need;
        }
        size_t at = 0;
        for (int h = 0; h < s->nheld; h++) {
            if (s->image_index[h] < 0) continue;
            size_t n = (size_t)s->held[h].tiles * s->tile_floats;
            memcpy(s->pixels + at, s->held[h].px, n * sizeof *s->pixels);
            at += n;
            s->tiles[s->image_index[h]] = s->held[h].tiles;
            s->st.tiles += s->held[h].tiles;
        }
        for (int b = 0; b < B; b++) s->image_of[b] = s->image_index[s->held_of[b]];
        pixels = s->pixels;
    }
    RmBatch bt = {B, T, s->ids, s->lengths, n_images, s->tiles, pixels, s->image_of,
                  s->o.blank ? s->blank_feat : NULL};
    if (rm_check_batch(s->m, &bt)) return -1;
    double t0 = clock_seconds();
    graph_reset(&s->g);
    s->m->share_prefix = s->o.share_prefix, s->m->packing = s->o.packing;
    s->m->t_bucket = tb;
    long c0, c1, in_rows;
    rm_tokens_counted(&c0, &in_rows);
    plans_begin(s);
    Tensor *r = rm_forward(s->m, &s->g, &bt);
    const float *scores = graph_host(&s->g, r);
    plans_end(s);
    rm_tokens_counted(&c1, &in_rows);
    s->st.computed += c1 - c0;
    for (int b = 0; b < B; b++) s->dst[b]->score = scores[b];
    s->st.forward_seconds += clock_seconds() - t0;
    s->st.forwards++;
    s->st.sequences += B;
    s->st.padded += (long)B * T;
    s->npending = 0;
    s->pending_tokens = 0;
    if (!s->o.blank) {
        int keep = keep_last && s->nheld > 0 ? s->nheld - 1 : s->nheld;
        for (int h = 0; h < keep; h++) free(s->held[h].px);
        if (keep < s->nheld) s->held[0] = s->held[keep];
        s->nheld -= keep;
        if (s->nheld) s->held[0].rows = 0;
    }
    return 0;
}

static ScoreStatus status_of(int template_rc) {
    switch (template_rc) {
    case TEMPLATE_IMAGE_CUT: return SCORE_IMAGE_CUT;
    case TEMPLATE_NO_ROOM: return SCORE_NO_ROOM;
    default: return SCORE_IMAGE_TOKEN_TEXT;
    }
}

/* Decodes and tiles the group's image into a new held entry; 0 or -1 with the error set. */
static int hold_image(Scorer *s, const char *path) {
    double t0 = clock_seconds();
    Image img;
    if (image_load(path, &img)) return -1;
    int n = image_num_tiles(img.w, img.h, &s->o.image);
    float *px = xmalloc((size_t)n * s->tile_floats * sizeof *px);
    int got = image_preprocess(&img, &s->o.image, px, n);
    image_free(&img);
    if (got != n) {
        free(px);
        return -1;
    }
    s->held[s->nheld++] = (Held){px, n, 0};
    s->st.images++;
    s->st.image_seconds += clock_seconds() - t0;
    return 0;
}

__attribute__((format(printf, 3, 4)))
static void set_msg(char (*msg)[SCORER_MSG_LEN], int i, const char *fmt, ...) {
    if (!msg || msg[i][0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg[i], SCORER_MSG_LEN, fmt, ap);
    va_end(ap);
}

int scorer_score(Scorer *s, const ScoreGroup *groups, int n, ScoreOut *out,
                 char (*msg)[SCORER_MSG_LEN]) {
    int L = s->o.max_length, rc = 0;
    size_t base = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const ScoreGroup *gr = &groups[i];
        ScoreOut *o = out + base;
        base += (size_t)gr->n;
        if (msg) msg[i][0] = '\0';
        for (int j = 0; j < gr->n; j++) o[j] = (ScoreOut){NAN, SCORE_OK, 0};
        int tiles = 1;
        if (!s->o.blank) {
            if (hold_image(s, gr->image)) {
                for (int j = 0; j < gr->n; j++) o[j].status = SCORE_IMAGE_FAILED;
                set_msg(msg, i, "%s", mmrm_last_error());
                continue;
            }
            tiles = s->held[s->nheld - 1].tiles;
        }
        for (int j = 0; j < gr->n && rc == 0; j++) {
            int b = s->npending;
            TemplateInfo info;
            int len = template_encode(s->tok, s->kind, s->system, gr->prompt, gr->responses[j],
                                      s->tpt * tiles, L, s->rows + (size_t)b * L, L, &info);
            if (len == TEMPLATE_ERROR) {
                rc = -1;
                break;
            }
            if (len < 0) {
                o[j].status = status_of(len);
                set_msg(msg, i, "response %d: %s", j, mmrm_last_error());
                continue;
            }
            if (s->o.max_tokens > 0 && b > 0 && s->pending_tokens + len > s->o.max_tokens) {
                /* the forward is full by tokens: run it (the group's image stays held) and
                 * move this row, encoded at slot b, to the first slot of the next one */
                if ((rc = flush(s, 1)) != 0) break;
                memmove(s->rows, s->rows + (size_t)b * L, (size_t)len * sizeof *s->rows);
                b = 0;
            }
            o[j].truncated = info.truncated > 0;
            s->pending_tokens += len;
            s->lengths[b] = len;
            s->dst[b] = &o[j];
            s->held_of[b] = s->o.blank ? 0 : s->nheld - 1;
            if (!s->o.blank) s->held[s->nheld - 1].rows++;
            if (++s->npending == s->o.batch_size) rc = flush(s, j + 1 < gr->n);
        }
        /* a group none of whose rows is pending no longer needs its tiles */
        if (!s->o.blank && s->nheld > 0 && s->held[s->nheld - 1].rows == 0)
            free(s->held[--s->nheld].px);
    }
    if (rc == 0) rc = flush(s, 0);
    s->npending = 0;
    s->pending_tokens = 0;
    held_clear(s);
    return rc;
}

/* ---- command line ---- */

int scorer_load_model(const char *dir, Device d, int bf16, RewardModel *m, Tokenizer **tok) {
    return scorer_load_model_adapter(dir, NULL, d, bf16, m, tok);
}

int scorer_load_model_adapter(const char *dir, const char *adapter, Device d, int bf16,
                              RewardModel *m, Tokenizer **tok) {
    int freeze[PG_COUNT];
    for (int g = 0; g < PG_COUNT; g++) freeze[g] = 1;
    LoadReport rep;
    if (rm_load_ex(m, dir, d, freeze, 0, 0, -1, NULL, adapter, &rep)) return -1;
    int w16 = bf16 && params_enable_bf16(&m->ps);
    *tok = tokenizer_load(dir);
    if (!*tok) {
        rm_free(m);
        return -1;
    }
    const ModelConfig *c = &m->cfg;
    mmrm_log("model %s: %s LLM (%d layers, hidden %d), ViT (%d layers, hidden %d), tiles "
             "%dx%d, template %s, %.2fM parameters (%s on disk)%s", dir, llm_arch_name(c->llm.arch),
             c->llm.layers, c->llm.hidden, c->vision.layers, c->vision.hidden, c->image_size,
             c->image_size, c->template_name, (double)m->ps.numel / 1e6, rep.disk_dtype,
             w16 ? ", bf16 GEMMs over a bf16 weight copy, bf16 activations" : "");
    if (adapter)
        mmrm_log("adapter %s: LoRA r %d, alpha %g on %d linear layers", adapter, m->lora.r,
                 m->lora.alpha, lora_count(m));
    if (rep.score_initialised)
        mmrm_warn("%s has no score.weight: the score head is freshly initialised and its "
                  "scores mean nothing (is this a reward model checkpoint?)", dir);
    return 0;
}

const char SCORER_CLI_USAGE[] =
    "  --batch-size N          sequences per forward (default 8)\n"
    "  --max-tokens N          also at most N tokens (the rows' own, before prefix sharing)\n"
    "                          per forward; a longer row runs alone (default: no limit)\n"
    "  --max-length N          tokens per sequence; longer responses are cut, keeping the\n"
    "                          final <|im_end|> (default min(4096, max_position_embeddings))\n"
    "  --t-bucket N            a forward's length rounded up to a multiple of N (at most\n"
    "                          --max-length, which N must not pass) so a GPU reuses its GEMM\n"
    "                          plans; the scores do not change; 0: auto, 64 on a GPU, 1 on\n"
    "                          the CPU (default 0)\n"
    "  --max-dynamic-patch N   most tiles per image; tiling defaults come from the model's\n"
    "                          config.json (dynamic_image_size, use_thumbnail, min/\n"
    "                          max_dynamic_patch; mmrm train records its own there), else\n"
    "                          InternVL2's: dynamic, thumbnail, 1..6 tiles\n"
    "  --min-dynamic-patch N   fewest tiles per image\n"
    "  --no-thumbnail          no whole-image thumbnail tile after a multi-tile grid\n"
    "  --no-dynamic            one tile per image: the whole image resized\n"
    "  --no-share-prefix       compute each response's prompt and image tokens itself (by\n"
    "                          default a forward's responses to one prompt share them)\n"
    "  --no-packing            right-padded rows (by default a forward's rows are packed\n"
    "                          into one stream without padding)\n"
    "  --thumbnail, --dynamic  the opposite, where the model's config.json says false\n"
    "  --image-root DIR        relative img_path values resolve here (default: the JSONL\n"
    "                          file's folder)\n"
    "  --device DEV            auto (a GPU when the build has CUDA and one is visible, else\n"
    "                          the CPU), cpu, cuda or cuda:N (default auto)\n"
    "  --precision P           fp32 (default: the training-time forward exactly) or bf16 (a\n"
    "                          GPU: the GEMMs read bf16 weight copies, fp32 accumulation)\n"
    "  --attention-impl I      bf16 attention on a GPU: auto (cuDNN's fused attention where\n"
    "                          it covers the shape and the build has it, else mmrm's), mmrm,\n"
    "                          cudnn; ignored on the CPU (default auto)\n"
    "  --adapter DIR           a LoRA adapter (adapter_config.json, adapter_model.safetensors:\n"
    "                          a LoRA run's checkpoint, or peft's) on top of the --model base\n";

/* argv[*i + 1] as an int in [lo, hi]; -1 with a message otherwise */
static int int_value(int argc, char **argv, int *i, int lo, int hi, int *out) {
    const char *opt = argv[*i];
    if (*i + 1 >= argc) {
        fprintf(stderr, "mmrm: error: %s needs a value\n", opt);
        return -1;
    }
    const char *v = argv[++*i];
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "mmrm: error: %s %s: expected an integer in [%d, %d]\n", opt, v, lo, hi);
        return -1;
    }
    *out = (int)x;
    return 1;
}

int scorer_cli_option(ScorerCli *c, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    if (!strcmp(a, "--batch-size")) return int_value(argc, argv, i, 1, 1 << 16, &c->batch_size);
    if (!strcmp(a, "--max-tokens")) return int_value(argc, argv, i, 1, 1 << 30, &c->max_tokens);
    if (!strcmp(a, "--max-length")) return int_value(argc, argv, i, 1, 1 << 24, &c->max_length);
    if (!strcmp(a, "--t-bucket")) return int_value(argc, argv, i, 0, 1 << 20, &c->t_bucket);
    if (!strcmp(a, "--max-dynamic-patch"))
        return int_value(argc, argv, i, 1, IMAGE_MAX_NUM, &c->max_patch);
    if (!strcmp(a, "--min-dynamic-patch"))
        return int_value(argc, argv, i, 1, IMAGE_MAX_NUM, &c->min_patch);
    if (!strcmp(a, "--no-thumbnail")) return c->no_thumbnail = 1;
    if (!strcmp(a, "--no-dynamic")) return c->no_dynamic = 1;
    if (!strcmp(a, "--no-share-prefix")) return c->no_share_prefix = 1;
    if (!strcmp(a, "--no-packing")) return c->no_packing = 1;
    if (!strcmp(a, "--thumbnail")) return c->thumbnail = 1;
    if (!strcmp(a, "--dynamic")) return c->dynamic = 1;
    if (!strcmp(a, "--image-root") || !strcmp(a, "--device") || !strcmp(a, "--precision") ||
        !strcmp(a, "--adapter") || !strcmp(a, "--attention-impl")) {
        if (*i + 1 >= argc) {
            fprintf(stderr, "mmrm: error: %s needs a value\n", a);
            return -1;
        }
        const char *v = argv[++*i];
        if (!strcmp(a, "--image-root")) c->image_root = v;
        else if (!strcmp(a, "--adapter")) c->adapter = v;
        else if (!strcmp(a, "--device")) c->device = v;
        else if (!strcmp(a, "--attention-impl")) c->attention_impl = v;
        else if (strcmp(v, "fp32") && strcmp(v, "bf16")) {
            fprintf(stderr, "mmrm: error: --precision %s: expected fp32 or bf16\n", v);
            return -1;
        } else c->precision = v;
        return 1;
    }
    return 0;
}

int scorer_cli_device(const ScorerCli *c, int local_rank, Device *out, int *bf16_out) {
    if (device_resolve(c->device, local_rank, 1, out) != 0) {
        fprintf(stderr, "mmrm: error: --device: %s\n", mmrm_last_error());
        return -1;
    }
    int bf16 = c->precision && !strcmp(c->precision, "bf16");
    if (bf16 && *out != DEV_CUDA) {
        fprintf(stderr, "mmrm: error: --precision bf16 needs a GPU (--device cuda); %s scores in "
                        "fp32\n", device_name(*out));
        return -1;
    }
    if (device_set_attention_impl(*out, c->attention_impl, 1)) {
        fprintf(stderr, "mmrm: error: --attention-impl: %s\n", mmrm_last_error());
        return -1;
    }
    *bf16_out = bf16;
    return 0;
}

void scorer_cli_options(const ScorerCli *c, const ModelConfig *cfg, ScorerOptions *o) {
    scorer_default_options(cfg, o);
    if (c->batch_size) o->batch_size = c->batch_size;
    if (c->max_tokens) o->max_tokens = c->max_tokens;
    if (c->max_length) o->max_length = c->max_length;
    o->t_bucket = c->t_bucket;
    if (c->max_patch) o->image.max_num = c->max_patch;
    if (c->min_patch) o->image.min_num = c->min_patch;
    if (c->thumbnail) o->image.use_thumbnail = 1;
    if (c->dynamic) o->image.dynamic = 1;
    if (c->no_thumbnail) o->image.use_thumbnail = 0;
    if (c->no_dynamic) o->image.dynamic = 0;
    if (c->no_share_prefix) o->share_prefix = 0;
    if (c->no_packing) o->packing = 0;
}

/* ---- progress ---- */

static void fmt_duration(double sec, char *buf, size_t n) {
    if (!(sec >= 0) || sec > 1e7) {
        snprintf(buf, n, "?");
        return;
    }
    long t = (long)(sec + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

static void progress_draw(Progress *p, int final) {
    double now = clock_seconds(), el = now - p->start;
    double rate = el > 0 ? (double)p->done / el : 0;
    char eta[32], spent[32];
    fmt_duration(rate > 0 ? (double)(p->total - p->done) / rate : -1, eta, sizeof eta);
    fmt_duration(el, spent, sizeof spent);
    double frac = p->total > 0 ? (double)p->done / (double)p->total : 1.0;
    if (p->tty) {
        char bar[31];
        int fill = (int)(frac * 30);
        for (int k = 0; k < 30; k++) bar[k] = k < fill ? '#' : '.';
        bar[30] = '\0';
        fprintf(stderr, "\r[%s] %ld/%ld %s | %.1f %s/s | %s elapsed | eta %s\033[K%s", bar,
                p->done, p->total, p->what, rate, p->what, spent, eta, final ? "\n" : "");
    } else {
        fprintf(stderr, "mmrm: %ld/%ld %s (%.0f%%) | %.1f %s/s | %s elapsed | eta %s\n",
                p->done, p->total, p->what, 100 * frac, rate, p->what, spent, eta);
    }
    fflush(stderr);
    p->last_print = now;
}

void progress_start(Progress *p, const char *what, long total) {
    memset(p, 0, sizeof *p);
    p->what = what;
    p->total = total;
    p->tty = isatty(STDERR_FILENO);
    p->start = p->last_print = clock_seconds();
}

void progress_add(Progress *p, long n) {
    p->done += n;
    double now = clock_seconds();
    if (p->tty) {
        if (now - p->last_print >= 0.1) progress_draw(p, 0);
        return;
    }
    int decile = p->total > 0 ? (int)(10 * p->done / p->total) : 10;
    if ((decile > p->last_decile && p->done < p->total) || now - p->last_print >= 30) {
        p->last_decile = decile;
        progress_draw(p, 0);
    }
}

void progress_end(Progress *p) {
    if (p->total > 0 || p->tty) progress_draw(p, 1);
}

int scorer_cli_usage_error(const char *usage, const char *fmt, const char *arg) {
    fputs("mmrm: error: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\n\n", stderr);
    fprintf(stderr, usage, SCORER_CLI_USAGE);
    return 2;
}
