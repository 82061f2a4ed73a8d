/* step.c - one optimizer step (run.h): gradient_accumulation_steps micro-batches, each
 * scored by the main model (and, shortcut_aware, by the bias model on the blank-image rows)
 * in one forward or, with max_tokens_per_batch, in chunks of whole pairs (chunks.c), each
 * forward's loss backpropagated with weight P_forward / P_step so that the accumulated
 * gradient is that of one big batch (the losses are means of per-pair terms:
 * spec/algorithm.md), what it logs kept on the device and read once after the last
 * forward (no host wait between micro-batches); data parallel, the gradients averaged
 * during the step's last forward's backward and the logged sums reduced across ranks; then
 * AdamW over both models, or nothing when the loss or gradients are not finite. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/error.h"
#include "runtime/ops.h"
#include "train/run.h"

/* what a step sums over its micro-batches (and ranks) for its log entry */
typedef struct Tally {
    double loss, right, margin, loss_b, right_b, wsum, wmin, wmax;
    long pairs, forwards;
    int nonfinite;
} Tally;

/* one micro-batch's graph: the rewards of the chosen and rejected rows (P each), with
 * shortcut_aware the bias model's of the same rows shown the blank image, and the loss */
typedef struct Micro {
    Tensor *loss, *rc, *rr, *bc, *br;
    ShortcutLoss sl;
} Micro;

/* MMRM_DEBUG_ABORT_AT_MICRO=N: the process dies at the run's micro-batch N, as a crash would
 * (the tests of resuming in the middle of gradient accumulation) */
static void debug_abort(const Run *r, int micro) {
    const char *abort_at = getenv("MMRM_DEBUG_ABORT_AT_MICRO");
    if (abort_at && atol(abort_at) == r->st.step * r->c->gradient_accumulation_steps + micro) {
        fprintf(stderr, "mmrm: aborting at micro-batch %s (MMRM_DEBUG_ABORT_AT_MICRO)\n", abort_at);
        fflush(NULL);
        _exit(3);
    }
}

/* MMRM_DEBUG_NONFINITE=KIND:STEP (KIND pixel, weight or grad; STEP counted from 1): a NaN
 * in the first pixel of step STEP's first micro-batch, in the main model's first weight
 * before step STEP, or an Inf in its first gradient after step STEP's backward (the tests of
 * the non-finite skip policy, tests/integration/nonfinite.sh; on any device: the weight and
 * the gradient are written through device_copy_from_host). */
static int debug_nonfinite(const Run *r, const char *kind) {
    const char *v = getenv("MMRM_DEBUG_NONFINITE");
    size_t k = strlen(kind);
    if (!v || strncmp(v, kind, k) != 0 || v[k] != ':') return 0;
    if (atol(v + k + 1) != r->st.step + 1) return 0;
    fprintf(stderr, "mmrm: injecting a non-finite %s at step %ld (MMRM_DEBUG_NONFINITE)\n", kind,
            r->st.step + 1);
    return 1;
}

/* the graph of pairs [p0, p1) of b */
static Micro forward(Run *r, const Batch *b, int p0, int p1) {
    Micro m = {0};
    graph_reset(&r->g);
    int P = p1 - p0;
    RmBatch full, v;
    batch_rm_view(b, &full);
    chunk_view(&full, p0, p1, r->main.cfg.image_size, graph_scratch(&r->g, 2 * P * sizeof(int)), &v);
    Tensor *rw = op_reshape(&r->g, rm_forward(&r->main, &r->g, &v), 2, (int[]){2 * P, 1});
    int *ic = graph_scratch(&r->g, P * sizeof(int)), *ir = graph_scratch(&r->g, P * sizeof(int));
    for (int i = 0; i < P; i++) ic[i] = 2 * i, ir[i] = 2 * i + 1;
    m.rc = op_gather_rows(&r->g, rw, ic, P);
    m.rr = op_gather_rows(&r->g, rw, ir, P);
    if (!r->has_bias) {
        m.loss = op_bt_loss(&r->g, m.rc, m.rr, b->margin + p0, NULL);
        return m;
    }
    RmBatch bv;
    batch_rm_view_blank(b, &full);
    full.vit_cache = r->blank_cache;
    chunk_view(&full, p0, p1, r->bias.cfg.image_size, graph_scratch(&r->g, 2 * P * sizeof(int)), &bv);
    Tensor *bw = op_reshape(&r->g, rm_forward(&r->bias, &r->g, &bv), 2, (int[]){2 * P, 1});
    m.bc = op_gather_rows(&r->g, bw, ic, P);
    m.br = op_gather_rows(&r->g, bw, ir, P);
    m.sl = op_shortcut_loss(&r->g, m.rc, m.rr, m.bc, m.br, (float)r->c->shortcut_eps);
    m.loss = m.sl.loss;
    return m;
}

