/* harness.c - test runner: runs every registered test (or those whose name contains
 * one of the arguments), prints PASS/FAIL per test and ends with "N passed, N failed". */
#include "harness.h"

#include "runtime/error.h"
#include "runtime/fsutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_TESTS 1024

typedef struct { const char *name, *file; TestFn fn; } TestCase;
static TestCase g_tests[MAX_TESTS];
static int g_ntests;
static int g_failures; /* checks failed in the running test */

void harness_register(const char *name, const char *file, TestFn fn) {
    if (g_ntests == MAX_TESTS) {
        fprintf(stderr, "harness: more than %d tests; raise MAX_TESTS\n", MAX_TESTS);
        exit(2);
    }
    g_tests[g_ntests++] = (TestCase){name, file, fn};
}

int harness_check(int cond, const char *file, int line, const char *fmt, ...) {
    if (cond) return 1;
    g_failures++;
    if (g_failures <= 10) {
        fprintf(stderr, "    %s:%d: ", file, line);
        va_list ap;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
    return 0;
}

TRng trng(uint64_t seed) { return (TRng){seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull}; }

static uint64_t trng_next(TRng *r) { /* splitmix64 */
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double trng_uniform(TRng *r) { return (double)(trng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

float trng_normal(TRng *r) {
    double u1 = trng_uniform(r), u2 = trng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void fill_normal(TRng *r, float *x, size_t n, float std) {
    for (size_t i = 0; i < n; i++) x[i] = std * trng_normal(r);
}

void fill_uniform(TRng *r, float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)trng_uniform(r);
}

float *tmalloc(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) { fprintf(stderr, "harness: out of memory (%zu floats)\n", n); exit(2); }
    return p;
}

unsigned char *read_fixture(const char *path, size_t *n) {
    char *d = fs_read_file(path, n);
    if (!d) {
        fprintf(stderr, "harness: %s (run the tests from the repository root)\n", mmrm_last_error());
        exit(2);
    }
    return (unsigned char *)d;
}

int expect_close(const char *what, const float *got, const double *ref, size_t n,
                 double rtol, double atol, const char *file, int line) {
    double worst = 0; size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]) / (atol + rtol * fabs(ref[i]));
        if (!(e <= worst)) { worst = e; wi = i; } /* also catches NaN */
        if (isnan(e)) break;
    }
    return harness_check(worst <= 1.0, file, line,
                         "%s: element %zu got %.9g want %.9g (error %.3g x tolerance, rtol %g atol %g)",
                         what, wi, n ? got[wi] : 0.0, n ? ref[wi] : 0.0, worst, rtol, atol);
}

int expect_same(const char *what, const float *a, const float *b, size_t n, const char *file,
                int line) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0)
            return harness_check(0, file, line, "%s: element %zu differs: %.9g vs %.9g", what, i,
                                 a[i], b[i]);
    return 1;
}

double dot_loss(const float *out, const float *proj, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)out[i] * proj[i];
    return s;
}

int grad_check(const char *what, LossFn loss, void *ctx, float *x, const float *analytic,
               size_t n, double tol, const char *file, int line) {
    enum { MAXCHECK = 300 };
    size_t m = n < MAXCHECK ? n : MAXCHECK;
    size_t *idx = malloc((m ? m : 1) * sizeof(size_t));
    double *fd = malloc((m ? m : 1) * sizeof(double));
    if (!idx || !fd) { fprintf(stderr, "harness: out of memory\n"); exit(2); }
    TRng r = trng(12345);
    for (size_t k = 0; k < m; k++) idx[k] = n <= MAXCHECK ? k : (size_t)(trng_uniform(&r) * n);
    double num = 0, den = 0;
    for (size_t k = 0; k < m; k++) {
        size_t i = idx[k];
        float x0 = x[i];
        float h = 1e-3f * fmaxf(1.0f, fabsf(x0));
        x[i] = x0 + h;
        double lp = loss(ctx);
        x[i] = x0 - h;
        double lm = loss(ctx);
        x[i] = x0;
        /* the step actually taken in float, not the nominal h */
        double step = (double)(x0 + h) - (double)(x0 - h);
        fd[k] = (lp - lm) / step;
        double d = analytic[i] - fd[k];
        num += d * d;
        den += fd[k] * fd[k];
    }
    double rms = m ? sqrt(den / m) : 0;
    double rel = sqrt(num) / fmax(sqrt(den), 1e-3);
    int ok = harness_check(rel <= tol, file, line,
                           "%s: gradient differs from finite differences norm-wise: %.3g > %.3g",
                           what, rel, tol);
    double worst = 0; size_t wk = 0;
    for (size_t k = 0; k < m; k++) {
        double e = fabs(analytic[idx[k]] - fd[k]) / (tol * fabs(fd[k]) + 0.1 * rms + 1e-4);
        if (!(e <= worst)) { worst = e; wk = k; }
    }
    if (m)
        ok &= harness_check(worst <= 1.0, file, line,
                            "%s: element %zu analytic %.7g vs finite difference %.7g", what,
                            idx[wk], analytic[idx[wk]], fd[wk]);
    free(idx);
    free(fd);
    return ok;
}

static int matches(const char *name, int argc, char **argv) {
    if (argc <= 1) return 1;
    for (int i = 1; i < argc; i++)
        if (strstr(name, argv[i])) return 1;
    return 0;
}

int main(int argc, char **argv) {
    int passed = 0, failed = 0;
    for (int i = 0; i < g_ntests; i++) {
        if (!matches(g_tests[i].name, argc, argv)) continue;
        g_failures = 0;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        g_tests[i].fn();
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (g_failures) {
            failed++;
            printf("FAIL %s (%s, %d failed checks)\n", g_tests[i].name, g_tests[i].file, g_failures);
        } else {
            passed++;
            printf("PASS %s (%.0f ms)\n", g_tests[i].name, ms);
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
