/* trainer.c - the training loop, checkpoints and resume (trainer.h). */
#include "train/trainer.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/batch.h"
#include "models/checkpoint.h"
#include "models/records.h"
#include "models/tokenizer.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "runtime/gradsync.h"
#include "runtime/ops.h"
#include "runtime/safetensors.h"
#include "runtime/strbuf.h"
#ifdef MMRM_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

/* checkpoints hold fp32 weights, so that a resumed run continues bitwise */
#define SAVE_DTYPE "F32"

/* ---------------------------------------------------------------- files */

/* step of a complete checkpoint directory name "checkpoint-STEP" (trainer_state.json
 * present), else -1 */
static long checkpoint_step(const char *out, const char *name) {
    if (strncmp(name, "checkpoint-", 11) != 0) return -1;
    char *end;
    long s = strtol(name + 11, &end, 10);
    if (end == name + 11 || *end) return -1;
    char dir[PATH_MAX], p[PATH_MAX];
    if (!fs_join(dir, sizeof dir, out, name) || !fs_join(p, sizeof p, dir, "trainer_state.json"))
        return -1;
    return access(p, R_OK) == 0 ? s : -1;
}

/* out/checkpoint-STEP into buf; NULL when too long (mmrm_last_error()) */
static char *checkpoint_dir(char *buf, size_t cap, const char *out, long step) {
    char name[64];
    snprintf(name, sizeof name, "checkpoint-%ld", step);
    return fs_join(buf, cap, out, name);
}

/* steps of the complete checkpoints in out, ascending; returns the count */
static int list_checkpoints(const char *out, long *steps, int cap) {
    DIR *d = opendir(out);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        long s = checkpoint_step(out, e->d_name);
        if (s >= 0) steps[n++] = s;
    }
    closedir(d);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && steps[j] < steps[j - 1]; j--) {
            long t = steps[j]; steps[j] = steps[j - 1]; steps[j - 1] = t;
        }
    return n;
}

/* ---------------------------------------------------------------- state */

typedef struct LogEntry {
    long step;
    double loss, acc, lr, grad_norm;
    double loss_bias, acc_bias, w_mean, w_min, w_max; /* shortcut_aware */
    int skipped;
} LogEntry;

typedef struct State {
    long step;              /* optimizer steps done */
    BatchCursor cursor;
    long opt_t;
    uint64_t dropout_counter;
    long skipped_nonfinite, consecutive_nonfinite;
    LogEntry *log;
    long nlog, caplog;
} State;

static void log_push(State *s, const LogEntry *e) {
    if (s->nlog == s->caplog) {
        s->caplog = s->caplog ? 2 * s->caplog : 256;
        s->log = xrealloc(s->log, s->caplog * sizeof *s->log);
    }
    s->log[s->nlog++] = *e;
}

static cJSON *log_json(const LogEntry *e, TrainAlgorithm algo) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", e->step);
    cJSON_AddNumberToObject(o, "loss", e->loss);
    cJSON_AddNumberToObject(o, "accuracy", e->acc);
    cJSON_AddNumberToObject(o, "lr", e->lr);
    cJSON_AddNumberToObject(o, "grad_norm", e->grad_norm);
    if (algo == TRAIN_SHORTCUT_AWARE) {
        cJSON_AddNumberToObject(o, "loss_bias", e->loss_bias);
        cJSON_AddNumberToObject(o, "accuracy_bias", e->acc_bias);
        cJSON_AddNumberToObject(o, "w_mean", e->w_mean);
        cJSON_AddNumberToObject(o, "w_min", e->w_min);
        cJSON_AddNumberToObject(o, "w_max", e->w_max);
    }
    if (e->skipped) cJSON_AddTrueToObject(o, "skipped_nonfinite");
    return o;
}

/* cJSON prints doubles with 17 significant digits when needed, so values round-trip */
static int state_save(const State *s, TrainAlgorithm algo, const char *path) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "global_step", s->step);
    cJSON_AddNumberToObject(o, "cursor_epoch", s->cursor.epoch);
    cJSON_AddNumberToObject(o, "cursor_pos", s->cursor.pos);
    cJSON_AddNumberToObject(o, "optimizer_t", s->opt_t);
    char c[32];
    snprintf(c, sizeof c, "%llu", (unsigned long long)s->dropout_counter);
    cJSON_AddStringToObject(o, "dropout_counter", c);
    cJSON_AddNumberToObject(o, "skipped_nonfinite", s->skipped_nonfinite);
    cJSON_AddNumberToObject(o, "consecutive_nonfinite", s->consecutive_nonfinite);
    cJSON_AddStringToObject(o, "algorithm", train_algorithm_name(algo));
    cJSON *h = cJSON_AddArrayToObject(o, "log_history");
    for (long i = 0; i < s->nlog; i++) cJSON_AddItemToArray(h, log_json(&s->log[i], algo));
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    int rc = fs_write_atomic(path, text, strlen(text));
    free(text);
    return rc;
}

static double jnum(const cJSON *o, const char *k, int *bad) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v)) { *bad = 1; return 0; }
    return v->valuedouble;
}

