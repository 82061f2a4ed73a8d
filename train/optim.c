/* optim.c - AdamW, schedules and clipping (optim.h). */
#include "train/optim.h"

#include <math.h>

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

StepResult adamw_step(AdamW *o, const KernelOps *K, ParamStore **stores, int n, long s) {
    StepResult r = {0, lr_at(o, s), 0};
    double sq = 0;
    for (int i = 0; i < n; i++) {
        if (!stores[i]->n_trainable) continue;
        float part;
        K->sum_squares(&part, stores[i]->grad, stores[i]->n_trainable);
        sq += part;
    }
    r.grad_norm = sqrt(sq);
    if (!isfinite(r.grad_norm)) {
        r.skipped = 1;
        return r;
    }
    double coef = 1.0;
    if (o->max_grad_norm > 0) {
        coef = o->max_grad_norm / (r.grad_norm + 1e-6);
        if (coef > 1.0) coef = 1.0;
    }
    o->t++;
    for (int i = 0; i < n; i++) {
        ParamStore *ps = stores[i];
        if (!ps->n_trainable) continue;
        params_alloc_optimizer(ps);
        size_t nd = ps->n_decay, nt = ps->n_trainable;
        K->adamw_update(ps->data, ps->grad, ps->m, ps->v, nd, (float)r.lr, (float)o->beta1,
                        (float)o->beta2, (float)o->eps, (float)o->weight_decay, (int)o->t,
                        (float)coef);
        K->adamw_update(ps->data + nd, ps->grad + nd, ps->m + nd, ps->v + nd, nt - nd,
                        (float)r.lr, (float)o->beta1, (float)o->beta2, (float)o->eps, 0.0f,
                        (int)o->t, (float)coef);
    }
    return r;
}