/* the micro-batch's forward and backward, queued on the device */
static Micro forward_backward(Run *r, const Batch *b, int p0, int p1, float dloss) {
    Micro m = forward(r, b, p0, p1);
    graph_backward_from(&r->g, m.loss, &dloss);
    return m;
}

/* what makes two micro-batches one graph: the batch's shapes and the graph they built (tape
 * length, arena use). A key names an exec that each new capture updates (a replay never
 * runs stale arguments); tests/integration/cuda_graphs.sh checks under EMU_GRAPH_STRICT=1
 * that within a key no argument changes. */
static uint64_t shape_key(const Run *r, const Batch *b, int P) {
    /* a packed stream's length is a shape; padded rows' lengths are data (uploaded); P: the
     * chunk's pairs (max_tokens_per_batch) */
    const long v[] = {P, b->rows.B, b->rows.T, b->rows.packed ? b->rows.total : -1,
                      b->blank.B, b->blank.T, b->blank.packed ? b->blank.total : -1, r->g.ntape,
                      (long)(r->g.act.used + r->g.act.overflow_used), (long)r->g.inputs.used,
                      (long)r->g.stage.used};
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        for (int k = 0; k < 8; k++)
            h = (h ^ (uint64_t)((unsigned long)v[i] >> (8 * k) & 0xff)) * 1099511628211ull;
    return h;
}

/* cuda_graphs: the micro-batch is captured and launched as a graph; one that cannot be (a
 * host read or wait inside, a GEMM plan not yet cached: the first micro-batch of a shape)
 * runs again eagerly, each distinct reason logged once */
static Micro run_micro(Run *r, const Batch *b, int p0, int p1, float dloss) {
    if (!r->graphs) return forward_backward(r, b, p0, p1, dloss);
    uint64_t counter = r->g.dropout.counter; /* the eager rerun draws the same masks */
    device_graph_begin(r->g.device);
    Micro m = forward_backward(r, b, p0, p1, dloss);
    const char *why = device_graph_end(r->g.device, shape_key(r, b, p1 - p0));
    if (!why) return m;
    r->graph_eager++;
    int n = 0, seen = 0;
    for (; n < 4 && r->graph_reasons[n][0]; n++) seen |= strcmp(r->graph_reasons[n], why) == 0;
    if (!seen && n < 4) {
        snprintf(r->graph_reasons[n], sizeof r->graph_reasons[n], "%s", why);
        mmrm_log("cuda_graphs: step %ld: a micro-batch runs eagerly: %s (said once)", r->st.step + 1, why);
    }
    r->g.dropout.counter = counter;
    return forward_backward(r, b, p0, p1, dloss);
}

/* Logging without a host wait inside the step: after each forward has been queued, the
 * tensors a step logs are copied device to device (on the compute stream, so before the next
 * forward reuses the activation arena; with cuda_graphs after the launch, outside the
 * capture) into r->tally, a device buffer kept for the run; the step reads it to the host
 * once at its end (tally_read) and sums it in the order the forwards ran. */

/* where one logged tensor lies in r->tally.dev, and its dtype (f32, or bf16 activations) */
typedef struct Kept {
    size_t off;
    DType dtype;
} Kept;

