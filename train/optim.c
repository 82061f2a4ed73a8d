/* optim.c - AdamW, schedules and clipping (optim.h). */
#include "train/optim.h"

#include <math.h>

#include <stdlib.h>

#include "runtime/error.h"

double lr_at(const AdamW *o, long s) {
    long w = o->warmup_steps, T = o->total_steps;
    if (o->sched != SCHED_CONSTANT && s < w) return o->lr * (double)s / (double)(w > 1 ? w : 1);
    double progress = (double)(s - w) / (double)(T - w > 1 ? T - w : 1);
    switch (o->sched) {
    case SCHED_COSINE:
        return o->lr * fmax(0.0, 0.5 * (1.0 + cos(M_PI * progress)));
    case SCHED_LINEAR:
        return o->lr * fmax(0.0, (double)(T - s) / (double)(T - w > 1 ? T - w : 1));
    case SCHED_CONSTANT:
    case SCHED_CONSTANT_WITH_WARMUP:
        return o->lr;
    }
    return o->lr;
}

void adamw_free(AdamW *o) {
    if (o->clip) device_free(o->clip_device, o->clip);
    o->clip = NULL;
}

/* the device words of the clipping (sum of squares, zeroed; then the coefficient), kept on
 * o for its device */
static double *clip_scratch(AdamW *o, Device d) {
    if (o->clip && o->clip_device != d) adamw_free(o);
    if (!o->clip) {
        o->clip = device_alloc(d, 2 * sizeof(double));
        o->clip_device = d;
    }
    device_memset0(d, o->clip, sizeof(double));
    return o->clip;
}

StepResult adamw_step(AdamW *o, const KernelOps *K, ParamStore **stores, int n, long s) {
    StepResult r = {0, lr_at(o, s), 0};
    Device d = stores[0]->device;
    double *sq = clip_scratch(o, d);
    float *coef = (float *)(sq + 1);
    for (int i = 0; i < n; i++)
        if (stores[i]->n_trainable) K->sum_squares_acc(sq, stores[i]->grad, stores[i]->n_trainable);
    K->clip_coef(coef, sq, o->max_grad_norm);
    /* bias correction counts this step; a non-finite norm makes the kernels update nothing,
     * and the count is taken back below */
    o->t++;
    for (int i = 0; i < n; i++) {
        ParamStore *ps = stores[i];
        if (!ps->n_trainable) continue;
        params_alloc_optimizer(ps);
        size_t nd = ps->n_decay, nt = ps->n_trainable;
        uint16_t *w16 = ps->w16; /* NULL, or the bf16 copy AdamW keeps current */
        K->adamw_update_scaled(ps->data, w16, ps->grad, ps->m, ps->v, nd, (float)r.lr, (float)o->beta1,
                               (float)o->beta2, (float)o->eps, (float)o->weight_decay, (int)o->t, coef);
        K->adamw_update_scaled(ps->data + nd, w16 ? w16 + nd : NULL, ps->grad + nd, ps->m + nd, ps->v + nd,
                               nt - nd, (float)r.lr, (float)o->beta1, (float)o->beta2, (float)o->eps, 0.0f,
                               (int)o->t, coef);
    }
    double h;
    device_copy_to_host(d, &h, sq, sizeof h); /* the one read of the step, after its work */
    r.grad_norm = sqrt(h);
    if (!isfinite(r.grad_norm)) {
        r.skipped = 1;
        o->t--;
    }
    return r;
}

void zero_shard_init(ZeroShard *z, ParamStore *ps, const Comm *c) {
    z->n = ps->n_trainable;
    z->S = comm_shard_size(z->n, c->world);
    z->lo = (size_t)c->rank * z->S;
    z->count = comm_shard_count(z->n, c->world, c->rank);
    z->device = ps->device;
    size_t bytes = (z->S ? z->S : 1) * sizeof(float);
    z->g = device_alloc(z->device, bytes);
    z->m = device_alloc(z->device, bytes);
    z->v = device_alloc(z->device, bytes);
    device_memset0(z->device, z->g, bytes);
    device_memset0(z->device, z->m, bytes);
    device_memset0(z->device, z->v, bytes);
    /* NCCL moves S floats per rank: the gradient buffer gets room for W * S */
    if (z->device != DEV_CPU && z->n) params_pad_grad(ps, comm_padded_size(z->n, c->world));
}

