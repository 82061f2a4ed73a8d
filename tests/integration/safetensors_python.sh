#!/usr/bin/env bash
# safetensors files against the Python `safetensors` package (tests/oracle/check_safetensors.py):
# what mmrm writes Python loads, byte-identical to Python's own output; what Python writes mmrm
# reads; malformed files both reject. Skipped without python3 + safetensors + numpy (CI has no
# Python ML stack; tests/unit/test_safetensors.c covers the Python-written direction through the
# committed fixture). Builds a small tool from runtime/safetensors_*.c into a temporary directory.
set -euo pipefail
if ! python3 -c "import safetensors, numpy" 2>/dev/null; then
    echo "skipped: python safetensors not installed"
    exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/st_tool.c" <<'EOF'
/* st_tool - the C side of tests/oracle/check_safetensors.py: `write FILE`, `write-sharded DIR
 * BYTES` (its WRITTEN tensors, from the seeded formula both sides share) and `dump PATH`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "runtime/safetensors.h"

static uint32_t hash32(uint32_t seed, uint32_t k) {
    uint32_t x = k * 0x9E3779B1u + seed * 0x85EBCA77u + 0x165667B1u;
    x ^= x >> 15;
    x *= 0x2C1B3C6Du;
    x ^= x >> 12;
    x *= 0x297A2D39u;
    x ^= x >> 15;
    return x;
}
static float seeded(uint32_t seed, uint32_t k) { return (float)(int32_t)hash32(seed, k) * 0x1p-27f; }

static int write_set(const char *path, const char *dir, size_t max_bytes) {
    float a[15], b[7], s[1], z[1];
    uint16_t c[30], d[4];
    int32_t ids[11];
    for (uint32_t k = 0; k < 15; k++) a[k] = seeded(1, k);
    for (uint32_t k = 0; k < 7; k++) b[k] = seeded(2, k);
    for (uint32_t k = 0; k < 30; k++) c[k] = bf16_from_f32(seeded(3, k));
    for (uint32_t k = 0; k < 4; k++) d[k] = bf16_from_f32(seeded(4, k));
    for (uint32_t k = 0; k < 11; k++) ids[k] = (int32_t)hash32(5, k) >> 8;
    s[0] = seeded(6, 0);
    z[0] = seeded(7, 0);
    StTensorOut t[] = {
        {"layers.0.w", DT_F32, ST_F32, 2, {3, 5}, a},
        {"layers.0.b", DT_F32, ST_BF16, 1, {7}, b},
        {"layers.1.w", DT_BF16, ST_BF16, 4, {2, 3, 1, 5}, c},
        {"layers.1.wf", DT_BF16, ST_F32, 2, {4, 1}, d},
        {"ids", DT_I32, ST_I32, 1, {11}, ids},
        {"scalar", DT_F32, ST_F32, 0, {0}, s},
        {"empty", DT_F32, ST_F32, 2, {0, 3}, NULL},
        {"z.last", DT_F32, ST_BF16, 1, {1}, z},
    };
    StMeta meta[] = {{"mmrm", "oracle"}, {"format", "pt"}};
    return path ? st_save(path, t, 8, meta, 2) : st_save_sharded(dir, t, 8, meta, 2, max_bytes);
}

static int dump(const char *path) {
    ModelWeights *w = mw_open(path);
    if (!w) return -1;
    for (int i = 0; i < mw_count(w); i++) {
        const SafeTensors *f;
        const StEntry *e = mw_get(w, i, &f);
        printf("%s\t%s\t", e->name, st_dtype_name(e->dtype));
        for (int d = 0; d < e->ndim; d++) printf(d ? ",%lld" : "%lld", (long long)e->shape[d]);
        printf("\t");
        int is_float = e->dtype == ST_F32 || e->dtype == ST_BF16 || e->dtype == ST_F16;
        void *v = malloc(e->numel * 4 + 4);
        if ((is_float ? st_read_f32(f, e, v, e->numel) : st_read_i32(f, e, v, e->numel)) != 0) {
            free(v);
            mw_close(w);
            return -1;
        }
        for (size_t k = 0; k < e->numel; k++) {
            uint32_t u;
            memcpy(&u, (char *)v + 4 * k, 4);
            if (is_float) printf("%s%08x", k ? "," : "", u);
            else printf("%s%d", k ? "," : "", (int)(int32_t)u);
        }
        printf("\n");
        free(v);
    }
    mw_close(w);
    return 0;
}

int main(int argc, char **argv) {
    int rc = -1;
    if (argc == 3 && strcmp(argv[1], "write") == 0) rc = write_set(argv[2], NULL, 0);
    else if (argc == 4 && strcmp(argv[1], "write-sharded") == 0)
        rc = write_set(NULL, argv[2], strtoull(argv[3], NULL, 10));
    else if (argc == 3 && strcmp(argv[1], "dump") == 0) rc = dump(argv[2]);
    else mmrm_set_error("usage: st_tool write FILE | write-sharded DIR BYTES | dump PATH");
    if (rc != 0) fprintf(stderr, "st_tool: %s\n", mmrm_last_error());
    return rc != 0;
}
EOF
gcc -std=c11 -D_GNU_SOURCE -O1 -fopenmp -Wall -Wextra -Werror -I. "$work/st_tool.c" \
    runtime/safetensors_*.c runtime/strbuf.c runtime/tensor.c runtime/error.c \
    kernels/cpu/convert.c -lcjson -lm -o "$work/st_tool"
python3 tests/oracle/check_safetensors.py check "$work/st_tool" "$work"
