/* test_matmul.c - cpu_matmul_forward / cpu_matmul_backward (nn.Linear) against plain
 * double-precision loops and finite differences, the accumulate and NULL-gradient
 * contracts, and independence of the thread count. Shapes include odd sizes and one
 * larger than the kernel's blocks in every dimension (so block edges and the split of
 * the reduction into depth blocks are exercised). Every GEMM kernel this CPU can run
 * (generic, avx2, avx512: kernels/cpu/simd.h) is tested, switched with MMRM_CPU_ISA, and
 * each is also checked bit for bit against its own float loop (fused multiply-adds or
 * multiply-then-add). */
#include "kernels/cpu/simd.h"
#include "kernels/kernels.h"
#include "tests/harness.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int N, C, OC; } Shape;

/* odd sizes, a degenerate one, and (last) one past 256 in every dimension */
/* the last: several tasks along both dimensions of c and three k-blocks of dweight */
static const Shape SHAPES[] = {{1, 1, 1}, {7, 13, 5}, {33, 70, 19}, {259, 300, 270}, {600, 70, 1100}};
enum { NSHAPES = sizeof SHAPES / sizeof SHAPES[0] };

/* Selects the i-th kernel through MMRM_CPU_ISA; 0 when this CPU cannot run it. */
static int use_isa(int i) {
    if (!cpu_isa_supported((CpuIsa)i)) return 0;
    setenv("MMRM_CPU_ISA", cpu_isa_name((CpuIsa)i), 1);
    return cpu_isa_active() == (CpuIsa)i;
}

#define FOR_EACH_ISA(i) \
    for (int i = 0; i < CPU_ISA_COUNT; i++) \
        if (use_isa(i))

static double *dalloc(size_t n) {
    double *p = calloc(n ? n : 1, sizeof(double));
    if (!p) abort();
    return p;
}

/* ref (N, OC) = inp . weight^T + bias, in double */
static void ref_forward(double *ref, const float *inp, const float *weight, const float *bias,
                        int N, int C, int OC) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int c = 0; c < C; c++) s += (double)inp[n * C + c] * weight[o * C + c];
            ref[n * OC + o] = s;
        }
}

/* the three gradients in double, added to what the arrays hold */
static void ref_backward(double *dinp, double *dweight, double *dbias, const float *dout,
                         const float *inp, const float *weight, int N, int C, int OC) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double g = dout[n * OC + o];
            dbias[o] += g;
            for (int c = 0; c < C; c++) {
                dinp[n * C + c] += g * weight[o * C + c];
                dweight[o * C + c] += g * inp[n * C + c];
            }
        }
}

static double *widen(const float *x, size_t n) {
    double *d = dalloc(n);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

/* float sums of K products of O(1) values: error grows like K * eps at worst */
static double atol_for(int K) { return 1e-5 * sqrt((double)K) + 1e-6; }

TEST(test_matmul_forward_matches_double_reference) {
    FOR_EACH_ISA(isa)
    for (int s = 0; s < NSHAPES; s++) {
        int N = SHAPES[s].N, C = SHAPES[s].C, OC = SHAPES[s].OC;
        TRng r = trng(100 + s);
        float *inp = tmalloc((size_t)N * C), *weight = tmalloc((size_t)OC * C);
        float *bias = tmalloc(OC), *out = tmalloc((size_t)N * OC);
        double *ref = dalloc((size_t)N * OC);
        fill_normal(&r, inp, (size_t)N * C, 1.0f);
        fill_normal(&r, weight, (size_t)OC * C, 1.0f);
        fill_normal(&r, bias, OC, 1.0f);
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            const float *b = with_bias ? bias : NULL;
            fill_normal(&r, out, (size_t)N * OC, 1.0f); /* overwritten, not accumulated */
            kernels_cpu.matmul_forward(out, inp, weight, NULL, b, N, C, OC, KP_FP32);
            ref_forward(ref, inp, weight, b, N, C, OC);
            CHECK(EXPECT_CLOSE("out", out, ref, (size_t)N * OC, 1e-5, atol_for(C)),
                  "shape N=%d C=%d OC=%d, bias %s, kernel %s", N, C, OC,
                  with_bias ? "given" : "NULL", cpu_isa_name((CpuIsa)isa));
        }
        free(inp); free(weight); free(bias); free(out); free(ref);
    }
    unsetenv("MMRM_CPU_ISA");
}