/* one forward's logged tensors: loss (1), the rewards rc, rr and, shortcut_aware, bc, br,
 * the weights w and the bias losses lb (P each) */
struct TallyForward {
    int P;
    Kept loss, rc, rr, w, lb, bc, br;
};

/* the step's start: room for bytes in the device buffer, which is empty (a device free drops
 * the CUDA graph execs, so the room is made for the step's worst case, in its first step) */
static void tally_begin(Run *r, size_t bytes) {
    TallyBuf *tb = &r->tally;
    tb->used = 0, tb->nfw = 0;
    if (bytes <= tb->cap) return;
    if (tb->dev) device_free(r->g.device, tb->dev);
    tb->dev = device_alloc(r->g.device, bytes);
    tb->cap = bytes;
}

/* bytes of a logged tensor of n values, rounded to 4 so that every slot stays f32-aligned */
static size_t kept_bytes(DType dt, size_t n) { return (n * dtype_size(dt) + 3) & ~(size_t)3; }

static Kept keep(Run *r, const Tensor *t) {
    MMRM_CHECK(t->dtype == DT_F32 || t->dtype == DT_BF16, "tally: %s is %s (f32 or bf16 expected)",
               t->name, dtype_name(t->dtype));
    size_t bytes = kept_bytes(t->dtype, t->numel);
    MMRM_CHECK(r->tally.used + bytes <= r->tally.cap, "tally: %s does not fit the step's %zu bytes",
               t->name, r->tally.cap);
    Kept k = {r->tally.used, t->dtype};
    device_memcpy(r->g.device, (char *)r->tally.dev + k.off, t->data, t->numel * dtype_size(t->dtype));
    r->tally.used += bytes;
    return k;
}

/* queues the copies of the forward's logged tensors (P pairs) */
static void tally_keep(Run *r, int P, const Micro *m) {
    TallyBuf *tb = &r->tally;
    if (tb->nfw == tb->capfw) {
        tb->capfw = 2 * tb->capfw + 4;
        tb->fw = xrealloc(tb->fw, tb->capfw * sizeof *tb->fw);
    }
    TallyForward *f = &tb->fw[tb->nfw++];
    *f = (TallyForward){.P = P};
    if (r->has_bias) {
        f->w = keep(r, m->sl.w);
        f->lb = keep(r, m->sl.lb);
        f->bc = keep(r, m->bc);
        f->br = keep(r, m->br);
    }
    f->loss = keep(r, m->loss);
    f->rc = keep(r, m->rc);
    f->rr = keep(r, m->rr);
}

/* the values of slot k (n of them) as floats: in place when f32, else widened into tmp */
static const float *kept_f32(const TallyBuf *tb, Kept k, size_t n, float *tmp) {
    const unsigned char *h = tb->host + k.off;
    if (k.dtype == DT_F32) return (const float *)h;
    bf16_to_f32_array(tmp, (const uint16_t *)h, n);
    return tmp;
}

/* the step's one read of the device: the kept tensors summed into t, forward by forward in
 * the order they ran (the same sums as reading each forward at once) */