void zero_shard_free(ZeroShard *z) {
    if (z->g) device_free(z->device, z->g);
    if (z->m) device_free(z->device, z->m);
    if (z->v) device_free(z->device, z->v);
    z->g = z->m = z->v = NULL;
}

/* AdamW over [a, b) of the store (global indices) within the shard; coef: the device's clip
 * coefficient (NaN: a non-finite norm, nothing is updated) */
static void shard_update(const KernelOps *K, ParamStore *ps, ZeroShard *z, size_t a, size_t b,
                         const AdamW *o, double lr, double wd, const float *coef) {
    size_t lo = a > z->lo ? a : z->lo, hi = b < z->lo + z->count ? b : z->lo + z->count;
    if (lo >= hi) return;
    size_t k = lo - z->lo;
    K->adamw_update_scaled(ps->data + lo, ps->w16 ? ps->w16 + lo : NULL, z->g + k, z->m + k, z->v + k, hi - lo,
                           (float)lr, (float)o->beta1, (float)o->beta2, (float)o->eps, (float)wd, (int)o->t, coef);
}

/* The norm stays on the device as in adamw_step: each rank sums the squares of its shards,
 * the sums are all-reduced (NCCL on GPUs, MPI on the CPU), the coefficient is computed and
 * applied there; the host reads the norm once, after the update and the all-gather are
 * queued (a skipped step's AdamW changes nothing, so gathering its shards changes nothing). */
StepResult adamw_step_zero1(AdamW *o, const KernelOps *K, const Comm *c, ParamStore **stores,
                            ZeroShard *z, int n, long s) {
    StepResult r = {0, lr_at(o, s), 0};
    Device d = stores[0]->device;
    double *sq = clip_scratch(o, d);
    float *coef = (float *)(sq + 1);
    for (int i = 0; i < n; i++) {
        if (!z[i].n) continue;
        if (z[i].device == DEV_CPU)
            comm_reduce_scatter_sum_f32(c, stores[i]->grad, z[i].n, z[i].g);
        else /* NCCL, on the compute stream; the grad buffer is padded to W * S */
            comm_reduce_scatter_sum_f32_device(c, stores[i]->grad, z[i].g, z[i].n, device_stream(z[i].device));
        K->scale_inplace(z[i].g, 1.0f / (float)c->world, z[i].count);
        if (z[i].count) K->sum_squares_acc(sq, z[i].g, z[i].count);
    }
    if (d == DEV_CPU)
        comm_allreduce_sum_f64(c, sq, 1);
    else
        comm_allreduce_sum_f64_device(c, sq, 1, device_stream(d));
    K->clip_coef(coef, sq, o->max_grad_norm);
    o->t++; /* taken back below when the norm is not finite */
    for (int i = 0; i < n; i++) {
        if (!z[i].n) continue;
        ParamStore *ps = stores[i];
        shard_update(K, ps, &z[i], 0, ps->n_decay, o, r.lr, o->weight_decay, coef);
        shard_update(K, ps, &z[i], ps->n_decay, ps->n_trainable, o, r.lr, 0.0, coef);
        if (z[i].device == DEV_CPU) {
            comm_allgather_f32(c, ps->data + (z[i].lo < z[i].n ? z[i].lo : z[i].n), ps->data, z[i].n);
        } else {
            /* the gradients are spent: gather the updated shards in the padded grad buffer
             * (NCCL's in-place all-gather) and copy the n parameters back */
            if (z[i].count)
                device_memcpy(z[i].device, ps->grad + z[i].lo, ps->data + z[i].lo, z[i].count * sizeof(float));
            comm_allgather_f32_device(c, ps->grad + z[i].lo, ps->grad, z[i].n, device_stream(z[i].device));
            device_memcpy(z[i].device, ps->data, ps->grad, z[i].n * sizeof(float));
            /* bf16 runs: AdamW wrote this rank's shard of the copy; convert the others' */
            size_t lo = z[i].lo < z[i].n ? z[i].lo : z[i].n, hi = lo + z[i].count;
            params_refresh_bf16(ps, 0, lo);
            params_refresh_bf16(ps, hi, z[i].n - hi);
        }
    }
    double h;
    device_copy_to_host(d, &h, sq, sizeof h); /* the one read of the step, after its work */
    r.grad_norm = sqrt(h);
    if (!isfinite(r.grad_norm)) {
        r.skipped = 1;
        o->t--;
    }
    return r;
}