TEST(test_matmul_backward_matches_double_reference_and_accumulates) {
    FOR_EACH_ISA(isa)
    for (int s = 0; s < NSHAPES; s++) {
        int N = SHAPES[s].N, C = SHAPES[s].C, OC = SHAPES[s].OC;
        TRng r = trng(200 + s);
        float *inp = tmalloc((size_t)N * C), *weight = tmalloc((size_t)OC * C);
        float *dout = tmalloc((size_t)N * OC);
        float *dinp = tmalloc((size_t)N * C), *dweight = tmalloc((size_t)OC * C);
        float *dbias = tmalloc(OC);
        fill_normal(&r, inp, (size_t)N * C, 1.0f);
        fill_normal(&r, weight, (size_t)OC * C, 1.0f);
        fill_normal(&r, dout, (size_t)N * OC, 1.0f);
        /* gradients already holding values: the kernel must add to them */
        fill_normal(&r, dinp, (size_t)N * C, 1.0f);
        fill_normal(&r, dweight, (size_t)OC * C, 1.0f);
        fill_normal(&r, dbias, OC, 1.0f);
        double *rinp = widen(dinp, (size_t)N * C), *rweight = widen(dweight, (size_t)OC * C);
        double *rbias = widen(dbias, OC);
        kernels_cpu.matmul_backward(dinp, dweight, dbias, dout, inp, weight, NULL, N, C, OC, KP_FP32);
        ref_backward(rinp, rweight, rbias, dout, inp, weight, N, C, OC);
        CHECK(EXPECT_CLOSE("dinp", dinp, rinp, (size_t)N * C, 1e-5, atol_for(OC)),
              "shape N=%d C=%d OC=%d kernel %s", N, C, OC, cpu_isa_name((CpuIsa)isa));
        CHECK(EXPECT_CLOSE("dweight", dweight, rweight, (size_t)OC * C, 1e-5, atol_for(N)),
              "shape N=%d C=%d OC=%d", N, C, OC);
        CHECK(EXPECT_CLOSE("dbias", dbias, rbias, OC, 1e-5, atol_for(N)),
              "shape N=%d C=%d OC=%d", N, C, OC);
        free(inp); free(weight); free(dout); free(dinp); free(dweight); free(dbias);
        free(rinp); free(rweight); free(rbias);
    }
    unsetenv("MMRM_CPU_ISA");
}

typedef struct {
    float *inp, *weight, *bias, *out, *proj;
    int N, C, OC;
} LinearCtx;

static double linear_loss(void *p) {
    LinearCtx *x = p;
    kernels_cpu.matmul_forward(x->out, x->inp, x->weight, NULL, x->bias, x->N, x->C, x->OC, KP_FP32);
    return dot_loss(x->out, x->proj, (size_t)x->N * x->OC);
}

TEST(test_matmul_backward_matches_finite_differences) {
    /* the two odd shapes: every element is checked for the smaller one, a sample of 300
     * for the larger */
    for (int s = 1; s <= 2; s++) {
        int N = SHAPES[s].N, C = SHAPES[s].C, OC = SHAPES[s].OC;
        TRng r = trng(300 + s);
        LinearCtx x = {tmalloc((size_t)N * C), tmalloc((size_t)OC * C), tmalloc(OC),
                       tmalloc((size_t)N * OC), tmalloc((size_t)N * OC), N, C, OC};
        fill_normal(&r, x.inp, (size_t)N * C, 1.0f);
        fill_normal(&r, x.weight, (size_t)OC * C, 0.5f);
        fill_normal(&r, x.bias, OC, 1.0f);
        fill_normal(&r, x.proj, (size_t)N * OC, 1.0f);
        float *dinp = tmalloc((size_t)N * C), *dweight = tmalloc((size_t)OC * C);
        float *dbias = tmalloc(OC);
        kernels_cpu.matmul_backward(dinp, dweight, dbias, x.proj, x.inp, x.weight, NULL, N, C, OC, KP_FP32);
        GRAD_CHECK("dinp", linear_loss, &x, x.inp, dinp, (size_t)N * C, 5e-3);
        GRAD_CHECK("dweight", linear_loss, &x, x.weight, dweight, (size_t)OC * C, 5e-3);
        GRAD_CHECK("dbias", linear_loss, &x, x.bias, dbias, OC, 5e-3);
        free(x.inp); free(x.weight); free(x.bias); free(x.out); free(x.proj);
        free(dinp); free(dweight); free(dbias);
    }
}

