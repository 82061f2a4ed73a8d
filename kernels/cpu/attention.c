/* attention.c - scaled dot-product attention, forward and backward, with grouped-query heads,
 * right-padded sequences and an optional causal mask (kernels/kernels.h is the contract).
 * B batch, T tokens, NH query heads, KV key/value heads (query head h reads kv head
 * h / (NH/KV)), HD head dim; L = lengths[b] valid tokens of sequence b.
 * Like flash attention, neither pass keeps scores: the forward runs an online softmax (a
 * running max; the output row is rescaled whenever the max grows, so exp never overflows),
 * and the backward recomputes each probability from q, k and the saved log-sum-exp. Both
 * passes therefore need no scratch memory at all. */
#include "kernels/cpu/cpu.h"

#include <math.h>
#include <string.h>

static inline float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Keys visible from query row t < L: j < L, and j <= t when causal. */
static inline int keys_visible(int t, int L, int causal) { return causal ? t + 1 : L; }

/* One query row against nkeys keys: o = softmax(scale * q.k_j) . v_j, *lse = log sum exp. */
static void attention_row(float *o,           /* (HD) */
                          float *lse,         /* (1) */
                          const float *qr,    /* (HD) */
                          const float *k,     /* key j at k + j*stride */
                          const float *v,     /* value j at v + j*stride */
                          size_t stride, int nkeys, int HD, float scale) {
    float m = -INFINITY, sum = 0.0f;
    memset(o, 0, (size_t)HD * sizeof(float));
    for (int j = 0; j < nkeys; j++) {
        const float *kj = k + j * stride, *vj = v + j * stride;
        float s = scale * dot(qr, kj, HD);
        if (s > m) {
            float r = expf(m - s); /* 0 on the first key, when m = -inf */
            sum *= r;
            for (int d = 0; d < HD; d++) o[d] *= r;
            m = s;
        }
        float p = expf(s - m);
        sum += p;
        for (int d = 0; d < HD; d++) o[d] += p * vj[d];
    }
    float inv = 1.0f / sum;
    for (int d = 0; d < HD; d++) o[d] *= inv;
    *lse = m + logf(sum);
}

void cpu_attention_forward(float *out,         /* (B, T, NH, HD) */
                           float *lse,         /* (B, NH, T) */
                           const float *q,     /* (B, T, NH, HD) */
                           const float *k,     /* (B, T, KV, HD) */
                           const float *v,     /* (B, T, KV, HD) */
                           const int *lengths, /* (B) in [0, T] */
                           int B, int T, int NH, int KV, int HD, int causal) {
    int group = NH / KV;
    float scale = (float)(1.0 / sqrt((double)HD));
    size_t kstride = (size_t)KV * HD;
    /* Rows are independent, so any schedule gives the same bits; dynamic evens out the
     * causal triangle and the padded rows. */
#pragma omp parallel for collapse(3) schedule(dynamic, 8)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < NH; h++) {
                size_t row = ((size_t)b * T + t) * NH + h;
                float *o = out + row * HD;
                float *l = lse + ((size_t)b * NH + h) * T + t;
                int L = lengths[b];
                if (t >= L) {
                    memset(o, 0, (size_t)HD * sizeof(float));
                    *l = 0.0f;
                    continue;
                }
                size_t kv0 = ((size_t)b * T * KV + h / group) * HD; /* key 0 of this kv head */
                attention_row(o, l, q + row * HD, k + kv0, v + kv0, kstride,
                              keys_visible(t, L, causal), HD, scale);
            }
}

/* With P = exp(S - lse), D_t = dout_t . out_t and dS = P * (dout . v^T - D):
 * dq = scale * dS . k, dk = scale * dS^T . q, dv = P^T . dout. One task owns a (b, kv head)
 * pair: the dk/dv rows of that kv head and the dq rows of its query heads, visited in a fixed
 * order (query head, query row, key), so every sum is formed by one thread in one order. */
void cpu_attention_backward(float *dq,          /* (B, T, NH, HD) or NULL */
                            float *dk,          /* (B, T, KV, HD) or NULL */
                            float *dv,          /* (B, T, KV, HD) or NULL */
                            const float *dout,  /* (B, T, NH, HD) */
                            const float *out,   /* (B, T, NH, HD) */
                            const float *lse,   /* (B, NH, T) */
                            const float *q,     /* (B, T, NH, HD) */
                            const float *k,     /* (B, T, KV, HD) */
                            const float *v,     /* (B, T, KV, HD) */
                            const int *lengths, /* (B) in [0, T] */
                            int B, int T, int NH, int KV, int HD, int causal) {
    if (!dq && !dk && !dv) return;
    int group = NH / KV;
    float scale = (float)(1.0 / sqrt((double)HD));
    size_t kstride = (size_t)KV * HD;
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int kvh = 0; kvh < KV; kvh++) {
            int L = lengths[b];
            size_t kv0 = ((size_t)b * T * KV + kvh) * HD;
            for (int h = kvh * group; h < (kvh + 1) * group; h++)
                for (int t = 0; t < L; t++) {
                    size_t row = ((size_t)b * T + t) * NH + h;
                    const float *qr = q + row * HD, *dor = dout + row * HD;
                    float *dqr = dq ? dq + row * HD : NULL;
                    float D = dot(dor, out + row * HD, HD);
                    float lse_t = lse[((size_t)b * NH + h) * T + t];
                    int nkeys = keys_visible(t, L, causal);
                    for (int j = 0; j < nkeys; j++) {
                        size_t kj = kv0 + j * kstride;
                        float p = expf(scale * dot(qr, k + kj, HD) - lse_t);
                        float ds = scale * p * (dot(dor, v + kj, HD) - D);
                        if (dq)
                            for (int d = 0; d < HD; d++) dqr[d] += ds * k[kj + d];
                        if (dk)
                            for (int d = 0; d < HD; d++) dk[kj + d] += ds * qr[d];
                        if (dv)
                            for (int d = 0; d < HD; d++) dv[kj + d] += p * dor[d];
                    }
                }
        }
}
