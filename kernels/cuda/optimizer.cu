// optimizer.cu - the parameter-update ops (kernels/cpu/optimizer.c): AdamW with fp32
// state, the sum of squares behind global gradient-norm clipping (result in host memory,
// or accumulated in device memory with the clip coefficient computed there too, so that a
// training step never waits for it), and in-place scaling. Given the bf16 copy of the parameters (params16), the AdamW kernel
// also writes the rounded bf16 weights: one pass over the flat buffer.
#include <math.h>
#include <stdint.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace {

constexpr unsigned kThreads = 256;

// The step scalars are computed on the host exactly as cpu_adamw_update does (double,
// rounded to float), so both devices apply the same fp32 constants.
__global__ void adamw_kernel(float *params, uint16_t *w16, const float *grads, float *m,
                             float *v, size_t n,
                             float beta1, float beta2, float eps, float decay, float step_size,
                             float bias_correction2_sqrt, float one_minus_b1,
                             float one_minus_b2, float grad_scale, const float *scale_dev) {
    if (scale_dev) { // adamw_update_scaled: the clip coefficient from the device; NaN: skip
        grad_scale = *scale_dev;
        if (!isfinite(grad_scale)) return;
    }
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        // cpu_adamw_update's float expressions; every product that feeds an add or subtract
        // is a __fmul_rn, which is never contracted into an FMA, so each operation rounds
        // as on the CPU (sqrtf and / are IEEE-rounded by default)
        float g = grads[i] * grad_scale;
        float p = __fmul_rn(params[i], decay); // decoupled weight decay, before the Adam step
        float mi = __fmul_rn(beta1, m[i]) + __fmul_rn(one_minus_b1, g);
        float vi = __fmul_rn(beta2, v[i]) + __fmul_rn(__fmul_rn(one_minus_b2, g), g);
        float denom = sqrtf(vi) / bias_correction2_sqrt + eps;
        float np = p - __fmul_rn(step_size, mi / denom);
        params[i] = np;
        if (w16) w16[i] = kscalar_bf16_rn(np);
        m[i] = mi;
        v[i] = vi;
    }
}

// sum_squares: a fixed grid (independent of the device and of n) of kSumsqBlocks blocks
// of kThreads threads. Thread t of the grid sums g[t], g[t+S], g[t+2S], ... (S = the grid
// size) in double, in increasing index order; each block combines its threads with a fixed
// shared-memory tree into partial[block]; one block then adds the partials (each thread 4
// consecutive ones in order, then the same tree). The summation order depends only on n.
constexpr unsigned kSumsqBlocks = 1024;
static_assert(kSumsqBlocks == 4 * kThreads, "sumsq_final_kernel: 4 partials per thread");

__global__ void __launch_bounds__(kThreads)
sumsq_partial_kernel(double *partial, const float *g, size_t n) {
    __shared__ double sh[kThreads];
    const size_t S = (size_t)kSumsqBlocks * kThreads;
    size_t i = (size_t)blockIdx.x * kThreads + threadIdx.x;
    double acc = 0.0;
    // four independent loads in flight per iteration; still added in index order
    for (; i + 3 * S < n; i += 4 * S) {
        float a = g[i], b = g[i + S], c = g[i + 2 * S], d = g[i + 3 * S];
        acc += (double)a * a;
        acc += (double)b * b;
        acc += (double)c * c;
        acc += (double)d * d;
    }
    for (; i < n; i += S) acc += (double)g[i] * g[i];
    double total = cuda_block_sum<kThreads>(acc, sh);
    if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

// accumulate: result[0] += the total rounded to float (sum_squares_acc), else result[0] = it
__global__ void __launch_bounds__(kThreads)
sumsq_final_kernel(double *result, const double *partial, int accumulate) {
    __shared__ double sh[kThreads];
    const double *p = partial + 4 * threadIdx.x;
    double acc = p[0];
    acc += p[1];
    acc += p[2];
    acc += p[3];
    double total = cuda_block_sum<kThreads>(acc, sh);
    if (threadIdx.x == 0) result[0] = accumulate ? result[0] + (double)(float)total : total;
}

__global__ void clip_coef_kernel(float *coef, const double *sq, double max_norm) {
    coef[0] = kscalar_clip_coef(sq[0], max_norm);
}

__global__ void scale_kernel(float *x, float s, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] *= s;
}

} // namespace