TEST(test_matmul_backward_null_gradients_leave_the_others_unchanged) {
    const Shape sh = SHAPES[2];
    int N = sh.N, C = sh.C, OC = sh.OC;
    size_t nin = (size_t)N * C, nw = (size_t)OC * C;
    TRng r = trng(400);
    float *inp = tmalloc(nin), *weight = tmalloc(nw), *dout = tmalloc((size_t)N * OC);
    float *pre[3] = {tmalloc(nin), tmalloc(nw), tmalloc(OC)};
    float *full[3] = {tmalloc(nin), tmalloc(nw), tmalloc(OC)};
    float *part[3] = {tmalloc(nin), tmalloc(nw), tmalloc(OC)};
    const size_t len[3] = {nin, nw, (size_t)OC};
    const char *name[3] = {"dinp", "dweight", "dbias"};
    fill_normal(&r, inp, nin, 1.0f);
    fill_normal(&r, weight, nw, 1.0f);
    fill_normal(&r, dout, (size_t)N * OC, 1.0f);
    for (int g = 0; g < 3; g++) {
        fill_normal(&r, pre[g], len[g], 1.0f);
        memcpy(full[g], pre[g], len[g] * sizeof(float));
    }
    kernels_cpu.matmul_backward(full[0], full[1], full[2], dout, inp, weight, NULL, N, C, OC, KP_FP32);
    /* every subset of requested gradients, the empty one included */
    for (int mask = 0; mask < 8; mask++) {
        float *arg[3];
        for (int g = 0; g < 3; g++) {
            memcpy(part[g], pre[g], len[g] * sizeof(float));
            arg[g] = mask >> g & 1 ? part[g] : NULL;
        }
        kernels_cpu.matmul_backward(arg[0], arg[1], arg[2], dout, inp, weight, NULL, N, C, OC, KP_FP32);
        for (int g = 0; g < 3; g++)
            CHECK(EXPECT_SAME(name[g], part[g], mask >> g & 1 ? full[g] : pre[g], len[g]),
                  "requested gradients mask %d", mask);
    }
    free(inp); free(weight); free(dout);
    for (int g = 0; g < 3; g++) { free(pre[g]); free(full[g]); free(part[g]); }
}

TEST(test_matmul_is_bitwise_independent_of_thread_count) {
    const Shape sh = SHAPES[NSHAPES - 1];
    int N = sh.N, C = sh.C, OC = sh.OC;
    size_t nin = (size_t)N * C, nw = (size_t)OC * C, nout = (size_t)N * OC;
    TRng r = trng(500);
    float *inp = tmalloc(nin), *weight = tmalloc(nw), *bias = tmalloc(OC), *dout = tmalloc(nout);
    fill_normal(&r, inp, nin, 1.0f);
    fill_normal(&r, weight, nw, 1.0f);
    fill_normal(&r, bias, OC, 1.0f);
    fill_normal(&r, dout, nout, 1.0f);
    float *res[2][4];
    int saved = omp_get_max_threads();
    const int threads[2] = {1, 3};
    FOR_EACH_ISA(isa) {
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(threads[t]);
        res[t][0] = tmalloc(nout);
        res[t][1] = tmalloc(nin);
        res[t][2] = tmalloc(nw);
        res[t][3] = tmalloc(OC);
        kernels_cpu.matmul_forward(res[t][0], inp, weight, NULL, bias, N, C, OC, KP_FP32);
        kernels_cpu.matmul_backward(res[t][1], res[t][2], res[t][3], dout, inp, weight, NULL, N, C, OC, KP_FP32);
    }
    omp_set_num_threads(saved);
    const char *what[4] = {"out", "dinp", "dweight", "dbias"};
    const size_t len[4] = {nout, nin, nw, (size_t)OC};
    for (int k = 0; k < 4; k++)
        CHECK(EXPECT_SAME(what[k], res[0][k], res[1][k], len[k]), "kernel %s",
              cpu_isa_name((CpuIsa)isa));
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 4; k++) free(res[t][k]);
    }
    unsetenv("MMRM_CPU_ISA");
    free(inp); free(weight); free(bias); free(dout);
}

