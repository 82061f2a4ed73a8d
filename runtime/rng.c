/* rng.c - counter-based generator: a 64-bit mix (splitmix64 finaliser, applied twice over
 * seed, stream and counter) is statistically strong enough for initialisation, dropout
 * masks and shuffling, and lets any element be computed independently. */
#include "runtime/rng.h"

#include <math.h>

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

Rng rng_make(uint64_t seed, uint64_t stream) { return (Rng){seed, stream, 0}; }

uint64_t rng_u64_at(const Rng *r, uint64_t counter) {
    uint64_t key = mix64(r->seed + 0x9E3779B97F4A7C15ull * (r->stream + 1));
    return mix64(key ^ mix64(counter + 0xD1B54A32D192ED03ull));
}

uint64_t rng_u64(Rng *r) { return rng_u64_at(r, r->counter++); }

static double u01(uint64_t x) { return (double)(x >> 11) * (1.0 / 9007199254740992.0); }

double rng_uniform(Rng *r) { return u01(rng_u64(r)); }

uint64_t rng_below(Rng *r, uint64_t n) {
    if (n <= 1) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n; /* reject the biased tail */
    uint64_t x;
    do x = rng_u64(r); while (x >= limit);
    return x % n;
}

void rng_fill_normal(Rng *r, float *x, size_t n, float mean, float std) {
    const uint64_t c0 = r->counter;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        double u1 = u01(rng_u64_at(r, c0 + 2 * i));
        double u2 = u01(rng_u64_at(r, c0 + 2 * i + 1));
        if (u1 < 1e-300) u1 = 1e-300;
        x[i] = mean + std * (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
    r->counter = c0 + 2 * n;
}

void rng_fill_uniform(Rng *r, float *x, size_t n, float lo, float hi) {
    const uint64_t c0 = r->counter;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)u01(rng_u64_at(r, c0 + i));
    r->counter = c0 + n;
}