static void adamw(float *params, uint16_t *params16, const float *grads, float *m, float *v, size_t n,
                  float lr, float beta1, float beta2, float eps, float weight_decay, int t, float grad_scale,
                  const float *scale_dev) {
    if (n == 0) return;
    // the same host computation as cpu_adamw_update (torch's Python-float step scalars)
    float decay = (float)(1.0 - (double)lr * weight_decay);
    double bias_correction1 = 1.0 - pow((double)beta1, (double)t);
    double bias_correction2 = 1.0 - pow((double)beta2, (double)t);
    float step_size = (float)(lr / bias_correction1);
    float bias_correction2_sqrt = (float)sqrt(bias_correction2);
    float one_minus_b1 = 1.0f - beta1, one_minus_b2 = 1.0f - beta2;
    adamw_kernel<<<cuda_blocks(n, kThreads), kThreads, 0, cuda_stream()>>>(
        params, params16, grads, m, v, n, beta1, beta2, eps, decay, step_size, bias_correction2_sqrt,
        one_minus_b1, one_minus_b2, grad_scale, scale_dev);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_adamw_update(float *params, uint16_t *params16, const float *grads, float *m,
                                  float *v,
                                  size_t n, float lr, float beta1, float beta2, float eps,
                                  float weight_decay, int t, float grad_scale) {
    adamw(params, params16, grads, m, v, n, lr, beta1, beta2, eps, weight_decay, t, grad_scale, nullptr);
}

extern "C" void cuda_adamw_update_scaled(float *params, uint16_t *params16, const float *grads, float *m,
                                         float *v, size_t n, float lr, float beta1, float beta2, float eps,
                                         float weight_decay, int t, const float *grad_scale) {
    adamw(params, params16, grads, m, v, n, lr, beta1, beta2, eps, weight_decay, t, 0.0f, grad_scale);
}

extern "C" void cuda_clip_coef(float *coef, const double *sq, double max_norm) {
    clip_coef_kernel<<<1, 1, 0, cuda_stream()>>>(coef, sq, max_norm);
    CUDA_LAUNCH_CHECK();
}

// sq is device memory: nothing waits
extern "C" void cuda_sum_squares_acc(double *sq, const float *g, size_t n) {
    if (n == 0) return; // adds 0
    cudaStream_t st = cuda_stream();
    double *partial = (double *)cuda_scratch(0, kSumsqBlocks * sizeof(double));
    sumsq_partial_kernel<<<kSumsqBlocks, kThreads, 0, st>>>(partial, g, n);
    CUDA_LAUNCH_CHECK();
    sumsq_final_kernel<<<1, kThreads, 0, st>>>(sq, partial, 1);
    CUDA_LAUNCH_CHECK();
}

// out is a HOST pointer: waits for the result.
extern "C" void cuda_sum_squares(float *out, const float *g, size_t n) {
    if (n == 0) {
        out[0] = 0.0f; // what cpu_sum_squares writes for an empty buffer
        return;
    }
    if (cuda_graph_capturing()) { // a graph cannot hand a value to the host
        cuda_graph_fail("sum_squares (its result is read by the host)");
        out[0] = 0.0f;
        return;
    }
    cudaStream_t st = cuda_stream();
    double *partial = (double *)cuda_scratch(0, (kSumsqBlocks + 1) * sizeof(double));
    double *result = partial + kSumsqBlocks;
    sumsq_partial_kernel<<<kSumsqBlocks, kThreads, 0, st>>>(partial, g, n);
    CUDA_LAUNCH_CHECK();
    sumsq_final_kernel<<<1, kThreads, 0, st>>>(result, partial, 0);
    CUDA_LAUNCH_CHECK();
    double total = 0.0;
    CUDA_CHECK(cudaMemcpyAsync(&total, result, sizeof(double), cudaMemcpyDeviceToHost, st));
    CUDA_CHECK(cudaStreamSynchronize(st));
    out[0] = (float)total;
}

extern "C" void cuda_scale_inplace(float *x, float s, size_t n) {
    if (n == 0) return;
    scale_kernel<<<cuda_blocks(n, kThreads), kThreads, 0, cuda_stream()>>>(x, s, n);
    CUDA_LAUNCH_CHECK();
}
