/* cmd_merge.c - `mmrm merge`: a base model plus a LoRA adapter (models/lora.h) written out as
 * one model directory with W + (alpha/r) B A in place of each adapted weight and the
 * adapter's score head, which scores as base + adapter does. */
#include <stdio.h>
#include <string.h>

#include "infer/commands.h"
#include "models/checkpoint.h"
#include "models/tokenizer.h"
#include "runtime/error.h"

static const char merge_usage[] =
    "usage: mmrm merge --model BASE --adapter DIR --out DIR [--dtype F32|BF16]\n"
    "\n"
    "Merges a LoRA adapter (adapter_config.json + adapter_model.safetensors: a LoRA run's\n"
    "checkpoint, or one peft wrote) into the base model BASE and writes the merged model\n"
    "(config.json, model.safetensors, the base's tokenizer) into --out: each adapted weight\n"
    "becomes W + (lora_alpha / r) B A and score.weight is the adapter's.\n"
    "\n"
    "  --model BASE    the base model directory the adapter was trained on\n"
    "  --adapter DIR   the adapter directory\n"
    "  --out DIR       where the merged model goes (created)\n"
    "  --dtype T       F32 (default) or BF16 weights\n";

int cmd_merge(int argc, char **argv) {
    const char *base = NULL, *adapter = NULL, *out = NULL, *dtype = "F32";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(merge_usage, stdout);
            return 0;
        }
        const char **dst = !strcmp(a, "--model") ? &base : !strcmp(a, "--adapter") ? &adapter
                         : !strcmp(a, "--out") ? &out : !strcmp(a, "--dtype") ? &dtype : NULL;
        if (!dst) {
            fprintf(stderr, "mmrm: error: merge: unknown argument '%s'\n%s", a, merge_usage);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "mmrm: error: merge: %s needs a value\n%s", a, merge_usage);
            return 2;
        }
        *dst = argv[++i];
    }
    if (!base || !adapter || !out) {
        fprintf(stderr, "mmrm: error: merge: --model, --adapter and --out are required\n%s", merge_usage);
        return 2;
    }
    int freeze[PG_COUNT];
    for (int g = 0; g < PG_COUNT; g++) freeze[g] = 1;
    RewardModel m;
    LoadReport rep;
    if (rm_load_ex(&m, base, DEV_CPU, freeze, 0, 0, -1, NULL, adapter, &rep)) {
        fprintf(stderr, "mmrm: error: %s\n", mmrm_last_error());
        return 1;
    }
    int n = lora_count(&m), r = m.lora.r;
    double alpha = m.lora.alpha;
    lora_merge(&m);
    Tokenizer *tok = NULL;
    int rc = rm_save(&m, out, dtype);
    if (rc == 0 && tokenizer_present(base)) {
        tok = tokenizer_load(base);
        rc = tok ? tokenizer_save(tok, out) : -1;
        if (tok) tokenizer_free(tok);
    }
    rm_free(&m);
    if (rc) {
        fprintf(stderr, "mmrm: error: %s\n", mmrm_last_error());
        return 1;
    }
    printf("merged %s (LoRA r %d, alpha %g, %d linear layers) into %s: %s\n", adapter, r, alpha, n,
           base, out);
    return 0;
}
