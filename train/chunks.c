/* chunks.c - the token budget of a micro-batch (run.h, max_tokens_per_batch): its pairs run
 * as consecutive chunks of whole pairs (a pair's chosen and rejected rows, and with the
 * bias model its two blank-image rows) whose forwards compute at most the budget's tokens,
 * counted by rm_forward_tokens through the model's own layout (after prefix sharing and
 * packing, padding included where the layout pads). Chunks are grown greedily in pair
 * order; a pair over the budget by itself is a chunk alone. The budget bounds the
 * activations one forward + backward holds; the losses are weighted by the chunk's pairs
 * (step.c), so the gradient is the micro-batch's. */
#include <stdlib.h>

#include "runtime/error.h"
#include "train/run.h"

void chunk_view(const RmBatch *v, int p0, int p1, int image_size, int *image_of, RmBatch *out) {
    int r0 = 2 * p0, r1 = 2 * p1, i0 = -1, i1 = -1;
    for (int b = r0; b < r1; b++) {
        int im = v->image_of[b];
        if (im < 0) continue;
        if (i0 < 0 || im < i0) i0 = im;
        if (im > i1) i1 = im;
    }
    MMRM_CHECK(i0 <= 0 || !v->vit_cache, "chunk_view: a ViT cache holds one image");
    size_t tile = (size_t)3 * image_size * image_size, before = 0;
    for (int i = 0; i < i0; i++) before += (size_t)v->tiles[i];
    for (int b = r0; b < r1; b++) image_of[b - r0] = v->image_of[b] < 0 ? -1 : v->image_of[b] - i0;
    *out = (RmBatch){r1 - r0, v->T, v->ids + (size_t)r0 * v->T, v->lengths + r0,
                     i0 < 0 ? 0 : i1 - i0 + 1, v->tiles + (i0 < 0 ? 0 : i0),
                     v->pixels + before * tile, image_of, v->vit_cache};
}

/* the tokens the forwards of pairs [p0, p1) compute; img: (2 (p1 - p0)) scratch */
static long chunk_tokens(const Run *r, const RmBatch *v, const RmBatch *bv, int p0, int p1, int *img) {
    RmBatch c;
    chunk_view(v, p0, p1, r->main.cfg.image_size, img, &c);
    long t = rm_forward_tokens(&r->main, &c);
    if (bv) {
        chunk_view(bv, p0, p1, r->bias.cfg.image_size, img, &c);
        t += rm_forward_tokens(&r->bias, &c);
    }
    return t;
}

int chunk_plan(Run *r, const Batch *b, int with_bias, int *first) {
    int P = b->P, n = 0;
    long budget = r->c->max_tokens_per_batch;
    first[0] = 0;
    if (budget <= 0) {
        first[1] = P;
        return 1;
    }
    RmBatch v, bv;
    batch_rm_view(b, &v);
    if (with_bias) batch_rm_view_blank(b, &bv);
    int *img = xmalloc(2 * (size_t)P * sizeof *img);
    for (int p0 = 0, p1; p0 < P; p0 = p1) {
        p1 = p0 + 1;
        long t = chunk_tokens(r, &v, with_bias ? &bv : NULL, p0, p1, img);
        if (t > budget && !r->over_budget_said) {
            r->over_budget_said = 1;
            mmrm_log("a pair computes %ld tokens, over max_tokens_per_batch = %ld: it runs alone "
                     "(said once per run)", t, budget);
        }
        while (t <= budget && p1 < P && chunk_tokens(r, &v, with_bias ? &bv : NULL, p0, p1 + 1, img) <= budget)
            p1++;
        first[++n] = p1;
    }
    free(img);
    return n;
}
