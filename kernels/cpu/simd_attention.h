/* simd_attention.h - the attention kernels and a vectorised expf as a template, included
 * once by each kernels/cpu/attention_<isa>.c after it defines:
 *   ATTN_KERNEL  the AttnKernel constant to define (simd.h)
 *   TGT          a function attribute (target("avx2")) or nothing
 *   VW           floats per vector
 *   AK_MADD(acc, a, b)  acc + a * b on vf: fused (avx2, avx512) or not (generic)
 * Everything is vectorised over keys: a task packs the keys and values of its sequence and
 * kv head transposed (HD x Tp, Tp = L rounded up to VW, zero padded), so a query row's
 * scores, the probabilities' products with the values and the backward's key/value
 * gradients are VW keys per vector operation, with no remainder over the head dimension.
 * Where HD is a multiple of VW, the sums over keys (the output's P . V, dq's dS . K) run VW
 * head dims at a time over the untransposed rows instead, which needs no lane sums.
 * The products summed over the head dim or over keys use AK_MADD (FMA on avx2/avx512), the
 * expf multiplies then adds: the bits differ between ISAs, never between thread counts, since each task owns its outputs and visits them in
 * a fixed order. */
#include "kernels/cpu/simd.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

typedef float vf __attribute__((vector_size(VW * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(VW * sizeof(float))));
typedef uint32_t vu __attribute__((vector_size(VW * sizeof(float))));

TGT static inline vf ak_load(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
TGT static inline void ak_store(float *p, vf v) { memcpy(p, &v, sizeof v); }
/* a broadcast: (vf){0} + x would add 0.0f to x first, an addition per use (and -0 made +0) */
#if VW == 4
#define AK_LANES(x) x, x, x, x
#elif VW == 8
#define AK_LANES(x) x, x, x, x, x, x, x, x
#elif VW == 16
#define AK_LANES(x) x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x
#endif
TGT static inline vf ak_splat(float x) { return (vf){AK_LANES(x)}; }
#undef AK_LANES
/* m ? a : b lane by lane (m all ones or all zeros) */
TGT static inline vf ak_sel(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); }
TGT static inline float ak_hsum(vf v) {
    float a[VW];
    memcpy(a, &v, sizeof a);
    float s = 0.0f;
    for (int i = 0; i < VW; i++) s += a[i];
    return s;
}
TGT static inline float ak_hmax(vf v) {
    float a[VW];
    memcpy(a, &v, sizeof a);
    float s = a[0];
    for (int i = 1; i < VW; i++) s = a[i] > s ? a[i] : s;
    return s;
}
/* lanes j0 + i < n */
TGT static inline vi ak_below(int j0, int n) {
    vi idx;
    for (int i = 0; i < VW; i++) idx[i] = j0 + i;
    return idx < (vi){0} + n;
}

/* expf lane by lane (Cephes' polynomial, multiply-then-add): within 2 ulp of the correctly
 * rounded result for x in [-87.3, 88] (tests/unit/test_attention.c measures it); 0 below
 * -87.3 (where expf is under FLT_MIN) and -inf, +inf above 88 and for +inf; NaN gives NaN. */
TGT static inline vf ak_exp(vf x) {
    const float lo = -87.3f, hi = 88.0f;
    vi under = x < ak_splat(lo), over = x > ak_splat(hi), nan = x != x;
    vf xc = ak_sel(under, ak_splat(lo), ak_sel(over, ak_splat(hi), x));
    xc = ak_sel(nan, ak_splat(0.0f), xc);
    /* n = round(x / ln 2) by the 1.5 * 2^23 trick (round to nearest even) */
    vf t = xc * 1.44269504088896341f + 12582912.0f;
    vf n = t - 12582912.0f;
    vi ni = (vi)t - (vi)ak_splat(12582912.0f);
    vf r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    vf p = ak_splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    vf y = p * (r * r) + r + 1.0f;
    vf scale = (vf)((vu)(ni + 127) << 23); /* 2^n, n in [-126, 127] */
    y = y * scale;
    y = ak_sel(under, ak_splat(0.0f), y);
    y = ak_sel(over, ak_splat(INFINITY), y);
    return ak_sel(nan, x, y);
}

TGT static void ak_exp_array(float *y, const float *x, size_t n) {
    size_t i = 0;
    for (; i + VW <= n; i += VW) ak_store(y + i, ak_exp(ak_load(x + i)));
    if (i < n) {
        float t[VW] = {0};
        memcpy(t, x + i, (n - i) * sizeof(float));
        vf v = ak_exp(ak_load(t));
        memcpy(t, &v, sizeof t);
        memcpy(y + i, t, (n - i) * sizeof(float));
    }
}

/* xt (HD, Tp) = x rows 0 .. L-1 (row j at x + j*stride) transposed, zero past L */
TGT static void ak_pack_t(float *xt, const float *x, size_t stride, int L, int Tp, int HD) {
    for (int d = 0; d < HD; d++) {
        float *row = xt + (size_t)d * Tp;
        for (int j = 0; j < L; j++) row[j] = x[j * stride + d];
        for (int j = L; j < Tp; j++) row[j] = 0.0f;
    }
}

/* The keys row t sees: [0, a) and [b, c) (kr: simd.h; NULL: the causal/padding rule, with
 * an empty second range, so the loops below visit exactly the blocks they always did). */
TGT static inline void ak_range(const int *kr, int t, int L, int causal, int *a, int *b, int *c) {
    if (kr) {
        *a = kr[3 * t], *b = kr[3 * t + 1], *c = kr[3 * t + 2];
    } else {
        *a = causal ? t + 1 : L;
        *b = *c = *a;
    }
}
/* The two ranges as vector blocks: pass 0 the blocks j = 0, VW, .. below a, pass 1 the
 * blocks j = b, b + VW, .. below c, each with its own buffer (pass 1's indexed from b). So
 * a branch's keys fall in the same lanes wherever the branch sits in its doc: identical
 * responses to one prompt get bitwise identical scores. In a block, lanes at or past the
 * pass's end are masked (they read real or zero keys, never past the packed planes). */
#define AK_PASSES(p, j, a, b, c) \
    for (int p = 0; p < 2; p++) for (int j = p ? (b) : 0; j < (p ? (c) : (a)); j += VW)
#define AK_END(p, a, c) ((p) ? (c) : (a))
#define AK_OFF(p, b) ((p) ? (b) : 0)

/* columns j0 .. j1-1 of xt (HD, Tp) = x rows j transposed, zero for j >= L */
TGT static void ak_pack_range(float *xt, const float *x, size_t stride, int j0, int j1, int L,
                              int Tp, int HD) {
    int jl = j1 < L ? j1 : L;
    for (int d = 0; d < HD; d++) {
        float *row = xt + (size_t)d * Tp;
        for (int j = j0; j < jl; j++) row[j] = x[j * stride + d];
        for (int j = jl > j0 ? jl : j0; j < j1; j++) row[j] = 0.0f;
    }
}

/* Query rows t0 .. t1-1 of query head h of one sequence (row i is token i of the piece, or
 * token ts[i]: simd.h); q, o at row 0 (row stride qs), lse at row 0; k, v at key 0 of the
 * kv head (row stride ks); kr NULL or the tokens' key ranges (simd.h). scratch:
 * (2 * HD + 2 * AK_TILE) * Tp floats, Tp = L rounded up to VW, + VW.
 * Rows go in tiles of up to AK_TILE that share their second key range's start (one branch,
 * or none): each key block loaded serves every row of the tile (scores, then P . V), so a
 * shared prefix's keys are read once per tile, not once per row. A tile visits the union of
 * its rows' blocks; a row's blocks past its own range hold -inf scores, i.e. probabilities
 * 0, which add exact zeros: every row gets the bits it gets alone, whatever its tile. */
TGT static void ak_forward_rows(float *o, float *lse, const float *q, size_t qs, const float *k,
                                const float *v, size_t ks, const int *kr, const int *ts, int L,
                                int t0, int t1, int HD, int causal, float scale, float *scratch) {
    enum { R = AK_TILE };
    int Tp = (L + VW - 1) / VW * VW + VW; /* + VW: pass 1's last block may start at L - 1 */
    float *kt = scratch, *vt = kt + (size_t)HD * Tp, *sb = vt + (size_t)HD * Tp;
    /* the keys any of these rows sees: [0, A) and [B2, C2); only the columns the blocks
     * read are packed (a hidden key there is real and finite, or zero past L) */
    int A = 0, B2 = L, C2 = 0;
    for (int i = t0; i < t1; i++) {
        int a, b, c;
        ak_range(kr, ts ? ts[i] : i, L, causal, &a, &b, &c);
        A = a > A ? a : A;
        if (c > b) B2 = b < B2 ? b : B2, C2 = c > C2 ? c : C2;
    }
    int ja = (A + VW - 1) / VW * VW, jc = C2 + VW < Tp ? C2 + VW : Tp;
    ak_pack_range(kt, k, ks, 0, ja, L, Tp, HD);
    if (C2 > B2) ak_pack_range(kt, k, ks, B2, jc, L, Tp, HD);
    if (HD % VW) {
        ak_pack_range(vt, v, ks, 0, ja, L, Tp, HD);
        if (C2 > B2) ak_pack_range(vt, v, ks, B2, jc, L, Tp, HD);
    }
    for (int i = t0; i < t1;) {
        /* the tile: rows i .. i+nr-1 with the same second range start (br; -1: empty) */
        int ra[R], rc[R], nr = 0, br = -1;
        while (nr < R && i + nr < t1) {
            int a, b, c;
            ak_range(kr, ts ? ts[i + nr] : i + nr, L, causal, &a, &b, &c);
            int cls = c > b ? b : -1;
            if (nr > 0 && cls != br) break;
            br = cls, ra[nr] = a, rc[nr++] = c;
        }
        int tA = 0, tC = 0;
        for (int r = 0; r < nr; r++) tA = ra[r] > tA ? ra[r] : tA, tC = rc[r] > tC ? rc[r] : tC;
        int tB = br >= 0 ? br : tA;
        if (br < 0) tC = tA;
        const float *qr[R];
        float *s[R], *s2[R];
        for (int r = 0; r < R; r++) { /* short tiles repeat their last row, stored once */
            int rr = r < nr ? r : nr - 1;
            if (r >= nr) ra[r] = ra[rr], rc[r] = rc[rr];
            qr[r] = q + (size_t)(i + rr) * qs;
            s[r] = sb + (size_t)2 * rr * Tp, s2[r] = s[r] + Tp;
        }
        vf mx[R];
        for (int r = 0; r < R; r++) mx[r] = ak_splat(-INFINITY);
        AK_PASSES(p, j, tA, tB, tC) {
            vf acc[R];
            for (int r = 0; r < R; r++) acc[r] = ak_splat(0.0f);
            for (int d = 0; d < HD; d++) {
                vf kv = ak_load(kt + (size_t)d * Tp + j);
                for (int r = 0; r < R; r++) acc[r] = AK_MADD(acc[r], ak_splat(qr[r][d]), kv);
            }
            for (int r = 0; r < R; r++) {
                vf sc = ak_sel(ak_below(j, p ? rc[r] : ra[r]), acc[r] * scale, ak_splat(-INFINITY));
                ak_store((p ? s2[r] : s[r]) + (j - AK_OFF(p, tB)), sc);
                mx[r] = ak_sel(sc > mx[r], sc, mx[r]);
            }
        }
        float inv[R], sum[R];
        for (int r = 0; r < nr; r++) {
            float m = ak_hmax(mx[r]);
            vf sumv = ak_splat(0.0f);
            AK_PASSES(p, j, tA, tB, tC) {
                float *sp = (p ? s2[r] : s[r]) + (j - AK_OFF(p, tB));
                vf e = ak_exp(ak_load(sp) - m); /* -inf where hidden: 0 */
                sumv += e;
                ak_store(sp, e);
            }
            sum[r] = ak_hsum(sumv), inv[r] = 1.0f / sum[r];
            lse[i + r] = m + logf(sum[r]);
        }
        if (HD % VW == 0) { /* VW head dims at a time from the values' rows: no lane sums */
            for (int d0 = 0; d0 < HD; d0 += 2 * VW) {
                int two = d0 + 2 * VW <= HD;
                vf acc[R][2];
                for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = ak_splat(0.0f);
                for (int p = 0; p < 2; p++) {
                    int j0 = p ? tB : 0, j1 = p ? tC : tA;
                    for (int j = j0; j < j1; j++) {
                        const float *vr = v + j * ks + d0;
                        vf v0 = ak_load(vr), v1 = two ? ak_load(vr + VW) : v0;
                        for (int r = 0; r < R; r++) {
                            vf w = ak_splat((p ? s2[r] : s[r])[j - j0]);
                            acc[r][0] = AK_MADD(acc[r][0], w, v0);
                            acc[r][1] = AK_MADD(acc[r][1], w, v1);
                        }
                    }
                }
                for (int r = 0; r < nr; r++) {
                    float *orow = o + (size_t)(i + r) * qs + d0;
                    ak_store(orow, acc[r][0] * inv[r]);
                    if (two) ak_store(orow + VW, acc[r][1] * inv[r]);
                }
            }
        } else {
            for (int r = 0; r < nr; r++)
                for (int d = 0; d < HD; d++) {
                    vf acc = ak_splat(0.0f);
                    const float *vrow = vt + (size_t)d * Tp;
                    AK_PASSES(p, j, tA, tB, tC)
                        acc = AK_MADD(acc, ak_load((p ? s2[r] : s[r]) + (j - AK_OFF(p, tB))), ak_load(vrow + j));
                    o[(size_t)(i + r) * qs + d] = ak_hsum(acc) * inv[r];
                }
        }
        i += nr;
    }
}

/* The backward of one sequence and kv head: the query heads h0 .. h0+group-1 (q, dq, dout,
 * out at row 0 of the piece and head h0, head h0+g at + g*HD, row stride qs; lse at row 0
 * of head h0, head h0+g at + g*T), the query rows 0 .. n-1 (row i is token i of the piece,
 * or token ts[i]: simd.h), every visible key (kr and the blocks as in the forward). dk, dv
 * at key 0 of the kv head (row stride ks) get their sums added once at the end. Rows go in
 * the forward's tiles: each key block's k, v, and dk, dv sums loaded once per tile, the rows'
 * terms added in row order (the bits of one row at a time). scratch: (4 * HD + 4 * AK_TILE)
 * * Tp floats. */
TGT static void ak_backward_head(float *dq, float *dk, float *dv, const float *dout,
                                 const float *out, const float *lse, const float *q, size_t qs,
                                 const float *k, const float *v, size_t ks, const int *kr,
                                 const int *ts, int n, int L, int T, int group, int HD,
                                 int causal, float scale, float *scratch) {
    enum { R = AK_TILE };
    int Tp = (L + VW - 1) / VW * VW + VW;
    size_t plane = (size_t)HD * Tp;
    float *kt = scratch, *vt = kt + plane, *dkt = vt + plane, *dvt = dkt + plane, *sb = dvt + plane;
    ak_pack_t(kt, k, ks, L, Tp, HD);
    ak_pack_t(vt, v, ks, L, Tp, HD);
    memset(dkt, 0, 2 * plane * sizeof(float));
    for (int g = 0; g < group; g++)
        for (int i = 0; i < n;) {
            int ra[R], rc[R], nr = 0, br = -1; /* the tile, as in ak_forward_rows */
            while (nr < R && i + nr < n) {
                int a, b, c;
                ak_range(kr, ts ? ts[i + nr] : i + nr, L, causal, &a, &b, &c);
                int cls = c > b ? b : -1;
                if (nr > 0 && cls != br) break;
                br = cls, ra[nr] = a, rc[nr++] = c;
            }
            int tA = 0, tC = 0;
            for (int r = 0; r < nr; r++) tA = ra[r] > tA ? ra[r] : tA, tC = rc[r] > tC ? rc[r] : tC;
            int tB = br >= 0 ? br : tA;
            if (br < 0) tC = tA;
            const float *qr[R], *dor[R];
            float *pb[R][2], *dsb[R][2], D[R], l[R];
            for (int r = 0; r < R; r++) { /* short tiles repeat their last row, stored once */
                int rr = r < nr ? r : nr - 1;
                if (r >= nr) ra[r] = ra[rr], rc[r] = rc[rr];
                size_t off = (size_t)g * HD + (size_t)(i + rr) * qs;
                qr[r] = q + off, dor[r] = dout + off;
                float *b4 = sb + (size_t)4 * rr * Tp;
                pb[r][0] = b4, pb[r][1] = b4 + Tp, dsb[r][0] = b4 + 2 * Tp, dsb[r][1] = b4 + 3 * Tp;
                const float *outr = out + off;
                D[r] = 0.0f;
                for (int d = 0; d < HD; d++) D[r] += dor[r][d] * outr[d];
                l[r] = lse[(size_t)g * T + i + rr];
            }
            AK_PASSES(p, j, tA, tB, tC) {
                vf sc[R], dp[R];
                for (int r = 0; r < R; r++) sc[r] = dp[r] = ak_splat(0.0f);
                for (int d = 0; d < HD; d++) {
                    vf kv = ak_load(kt + (size_t)d * Tp + j), vv = ak_load(vt + (size_t)d * Tp + j);
                    for (int r = 0; r < R; r++) {
                        sc[r] = AK_MADD(sc[r], ak_splat(qr[r][d]), kv);
                        dp[r] = AK_MADD(dp[r], ak_splat(dor[r][d]), vv);
                    }
                }
                for (int r = 0; r < R; r++) {
                    vi in = ak_below(j, p ? rc[r] : ra[r]);
                    vf pj = ak_sel(in, ak_exp(scale * sc[r] - l[r]), ak_splat(0.0f));
                    ak_store(pb[r][p] + (j - AK_OFF(p, tB)), pj);
                    ak_store(dsb[r][p] + (j - AK_OFF(p, tB)), scale * pj * (dp[r] - D[r]));
                }
            }
            if (dq && HD % VW == 0) /* VW head dims at a time from the keys' rows */
                for (int d0 = 0; d0 < HD; d0 += 2 * VW) {
                    int two = d0 + 2 * VW <= HD;
                    vf acc[R][2];
                    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = ak_splat(0.0f);
                    for (int p = 0; p < 2; p++) {
                        int j0 = p ? tB : 0, j1 = p ? tC : tA;
                        for (int j = j0; j < j1; j++) {
                            const float *kr0 = k + j * ks + d0;
                            vf k0 = ak_load(kr0), k1 = two ? ak_load(kr0 + VW) : k0;
                            for (int r = 0; r < R; r++) {
                                vf w = ak_splat(dsb[r][p][j - j0]);
                                acc[r][0] = AK_MADD(acc[r][0], w, k0);
                                acc[r][1] = AK_MADD(acc[r][1], w, k1);
                            }
                        }
                    }
                    for (int r = 0; r < nr; r++) {
                        float *dqr = dq + (size_t)g * HD + (size_t)(i + r) * qs + d0;
                        ak_store(dqr, ak_load(dqr) + acc[r][0]);
                        if (two) ak_store(dqr + VW, ak_load(dqr + VW) + acc[r][1]);
                    }
                }
            else if (dq)
                for (int r = 0; r < nr; r++) {
                    float *dqr = dq + (size_t)g * HD + (size_t)(i + r) * qs;
                    for (int d = 0; d < HD; d++) {
                        vf acc = ak_splat(0.0f);
                        const float *krow = kt + (size_t)d * Tp;
                        AK_PASSES(p, j, tA, tB, tC)
                            acc = AK_MADD(acc, ak_load(dsb[r][p] + (j - AK_OFF(p, tB))), ak_load(krow + j));
                        dqr[d] += ak_hsum(acc);
                    }
                }
            for (int d = 0; d < HD; d++) { /* dk, dv: the tile's rows in order */
                float *krow = dkt + (size_t)d * Tp, *vrow = dvt + (size_t)d * Tp;
                AK_PASSES(p, j, tA, tB, tC) {
                    size_t o = (size_t)(j - AK_OFF(p, tB));
                    if (dk) {
                        vf x = ak_load(krow + j);
                        for (int r = 0; r < nr; r++) x = AK_MADD(x, ak_load(dsb[r][p] + o), ak_splat(qr[r][d]));
                        ak_store(krow + j, x);
                    }
                    if (dv) {
                        vf x = ak_load(vrow + j);
                        for (int r = 0; r < nr; r++) x = AK_MADD(x, ak_load(pb[r][p] + o), ak_splat(dor[r][d]));
                        ak_store(vrow + j, x);
                    }
                }
            }
            i += nr;
        }
    for (int j = 0; j < L; j++)
        for (int d = 0; d < HD; d++) {
            if (dk) dk[j * ks + d] += dkt[(size_t)d * Tp + j];
            if (dv) dv[j * ks + d] += dvt[(size_t)d * Tp + j];
        }
}

#undef AK_PASSES
#undef AK_END
#undef AK_OFF

const AttnKernel ATTN_KERNEL = {ak_forward_rows, ak_backward_head, ak_exp_array, VW};
