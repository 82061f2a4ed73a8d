/* safetensors_internal.h - what the safetensors reader (safetensors_read.c), the shard
 * index (safetensors_index.c) and the writer (safetensors_write.c) share; not for other
 * callers, whose API is runtime/safetensors.h. */
#ifndef MMRM_SAFETENSORS_INTERNAL_H
#define MMRM_SAFETENSORS_INTERNAL_H

#include <stddef.h>

#include <cjson/cJSON.h>

#define ST_MAX_JSON_INT 9007199254740992.0 /* 2^53: larger integers are not exact in cJSON */
#define ST_INDEX_NAME "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"

/* Offset of the first byte that does not start a well-formed UTF-8 sequence (overlong
 * forms, surrogates and code points past U+10FFFF included), or n. */
size_t st_utf8_invalid_at(const unsigned char *s, size_t n);
/* Parses n bytes of JSON that must be exactly one value (whitespace may follow it), after
 * checking the text as the format requires (UTF-8, no NUL byte, no \u0000 escape). NULL with
 * "PATH: WHAT is ..." set. */
cJSON *st_parse_json(const char *path, const char *what, const char *s, size_t n);
/* malloc'd "dir/name" */
char *st_path_join(const char *dir, const char *name);
/* malloc'd directory part of path ("." when it has none) */
char *st_dir_of(const char *path);

#endif