static void tally_read(Run *r, Tally *t) {
    TallyBuf *tb = &r->tally;
    if (!tb->nfw) return; /* no pairs on this rank this step */
    if (tb->used > tb->hcap) {
        tb->hcap = tb->cap;
        tb->host = xrealloc(tb->host, tb->hcap);
    }
    device_copy_to_host(r->g.device, tb->host, tb->dev, tb->used);
    int maxP = 1;
    for (long j = 0; j < tb->nfw; j++) maxP = tb->fw[j].P > maxP ? tb->fw[j].P : maxP;
    float *tmp = xmalloc(4 * (size_t)maxP * sizeof *tmp);
    for (long j = 0; j < tb->nfw; j++) {
        const TallyForward *f = &tb->fw[j];
        int P = f->P;
        if (r->has_bias) {
            const float *w = kept_f32(tb, f->w, P, tmp), *lb = kept_f32(tb, f->lb, P, tmp + P);
            const float *bcs = kept_f32(tb, f->bc, P, tmp + 2 * P);
            const float *brs = kept_f32(tb, f->br, P, tmp + 3 * P);
            if (r->nw_step + P > r->capw_step) {
                r->capw_step = 2 * (r->nw_step + P);
                r->w_step = xrealloc(r->w_step, r->capw_step * sizeof *r->w_step);
            }
            for (int i = 0; i < P; i++) {
                r->w_step[r->nw_step++] = w[i];
                t->wsum += w[i];
                t->wmin = fmin(t->wmin, w[i]);
                t->wmax = fmax(t->wmax, w[i]);
                t->loss_b += lb[i];
                t->right_b += bcs[i] > brs[i] ? 1.0 : bcs[i] == brs[i] ? 0.5 : 0.0;
            }
        }
        float lv = kept_f32(tb, f->loss, 1, tmp)[0];
        if (!isfinite(lv)) t->nonfinite = 1;
        t->loss += (double)lv * P;
        const float *cs = kept_f32(tb, f->rc, P, tmp), *rs = kept_f32(tb, f->rr, P, tmp + P);
        for (int i = 0; i < P; i++) {
            t->right += cs[i] > rs[i] ? 1.0 : cs[i] == rs[i] ? 0.5 : 0.0;
            t->margin += (double)cs[i] - rs[i];
        }
        t->pairs += P;
        t->forwards++;
    }
    free(tmp);
}

void tally_free(Run *r) {
    if (r->tally.dev) device_free(r->g.device, r->tally.dev);
    free(r->tally.host);
    free(r->tally.fw);
    memset(&r->tally, 0, sizeof r->tally);
}

/* every rank must take the same step: the gradients are averaged, sum what is logged */
static void reduce_tally(Run *r, Tally *t) {
    double sums[9] = {t->loss, t->right, (double)t->pairs, t->loss_b, t->right_b, t->wsum,
                      (double)t->nonfinite, t->margin, (double)t->forwards};
    comm_allreduce_sum_f64(r->rt->comm, sums, 9);
    t->loss = sums[0]; t->right = sums[1]; t->pairs = (long)sums[2]; t->loss_b = sums[3];
    t->right_b = sums[4]; t->wsum = sums[5]; t->nonfinite = sums[6] > 0; t->margin = sums[7];
    t->forwards = (long)sums[8];
    /* min and max through a sum: each rank fills its own slots */
    double *mm = xcalloc(2 * r->world, sizeof *mm);
    mm[2 * r->rank] = t->wmin;
    mm[2 * r->rank + 1] = t->wmax;
    comm_allreduce_sum_f64(r->rt->comm, mm, 2 * r->world);
    for (int k = 0; k < r->world; k++) t->wmin = fmin(t->wmin, mm[2 * k]), t->wmax = fmax(t->wmax, mm[2 * k + 1]);
    free(mm);
}

/* the w values of every rank's pairs onto rank 0 (for the TensorBoard histogram): each rank
 * sends P_step slots, the unused ones NaN */
static void gather_w(Run *r, int P_step) {
    size_t W = (size_t)r->world;
    float *shard = xmalloc(P_step * sizeof *shard), *all = xmalloc(W * P_step * sizeof *all);
    for (long i = 0; i < P_step; i++) shard[i] = i < r->nw_step ? r->w_step[i] : NAN;
    comm_allgather_f32(r->rt->comm, shard, all, W * P_step);
    if ((long)(W * P_step) > r->capw_step) {
        r->capw_step = (long)(W * P_step);
        r->w_step = xrealloc(r->w_step, r->capw_step * sizeof *r->w_step);
    }
    r->nw_step = 0;
    for (size_t i = 0; i < W * P_step; i++)
        if (!isnan(all[i])) r->w_step[r->nw_step++] = all[i];
    free(shard);
    free(all);
}

