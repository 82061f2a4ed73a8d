/* parity_main.c - build/gpu_parity: the CUDA backend checked against the CPU backend on
 * random inputs (tests/gpu/parity.h). Built by `make cuda`; run by tests/gpu/run.sh on a
 * GPU machine. Usage: gpu_parity [--precision fp32|bf16|both] [--only GROUP] [--seed S]
 * [--quick]. GROUP: elementwise, norm, loss, matmul, attention, model, mma, bf16act, graph.
 * --quick (for the CPU
 * emulator, build/emu_parity) runs the model group on the tiny config only. Exit status 0
 * when every check passes. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_backend.h"
#include "tests/gpu/parity.h"

double parity_tol(const Parity *p) { return p->bf16 ? 1e-2 : 1e-5; }

int parity_check(Parity *p, const char *what, const float *ref, const float *got, size_t n,
                 double tol) {
    double num = 0, den = 0, maxabs = 0;
    size_t worst_i = 0, nonfinite = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        if (!isfinite(got[i]) && isfinite(ref[i])) nonfinite++;
        num += d * d;
        den += (double)ref[i] * ref[i];
        if (fabs(d) > maxabs) maxabs = fabs(d), worst_i = i;
    }
    double rel = sqrt(num) / fmax(sqrt(den), 1e-30);
    if (n == 0 || (den == 0 && num == 0)) rel = 0;
    int ok = !nonfinite && rel <= tol && isfinite(rel);
    if (tol > 0 && rel / tol > p->worst) p->worst = rel / tol;
    printf("%s %-58s n=%-9zu rel=%.2e (tol %.0e) max|d|=%.2e%s\n", ok ? "ok  " : "FAIL", what, n, rel,
           tol, maxabs, nonfinite ? " NON-FINITE" : "");
    if (!ok && n)
        printf("     worst at %zu: cpu %.8g cuda %.8g\n", worst_i, ref[worst_i], got[worst_i]);
    if (ok) p->passed++;
    else p->failed++;
    return ok;
}

int parity_check_dev(Parity *p, const char *what, const float *ref, const float *d, size_t n) {
    float *got = h_zeros(n);
    d_download(got, d, n);
    int ok = parity_check(p, what, ref, got, n, parity_tol(p));
    free(got);
    return ok;
}

const char *parity_name(const char *fmt, ...) {
    static char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return name;
}

float *h_rand(Parity *p, size_t n, float lo, float hi) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    if (!x) abort();
    rng_fill_uniform(&p->rng, x, n, lo, hi);
    return x;
}

float *h_zeros(size_t n) {
    float *x = calloc(n ? n : 1, sizeof *x);
    if (!x) abort();
    return x;
}

float *h_copy(const float *x, size_t n) {
    float *y = malloc((n ? n : 1) * sizeof *y);
    if (!y) abort();
    memcpy(y, x, n * sizeof *y);
    return y;
}

float *d_upload(const float *h, size_t n) {
    float *d = cuda_malloc((n ? n : 1) * sizeof *d);
    cuda_copy_h2d(d, h, n * sizeof *d);
    return d;
}

int *d_upload_i(const int *h, size_t n) {
    int *d = cuda_malloc((n ? n : 1) * sizeof *d);
    cuda_copy_h2d(d, h, n * sizeof *d);
    return d;
}

float *d_zeros(size_t n) {
    float *d = cuda_malloc((n ? n : 1) * sizeof *d);
    cuda_memset0(d, n * sizeof *d);
    return d;
}

void d_download(float *h, const float *d, size_t n) { cuda_copy_d2h(h, d, n * sizeof *h); }

void d_free(void *d) { cuda_free(d); }

typedef struct {
    const char *name;
    void (*fn)(Parity *);
} Group;

int main(int argc, char **argv) {
    const char *precision = "both", *only = NULL;
    unsigned long long seed = 1234;
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--precision") && i + 1 < argc) precision = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else {
            fprintf(stderr, "usage: gpu_parity [--precision fp32|bf16|both] [--only GROUP] [--seed S] [--quick]\n"
                            "groups: elementwise norm loss matmul attention model mma graph\n");
            return 2;
        }
    }
    if (cuda_device_count() == 0) {
        fprintf(stderr, "gpu_parity: no GPU visible\n");
        return 2;
    }
    cuda_backend_init();
    printf("device: %s\n", cuda_device_description());
    const Group groups[] = {{"elementwise", parity_elementwise}, {"norm", parity_norm},
                            {"loss", parity_loss_optim},         {"matmul", parity_matmul},
                            {"attention", parity_attention},     {"model", parity_model},
                            {"mma", parity_mma},                 {"bf16act", parity_bf16act},
                            {"graph", parity_graph}};
    int passes[2] = {!strcmp(precision, "fp32") || !strcmp(precision, "both"),
                     !strcmp(precision, "bf16") || !strcmp(precision, "both")};
    int passed = 0, failed = 0;
    for (int b = 0; b < 2; b++) {
        if (!passes[b]) continue;
        Parity p = {0};
        p.bf16 = b;
        p.quick = quick;
        p.rng = rng_make(seed, 17 + b);
        printf("== precision %s (tol %.0e)\n", b ? "bf16" : "fp32", parity_tol(&p));
        for (size_t g = 0; g < sizeof groups / sizeof *groups; g++) {
            if (only && strcmp(only, groups[g].name)) continue;
            /* elementwise/norm/loss/mma are the same in both modes: run them once */
            if (b && strcmp(groups[g].name, "matmul") && strcmp(groups[g].name, "model") &&
                strcmp(groups[g].name, "attention") && passes[0])
                continue;
            printf("-- %s\n", groups[g].name);
            fflush(stdout);
            groups[g].fn(&p);
            fflush(stdout);
        }
        printf("== precision %s: %d passed, %d failed, worst rel/tol %.3f\n", b ? "bf16" : "fp32",
               p.passed, p.failed, p.worst);
        passed += p.passed;
        failed += p.failed;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
