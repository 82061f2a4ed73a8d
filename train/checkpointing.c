/* checkpointing.c - checkpoint directories (run.h): where a run starts (output_dir's newest
 * complete checkpoint, or a clean output_dir), trainer_state.json and optimizer.safetensors
 * written and read back, and the save itself: a hidden temporary directory renamed into
 * place once complete (a previous copy under that name renamed aside first, then removed),
 * then the oldest numbered checkpoints beyond save_total_limit removed. trainer_state.json
 * is written last, so its presence marks a complete one. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/checkpoint.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "runtime/safetensors.h"
#include "train/run.h"

/* checkpoints hold fp32 weights, so that a resumed run continues bitwise */
#define SAVE_DTYPE "F32"

/* ---------------------------------------------------------------- directories */

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

int checkpoint_choose_start(Run *r) {
    const TrainConfig *c = r->c;
    if (fs_mkdir_p(c->output_dir)) return -1;
    long steps[4096];
    int n = list_checkpoints(c->output_dir, steps, 4096);
    if (n == 0) return 0;
    if (c->resume && !c->overwrite_output_dir)
        return checkpoint_dir(r->resume_dir, sizeof r->resume_dir, c->output_dir, steps[n - 1]) ? 0 : -1;
    if (!c->overwrite_output_dir) {
        mmrm_set_error("%s already holds checkpoints (newest checkpoint-%ld): set resume=true to "
                       "continue or overwrite_output_dir=true to start over", c->output_dir, steps[n - 1]);
        return -1;
    }
    char p[PATH_MAX];
    for (int i = 0; i < n; i++)
        if (checkpoint_dir(p, sizeof p, c->output_dir, steps[i])) fs_remove_tree(p);
    if (fs_join(p, sizeof p, c->output_dir, "checkpoint-last")) fs_remove_tree(p);
    return 0;
}

/* ---------------------------------------------------------------- trainer_state.json */

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

/* a count (step, cursor, ...): a whole number in [0, 2^53]; anything else would overflow the
 * conversion to long (undefined behaviour) or silently truncate */
static long jcount(const cJSON *o, const char *k, int *bad) {
    double v = jnum(o, k, bad);
    if (!(v >= 0 && v <= 9007199254740992.0) || v != (double)(long)v) {
        *bad = 1;
        return 0;
    }
    return (long)v;
}

/* one log_history entry (log_json's fields; the margin, forwards and the shortcut_aware ones
 * may be absent) */
static LogEntry log_entry_of(const cJSON *e, int *bad) {
    LogEntry le = {0};
    le.step = jcount(e, "step", bad);
    le.loss = jnum(e, "loss", bad);
    le.acc = jnum(e, "accuracy", bad);
    le.lr = jnum(e, "lr", bad);
    le.grad_norm = jnum(e, "grad_norm", bad);
    int unused = 0, no_margin = 0;
    le.margin = jnum(e, "margin", &no_margin);
    if (no_margin) le.margin = NAN; /* a history from before the margin was logged */
    le.loss_bias = jnum(e, "loss_bias", &unused);
    le.acc_bias = jnum(e, "accuracy_bias", &unused);
    le.w_mean = jnum(e, "w_mean", &unused);
    le.w_min = jnum(e, "w_min", &unused);
    le.w_max = jnum(e, "w_max", &unused);
    le.forwards = jcount(e, "forwards", &unused);
    le.skipped = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "skipped_nonfinite"));
    return le;
}

