/* convert.c - fp32 <-> bf16 storage conversions (activations stored in bf16). */
#include <stdint.h>
#include <string.h>

#include "cpu.h"

/* round to nearest even; NaN stays a (quiet) NaN */
static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

void cpu_f32_to_bf16(uint16_t *dst, /* (n) */
                     const float *src, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) dst[i] = to_bf16(src[i]);
}

void cpu_bf16_to_f32(float *dst, /* (n) */
                     const uint16_t *src, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &u, 4);
    }
}
