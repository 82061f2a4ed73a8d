/* convert.c - fp32 <-> bf16 storage conversions (activations stored in bf16). */
#include <stdint.h>
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "kernels/scalar.h"

void cpu_f32_to_bf16(uint16_t *dst, /* (n) */
                     const float *src, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) dst[i] = kscalar_bf16_rn(src[i]);
}

void cpu_bf16_to_f32(float *dst, /* (n) */
                     const uint16_t *src, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &u, 4);
    }
}