/* s = bias; for c: s += inp * w, in float, rounding as the kernel does */
static float float_dot(const float *x, size_t xs, const float *w, size_t ws, int n, float init,
                       int fma) {
    float s = init;
    for (int c = 0; c < n; c++) s = fma ? fmaf(x[c * xs], w[c * ws], s) : s + x[c * xs] * w[c * ws];
    return s;
}

TEST(test_matmul_each_kernel_equals_its_float_loop_bitwise) {
    /* forward, dinp and dweight (operands read through both strides) at every shape; the
     * float loops depend on the kernel only through its fma flag, so they are computed once
     * per flag, and every kernel accumulates into fresh copies of the same dinp, dweight */
    for (int s = 0; s < NSHAPES; s++) {
        int N = SHAPES[s].N, C = SHAPES[s].C, OC = SHAPES[s].OC, ref_fma = -1;
        size_t nin = (size_t)N * C, nw = (size_t)OC * C, nout = (size_t)N * OC;
        TRng r = trng(600 + s);
        float *inp = tmalloc(nin), *weight = tmalloc(nw), *bias = tmalloc(OC);
        float *dout = tmalloc(nout), *out = tmalloc(nout), *dinp = tmalloc(nin);
        float *dweight = tmalloc(nw), *dinp0 = tmalloc(nin), *dweight0 = tmalloc(nw);
        float *rout = tmalloc(nout), *rinp = tmalloc(nin), *rweight = tmalloc(nw);
        fill_normal(&r, inp, nin, 1.0f);
        fill_normal(&r, weight, nw, 1.0f);
        fill_normal(&r, bias, OC, 1.0f);
        fill_normal(&r, dout, nout, 1.0f);
        fill_normal(&r, dinp0, nin, 1.0f);
        fill_normal(&r, dweight0, nw, 1.0f);
        FOR_EACH_ISA(isa) {
            int fma = cpu_isa_fma((CpuIsa)isa);
            if (fma != ref_fma) {
                for (int n = 0; n < N; n++)
                    for (int o = 0; o < OC; o++)
                        rout[n * OC + o] = float_dot(inp + n * C, 1, weight + o * C, 1, C, bias[o], fma);
                for (int n = 0; n < N; n++)
                    for (int c = 0; c < C; c++)
                        rinp[n * C + c] = float_dot(dout + n * OC, 1, weight + c, C, OC, dinp0[n * C + c], fma);
                for (int o = 0; o < OC; o++)
                    for (int c = 0; c < C; c++)
                        rweight[o * C + c] = float_dot(dout + o, OC, inp + c, C, N, dweight0[o * C + c], fma);
                ref_fma = fma;
            }
            memcpy(dinp, dinp0, nin * sizeof *dinp);
            memcpy(dweight, dweight0, nw * sizeof *dweight);
            kernels_cpu.matmul_forward(out, inp, weight, NULL, bias, N, C, OC, KP_FP32);
            kernels_cpu.matmul_backward(dinp, dweight, NULL, dout, inp, weight, NULL, N, C, OC, KP_FP32);
            CHECK(EXPECT_SAME("out", out, rout, nout), "kernel %s, N=%d C=%d OC=%d",
                  cpu_isa_name((CpuIsa)isa), N, C, OC);
            CHECK(EXPECT_SAME("dinp", dinp, rinp, nin), "kernel %s, N=%d C=%d OC=%d",
                  cpu_isa_name((CpuIsa)isa), N, C, OC);
            CHECK(EXPECT_SAME("dweight", dweight, rweight, nw), "kernel %s, N=%d C=%d OC=%d",
                  cpu_isa_name((CpuIsa)isa), N, C, OC);
        }
        free(inp); free(weight); free(bias); free(dout); free(out); free(dinp); free(dweight);
        free(dinp0); free(dweight0); free(rout); free(rinp); free(rweight);
    }
    unsetenv("MMRM_CPU_ISA");
}

TEST(test_matmul_kernel_choice_reports_what_it_runs) {
    /* unset picks a supported kernel, at least as wide as avx2 where the CPU has it */
    unsetenv("MMRM_CPU_ISA");
    CpuIsa best = cpu_isa_active();
    CHECK(cpu_isa_supported(best), "auto picked %s", cpu_isa_name(best));
    for (int i = 0; i < CPU_ISA_COUNT; i++)
        if (cpu_isa_supported((CpuIsa)i))
            CHECK(best >= (CpuIsa)i, "auto picked %s although %s runs here", cpu_isa_name(best),
                  cpu_isa_name((CpuIsa)i));
}