int checkpoint_read_state(State *s, const char *path) {
    char *text = fs_read_file(path, NULL);
    if (!text) return -1;
    cJSON *o = cJSON_Parse(text);
    free(text);
    int bad = !cJSON_IsObject(o);
    memset(s, 0, sizeof *s);
    if (!bad) {
        s->step = jcount(o, "global_step", &bad);
        s->cursor.epoch = jcount(o, "cursor_epoch", &bad);
        s->cursor.pos = jcount(o, "cursor_pos", &bad);
        s->opt_t = jcount(o, "optimizer_t", &bad);
        s->skipped_nonfinite = jcount(o, "skipped_nonfinite", &bad);
        s->consecutive_nonfinite = jcount(o, "consecutive_nonfinite", &bad);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "dropout_counter");
        if (cJSON_IsString(c)) s->dropout_counter = strtoull(c->valuestring, NULL, 10);
        else bad = 1;
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "log_history"), *e;
        cJSON_ArrayForEach(e, h) {
            LogEntry le = log_entry_of(e, &bad);
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

int checkpoint_load_state(Run *r) {
    char p[PATH_MAX];
    if (!fs_join(p, sizeof p, r->resume_dir, "trainer_state.json")) return -1;
    return checkpoint_read_state(&r->st, p);
}

/* ---------------------------------------------------------------- optimizer.safetensors */

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

int checkpoint_load_optimizer(ParamStore *ps, const char *dir) {
    char p[PATH_MAX];
    if (!fs_join(p, sizeof p, dir, "optimizer.safetensors")) return -1;
    return optimizer_load(ps, p);
}

/* ---------------------------------------------------------------- saving */

/* model, tokenizer and optimizer state of one store into dir */
static int save_model(const Run *r, const RewardModel *m, const char *dir, const float *hm,
                      const float *hv) {
    char p[PATH_MAX];
    const char *base = m == &r->main ? r->c->model_name_or_path : r->c->bias_model_path;
    /* a LoRA run saves its adapters and score head, not the frozen base */
    if ((m->lora_of ? lora_save(m, dir, base) : rm_save(m, dir, SAVE_DTYPE)) || tokenizer_save(r->tok, dir))
        return -1;
    if (!fs_join(p, sizeof p, dir, "optimizer.safetensors")) return -1;
    return optimizer_save(&m->ps, r->opt.t, p, hm, hv);
}

/* The first non-finite value of n floats at src (on device d), or -1. Device memory is
 * read through a bounded host buffer (a large model's store is tens of GB). */
static long first_nonfinite(Device d, const float *src, size_t n) {
    if (!src || !n) return -1;
    size_t chunk = d == DEV_CPU ? n : (size_t)1 << 24;
    float *copy = d == DEV_CPU ? NULL : xmalloc((n < chunk ? n : chunk) * sizeof(float));
    long at = -1;
    for (size_t lo = 0; lo < n && at < 0; lo += chunk) {
        size_t k = n - lo < chunk ? n - lo : chunk;
        const float *h = src + lo;
        if (copy) {
            device_copy_to_host(d, copy, src + lo, k * sizeof(float));
            h = copy;
        }
        for (size_t i = 0; i < k && at < 0; i++)
            if (!isfinite(h[i])) at = (long)(lo + i);
    }
    free(copy);
    return at;
}

/* 0 when the weights and AdamW moments (hm/hv: ZeRO-1's gathered ones, else the store's)
 * about to be saved are all finite; else -1 with an error naming the tensor. The
 * non-finite skip policy keeps NaN/Inf out of the weights; this makes sure that whatever got
 * past it (a broken model loaded, a fault in memory) never reaches a checkpoint, where a
 * resume would pick it up as the newest good state. */
static int check_finite(const ParamStore *ps, const char *model, const float *hm, const float *hv) {
    const char *what = "weights";
    long at = first_nonfinite(ps->device, ps->data, ps->numel);
    if (at < 0 && ps->n_trainable) {
        what = "AdamW moments";
        at = hm ? first_nonfinite(DEV_CPU, hm, ps->n_trainable) : first_nonfinite(ps->device, ps->m, ps->n_trainable);
        if (at < 0) at = hv ? first_nonfinite(DEV_CPU, hv, ps->n_trainable) : first_nonfinite(ps->device, ps->v, ps->n_trainable);
    }
    if (at < 0) return 0;
    const char *name = "?";
    for (int i = 0; i < ps->n; i++) {
        long lo = (long)((const float *)ps->params[i].data - ps->data);
        if (at >= lo && at < lo + (long)ps->params[i].numel) name = ps->params[i].name;
    }
    mmrm_set_error("the %s model's %s hold a non-finite value (in %s, element %ld of the store): "
                   "not saving it, so that a resume starts from the last finite checkpoint",
                   model, what, name, at);
    return -1;
}

/* keeps the save_total_limit newest numbered checkpoints */
static void prune_checkpoints(const TrainConfig *c) {
    if (c->save_total_limit <= 0) return;
    long steps[4096];
    char p[PATH_MAX];
    int n = list_checkpoints(c->output_dir, steps, 4096);
    for (int i = 0; i < n - c->save_total_limit; i++)
        if (checkpoint_dir(p, sizeof p, c->output_dir, steps[i])) fs_remove_tree(p);
}

/* rank 0's part; hm/hv: under ZeRO-1 the gathered moments per store (host memory), else
 * NULLs */
static int save_rank0(Run *r, const char *name, float *const hm[2], float *const hv[2]) {
    const TrainConfig *c = r->c;
    char hidden[80], old_name[80], tmp[PATH_MAX], old[PATH_MAX], final[PATH_MAX], p[PATH_MAX];
    snprintf(hidden, sizeof hidden, ".%s.tmp", name);
    snprintf(old_name, sizeof old_name, ".%s.old", name);
    if (!fs_join(tmp, sizeof tmp, c->output_dir, hidden) || !fs_join(final, sizeof final, c->output_dir, name) ||
        !fs_join(old, sizeof old, c->output_dir, old_name))
        return -1;
    if (check_finite(&r->main.ps, "main", hm[0], hv[0]) ||
        (r->has_bias && check_finite(&r->bias.ps, "bias", hm[1], hv[1])))
        return -1;
    fs_remove_tree(tmp);
    fs_remove_tree(old);
    /* a failed write (a full disk) removes the partial copy, giving its space back */
    if (save_model(r, &r->main, tmp, hm[0], hv[0])) goto fail;
    if (r->has_bias && c->save_bias_model &&
        (!fs_join(p, sizeof p, tmp, "bias") || save_model(r, &r->bias, p, hm[1], hv[1])))
        goto fail;
    r->st.opt_t = r->opt.t;
    r->st.dropout_counter = r->g.dropout.counter;
    /* last: marks it complete */
    if (!fs_join(p, sizeof p, tmp, "trainer_state.json") || state_save(&r->st, c->algorithm, p)) goto fail;
    fs_fsync_dir(tmp);
    /* a checkpoint being replaced (checkpoint-last, saved again by a rerun of a finished run)
     * is renamed away whole before it is removed: removing it in place would leave a
     * half-deleted directory under the visible name if the process died meanwhile */
    if (rename(final, old) != 0 && errno != ENOENT) {
        mmrm_set_error("%s: cannot move the previous copy aside (%s)", final, strerror(errno));
        goto fail;
    }
    if (rename(tmp, final) != 0) {
        mmrm_set_error("%s: cannot rename into place (%s)", final, strerror(errno));
        rename(old, final);
        goto fail;
    }
    fs_fsync_dir(c->output_dir);
    fs_remove_tree(old);
    prune_checkpoints(c);
    return 0;
fail:
    fs_remove_tree(tmp);
    return -1;
}

/* rank 0 writes; the others wait so that nobody runs ahead of a checkpoint being written.
 * Under ZeRO-1 the moments are gathered first, so a checkpoint never depends on the number
 * of ranks. */
static int save(Run *r, const char *name) {
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
    int rc = r->rank == 0 ? save_rank0(r, name, hm, hv) : 0;
    for (int i = 0; i < 2; i++) {
        free(hm[i]);
        free(hv[i]);
    }
    if (r->world > 1) comm_barrier(r->rt->comm);
    return rc;
}

int checkpoint_save_step(Run *r, long step) {
    char name[64];
    snprintf(name, sizeof name, "checkpoint-%ld", step);
    return save(r, name);
}

int checkpoint_save_last(Run *r) { return save(r, "checkpoint-last"); }
