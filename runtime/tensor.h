/* tensor.h - tensors, dtypes and devices.
 *
 * A Tensor is a named, contiguous view of up to 4 dims onto memory it does not own
 * (a flat parameter buffer, the activation arena, a file mapping). Its gradient, when
 * it has one, is a buffer of the same shape in fp32. Devices: cpu now; cuda admitted by
 * the same fields (data then points to device memory, and the op table is chosen by
 * device in runtime/autograd.c).
 */
#ifndef MMRM_TENSOR_H
#define MMRM_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define TENSOR_MAX_DIMS 4
#define TENSOR_NAME_LEN 112

typedef enum { DT_F32 = 0, DT_BF16 = 1, DT_I32 = 2 } DType; /* i32: ids, positions, lengths */
typedef enum { DEV_CPU = 0, DEV_CUDA = 1 } Device;

typedef struct Tensor {
    char name[TENSOR_NAME_LEN];
    DType dtype;
    Device device;
    int ndim;
    int shape[TENSOR_MAX_DIMS];
    size_t numel;
    void *data;
    uint16_t *w16;     /* a parameter's bf16 copy (ParamStore w16, precision = bf16), else NULL */
    float *grad;       /* fp32, same shape; NULL until needed (activations) or never (frozen) */
    int requires_grad; /* receives a gradient in backward */
    int is_param;      /* lives in a ParamStore (its grad is a view of the flat grad buffer) */
} Tensor;

size_t dtype_size(DType dt);
const char *dtype_name(DType dt);
const char *device_name(Device d);

/* Fills shape/ndim/numel/name of t (data untouched). Fatal on a bad rank or dimension. */
void tensor_set_shape(Tensor *t, const char *name, int ndim, const int *shape);
int tensor_same_shape(const Tensor *a, const Tensor *b);
/* "name (2, 3, 4) f32 cpu" into buf, for error messages */
const char *tensor_describe(const Tensor *t, char *buf, size_t len);
static inline float *tensor_f32(const Tensor *t) { return (float *)t->data; }

/* bf16 storage: round-to-nearest-even from f32 (NaN stays NaN), exact widening back. */
uint16_t bf16_from_f32(float f);
float f32_from_bf16(uint16_t b);
void bf16_to_f32_array(float *dst, const uint16_t *src, size_t n);
void f32_to_bf16_array(uint16_t *dst, const float *src, size_t n);

/* device memory (64-byte aligned on the CPU); fatal with the size on failure */
void *device_alloc(Device d, size_t bytes);
void device_free(Device d, void *p);
void device_memset0(Device d, void *p, size_t bytes);
void device_memcpy(Device d, void *dst, const void *src, size_t bytes); /* same device, may overlap */
/* transfers between host memory and memory of device d (plain copies when d is the CPU);
 * to_host waits for the device */
void device_copy_from_host(Device d, void *dst, const void *host_src, size_t bytes);
void device_copy_to_host(Device d, void *host_dst, const void *src, size_t bytes);
/* waits until every queued kernel of d has finished (a no-op on the CPU) */
void device_sync(Device d);
/* the device's compute stream (a cudaStream_t) for libraries that take one (NCCL); NULL on the CPU */
void *device_stream(Device d);
/* CUDA graphs of a step (train key cuda_graphs; kernels/cuda/graph.cu): between begin and
 * end the work queued on a GPU is captured, not run, and uploads from the host are staged;
 * end returns NULL when the capture was launched as a graph (the one kept under key, updated
 * to this capture, or a new one), else the reason it cannot be and nothing captured has run
 * (the caller runs the work again eagerly). Only for a GPU (fatal on the CPU). */
void device_graph_begin(Device d);
const char *device_graph_end(Device d, uint64_t key);
/* graphs instantiated and replayed so far (0 on the CPU) */
void device_graph_counts(Device d, long *captured, long *replayed);
/* GEMM plan-cache lookups so far: hits, and misses (a cuBLASLt heuristic query each; a miss
 * per batch means its shapes change every batch: t_bucket); 0 on the CPU */
void device_plan_stats(Device d, long *hits, long *misses);
/* whether this build carries the CUDA backend */
int device_cuda_compiled(void);
/* visible GPUs (0 in a build without CUDA, or with no GPU or driver; never fatal) */
int device_gpu_count(void);
/* "NVIDIA H200 (sm_90, 139.8 GiB)" for the bound GPU of a CUDA device, "cpu" for the CPU */
const char *device_describe(Device d);
/* Resolves a `device` setting ("auto", "cpu", "cuda", "cuda:N") to a device and binds the
 * GPU (ordinal N, or gpu_ordinal when >= 0 and no :N is given). auto picks the GPU when
 * the build has CUDA and a GPU is visible, else the CPU. Logs the choice when verbose.
 * Returns -1 with mmrm_set_error for an unknown name or an impossible choice. */
int device_resolve(const char *setting, int gpu_ordinal, int verbose, Device *out);
/* The attention implementation (`attention_impl`: "auto", "mmrm" or "cudnn", NULL = auto;
 * kernels/kernels.h AttentionImpl) for device d, set once before the first step. The CPU
 * has one implementation: the name is checked, logged as ignored when verbose, and kept.
 * Returns -1 with mmrm_set_error for an unknown name, or cudnn in a build without cuDNN. */
int device_set_attention_impl(Device d, const char *impl, int verbose);

#endif
