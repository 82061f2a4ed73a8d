/* safetensors.h - reading and writing .safetensors files and HF model weight directories.
 *
 * The format: an 8-byte little-endian header length N, N bytes of JSON
 * ({"NAME": {"dtype": "F32", "shape": [2, 3], "data_offsets": [BEGIN, END]}, ...,
 * optionally "__metadata__": {string: string}}), then the data section, which the tensors'
 * [BEGIN, END) ranges tile exactly (no overlap, no hole, nothing left over).
 *
 * Reading maps the file read-only and validates the whole header before anything is
 * returned, as strictly as the reference Rust crate does; every problem is a recoverable
 * error (NULL or -1, mmrm_last_error() is "FILE: tensor NAME: reason"). Values are converted
 * on read: F32, BF16 and F16 to f32 (or to bf16); I32, I64 (range-checked), U8 and BOOL to
 * i32. Other dtypes the format knows (F64, I8, ...) open fine but cannot be read.
 *
 * Writing produces what the Python `safetensors` package produces for the same tensors,
 * byte for byte: tensors ordered by dtype (F32, I32, BF16) then by name, compact JSON,
 * header padded with spaces to a multiple of 8 bytes, __metadata__ keys sorted (Python
 * orders them as a hash map does; sorted is one of its orders). Identical input gives
 * identical bytes. Files are replaced atomically.
 *
 * Implemented in three files: safetensors_read.c (st_*: open, validate, read),
 * safetensors_index.c (mw_*: a model directory, its index and shards) and
 * safetensors_write.c (st_save, st_save_sharded).
 */
#ifndef MMRM_SAFETENSORS_H
#define MMRM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/tensor.h"

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER_BYTES 100000000u /* the Rust crate's limit */

/* On-disk dtypes. The first seven can be read; the rest are recognised (so files holding
 * them open and validate) but st_read_* refuses them. */
typedef enum {
    ST_F32, ST_BF16, ST_F16, ST_I32, ST_I64, ST_U8, ST_BOOL,
    ST_F64, ST_I8, ST_I16, ST_U16, ST_U32, ST_U64, ST_F8_E4M3, ST_F8_E5M2,
    ST_NUM_DTYPES
} StDType;

const char *st_dtype_name(StDType dt); /* "F32", "BF16", ... as in the header */
size_t st_dtype_size(StDType dt);

typedef struct {
    const char *name;
    StDType dtype;
    int ndim;                     /* 0 for a scalar (numel 1) */
    int64_t shape[ST_MAX_DIMS];
    size_t numel;
    size_t nbytes;                /* numel * st_dtype_size(dtype) */
    const void *data;             /* nbytes inside the mapping; not aligned in general */
} StEntry;

typedef struct {
    const char *key;
    const char *value;
} StMeta;

typedef struct SafeTensors SafeTensors;

/* NULL with mmrm_last_error() set when the file cannot be opened or is not valid. */
SafeTensors *st_open(const char *path);
void st_close(SafeTensors *st);
const char *st_path(const SafeTensors *st);

/* Entries in name order (byte-wise strcmp). Entries, names and data stay valid until
 * st_close. */
int st_count(const SafeTensors *st);
const StEntry *st_get(const SafeTensors *st, int i);
/* O(log n); NULL with "FILE: tensor NAME: not found" when absent. */
const StEntry *st_find(const SafeTensors *st, const char *name);

/* __metadata__ pairs in key order; st_meta_get is NULL for an absent key. */
int st_meta_count(const SafeTensors *st);
const StMeta *st_meta_at(const SafeTensors *st, int i);
const char *st_meta_get(const SafeTensors *st, const char *key);

/* Copy-convert all n = numel elements of e (a different n is an error). f32 and bf16 accept
 * F32, BF16, F16 (bf16 from F32/F16 rounds to nearest even); i32 accepts I32, U8, BOOL and
 * I64 when every value fits. Returns 0, or -1 with the file and tensor named. */
int st_read_f32(const SafeTensors *st, const StEntry *e, float *dst, size_t n);
int st_read_bf16(const SafeTensors *st, const StEntry *e, uint16_t *dst, size_t n);
int st_read_i32(const SafeTensors *st, const StEntry *e, int32_t *dst, size_t n);
/* 0 when e has exactly this shape, else -1 with both shapes in the message. */
int st_check_shape(const SafeTensors *st, const StEntry *e, int ndim, const int *shape);

/* ---- HF model weights: model.safetensors, or model.safetensors.index.json + shards ---- */

typedef struct ModelWeights ModelWeights;

/* path is a model directory (model.safetensors is preferred over the index), a
 * .safetensors file or an index .json file. Every shard is opened and validated, and the
 * index must agree with the shards: each listed tensor present in the shard it names, and
 * every tensor in a shard listed for that shard. NULL with mmrm_last_error() set. */
ModelWeights *mw_open(const char *path);
void mw_close(ModelWeights *w);
/* All tensors in name order; *file (when file is not NULL) receives the shard holding it. */
int mw_count(const ModelWeights *w);
const StEntry *mw_get(const ModelWeights *w, int i, const SafeTensors **file);
/* O(log n); NULL with "PATH: tensor NAME: not found" when absent. */
const StEntry *mw_find(const ModelWeights *w, const char *name, const SafeTensors **file);

/* ---- writing ---- */

typedef struct {
    const char *name;
    DType src;                    /* what data holds: DT_F32, DT_BF16 or DT_I32 */
    StDType dtype;                /* on disk: ST_F32 or ST_BF16 from f32/bf16, ST_I32 from i32 */
    int ndim;                     /* 0..ST_MAX_DIMS */
    int64_t shape[ST_MAX_DIMS];
    const void *data;             /* numel elements of src */
} StTensorOut;

/* Writes n tensors (any order in t; names unique, not "__metadata__") and n_meta metadata
 * pairs (written in key order) to path through "PATH.tmp.<pid>", fsync and rename, then
 * fsyncs the directory. On error returns -1, removes the temporary file and leaves an
 * existing path untouched; the one exception is a failed fsync of the directory after the
 * rename, reported with the new file already in place. */
int st_save(const char *path, const StTensorOut *t, int n, const StMeta *meta, int n_meta);

/* Writes the tensors into dir the way HF save_pretrained does: model.safetensors when they
 * fit in max_shard_bytes (of tensor data), else model-0000k-of-0000n.safetensors shards
 * filled greedily in name order (a tensor larger than the limit gets a shard of its own)
 * and model.safetensors.index.json, written last. Each shard carries the metadata. Files of
 * an older save in dir that would shadow or clutter the new one (model.safetensors, the
 * index, model-*-of-*.safetensors) are removed after the new files are in place. */
int st_save_sharded(const char *dir, const StTensorOut *t, int n, const StMeta *meta,
                    int n_meta, size_t max_shard_bytes);

#endif