static int state_load(State *s, const char *path) {
    char *text = fs_read_file(path, NULL);
    if (!text) return -1;
    cJSON *o = cJSON_Parse(text);
    free(text);
    int bad = !cJSON_IsObject(o);
    memset(s, 0, sizeof *s);
    if (!bad) {
        s->step = (long)jnum(o, "global_step", &bad);
        s->cursor.epoch = (long)jnum(o, "cursor_epoch", &bad);
        s->cursor.pos = (long)jnum(o, "cursor_pos", &bad);
        s->opt_t = (long)jnum(o, "optimizer_t", &bad);
        s->skipped_nonfinite = (long)jnum(o, "skipped_nonfinite", &bad);
        s->consecutive_nonfinite = (long)jnum(o, "consecutive_nonfinite", &bad);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "dropout_counter");
        if (cJSON_IsString(c)) s->dropout_counter = strtoull(c->valuestring, NULL, 10);
        else bad = 1;
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "log_history"), *e;
        cJSON_ArrayForEach(e, h) {
            LogEntry le = {0};
            le.step = (long)jnum(e, "step", &bad);
            le.loss = jnum(e, "loss", &bad);
            le.acc = jnum(e, "accuracy", &bad);
            le.lr = jnum(e, "lr", &bad);
            le.grad_norm = jnum(e, "grad_norm", &bad);
            int unused = 0;
            le.loss_bias = jnum(e, "loss_bias", &unused);
            le.acc_bias = jnum(e, "accuracy_bias", &unused);
            le.w_mean = jnum(e, "w_mean", &unused);
            le.w_min = jnum(e, "w_min", &unused);
            le.w_max = jnum(e, "w_max", &unused);
            le.skipped = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "skipped_nonfinite"));
            log_push(s, &le);
        }
    }
    cJSON_Delete(o);
    if (bad) {
        mmrm_set_error("%s: not a valid trainer state (fields missing or of the wrong type)", path);
        return -1;
    }
    return 0;
}

/* the AdamW moments of ps, or (ZeRO-1) the gathered ones in host memory hm/hv */
static int optimizer_save(const ParamStore *ps, long t, const char *path, const float *hm,
                          const float *hv) {
    size_t n = ps->n_trainable;
    char tbuf[32];
    snprintf(tbuf, sizeof tbuf, "%ld", t);
    StMeta meta[1] = {{"step", tbuf}};
    if (!n || (!ps->m && !hm)) return st_save(path, NULL, 0, meta, 1);
    float *fm = NULL, *fv = NULL; /* host copies when the state lives on a GPU */
    StTensorOut out[2] = {
        {.name = "exp_avg", .src = DT_F32, .dtype = ST_F32, .ndim = 1, .shape = {(int64_t)n},
         .data = hm ? hm : params_host(ps, ps->m, n, &fm)},
        {.name = "exp_avg_sq", .src = DT_F32, .dtype = ST_F32, .ndim = 1, .shape = {(int64_t)n},
         .data = hv ? hv : params_host(ps, ps->v, n, &fv)},
    };
    int rc = st_save(path, out, 2, meta, 1);
    free(fm);
    free(fv);
    return rc;
}

static int optimizer_load(ParamStore *ps, const char *path) {
    SafeTensors *st = st_open(path);
    if (!st) return -1;
    int rc = 0;
    if (ps->n_trainable) {
        params_alloc_optimizer(ps);
        const StEntry *m = st_find(st, "exp_avg"), *v = st_find(st, "exp_avg_sq");
        if (!m || !v) {
            /* a checkpoint saved before the first optimizer step has no moments */
            rc = (m || v) ? -1 : 0;
        } else {
            size_t n = ps->n_trainable;
            if (ps->device == DEV_CPU) {
                rc = st_read_f32(st, m, ps->m, n) || st_read_f32(st, v, ps->v, n);
            } else { /* through the host */
                float *h = xmalloc(2 * n * sizeof(float));
                rc = st_read_f32(st, m, h, n) || st_read_f32(st, v, h + n, n);
                if (!rc) {
                    device_copy_from_host(ps->device, ps->m, h, n * sizeof(float));
                    device_copy_from_host(ps->device, ps->v, h + n, n * sizeof(float));
                    device_sync(ps->device);
                }
                free(h);
            }
        }
        if (rc) mmrm_set_error("%s: optimizer state does not match the model's %zu trainable "
                               "parameters (were the freeze settings changed?)", path, ps->n_trainable);
    }
    st_close(st);
    return rc ? -1 : 0;
}

/* ---------------------------------------------------------------- run */

typedef struct Run {
    const TrainConfig *o;
    const TrainRuntime *rt;
    RewardModel main, bias;
    int has_bias;
    Tokenizer *tok;
    TemplateKind tmpl;
    PairSet train, eval;
    Graph g;
    float *blank_cache;     /* frozen bias ViT: features of the blank tile */
    State st;
    AdamW opt;
    long total_steps;
    FILE *metrics;
    double t0;
    long pairs_seen, tokens_seen;
    long start_step;        /* the step this process started from */
    int rank, world;
    int zero;               /* ZeRO-1 active (zero_stage 1 and world > 1) */
    ZeroShard zs[2];        /* per store: main, bias */
    GradSync *gs;           /* data parallel without ZeRO-1: the bucketed all-reduce */
} Run;

static int freeze_of(const TrainConfig *o, int f[PG_COUNT]) {
    memset(f, 0, sizeof(int) * PG_COUNT);
    f[PG_VISION] = o->freeze_backbone;
    f[PG_CONNECTOR] = o->freeze_mlp;
    f[PG_LLM] = o->freeze_llm;
    return 0;
}

static int load_or_init(RewardModel *m, const char *dir, const char *init, const Run *r,
                        uint64_t seed, const char *what) {
    const TrainConfig *o = r->o;
    int freeze[PG_COUNT];
    freeze_of(o, freeze);
    if (dir && *dir) {
        LoadReport rep;
        if (rm_load_ex(m, dir, r->rt->device, freeze, seed, o->force_image_size, o->drop_path_rate, &rep))
            return -1;
        if (!r->rt->quiet)
            mmrm_log("%s model: %s (%d tensors, %s on disk, %d ignored%s%s)", what, dir, rep.n_loaded,
                     rep.disk_dtype, rep.n_ignored, rep.score_initialised ? ", score.weight initialised" : "",
                     rep.pos_resized_from ? ", position embedding resized" : "");
        return 0;
    }
    ModelConfig cfg;
    if (config_load(init, &cfg)) return -1;
    if (o->force_image_size > 0) cfg.image_size = cfg.vision.image_size = o->force_image_size;
    if (o->drop_path_rate >= 0) cfg.vision.drop_path_rate = o->drop_path_rate;
    if (config_validate(&cfg, init)) return -1;
    rm_create(m, &cfg, DEV_CPU, freeze);
    rm_init_random(m, seed);
    rm_to_device(m, r->rt->device);
    if (!r->rt->quiet) mmrm_log("%s model: random init from %s (seed %llu)", what, init, (unsigned long long)seed);
    return 0;
}

