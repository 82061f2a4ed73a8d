/* evaluate.c - evaluation during training (run.h): the main model scores every eval pair
 * once, without gradients, a batch in chunks within max_tokens_per_batch as in training;
 * accuracy counts ties as half right; data parallel, each rank scores its share and the sums
 * are reduced. (`mmrm eval` is infer/eval.c.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime/error.h"
#include "train/run.h"

/* pairwise accuracy and mean margin of the main model on the eval set, and the forwards it
 * took (all ranks) */
static int evaluate(Run *r, double *acc, double *margin, long *n_pairs, long *forwards) {
    BatchOptions bo = batch_options(r, 1);
    bo.num_workers = 0;
    BatchLoader *L = batch_loader_open(&r->eval, r->tok, &bo);
    if (!L) return -1;
    const Batch *b;
    double right = 0, msum = 0;
    long n = 0, nf = 0;
    int prev = graph_set_grad(&r->g, 0), rc, *first = NULL;
    while ((rc = batch_loader_next(L, &b)) == 1) {
        if (b->P == 0) continue;
        first = xrealloc(first, ((size_t)b->P + 1) * sizeof *first);
        int nc = chunk_plan(r, b, 0, first);
        nf += nc;
        for (int k = 0; k < nc; k++) {
            graph_reset(&r->g);
            int P = first[k + 1] - first[k];
            RmBatch full, v;
            batch_rm_view(b, &full);
            chunk_view(&full, first[k], first[k + 1], r->main.cfg.image_size,
                       graph_scratch(&r->g, 2 * P * sizeof(int)), &v);
            const float *s = graph_host(&r->g, rm_forward(&r->main, &r->g, &v));
            for (int i = 0; i < P; i++) {
                double d = (double)s[2 * i] - s[2 * i + 1];
                right += d > 0 ? 1.0 : d == 0 ? 0.5 : 0.0;
                msum += d;
                n++;
            }
        }
    }
    free(first);
    graph_set_grad(&r->g, prev);
    batch_loader_close(L);
    if (rc < 0) return -1;
    if (r->world > 1) {
        double sums[4] = {right, msum, (double)n, (double)nf};
        comm_allreduce_sum_f64(r->rt->comm, sums, 4);
        right = sums[0]; msum = sums[1]; n = (long)sums[2]; nf = (long)sums[3];
    }
    *acc = n ? right / n : NAN;
    *margin = n ? msum / n : NAN;
    *n_pairs = n;
    *forwards = nf;
    return 0;
}

int evaluate_and_log(Run *r, long step) {
    double acc, margin;
    long n, nf;
    if (evaluate(r, &acc, &margin, &n, &nf)) return -1;
    if (!r->rt->quiet && r->rank == 0) {
        if (r->tty) fputc('\n', stderr);
        mmrm_log("eval at step %ld: accuracy %.4f, mean margin %.4f (%ld pairs)", step, acc, margin, n);
    }
    cJSON *ej = cJSON_CreateObject();
    cJSON_AddNumberToObject(ej, "step", step);
    cJSON_AddNumberToObject(ej, "eval_accuracy", acc);
    cJSON_AddNumberToObject(ej, "eval_mean_margin", margin);
    cJSON_AddNumberToObject(ej, "eval_pairs", n);
    cJSON_AddNumberToObject(ej, "eval_forwards", nf);
    int rc = metrics_write(r, ej);
    cJSON_Delete(ej);
    if (rc) return -1;
    tb_eval(r, step, acc, margin);
    return 0;
}
