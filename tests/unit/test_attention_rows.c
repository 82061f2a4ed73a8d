/* test_attention_rows.c - the attention rows ops (kernels/op_list.h, the CPU table:
 * attention at a subset of the query rows, the decoder's last layer at the rewarded rows)
 * give, bitwise, what the full attention gives at those rows: out and lse in the forward;
 * dq at the rows and dk, dv in the backward when the full op's upstream gradient is zero
 * at every other row. For every kernel set this CPU runs, causal and not, without seg and
 * with random docs, prefixes and branches, GQA and MQA, padding, T past the query blocks. */
#include "kernels/cpu/simd.h"
#include "kernels/kernels.h"
#include "tests/harness.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int B, T, NH, KV, HD;
    int lengths[3];
} RShape;

static const RShape RSHAPES[] = {
    {3, 45, 4, 2, 8, {45, 30, 0}},
    {2, 97, 6, 2, 32, {97, 61}},
    {1, 23, 3, 3, 6, {23}},
    {2, 70, 2, 1, 16, {70, 9}},
};
enum { NR = sizeof(RSHAPES) / sizeof(RSHAPES[0]) };

/* Random docs per sequence, each a branch-0 prefix (possibly empty) then 0..3 branches */
static int *random_seg(const RShape *s, TRng *r) {
    int *seg = calloc((size_t)s->B * s->T, sizeof(int));
    if (!seg) abort();
    for (int b = 0; b < s->B; b++) {
        int *sg = seg + (size_t)b * s->T, L = s->lengths[b], doc = 0;
        for (int t = 0; t < L; doc += 1 + (int)(trng_uniform(r) * 2)) {
            int dl = 1 + (int)(trng_uniform(r) * (L / 2 + 2)), e = t + dl < L ? t + dl : L;
            int pe = t + (int)(trng_uniform(r) * (e - t + 1)), br = 0;
            for (; t < pe; t++) sg[t] = doc << 16;
            while (t < e) {
                int bl = 1 + (int)(trng_uniform(r) * (e - t));
                br += 1 + (int)(trng_uniform(r) * 2);
                for (int i = 0; i < bl && t < e; i++) sg[t++] = doc << 16 | br;
            }
        }
    }
    return seg;
}

static int use_isa(int i) {
    if (!cpu_isa_supported((CpuIsa)i)) return 0;
    setenv("MMRM_CPU_ISA", cpu_isa_name((CpuIsa)i), 1);
    return cpu_isa_active() == (CpuIsa)i;
}

static size_t same_bits(const float *a, const float *b, size_t n) {
    size_t d = 0;
    for (size_t i = 0; i < n; i++) d += memcmp(a + i, b + i, sizeof(float)) != 0;
    return d;
}

TEST(test_attention_rows_equal_the_full_attention_at_those_rows_bitwise) {
    for (int isa = 0; isa < CPU_ISA_COUNT; isa++) {
        if (!use_isa(isa)) continue;
        for (int c = 0; c < NR; c++)
            for (int variant = 0; variant < 4; variant++) {
                const RShape *s = &RSHAPES[c];
                int causal = variant & 1, B = s->B, T = s->T, NH = s->NH, KV = s->KV, HD = s->HD;
                TRng r = trng(2000 + 10 * c + variant);
                int *seg = variant & 2 ? random_seg(s, &r) : NULL;
                size_t qs = (size_t)NH * HD, nq = (size_t)B * T * qs, nk = (size_t)B * T * KV * HD;
                float *q = tmalloc(nq), *k = tmalloc(nk), *v = tmalloc(nk), *dsub = tmalloc(nq);
                fill_normal(&r, q, nq, 1.0f);
                fill_normal(&r, k, nk, 1.0f);
                fill_normal(&r, v, nk, 1.0f);
                /* about a third of the valid tokens, increasing, at least one */
                int *rows = malloc((size_t)B * T * sizeof(int)), M = 0;
                for (int b = 0; b < B; b++)
                    for (int t = 0; t < s->lengths[b]; t++)
                        if (trng_uniform(&r) < 0.35 || (M == 0 && t == s->lengths[b] - 1))
                            rows[M++] = b * T + t;
                float *qm = tmalloc((size_t)M * qs), *om = tmalloc((size_t)M * qs),
                      *lm = tmalloc((size_t)NH * M), *dom = tmalloc((size_t)M * qs);
                fill_normal(&r, dom, (size_t)M * qs, 1.0f);
                for (int m = 0; m < M; m++) {
                    memcpy(qm + m * qs, q + rows[m] * qs, qs * sizeof(float));
                    memcpy(dsub + rows[m] * qs, dom + m * qs, qs * sizeof(float));
                }
                float *out = tmalloc(nq), *lse = tmalloc((size_t)B * NH * T);
                kernels_cpu.attention_forward(out, lse, q, k, v, s->lengths, seg, B, T, NH, KV,
                                              HD, causal, KP_FP32);
                kernels_cpu.attention_rows_forward(om, lm, qm, k, v, rows, s->lengths, seg, M, B,
                                                   T, NH, KV, HD, causal, KP_FP32);
                size_t diff = 0;
                for (int m = 0; m < M; m++) {
                    int b = rows[m] / T, t = rows[m] % T;
                    diff += same_bits(om + m * qs, out + rows[m] * qs, qs);
                    for (int h = 0; h < NH; h++)
                        diff += same_bits(lm + (size_t)h * M + m, lse + ((size_t)b * NH + h) * T + t, 1);
                }
                CHECK(diff == 0, "forward: shape %d variant %d kernel %s: %zu values differ", c,
                      variant, cpu_isa_name((CpuIsa)isa), diff);
                /* backward: dout zero at the other rows (dsub) vs the rows' own dout */
                float *dq = tmalloc(nq), *dk = tmalloc(nk), *dv = tmalloc(nk);
                float *dqm = tmalloc((size_t)M * qs), *dkm = tmalloc(nk), *dvm = tmalloc(nk);
                kernels_cpu.attention_backward(dq, dk, dv, dsub, out, lse, q, k, v, s->lengths,
                                               seg, B, T, NH, KV, HD, causal, KP_FP32);
                kernels_cpu.attention_rows_backward(dqm, dkm, dvm, dom, om, lm, qm, k, v, rows,
                                                    s->lengths, seg, M, B, T, NH, KV, HD, causal,
                                                    KP_FP32);
                diff = same_bits(dkm, dk, nk) + same_bits(dvm, dv, nk);
                for (int m = 0; m < M; m++) diff += same_bits(dqm + m * qs, dq + rows[m] * qs, qs);
                double dmax = 0;
                for (size_t i = 0; i < nk; i++) dmax += dk[i] != 0;
                CHECK(diff == 0 && dmax > 0, "backward: shape %d variant %d kernel %s: %zu values "
                      "differ, %g nonzero dk", c, variant, cpu_isa_name((CpuIsa)isa), diff, dmax);
                free(q); free(k); free(v); free(dsub); free(rows); free(qm); free(om); free(lm);
                free(dom); free(out); free(lse); free(dq); free(dk); free(dv); free(dqm);
                free(dkm); free(dvm); free(seg);
            }
    }
    unsetenv("MMRM_CPU_ISA");
}
