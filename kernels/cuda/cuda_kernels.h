/* cuda_kernels.h - the CUDA implementations behind kernels_cuda: host launchers cuda_NAME
 * for every op of kernels/op_list.h, optional ones included (device pointers, launched on
 * cuda_stream()). Families: matmul.cu (cuBLASLt), attention.cu, attention_rows.cu, norm.cu, elementwise.cu
 * (embedding, activations, rope, im2col, pixel shuffle, residual, drop_path),
 * elementwise_bf16.cu (those over bf16 activations), loss.cu, optimizer.cu, bf16.cu. Only kernels/ and runtime/ include this header. */
#ifndef MMRM_KERNELS_CUDA_H
#define MMRM_KERNELS_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/op_list.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CUDA_KERNEL_DECL(name, params) void cuda_##name params;
KERNEL_OPS(CUDA_KERNEL_DECL)
KERNEL_OPS_OPTIONAL(CUDA_KERNEL_DECL)
#undef CUDA_KERNEL_DECL

/* attention_forward's bf16 tensor-core path (attention_fa2.cu), taken by attention.cu at a
 * bf16 precision: returns 0 (nothing done) when HD is not 64 or 128 */
int cuda_attention_fa2_forward(float *out, float *lse, const float *q, const float *k,
                               const float *v, const int *lengths, const int *seg, int B, int T,
                               int NH, int KV, int HD, int causal);
/* attention_backward's bf16 path (dQ, dK, dV on mma from bf16 q, k, v, dout): returns 0
 * (nothing done) when HD is not 64 or 128 */
int cuda_attention_fa2_backward(float *dq, float *dk, float *dv, const float *dout,
                                const float *out, const float *lse, const float *q,
                                const float *k, const float *v, const int *lengths,
                                const int *seg, int B, int T, int NH, int KV, int HD, int causal);

/* the same kernels on bf16 q, k, v (and out), for attention_forward_x16/backward_x16 once
 * attention.cu has chosen them (HD 64 or 128) */
void cuda_attention_fa2_forward_x16(uint16_t *out, float *lse, const uint16_t *q,
                                    const uint16_t *k, const uint16_t *v, const int *lengths,
                                    const int *seg, int B, int T, int NH, int KV, int HD,
                                    int causal);
void cuda_attention_fa2_backward_x16(float *dq, float *dk, float *dv, const float *dout,
                                     const uint16_t *out, const float *lse, const uint16_t *q,
                                     const uint16_t *k, const uint16_t *v, const int *lengths,
                                     const int *seg, int B, int T, int NH, int KV, int HD,
                                     int causal);

/* attention_forward/backward by cuDNN's fused flash attention (attention_cudnn.cu: bf16,
 * one cached execution plan per shape), taken by attention.cu at a bf16 precision without
 * segments when attention_impl is auto or cudnn. Return 0 (nothing done) where cuDNN does
 * not cover the call: a build without cuDNN, HD not a multiple of 8 or above 128, a backward
 * with NH != KV, or (required = 0) a graph no cuDNN engine supports, logged once; with
 * required = 1 that last case is fatal with cuDNN's status string. */
int cuda_attention_cudnn_forward(float *out, float *lse, const float *q, const float *k,
                                 const float *v, const int *lengths, int B, int T, int NH, int KV,
                                 int HD, int causal, int required);
int cuda_attention_cudnn_backward(float *dq, float *dk, float *dv, const float *dout,
                                  const float *out, const float *lse, const float *q,
                                  const float *k, const float *v, const int *lengths, int B, int T,
                                  int NH, int KV, int HD, int causal, int required);

/* the same on bf16 q, k, v (and out) where they are, O written by cuDNN into the bf16 out,
 * for attention_forward_x16/backward_x16 (attention.cu); the same coverage, and 0 where a
 * tensor is not 16-byte aligned; the same bits as the fp32 entries on the widened tensors */
int cuda_attention_cudnn_forward_x16(uint16_t *out, float *lse, const uint16_t *q,
                                     const uint16_t *k, const uint16_t *v, const int *lengths,
                                     int B, int T, int NH, int KV, int HD, int causal,
                                     int required);
int cuda_attention_cudnn_backward_x16(float *dq, float *dk, float *dv, const float *dout,
                                      const uint16_t *out, const float *lse, const uint16_t *q,
                                      const uint16_t *k, const uint16_t *v, const int *lengths,
                                      int B, int T, int NH, int KV, int HD, int causal,
                                      int required);

/* 1 where cuda_attention_cudnn_forward (bwd 0) or _backward (bwd 1) with required = 0
 * would run the call (the plan is built and cached), else 0 */
int cuda_attention_cudnn_covers(int B, int T, int NH, int KV, int HD, int causal, int bwd);

#ifdef __cplusplus
}
#endif

#endif