static BatchOptions batch_options(const Run *r, int eval) {
    const TrainConfig *o = r->o;
    BatchOptions b;
    memset(&b, 0, sizeof b);
    b.pairs = o->per_device_train_batch_size;
    b.rank = r->rank;
    b.world = r->world;
    b.seed = (uint64_t)o->seed;
    b.shuffle = !eval;
    b.layout = BATCH_PADDED;
    b.epochs = eval ? 1 : 0;
    b.start = eval ? (BatchCursor){0, 0} : r->st.cursor;
    b.template_kind = r->tmpl;
    b.system_message = config_system_message(&r->main.cfg);
    b.max_length = o->max_length;
    b.tokens_per_tile = config_tokens_per_tile(&r->main.cfg);
    const ModelConfig *c = &r->main.cfg; /* train_run recorded the run's tiling there */
    b.image = (ImageConfig){c->image_size, c->min_dynamic_patch, c->max_dynamic_patch,
                            c->dynamic_image_size, c->use_thumbnail};
    b.blank_rows = r->has_bias && !eval;
    b.on_bad = o->on_bad_record;
    b.num_workers = o->num_workers;
    return b;
}

static int save_checkpoint_rank0(Run *r, const char *name, float *const hm[2], float *const hv[2]);

/* rank 0 writes; the others wait so that nobody runs ahead of a checkpoint being written.
 * Under ZeRO-1 the moments are gathered first, so a checkpoint never depends on the number
 * of ranks. */
static int save_checkpoint(Run *r, const char *name) {
    int n = r->has_bias ? 2 : 1;
    float *hm[2] = {NULL, NULL}, *hv[2] = {NULL, NULL};
    if (r->zero)
        for (int i = 0; i < n; i++) {
            ZeroShard *z = &r->zs[i];
            if (!z->n || r->opt.t == 0) continue;
            hm[i] = xmalloc(z->n * sizeof(float));
            hv[i] = xmalloc(z->n * sizeof(float));
            float *sm = xmalloc(2 * z->S * sizeof(float)); /* the shards, in host memory */
            device_copy_to_host(z->device, sm, z->m, z->S * sizeof(float));
            device_copy_to_host(z->device, sm + z->S, z->v, z->S * sizeof(float));
            comm_allgather_f32(r->rt->comm, sm, hm[i], z->n);
            comm_allgather_f32(r->rt->comm, sm + z->S, hv[i], z->n);
            free(sm);
        }
    int rc = r->rank == 0 ? save_checkpoint_rank0(r, name, hm, hv) : 0;
    for (int i = 0; i < 2; i++) {
        free(hm[i]);
        free(hv[i]);
    }
    if (r->world > 1) comm_barrier(r->rt->comm);
    return rc;
}

/* hm/hv: under ZeRO-1 the gathered moments per store (host memory), else NULLs */
static int save_checkpoint_rank0(Run *r, const char *name, float *const hm[2], float *const hv[2]) {
    const TrainConfig *o = r->o;
    char hidden[80], tmp[PATH_MAX], final[PATH_MAX], bias[PATH_MAX], p[PATH_MAX];
    snprintf(hidden, sizeof hidden, ".%s.tmp", name);
    if (!fs_join(tmp, sizeof tmp, o->output_dir, hidden) || !fs_join(final, sizeof final, o->output_dir, name))
        return -1;
    fs_remove_tree(tmp);
    if (rm_save(&r->main, tmp, SAVE_DTYPE)) return -1;
    if (tokenizer_save(r->tok, tmp)) return -1;
    if (!fs_join(p, sizeof p, tmp, "optimizer.safetensors") ||
        optimizer_save(&r->main.ps, r->opt.t, p, hm[0], hv[0]))
        return -1;
    if (r->has_bias && o->save_bias_model) {
        if (!fs_join(bias, sizeof bias, tmp, "bias")) return -1;
        if (rm_save(&r->bias, bias, SAVE_DTYPE) || tokenizer_save(r->tok, bias)) return -1;
        if (!fs_join(p, sizeof p, bias, "optimizer.safetensors") ||
            optimizer_save(&r->bias.ps, r->opt.t, p, hm[1], hv[1]))
            return -1;
    }
    r->st.opt_t = r->opt.t;
    r->st.dropout_counter = r->g.dropout.counter;
    /* last: marks it complete */
    if (!fs_join(p, sizeof p, tmp, "trainer_state.json") || state_save(&r->st, o->algorithm, p)) return -1;
    fs_fsync_dir(tmp);
    fs_remove_tree(final);
    if (rename(tmp, final) != 0) {
        mmrm_set_error("%s: cannot rename into place (%s)", final, strerror(errno));
        return -1;
    }
    fs_fsync_dir(o->output_dir);
    /* keep the save_total_limit newest numbered checkpoints */
    if (o->save_total_limit > 0) {
        long steps[4096];
        int n = list_checkpoints(o->output_dir, steps, 4096);
        for (int i = 0; i < n - o->save_total_limit; i++)
            if (checkpoint_dir(p, sizeof p, o->output_dir, steps[i])) fs_remove_tree(p);
    }
    return 0;
}

