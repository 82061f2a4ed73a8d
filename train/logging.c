/* logging.c - what a run reports (run.h): the step history (trainer_state.json's
 * log_history and metrics.jsonl, one JSON object per step or evaluation), the TensorBoard
 * event file (output_dir/runs, every step and evaluation), the progress line (redrawn in
 * place on a terminal, one line per logging_steps otherwise), and the lines before the first
 * step and after the last. Only rank 0 writes (the others are quiet). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "runtime/strbuf.h"
#include "train/run.h"

void log_push(State *s, const LogEntry *e) {
    if (s->nlog == s->caplog) {
        s->caplog = s->caplog ? 2 * s->caplog : 256;
        s->log = xrealloc(s->log, s->caplog * sizeof *s->log);
    }
    s->log[s->nlog++] = *e;
}

cJSON *log_json(const LogEntry *e, TrainAlgorithm algo) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", e->step);
    cJSON_AddNumberToObject(o, "loss", e->loss);
    cJSON_AddNumberToObject(o, "accuracy", e->acc);
    if (isfinite(e->margin)) cJSON_AddNumberToObject(o, "margin", e->margin);
    cJSON_AddNumberToObject(o, "lr", e->lr);
    cJSON_AddNumberToObject(o, "grad_norm", e->grad_norm);
    if (algo == TRAIN_SHORTCUT_AWARE) {
        cJSON_AddNumberToObject(o, "loss_bias", e->loss_bias);
        cJSON_AddNumberToObject(o, "accuracy_bias", e->acc_bias);
        cJSON_AddNumberToObject(o, "w_mean", e->w_mean);
        cJSON_AddNumberToObject(o, "w_min", e->w_min);
        cJSON_AddNumberToObject(o, "w_max", e->w_max);
    }
    if (e->forwards > 0) cJSON_AddNumberToObject(o, "forwards", (double)e->forwards);
    if (e->skipped) cJSON_AddTrueToObject(o, "skipped_nonfinite");
    return o;
}

/* a failed write (a full disk) is an error that stops the run: the curves must not go
 * missing silently while training goes on */
static int metrics_error(const Run *r, const char *what) {
    char path[PATH_MAX];
    if (!fs_join(path, sizeof path, r->c->output_dir, "metrics.jsonl")) return -1;
    mmrm_set_error("%s: cannot %s (%s)", path, what, strerror(errno));
    return -1;
}

int metrics_write(Run *r, cJSON *o) {
    if (!r->metrics) return 0;
    char *t = cJSON_PrintUnformatted(o);
    int bad = fprintf(r->metrics, "%s\n", t) < 0 || fflush(r->metrics) != 0;
    free(t);
    return bad ? metrics_error(r, "write") : 0;
}

/* the evaluation lines of an earlier metrics.jsonl at steps up to max_step, in file order
 * (an array; empty when there is no such file) */
static cJSON *earlier_evals(const char *path, long max_step) {
    cJSON *out = cJSON_CreateArray();
    char *text = fs_read_file(path, NULL);
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        cJSON *o = cJSON_Parse(line); /* a torn last line does not parse: dropped */
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "step");
        if (cJSON_GetObjectItemCaseSensitive(o, "eval_accuracy") && cJSON_IsNumber(st) && st->valuedouble <= max_step)
            cJSON_AddItemToArray(out, o);
        else
            cJSON_Delete(o);
    }
    free(text);
    return out;
}

/* metrics.jsonl restarts from the checkpoint's history (and the earlier file's evaluations up
 * to the checkpoint), written atomically, so a resumed run has no duplicates */
int metrics_open(Run *r) {
    if (r->rank != 0) return 0;
    char path[PATH_MAX];
    if (!fs_join(path, sizeof path, r->c->output_dir, "metrics.jsonl")) return -1;
    cJSON *evals = r->resume_dir[0] ? earlier_evals(path, r->st.step) : cJSON_CreateArray();
    const cJSON *ev = evals->child;
    StrBuf b = {0};
    for (long i = 0; i <= r->st.nlog; i++) {
        long upto = i < r->st.nlog ? r->st.log[i].step : LONG_MAX;
        for (; ev && cJSON_GetObjectItemCaseSensitive(ev, "step")->valuedouble < upto; ev = ev->next) {
            char *t = cJSON_PrintUnformatted(ev);
            sb_printf(&b, "%s\n", t);
            free(t);
        }
        if (i == r->st.nlog) break;
        cJSON *j = log_json(&r->st.log[i], r->c->algorithm);
        char *t = cJSON_PrintUnformatted(j);
        sb_printf(&b, "%s\n", t);
        free(t);
        cJSON_Delete(j);
        /* the evaluations of this step come after its line, as when they were written */
        for (; ev && cJSON_GetObjectItemCaseSensitive(ev, "step")->valuedouble == upto; ev = ev->next) {
            char *e = cJSON_PrintUnformatted(ev);
            sb_printf(&b, "%s\n", e);
            free(e);
        }
    }
    r->resumed_evals = evals;
    int rc = fs_write_atomic(path, b.s ? b.s : "", b.len);
    sb_free(&b);
    if (rc) return -1;
    if (!(r->metrics = fopen(path, "a"))) {
        mmrm_set_error("%s: cannot open for appending (%s)", path, strerror(errno));
        return -1;
    }
    return 0;
}

