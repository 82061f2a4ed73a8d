// loss.cu - the preference losses on reward scores (kernels/cpu/loss.c): Bradley-Terry and
// the shortcut-aware loss, forward and backward fused.
//
// P (pairs per batch) is small, so each loss is one block of 256 threads: thread t handles
// pairs t, t+256, ... in double with the CPU's formulas, writes the per-pair outputs and
// gradients (every pair is owned by one thread, so += needs no atomics), and the batch sum
// is its per-thread strided sums combined by a fixed shared-memory tree. The order depends
// only on P, so the mean is deterministic (it can differ from the CPU's serial sum only in
// the last bits of the double, before the rounding to float).
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/scalar.h"

namespace {

constexpr int kThreads = 256; // a power of two (tree reduction)

__global__ void __launch_bounds__(kThreads)
bt_loss_kernel(float *loss, float *losses, float *dchosen, float *drejected, const float *rc,
               const float *rr, const float *margin, int P, float dloss) {
    __shared__ double sh[kThreads];
    double scale = (double)dloss / P; // d mean / d losses[i] = 1/P
    double sum = 0.0;
    for (int i = threadIdx.x; i < P; i += kThreads) {
        double x = (double)rc[i] - rr[i] - (margin ? margin[i] : 0.0f);
        double l = kscalar_neg_log_sigmoid(x);
        losses[i] = (float)l;
        sum += l;
        double g = scale * kscalar_sigmoid(-x); // d softplus(-x) / dx = -sigmoid(-x)
        if (dchosen) dchosen[i] -= (float)g;
        if (drejected) drejected[i] += (float)g;
    }
    double total = cuda_block_sum<kThreads>(sum, sh);
    if (threadIdx.x == 0) loss[0] = (float)(total / P);
}

__global__ void __launch_bounds__(kThreads)
shortcut_loss_kernel(float *loss, float *w, float *lm, float *lb, float *dmc, float *dmr,
                     float *dbc, float *dbr, const float *mc, const float *mr, const float *bc,
                     const float *br, int P, float eps, float dloss) {
    __shared__ double sh[kThreads];
    double scale = (double)dloss / P;
    double e = eps;
    double sum = 0.0;
    for (int i = threadIdx.x; i < P; i += kThreads) {
        sum += kscalar_shortcut_pair_store(i, mc, mr, bc, br, e, scale, w, lm, lb, dmc, dmr, dbc,
                                           dbr);
    }
    double total = cuda_block_sum<kThreads>(sum, sh);
    if (threadIdx.x == 0) loss[0] = (float)(total / P);
}

} // namespace

// P == 0 still launches: loss[0] becomes 0/0 = NaN exactly as cpu_bt_loss writes it.
extern "C" void cuda_bt_loss(float *loss, float *losses, float *dchosen, float *drejected,
                             const float *rc, const float *rr, const float *margin, int P,
                             float dloss) {
    bt_loss_kernel<<<1, kThreads, 0, cuda_stream()>>>(loss, losses, dchosen, drejected, rc, rr,
                                                      margin, P, dloss);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_shortcut_loss(float *loss, float *w, float *lm, float *lb, float *dmc,
                                   float *dmr, float *dbc, float *dbr, const float *mc,
                                   const float *mr, const float *bc, const float *br, int P,
                                   float eps, float dloss) {
    shortcut_loss_kernel<<<1, kThreads, 0, cuda_stream()>>>(loss, w, lm, lb, dmc, dmr, dbc, dbr,
                                                            mc, mr, bc, br, P, eps, dloss);
    CUDA_LAUNCH_CHECK();
}