/* pairwise accuracy and mean margin of the main model on the eval set */
static int evaluate(Run *r, double *acc, double *margin, long *n_pairs) {
    BatchOptions bo = batch_options(r, 1);
    bo.num_workers = 0;
    BatchLoader *L = batch_loader_open(&r->eval, r->tok, &bo);
    if (!L) return -1;
    const Batch *b;
    double right = 0, msum = 0;
    long n = 0;
    int prev = graph_set_grad(&r->g, 0), rc;
    while ((rc = batch_loader_next(L, &b)) == 1) {
        if (b->P == 0) continue;
        graph_reset(&r->g);
        RmBatch v;
        batch_rm_view(b, &v);
        const float *s = graph_host(&r->g, rm_forward(&r->main, &r->g, &v));
        for (int i = 0; i < b->P; i++) {
            double d = (double)s[2 * i] - s[2 * i + 1];
            right += d > 0 ? 1.0 : d == 0 ? 0.5 : 0.0;
            msum += d;
            n++;
        }
    }
    graph_set_grad(&r->g, prev);
    batch_loader_close(L);
    if (rc < 0) return -1;
    if (r->world > 1) {
        double sums[3] = {right, msum, (double)n};
        comm_allreduce_sum_f64(r->rt->comm, sums, 3);
        right = sums[0]; msum = sums[1]; n = (long)sums[2];
    }
    *acc = n ? right / n : NAN;
    *margin = n ? msum / n : NAN;
    *n_pairs = n;
    return 0;
}

static void fmt_eta(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) snprintf(buf, n, "?");
    else if (s >= 3600) snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
}

/* One optimizer step over accum micro-batches; fills e. 0, or -1 on a data error. */
static int train_step(Run *r, BatchLoader *L, LogEntry *e) {
    const TrainConfig *o = r->o;
    int P_step = o->per_device_train_batch_size * o->gradient_accumulation_steps, nonfinite = 0;
    double loss = 0, right = 0, loss_b = 0, right_b = 0, wsum = 0, wmin = INFINITY, wmax = -INFINITY;
    long pairs = 0;
    for (int micro = 0; micro < o->gradient_accumulation_steps; micro++) {
        const Batch *b;
        int rc = batch_loader_next(L, &b);
        if (rc <= 0) {
            if (rc == 0) mmrm_set_error("the batch loader ended early");
            return -1;
        }
        r->st.cursor = b->next;
        const char *abort_at = getenv("MMRM_DEBUG_ABORT_AT_MICRO");
        if (abort_at && atol(abort_at) == r->st.step * o->gradient_accumulation_steps + micro) {
            fprintf(stderr, "mmrm: aborting at micro-batch %s (MMRM_DEBUG_ABORT_AT_MICRO)\n", abort_at);
            fflush(NULL);
            _exit(3);
        }
        if (r->gs && micro == o->gradient_accumulation_steps - 1) gradsync_begin(r->gs, &r->g);
        if (b->P == 0) continue;
        graph_reset(&r->g);
        RmBatch v;
        batch_rm_view(b, &v);
        int P = b->P;
        Tensor *rw = op_reshape(&r->g, rm_forward(&r->main, &r->g, &v), 2, (int[]){2 * P, 1});
        int *ic = graph_scratch(&r->g, P * sizeof(int)), *ir = graph_scratch(&r->g, P * sizeof(int));
        for (int i = 0; i < P; i++) ic[i] = 2 * i, ir[i] = 2 * i + 1;
        Tensor *rc_t = op_gather_rows(&r->g, rw, ic, P), *rr_t = op_gather_rows(&r->g, rw, ir, P);
        Tensor *root, *bc = NULL, *br = NULL;
        ShortcutLoss sl = {0};
        if (!r->has_bias) {
            root = op_bt_loss(&r->g, rc_t, rr_t, b->margin, NULL);
        } else {
            RmBatch bv;
            batch_rm_view_blank(b, &bv);
            bv.vit_cache = r->blank_cache;
            Tensor *bw = op_reshape(&r->g, rm_forward(&r->bias, &r->g, &bv), 2, (int[]){2 * P, 1});
            bc = op_gather_rows(&r->g, bw, ic, P);
            br = op_gather_rows(&r->g, bw, ir, P);
            sl = op_shortcut_loss(&r->g, rc_t, rr_t, bc, br, (float)o->shortcut_eps);
            root = sl.loss;
        }
        float dloss = (float)P / (float)P_step; /* the step's loss is the mean over its pairs */
        graph_backward_from(&r->g, root, &dloss);
        /* what is logged is read after backward has been queued: on a GPU the copies then
         * wait for the whole micro-step instead of stalling between forward and backward */
        if (r->has_bias) {
            const float *w = graph_host(&r->g, sl.w), *lb = graph_host(&r->g, sl.lb);
            const float *bcs = graph_host(&r->g, bc), *brs = graph_host(&r->g, br);
            for (int i = 0; i < P; i++) {
                wsum += w[i];
                wmin = fmin(wmin, w[i]);
                wmax = fmax(wmax, w[i]);
                loss_b += lb[i];
                right_b += bcs[i] > brs[i] ? 1.0 : bcs[i] == brs[i] ? 0.5 : 0.0;
            }
        }
        float lv = graph_host(&r->g, root)[0];
        if (!isfinite(lv)) nonfinite = 1;
        loss += (double)lv * P;
        const float *cs = graph_host(&r->g, rc_t), *rs = graph_host(&r->g, rr_t);
        for (int i = 0; i < P; i++) right += cs[i] > rs[i] ? 1.0 : cs[i] == rs[i] ? 0.5 : 0.0;
        pairs += P;
        for (int i = 0; i < 2 * P; i++) r->tokens_seen += b->rows.lengths[i];
    }
    ParamStore *stores[2] = {&r->main.ps, &r->bias.ps};
    int nstores = r->has_bias ? 2 : 1;
    if (r->gs) gradsync_finish(r->gs, &r->g); /* ZeRO-1 reduce-scatters in its step */
    if (r->world > 1) {
        /* every rank must take the same step: the gradients are averaged, sum what is logged */
        double sums[8] = {loss, right, (double)pairs, loss_b, right_b, wsum, (double)nonfinite, 0};
        comm_allreduce_sum_f64(r->rt->comm, sums, 8);
        loss = sums[0]; right = sums[1]; pairs = (long)sums[2]; loss_b = sums[3]; right_b = sums[4];
        wsum = sums[5]; nonfinite = sums[6] > 0;
        /* min and max through a sum: each rank fills its own slots */
        double *mm = xcalloc(2 * r->world, sizeof *mm);
        mm[2 * r->rank] = wmin;
        mm[2 * r->rank + 1] = wmax;
        comm_allreduce_sum_f64(r->rt->comm, mm, 2 * r->world);
        for (int k = 0; k < r->world; k++) wmin = fmin(wmin, mm[2 * k]), wmax = fmax(wmax, mm[2 * k + 1]);
        free(mm);
    }
    StepResult res = {NAN, lr_at(&r->opt, r->st.step), 1};
    if (!nonfinite && pairs > 0)
        res = r->zero ? adamw_step_zero1(&r->opt, r->g.K, r->rt->comm, stores, r->zs, nstores, r->st.step)
                      : adamw_step(&r->opt, r->g.K, stores, nstores, r->st.step);
    params_zero_grad(&r->main.ps);
    if (r->has_bias) params_zero_grad(&r->bias.ps);
    r->pairs_seen += pairs;
    *e = (LogEntry){.step = r->st.step + 1, .loss = pairs ? loss / pairs : NAN, .acc = pairs ? right / pairs : NAN,
                    .lr = res.lr, .grad_norm = res.grad_norm, .skipped = res.skipped};
    if (r->has_bias && pairs) {
        e->loss_bias = loss_b / pairs;
        e->acc_bias = right_b / pairs;
        e->w_mean = wsum / pairs;
        e->w_min = wmin;
        e->w_max = wmax;
    }
    return 0;
}