int log_record(Run *r, const LogEntry *e) {
    log_push(&r->st, e);
    cJSON *j = log_json(e, r->c->algorithm);
    int rc = metrics_write(r, j);
    cJSON_Delete(j);
    return rc;
}

void log_plan(const Run *r) {
    const TrainConfig *c = r->c;
    const BatchStats *bs = batch_loader_stats(r->loader);
    int P = c->per_device_train_batch_size, accum = c->gradient_accumulation_steps;
    mmrm_log("training: %s, %ld steps of %d pairs (%d per micro-batch x %d accumulation x %d ranks), "
             "%zu pairs, %ld micro-batches per epoch, warmup %ld, lr %.2e",
             train_algorithm_name(c->algorithm), r->total_steps, P * accum * r->world, P, accum, r->world,
             bs->usable, bs->steps_per_epoch, r->opt.warmup_steps, r->opt.lr);
}

static void fmt_eta(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) snprintf(buf, n, "?");
    else if (s >= 3600) snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
}

void log_progress(const Run *r, const LogEntry *e) {
    double el = clock_seconds() - r->t0;
    double rate = r->pairs_seen / fmax(el, 1e-9), trate = r->tokens_seen / fmax(el, 1e-9);
    char eta[32];
    fmt_eta((r->total_steps - e->step) * el / fmax(1.0, (double)(e->step - r->start_step)), eta, sizeof eta);
    char extra[160] = "";
    if (r->has_bias)
        snprintf(extra, sizeof extra, " | bias loss %.4f acc %.3f | w %.3f [%.3f, %.3f]", e->loss_bias,
                 e->acc_bias, e->w_mean, e->w_min, e->w_max);
    if (r->c->max_tokens_per_batch > 0) /* the budget's cost: forwards per step, all ranks */
        snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " | %ld forwards", e->forwards);
    fprintf(stderr, "%sstep %ld/%ld | loss %.4f | acc %.3f%s | %.1f pairs/s | %.0f tok/s | lr %.2e | eta %s%s",
            r->tty ? "\r\033[K" : "mmrm: ", e->step, r->total_steps, e->loss, e->acc, extra, rate, trate,
            e->lr, eta, r->tty ? "" : "\n");
}

void log_summary(const Run *r) {
    const State *st = &r->st;
    double el = clock_seconds() - r->t0;
    mmrm_log("done: %ld steps in %.1f s (%.2f pairs/s, %.0f tokens/s), final loss %.4f, accuracy %.3f%s; "
             "model in %s/checkpoint-last",
             st->step - r->start_step, el, r->pairs_seen / fmax(el, 1e-9), r->tokens_seen / fmax(el, 1e-9),
             st->nlog ? st->log[st->nlog - 1].loss : NAN, st->nlog ? st->log[st->nlog - 1].acc : NAN,
             st->skipped_nonfinite ? " (some steps skipped: non-finite)" : "", r->c->output_dir);
    if (r->g.act_dtype == DT_BF16)
        mmrm_log("activation arena per rank: %.1f MiB at peak (activations in bf16; gradients "
                 "fp32) + %.1f MiB fp32 staging of one op's operands", r->g.act.peak / 1048576.0,
                 r->g.stage.peak / 1048576.0);
    else
        mmrm_log("activation arena per rank: %.1f MiB at peak (activations and gradients fp32)",
                 r->g.act.peak / 1048576.0);
    if (r->g.device != DEV_CPU) { /* bounded by buckets x GEMM shapes, not by steps */
        long hits, misses;
        device_plan_stats(r->g.device, &hits, &misses);
        mmrm_log("plans: %ld hits, %ld misses", hits, misses);
    }
    if (r->graphs) {
        long captured, replayed;
        device_graph_counts(r->g.device, &captured, &replayed);
        mmrm_log("cuda_graphs: %ld graph(s) captured, %ld replay(s), %ld micro-batch(es) run eagerly",
                 captured, replayed, r->graph_eager);
    }
    if (r->gs) {
        GradSyncStats gst = gradsync_stats(r->gs);
        if (gst.steps && !gst.staged)
            mmrm_log("gradient all-reduce: %.1f of %d bucket(s) per step started during backward",
                     (double)gst.started_early / gst.steps, gst.buckets);
    }
}

/* ---------------------------------------------------------------- TensorBoard */

#define TB_W_BUCKETS 20

typedef struct {
    const char *tag;
    double v;
} TbScalar;

/* the scalars of a step that its LogEntry holds (HF Trainer's tag names where it has one);
 * returns how many. The margin only when finite, as in metrics.jsonl (histories written
 * before it was logged have none). */