/* AdamW over both models unless the step is not finite; the gradients are zeroed either way */
static StepResult optimizer_step(Run *r, const Tally *t) {
    ParamStore *stores[2] = {&r->main.ps, &r->bias.ps};
    int nstores = r->has_bias ? 2 : 1;
    StepResult res = {NAN, lr_at(&r->opt, r->st.step), 1};
    if (!t->nonfinite && t->pairs > 0)
        res = r->zero ? adamw_step_zero1(&r->opt, r->g.K, r->rt->comm, stores, r->zs, nstores, r->st.step)
                      : adamw_step(&r->opt, r->g.K, stores, nstores, r->st.step);
    params_zero_grad(&r->main.ps);
    if (r->has_bias) params_zero_grad(&r->bias.ps);
    return res;
}

int train_step(Run *r, LogEntry *e) {
    int accum = r->c->gradient_accumulation_steps;
    int P_step = r->c->per_device_train_batch_size * accum;
    Tally t = {.wmin = INFINITY, .wmax = -INFINITY};
    r->nw_step = 0;
    /* a forward keeps at most 24 bytes a pair and 4 for its loss, and has at least one pair */
    tally_begin(r, (size_t)28 * P_step);
    int *first = NULL;
    for (int micro = 0; micro < accum; micro++) {
        const Batch *b;
        int rc = batch_loader_next(r->loader, &b);
        if (rc <= 0) {
            if (rc == 0) mmrm_set_error("the batch loader ended early");
            free(first);
            return -1;
        }
        r->st.cursor = b->next;
        debug_abort(r, micro);
        if (micro == 0 && b->P > 0 && debug_nonfinite(r, "pixel")) ((Batch *)b)->pixels[0] = NAN;
        if (micro == 0 && debug_nonfinite(r, "weight")) {
            const float nan = NAN;
            device_copy_from_host(r->main.ps.device, r->main.ps.data, &nan, sizeof nan);
        }
        first = xrealloc(first, ((size_t)b->P + 1) * sizeof *first);
        int n = b->P > 0 ? chunk_plan(r, b, r->has_bias, first) : 0;
        if (r->gs && micro == accum - 1 && n == 0) gradsync_begin(r->gs, &r->g);
        for (int k = 0; k < n; k++) {
            /* the buckets watch the step's last forward: its backward finishes the gradients */
            if (r->gs && micro == accum - 1 && k == n - 1) gradsync_begin(r->gs, &r->g);
            int P = first[k + 1] - first[k];
            float dloss = (float)P / (float)P_step; /* the step's loss is the mean over its pairs */
            Micro m = run_micro(r, b, first[k], first[k + 1], dloss);
            tally_keep(r, P, &m);
        }
        for (int i = 0; i < 2 * b->P; i++) r->tokens_seen += b->rows.lengths[i];
    }
    free(first);
    tally_read(r, &t);
    if (r->gs) gradsync_finish(r->gs, &r->g); /* ZeRO-1 reduce-scatters in its step */
    if (r->main.ps.grad && debug_nonfinite(r, "grad")) {
        const float inf = INFINITY;
        device_copy_from_host(r->main.ps.device, r->main.ps.grad, &inf, sizeof inf);
    }
    if (r->world > 1) reduce_tally(r, &t);
    if (r->world > 1 && r->has_bias && r->c->report_to == REPORT_TENSORBOARD) gather_w(r, P_step);
    StepResult res = optimizer_step(r, &t);
    r->pairs_seen += t.pairs;
    long pairs = t.pairs;
    *e = (LogEntry){.step = r->st.step + 1, .loss = pairs ? t.loss / pairs : NAN, .acc = pairs ? t.right / pairs : NAN,
                    .margin = pairs ? t.margin / pairs : NAN, .lr = res.lr, .grad_norm = res.grad_norm,
                    .forwards = t.forwards, .skipped = res.skipped};
    if (r->has_bias && pairs) {
        e->loss_bias = t.loss_b / pairs;
        e->acc_bias = t.right_b / pairs;
        e->w_mean = t.wsum / pairs;
        e->w_min = t.wmin;
        e->w_max = t.wmax;
    }
    return 0;
}