static void print_progress(Run *r, const LogEntry *e, int tty) {
    double el = clock_seconds() - r->t0;
    double rate = r->pairs_seen / fmax(el, 1e-9), trate = r->tokens_seen / fmax(el, 1e-9);
    char eta[32];
    fmt_eta((r->total_steps - e->step) * el / fmax(1.0, (double)(e->step - r->start_step)), eta, sizeof eta);
    char extra[160] = "";
    if (r->has_bias)
        snprintf(extra, sizeof extra, " | bias loss %.4f acc %.3f | w %.3f [%.3f, %.3f]", e->loss_bias,
                 e->acc_bias, e->w_mean, e->w_min, e->w_max);
    fprintf(stderr, "%sstep %ld/%ld | loss %.4f | acc %.3f%s | %.1f pairs/s | %.0f tok/s | lr %.2e | eta %s%s",
            tty ? "\r\033[K" : "mmrm: ", e->step, r->total_steps, e->loss, e->acc, extra, rate, trate,
            e->lr, eta, tty ? "" : "\n");
}

static void metrics_write(Run *r, cJSON *o) {
    if (!r->metrics) return;
    char *t = cJSON_PrintUnformatted(o);
    fprintf(r->metrics, "%s\n", t);
    fflush(r->metrics);
    free(t);
}

