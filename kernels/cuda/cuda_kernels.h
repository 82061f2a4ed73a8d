/* cuda_kernels.h - the CUDA implementations behind kernels_cuda: host launchers with the
 * signatures of kernels/kernels.h (device pointers, launched on cuda_stream()). Families:
 * matmul.cu (cuBLASLt), attention.cu, norm.cu, elementwise.cu (embedding, activations,
 * rope, im2col, pixel shuffle, residual, drop_path), loss.cu, optimizer.cu. */
#ifndef MMRM_KERNELS_CUDA_H
#define MMRM_KERNELS_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void cuda_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int C, int OC);
void cuda_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp, const float *weight, int N, int C, int OC);
void cuda_embedding_forward(float *out, const int *ids, const float *table, int N, int C);
void cuda_embedding_backward(float *dtable, const float *dout, const int *ids, int N, int C);
void cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight, const float *bias, int N, int C, float eps);
void cuda_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp, const float *weight, const float *mean, const float *rstd, int N, int C);
void cuda_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps);
void cuda_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight, const float *rstd, int N, int C);
void cuda_gelu_forward(float *out, const float *inp, size_t n);
void cuda_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);
void cuda_swiglu_forward(float *out, const float *gate, const float *up, size_t n);
void cuda_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n);
void cuda_rope_forward(float *out, const float *inp, const int *pos, int N, int NH, int HD, float theta);
void cuda_rope_backward(float *dinp, const float *dout, const int *pos, int N, int NH, int HD, float theta);
void cuda_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v, const int *lengths, int B, int T, int NH, int KV, int HD, int causal);
void cuda_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse, const float *q, const float *k, const float *v, const int *lengths, int B, int T, int NH, int KV, int HD, int causal);
void cuda_im2col_forward(float *cols, const float *img, int B, int CH, int H, int W, int p);
void cuda_im2col_backward(float *dimg, const float *dcols, int B, int CH, int H, int W, int p);
void cuda_pixel_shuffle_forward(float *out, const float *inp, int B, int G, int C);
void cuda_pixel_shuffle_backward(float *dinp, const float *dout, int B, int G, int C);
void cuda_add_forward(float *out, const float *a, const float *b, size_t n);
void cuda_add_backward(float *da, float *db, const float *dout, size_t n);
void cuda_channel_scale_forward(float *out, const float *inp, const float *scale, int N, int C);
void cuda_channel_scale_backward(float *dinp, float *dscale, const float *dout, const float *inp, const float *scale, int N, int C);
void cuda_drop_path_forward(float *out, const float *inp, const float *keep_scale, int B, size_t per_sample);
void cuda_drop_path_backward(float *dinp, const float *dout, const float *keep_scale, int B, size_t per_sample);
void cuda_bt_loss(float *loss, float *losses, float *dchosen, float *drejected, const float *rc, const float *rr, const float *margin, int P, float dloss);
void cuda_shortcut_loss(float *loss, float *w, float *lm, float *lb, float *dmc, float *dmr, float *dbc, float *dbr, const float *mc, const float *mr, const float *bc, const float *br, int P, float eps, float dloss);
void cuda_adamw_update(float *params, const float *grads, float *m, float *v, size_t n, float lr, float beta1, float beta2, float eps, float weight_decay, int t, float grad_scale);
void cuda_sum_squares(float *out, const float *g, size_t n);
void cuda_scale_inplace(float *x, float s, size_t n);
void cuda_f32_to_bf16(uint16_t *dst, const float *src, size_t n);
void cuda_matmul_forward_x16(float *out, const uint16_t *inp, const float *weight, const float *bias, int N, int C, int OC);
void cuda_matmul_backward_x16(float *dinp, float *dweight, float *dbias, const float *dout, const uint16_t *inp, const float *weight, int N, int C, int OC);
void cuda_bf16_to_f32(float *dst, const uint16_t *src, size_t n);

#ifdef __cplusplus
}
#endif

#endif