static int tb_scalars(const LogEntry *e, int has_bias, TbScalar s[8]) {
    int n = 0;
    s[n++] = (TbScalar){"train/loss", e->loss};
    s[n++] = (TbScalar){"train/accuracy", e->acc};
    if (isfinite(e->margin)) s[n++] = (TbScalar){"train/margin", e->margin};
    s[n++] = (TbScalar){"train/learning_rate", e->lr};
    s[n++] = (TbScalar){"train/grad_norm", e->grad_norm};
    if (has_bias) {
        s[n++] = (TbScalar){"train/loss_bias", e->loss_bias};
        s[n++] = (TbScalar){"train/accuracy_bias", e->acc_bias};
        s[n++] = (TbScalar){"train/w_mean", e->w_mean};
    }
    return n;
}

/* a write error stops the TensorBoard output, not the run */
static void tb_failed(Run *r) {
    mmrm_warn("%s; no more TensorBoard events are written", mmrm_last_error());
    tfevents_close(r->tb);
    r->tb = NULL;
}

int tb_open(Run *r) {
    if (r->rank != 0 || r->c->report_to != REPORT_TENSORBOARD) return 0;
    char dir[PATH_MAX];
    if (!fs_join(dir, sizeof dir, r->c->output_dir, "runs")) return -1;
    double now = tf_wall_time();
    TfEventList kept = {0};
    if (r->resume_dir[0]) {
        /* the earlier files' events up to the checkpoint (histograms and throughput included),
         * then the history's scalars and the kept evaluations of any step they lack (a first
         * run without report_to) */
        if (tfevents_collect(dir, r->st.step, &kept)) {
            char why[1024];
            snprintf(why, sizeof why, "%s", mmrm_last_error());
            mmrm_set_error("%s (an earlier event file of this run: make it readable, or remove it "
                           "or set report_to = none to go on without it)", why);
            tf_list_free(&kept);
            return -1;
        }
        StrBuf b = {0};
        for (long i = 0; i < r->st.nlog; i++) {
            TbScalar s[8];
            int n = tb_scalars(&r->st.log[i], r->has_bias, s);
            for (int k = 0; k < n; k++) {
                sb_reset(&b);
                tf_event_scalar(&b, now, r->st.log[i].step, s[k].tag, (float)s[k].v);
                tf_list_add(&kept, b.s, b.len);
            }
        }
        const cJSON *ev;
        cJSON_ArrayForEach(ev, r->resumed_evals) {
            const cJSON *step = cJSON_GetObjectItemCaseSensitive(ev, "step");
            const cJSON *acc = cJSON_GetObjectItemCaseSensitive(ev, "eval_accuracy");
            const cJSON *margin = cJSON_GetObjectItemCaseSensitive(ev, "eval_mean_margin");
            if (!cJSON_IsNumber(step) || !cJSON_IsNumber(acc) || !cJSON_IsNumber(margin)) continue;
            sb_reset(&b);
            tf_event_scalar(&b, now, (int64_t)step->valuedouble, "eval/accuracy", (float)acc->valuedouble);
            tf_list_add(&kept, b.s, b.len);
            sb_reset(&b);
            tf_event_scalar(&b, now, (int64_t)step->valuedouble, "eval/mean_margin", (float)margin->valuedouble);
            tf_list_add(&kept, b.s, b.len);
        }
        sb_free(&b);
    }
    r->tb = tfevents_open(dir, now, &kept);
    tf_list_free(&kept);
    return r->tb ? 0 : -1;
}

void tb_step(Run *r, const LogEntry *e, double pairs_per_s) {
    if (!r->tb) return;
    double now = tf_wall_time();
    TbScalar s[8];
    int n = tb_scalars(e, r->has_bias, s), rc = 0;
    for (int k = 0; k < n && !rc; k++) rc = tfevents_scalar(r->tb, now, e->step, s[k].tag, (float)s[k].v);
    if (!rc) rc = tfevents_scalar(r->tb, now, e->step, "train/pairs_per_second", (float)pairs_per_s);
    if (!rc && r->has_bias && r->nw_step > 0) {
        double *w = xmalloc(r->nw_step * sizeof *w), limit[TB_W_BUCKETS], count[TB_W_BUCKETS];
        size_t n_w = 0;
        for (long i = 0; i < r->nw_step; i++)
            if (isfinite(r->w_step[i])) w[n_w++] = r->w_step[i];
        TfHistogram h;
        tf_histogram_fill(&h, w, n_w, TB_W_BUCKETS, limit, count);
        rc = tfevents_histogram(r->tb, now, e->step, "train/w", &h);
        free(w);
    }
    if (rc || tfevents_flush(r->tb)) tb_failed(r);
}

void tb_eval(Run *r, long step, double acc, double margin) {
    if (!r->tb) return;
    double now = tf_wall_time();
    if (tfevents_scalar(r->tb, now, step, "eval/accuracy", (float)acc) ||
        tfevents_scalar(r->tb, now, step, "eval/mean_margin", (float)margin) || tfevents_flush(r->tb))
        tb_failed(r);
}
