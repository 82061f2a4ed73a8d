/* rng.h - seeded, counter-based random numbers.
 *
 * Every draw is a pure function of (seed, stream, counter): value i of a fill is
 * hash(seed, stream, counter + i). Results are therefore reproducible across runs and
 * identical whatever the number of threads that fill a buffer, and a stream can be
 * rewound by saving its counter (recompute segments replay drop_path masks that way).
 */
#ifndef MMRM_RNG_H
#define MMRM_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct Rng {
    uint64_t seed;
    uint64_t stream;  /* independent sequences for one seed: init, dropout, shuffling, ... */
    uint64_t counter; /* next draw */
} Rng;

Rng rng_make(uint64_t seed, uint64_t stream);
uint64_t rng_u64_at(const Rng *r, uint64_t counter); /* the draw at a counter, no state */
uint64_t rng_u64(Rng *r);
double rng_uniform(Rng *r);                          /* [0, 1) with 53 random bits */
uint64_t rng_below(Rng *r, uint64_t n);              /* uniform in [0, n), unbiased */
/* x[i] = mean + std * N(0,1) from draws counter + 2i, counter + 2i + 1 (Box-Muller);
 * advances the counter by 2n. OpenMP-parallel, thread-count independent. */
void rng_fill_normal(Rng *r, float *x, size_t n, float mean, float std);
void rng_fill_uniform(Rng *r, float *x, size_t n, float lo, float hi);

#endif
