/* harness.h - the unit-test harness: self-registering tests, checks that report
 * file:line, seeded random inputs, double-precision comparison and central
 * finite-difference gradient checks.
 *
 * A test file defines tests with TEST(name) { ... } and needs no list anywhere:
 * each test registers itself before main runs. Test names state the property checked.
 */
#ifndef MMRM_TEST_HARNESS_H
#define MMRM_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>

typedef void (*TestFn)(void);
void harness_register(const char *name, const char *file, TestFn fn);

#define TEST(name)                                                               \
    static void name(void);                                                      \
    __attribute__((constructor)) static void name##_register(void) {             \
        harness_register(#name, __FILE__, name);                                 \
    }                                                                            \
    static void name(void)

/* Records a failure of the running test (it keeps running) and returns cond. */
int harness_check(int cond, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define CHECK(cond, ...) harness_check(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

/* ---- seeded random numbers for inputs (never all zeros) ---- */
typedef struct { uint64_t s; } TRng;
TRng trng(uint64_t seed);
double trng_uniform(TRng *r);                 /* [0, 1) */
float trng_normal(TRng *r);                   /* N(0, 1) */
void fill_normal(TRng *r, float *x, size_t n, float std);
void fill_uniform(TRng *r, float *x, size_t n, float lo, float hi);
float *tmalloc(size_t n);                     /* calloc'd floats; aborts on OOM */
/* a fixture file's bytes, NUL-terminated (*n its size): exits 2 naming the file when it
 * cannot be read (tests run from the repository root) */
unsigned char *read_fixture(const char *path, size_t *n);

/* ---- comparisons ---- */
/* max |got - ref| / (atol + rtol*|ref|) <= 1 elementwise; reports the worst index. */
int expect_close(const char *what, const float *got, const double *ref, size_t n,
                 double rtol, double atol, const char *file, int line);
#define EXPECT_CLOSE(what, got, ref, n, rtol, atol) \
    expect_close(what, got, ref, n, rtol, atol, __FILE__, __LINE__)
/* bitwise equality of two float arrays */
int expect_same(const char *what, const float *a, const float *b, size_t n,
                const char *file, int line);
#define EXPECT_SAME(what, a, b, n) expect_same(what, a, b, n, __FILE__, __LINE__)

/* ---- gradient checks ----
 * loss(ctx) recomputes the scalar loss (in double) from the current inputs. The check
 * perturbs x[i] by +-h (h = 1e-3 * max(1, |x[i]|)), forms the central difference and
 * compares it with analytic[i] norm-wise: ||a - fd|| <= tol * max(||fd||, 1e-3), and
 * elementwise with |a - fd| <= tol * |fd| + 0.1 * rms(fd) + 1e-4 (reports the worst): the
 * finite difference of a float forward carries absolute noise of about
 * |L| * 6e-8 / h, so the elementwise bound catches a wrong element, not small noise.
 * For n > 300 a fixed-seed sample of 300 indices is checked. */
typedef double (*LossFn)(void *ctx);
int grad_check(const char *what, LossFn loss, void *ctx, float *x, const float *analytic,
               size_t n, double tol, const char *file, int line);
#define GRAD_CHECK(what, loss, ctx, x, analytic, n, tol) \
    grad_check(what, loss, ctx, x, analytic, n, tol, __FILE__, __LINE__)

/* sum_i out[i] * proj[i] in double: the usual scalar used to test backward passes
 * (dL/dout = proj). */
double dot_loss(const float *out, const float *proj, size_t n);

#endif