int train_run(const TrainConfig *o, const TrainRuntime *rt) {
    Run r;
    memset(&r, 0, sizeof r);
    r.o = o;
    r.rt = rt;
    r.rank = rt->comm ? rt->comm->rank : 0;
    r.world = rt->comm ? rt->comm->world : 1;
    mmrm_set_quiet(rt->quiet || r.rank != 0);
    int status = 1;
    BatchLoader *L = NULL;
    if (fs_mkdir_p(o->output_dir)) goto fail;
    long steps[4096];
    int nck = list_checkpoints(o->output_dir, steps, 4096);
    char resume_dir[PATH_MAX] = "";
    if (nck > 0 && o->resume && !o->overwrite_output_dir) {
        if (!checkpoint_dir(resume_dir, sizeof resume_dir, o->output_dir, steps[nck - 1])) goto fail;
    } else if (nck > 0 && !o->overwrite_output_dir) {
        mmrm_set_error("%s already holds checkpoints (newest checkpoint-%ld): set resume=true to "
                       "continue or overwrite_output_dir=true to start over", o->output_dir, steps[nck - 1]);
        goto fail;
    } else if (nck > 0) {
        char p[PATH_MAX];
        for (int i = 0; i < nck; i++)
            if (checkpoint_dir(p, sizeof p, o->output_dir, steps[i])) fs_remove_tree(p);
        if (fs_join(p, sizeof p, o->output_dir, "checkpoint-last")) fs_remove_tree(p);
    }

    /* models */
    if (*resume_dir) {
        char p[PATH_MAX];
        if (!fs_join(p, sizeof p, resume_dir, "trainer_state.json") || state_load(&r.st, p)) goto fail;
        if (load_or_init(&r.main, resume_dir, NULL, &r, (uint64_t)o->seed, "main")) goto fail;
        if (!fs_join(p, sizeof p, resume_dir, "optimizer.safetensors") || optimizer_load(&r.main.ps, p))
            goto fail;
        mmrm_log("resuming from %s (step %ld)", resume_dir, r.st.step);
    } else if (load_or_init(&r.main, o->model_name_or_path, o->init_model_config, &r, (uint64_t)o->seed, "main")) {
        goto fail;
    }
    r.main.grad_checkpoint = o->grad_checkpoint;
    if (o->algorithm == TRAIN_SHORTCUT_AWARE) {
        r.has_bias = 1;
        char bias[PATH_MAX], p[PATH_MAX];
        if (*resume_dir) {
            if (!fs_join(bias, sizeof bias, resume_dir, "bias") ||
                load_or_init(&r.bias, bias, NULL, &r, (uint64_t)o->seed + 1, "bias"))
                goto fail;
            if (!fs_join(p, sizeof p, bias, "optimizer.safetensors") || optimizer_load(&r.bias.ps, p))
                goto fail;
        } else if (load_or_init(&r.bias, o->bias_model_path, o->init_bias_model_config, &r, (uint64_t)o->seed + 1,
                                "bias")) {
            goto fail;
        }
        r.bias.grad_checkpoint = o->grad_checkpoint;
        if (r.bias.cfg.image_size != r.main.cfg.image_size ||
            config_tokens_per_tile(&r.bias.cfg) != config_tokens_per_tile(&r.main.cfg) ||
            r.bias.cfg.img_context_id != r.main.cfg.img_context_id || r.bias.cfg.llm.vocab != r.main.cfg.llm.vocab) {
            mmrm_set_error("the bias model must take the main model's inputs (image size, tokens per "
                           "tile, vocabulary, IMG_CONTEXT id)");
            goto fail;
        }
        const char *ms = config_system_message(&r.main.cfg), *bs = config_system_message(&r.bias.cfg);
        if ((ms == NULL) != (bs == NULL) || (ms && strcmp(ms, bs))) {
            mmrm_set_error("the bias model's system_message (\"%s\") must equal the main model's "
                           "(\"%s\"): both read the same templated rows",
                           bs ? bs : "<the template's>", ms ? ms : "<the template's>");
            goto fail;
        }
    }

    /* the checkpoints record how this run cut its images, so that scoring them cuts alike */
    RewardModel *rms[2] = {&r.main, r.has_bias ? &r.bias : NULL};
    for (int k = 0; k < 2; k++)
        if (rms[k]) {
            ModelConfig *c = &rms[k]->cfg;
            c->has_tiling = 1;
            c->dynamic_image_size = o->dynamic_image_size;
            c->use_thumbnail = o->use_thumbnail;
            c->min_dynamic_patch = o->min_dynamic_patch;
            c->max_dynamic_patch = o->max_dynamic_patch;
        }

    /* tokenizer and template */
    const char *tokdir = *resume_dir ? resume_dir : *o->tokenizer_path ? o->tokenizer_path : o->model_name_or_path;
    const char *tname = *o->conv_style ? o->conv_style : r.main.cfg.template_name;
    if (template_parse(tname, &r.tmpl)) goto fail;
    if (tokdir && *tokdir) {
        char p[PATH_MAX];
        if (!fs_join(p, sizeof p, tokdir, TOKENIZER_FILE)) goto fail;
        /* an explicit tokenizer_path must hold one; a model directory may lack it (byte) */
        int want = !*resume_dir && *o->tokenizer_path;
        if ((want || access(p, R_OK) == 0) && !(r.tok = tokenizer_load(tokdir))) goto fail;
    }
    if (!r.tok) r.tok = tokenizer_byte_new(r.tmpl == TEMPLATE_INTERNLM2_CHAT);
    if (r.tok->vocab_size > r.main.cfg.llm.vocab) {
        mmrm_set_error("the tokenizer has %d tokens but the model's vocabulary %d", r.tok->vocab_size,
                       r.main.cfg.llm.vocab);
        goto fail;
    }
    int ctx_id = tokenizer_special_id(r.tok, "<IMG_CONTEXT>");
    if (ctx_id != r.main.cfg.img_context_id) {
        mmrm_set_error("the tokenizer's <IMG_CONTEXT> id %d differs from the model's img_context_token_id %d",
                       ctx_id, r.main.cfg.img_context_id);
        goto fail;
    }

    /* data */
    RecordOptions ro = {o->image_root, o->on_bad_record};
    if (pairset_load(&r.train, (const char *const *)o->dataset_paths, o->n_dataset_paths, &ro)) goto fail;
    if (r.train.n == 0) {
        mmrm_set_error("no usable pairs in the training data (%s)", r.train.load.summary);
        goto fail;
    }
    if (o->n_eval_dataset_paths > 0 &&
        pairset_load(&r.eval, (const char *const *)o->eval_dataset_paths, o->n_eval_dataset_paths, &ro))
        goto fail;
    graph_init(&r.g, rt->device, 64 << 20, (uint64_t)o->seed);
    /* bf16: activations stored in bf16 too (compute, gradients and statistics stay fp32) */
    if (rt->bf16) graph_set_act_dtype(&r.g, DT_BF16);
    r.g.training = 1;
    r.g.recompute = o->grad_checkpoint;
    r.g.dropout.counter = r.st.dropout_counter;
    BatchOptions bo = batch_options(&r, 0);
    if (!(L = batch_loader_open(&r.train, r.tok, &bo))) goto fail;
    const BatchStats *bs = batch_loader_stats(L);
    long per_epoch = bs->steps_per_epoch / o->gradient_accumulation_steps;
    if (per_epoch < 1 && o->max_steps <= 0) {
        mmrm_set_error("one epoch holds %ld micro-batches, fewer than gradient_accumulation_steps %d: "
                       "lower the batch size or accumulation, or set max_steps", bs->steps_per_epoch, o->gradient_accumulation_steps);
        goto fail;
    }
    r.total_steps = o->max_steps > 0 ? (long)o->max_steps : (long)ceil(o->num_train_epochs * per_epoch);
    /* the optimizer's state, from the keys it takes and the run's step counts */
    r.opt = (AdamW){.lr = o->learning_rate, .beta1 = o->adam_beta1, .beta2 = o->adam_beta2,
                    .eps = o->adam_epsilon, .weight_decay = o->weight_decay,
                    .max_grad_norm = o->max_grad_norm, .sched = o->lr_scheduler_type,
                    .warmup_steps = o->warmup_steps > 0 ? (long)o->warmup_steps
                                                        : (long)ceil(o->warmup_ratio * r.total_steps),
                    .total_steps = r.total_steps, .t = r.st.opt_t};
    r.zero = o->zero_stage == 1 && r.world > 1;
    if (r.zero && rt->device != DEV_CPU && rt->comm->kind != COMM_NCCL) {
        mmrm_set_error("zero_stage = 1 on GPUs needs NCCL (a build with `make cuda NCCL=1` and one GPU "
                       "per rank); use zero_stage = 0 here");
        goto fail;
    }
    if (r.zero) {
        ParamStore *stores[2] = {&r.main.ps, &r.bias.ps};
        for (int i = 0; i < (r.has_bias ? 2 : 1); i++) {
            ZeroShard *z = &r.zs[i];
            zero_shard_init(z, stores[i], rt->comm);
            if (stores[i]->m) { /* resumed: keep this rank's slice of the full moments */
                Device d = stores[i]->device;
                if (z->count) {
                    device_memcpy(d, z->m, stores[i]->m + z->lo, z->count * sizeof(float));
                    device_memcpy(d, z->v, stores[i]->v + z->lo, z->count * sizeof(float));
                }
                device_free(d, stores[i]->m);
                device_free(d, stores[i]->v);
                stores[i]->m = stores[i]->v = NULL;
            }
        }
    }
    /* one process with NCCL (MMRM_NCCL=1) runs the same path as many: a check of it */
    if ((r.world > 1 || (rt->comm && rt->comm->kind == COMM_NCCL)) && !r.zero) {
        ParamStore *stores[2] = {&r.main.ps, &r.bias.ps};
        int nccl = rt->comm->kind == COMM_NCCL;
        int overlap = o->overlap_grad_reduce == OVERLAP_AUTO ? nccl : o->overlap_grad_reduce == OVERLAP_TRUE;
        r.gs = gradsync_create(rt->comm, stores, r.has_bias ? 2 : 1,
                               (size_t)(o->grad_bucket_mb * 1048576.0), overlap);
        GradSyncStats gst = gradsync_stats(r.gs);
        if (gst.staged)
            mmrm_log("gradient all-reduce: staged through host memory and MPI (no NCCL)%s",
                     o->overlap_grad_reduce == OVERLAP_TRUE ? "; overlap_grad_reduce needs NCCL on a GPU" : "");
        else
            mmrm_log("gradient all-reduce: %d bucket(s) of at most %.1f MiB through %s, %s", gst.buckets,
                     gst.largest_bytes / 1048576.0, nccl ? "NCCL" : "MPI",
                     gst.overlap ? (nccl ? "overlapped with backward on a second stream"
                                         : "started during backward")
                                 : "after backward");
    }
    /* bf16: the weights as the GEMMs read them, from here on kept current by AdamW */
    int w16 = 0;
    if (rt->bf16) {
        w16 = params_enable_bf16(&r.main.ps);
        if (r.has_bias) params_enable_bf16(&r.bias.ps);
    }
    {
        size_t trainable = r.main.ps.n_trainable + (r.has_bias ? r.bias.ps.n_trainable : 0);
        size_t total = r.main.ps.numel + (r.has_bias ? r.bias.ps.numel : 0);
        double mib = 1.0 / 1048576.0;
        char copy[96] = "";
        if (w16) snprintf(copy, sizeof copy, " (fp32 master) + bf16 copy %.1f MiB", total * 2 * mib);
        if (rt->bf16) mmrm_log("activations stored in bf16 (fp32 compute, gradients and statistics)");
        mmrm_log("memory per rank: parameters %.1f MiB%s, gradients %.1f MiB, AdamW moments %.1f MiB%s",
                 total * 4 * mib, copy, trainable * 4 * mib,
                 (r.zero ? 2.0 * comm_shard_size(trainable, r.world) : 2.0 * trainable) * 4 * mib,
                 r.zero ? " (ZeRO-1: sharded over the ranks)" : "");
    }

    /* the frozen bias ViT sees one constant image: its features once per run */
    if (r.has_bias && o->freeze_backbone) {
        int prev = graph_set_grad(&r.g, 0);
        int S = r.bias.cfg.image_size;
        Image blank;
        image_blank(IMAGE_BLANK_SIZE, IMAGE_BLANK_SIZE, &blank);
        ImageConfig ic = {S, 1, 1, 0, 0};
        float *tile = xmalloc((size_t)3 * S * S * sizeof(float));
        image_preprocess(&blank, &ic, tile, 1);
        image_free(&blank);
        graph_reset(&r.g);
        Tensor *f = rm_vit_features(&r.bias, &r.g, tile, 1);
        r.blank_cache = xmalloc(f->numel * sizeof(float));
        memcpy(r.blank_cache, graph_host(&r.g, f), f->numel * sizeof(float));
        free(tile);
        graph_reset(&r.g);
        graph_set_grad(&r.g, prev);
    }

    /* metrics.jsonl restarts from the checkpoint's history so a resumed run has no duplicates */
    char mpath[PATH_MAX];
    if (!fs_join(mpath, sizeof mpath, o->output_dir, "metrics.jsonl")) goto fail;
    r.metrics = r.rank == 0 ? fopen(mpath, "w") : NULL;
    for (long i = 0; i < r.st.nlog; i++) {
        cJSON *j = log_json(&r.st.log[i], o->algorithm);
        metrics_write(&r, j);
        cJSON_Delete(j);
    }
    mmrm_log("training: %s, %ld steps of %d pairs (%d per micro-batch x %d accumulation x %d ranks), "
             "%zu pairs, %ld micro-batches per epoch, warmup %ld, lr %.2e",
             train_algorithm_name(o->algorithm), r.total_steps,
             o->per_device_train_batch_size * o->gradient_accumulation_steps * r.world, o->per_device_train_batch_size, o->gradient_accumulation_steps, r.world, bs->usable,
             bs->steps_per_epoch, r.opt.warmup_steps, r.opt.lr);
    int tty = isatty(2) && !rt->quiet && r.rank == 0;
    r.t0 = clock_seconds();
    r.start_step = r.st.step;
    while (r.st.step < r.total_steps) {
        LogEntry e;
        if (train_step(&r, L, &e)) goto fail;
        r.st.step = e.step;
        log_push(&r.st, &e);
        cJSON *j = log_json(&e, o->algorithm);
        metrics_write(&r, j);
        cJSON_Delete(j);
        if (e.skipped) {
            r.st.skipped_nonfinite++;
            if (++r.st.consecutive_nonfinite >= 3) {
                mmrm_set_error("3 consecutive steps with non-finite loss or gradients (last at step %ld): "
                               "lower learning_rate or check the data", e.step);
                goto fail;
            }
            if (r.rank == 0)
                mmrm_warn("step %ld: non-finite loss or gradients, update skipped (%ld so far)", e.step,
                      r.st.skipped_nonfinite);
        } else {
            r.st.consecutive_nonfinite = 0;
        }
        if (!rt->quiet && r.rank == 0 && (tty || (o->logging_steps > 0 && e.step % o->logging_steps == 0) || e.step == r.total_steps))
            print_progress(&r, &e, tty);
        if (r.eval.n > 0 && ((o->eval_steps > 0 && e.step % o->eval_steps == 0) || e.step == r.total_steps)) {
            double acc, margin;
            long n;
            if (evaluate(&r, &acc, &margin, &n)) goto fail;
            if (!rt->quiet && r.rank == 0) {
                if (tty) fputc('\n', stderr);
                mmrm_log("eval at step %ld: accuracy %.4f, mean margin %.4f (%ld pairs)", e.step, acc, margin, n);
            }
            cJSON *ej = cJSON_CreateObject();
            cJSON_AddNumberToObject(ej, "step", e.step);
            cJSON_AddNumberToObject(ej, "eval_accuracy", acc);
            cJSON_AddNumberToObject(ej, "eval_mean_margin", margin);
            cJSON_AddNumberToObject(ej, "eval_pairs", n);
            metrics_write(&r, ej);
            cJSON_Delete(ej);
        }
        if (o->save_steps > 0 && e.step % o->save_steps == 0 && e.step < r.total_steps) {
            char name[64];
            snprintf(name, sizeof name, "checkpoint-%ld", e.step);
            if (save_checkpoint(&r, name)) goto fail;
        }
        if (rt->stop_after_steps > 0 && e.step - r.start_step >= rt->stop_after_steps) {
            if (tty) fputc('\n', stderr);
            mmrm_log("stopping after %ld steps as asked (stop_after_steps)", rt->stop_after_steps);
            status = 0;
            goto done;
        }
    }
    if (tty) fputc('\n', stderr);
    {
        char name[64];
        snprintf(name, sizeof name, "checkpoint-%ld", r.st.step);
        if (save_checkpoint(&r, name) || save_checkpoint(&r, "checkpoint-last")) goto fail;
    }
    double el = clock_seconds() - r.t0;
    mmrm_log("done: %ld steps in %.1f s (%.2f pairs/s, %.0f tokens/s), final loss %.4f, accuracy %.3f%s; "
             "model in %s/checkpoint-last",
             r.st.step - r.start_step, el, r.pairs_seen / fmax(el, 1e-9), r.tokens_seen / fmax(el, 1e-9),
             r.st.nlog ? r.st.log[r.st.nlog - 1].loss : NAN, r.st.nlog ? r.st.log[r.st.nlog - 1].acc : NAN,
             r.st.skipped_nonfinite ? " (some steps skipped: non-finite)" : "", o->output_dir);
    if (r.g.act_dtype == DT_BF16)
        mmrm_log("activation arena per rank: %.1f MiB at peak (activations in bf16; gradients "
                 "fp32) + %.1f MiB fp32 staging of one op's operands", r.g.act.peak / 1048576.0,
                 r.g.stage.peak / 1048576.0);
    else
        mmrm_log("activation arena per rank: %.1f MiB at peak (activations and gradients fp32)",
                 r.g.act.peak / 1048576.0);
    if (r.gs) {
        GradSyncStats gst = gradsync_stats(r.gs);
        if (gst.steps && !gst.staged)
            mmrm_log("gradient all-reduce: %.1f of %d bucket(s) per step started during backward",
                     (double)gst.started_early / gst.steps, gst.buckets);
    }
    status = 0;
    goto done;
fail:
    fflush(stdout);
    fprintf(stderr, "%smmrm: error: %s\n", isatty(2) ? "\n" : "", mmrm_last_error());
done:
    if (L) batch_loader_close(L);
    if (r.metrics) fclose(r.metrics);
    if (r.g.tape) graph_free(&r.g);
    if (r.main.ps.data) rm_free(&r.main);
    if (r.bias.ps.data) rm_free(&r.bias);
    if (r.tok) tokenizer_free(r.tok);
    pairset_free(&r.train);
    pairset_free(&r.eval);
    free(r.blank_cache);
    free(r.st.log);
    zero_shard_free(&r.zs[0]);
    zero_shard_free(&r.zs[1]);
    gradsync_free(r.gs);
    return status;
}
