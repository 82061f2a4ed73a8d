/* test_hf_decoder.c - the decoder against transformers' own Qwen2Model and, for InternLM2's
 * packed wqkv, LlamaModel with q/k/v unpacked as InternLM2's modeling code does, on model
 * directories written by tests/oracle/gen_hf_decoder_fixtures.py (tests/fixtures/hf_decoder/):
 * last hidden states at every real position and the rewards within 1e-5 relative (norm-wise).
 * Run from the repository root. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/checkpoint.h"
#include "runtime/error.h"
#include "runtime/ops.h"
#include "runtime/safetensors.h"
#include "tests/harness.h"

#define HF_DECODER "tests/fixtures/hf_decoder/"

static double rel_err(const float *got, const float *want, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    return sqrt(num) / fmax(sqrt(den), 1e-30);
}

static void *read_tensor(SafeTensors *st, const char *name, int i32, size_t *n) {
    const StEntry *e = st_find(st, name);
    if (!CHECK(e != NULL, "fixture lacks %s", name)) return NULL;
    void *v = xmalloc(e->numel * 4);
    int rc = i32 ? st_read_i32(st, e, v, e->numel) : st_read_f32(st, e, v, e->numel);
    if (!CHECK(rc == 0, "%s", mmrm_last_error())) { free(v); return NULL; }
    *n = e->numel;
    return v;
}

static void run_hf_case(const char *name, const char *want_arch) {
    char dir[256], path[300];
    snprintf(dir, sizeof dir, HF_DECODER "%s", name);
    RewardModel m;
    LoadReport rep;
    if (!CHECK(rm_load(&m, dir, DEV_CPU, NULL, 1, &rep) == 0, "load %s: %s", dir, mmrm_last_error()))
        return;
    CHECK(!strcmp(llm_arch_name(m.cfg.llm.arch), want_arch), "%s: architecture %s", name,
          llm_arch_name(m.cfg.llm.arch));
    /* the untied LM head is the one tensor mmrm does not use */
    CHECK(rep.n_ignored == 1 && !rep.score_initialised, "%s: ignored %d, score initialised %d",
          name, rep.n_ignored, rep.score_initialised);
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    SafeTensors *st = st_open(path);
    if (!CHECK(st != NULL, "%s", mmrm_last_error())) { rm_free(&m); return; }
    size_t n_ids, n_len, n_h, n_r;
    int *ids = read_tensor(st, "input_ids", 1, &n_ids), *lengths = read_tensor(st, "lengths", 1, &n_len);
    float *hidden = read_tensor(st, "hidden", 0, &n_h), *rewards = read_tensor(st, "rewards", 0, &n_r);
    int B = (int)n_len, T = B ? (int)(n_ids / n_len) : 0, H = m.cfg.llm.hidden;
    if (ids && lengths && hidden && rewards &&
        CHECK(n_h == (size_t)B * T * H && n_r == (size_t)B, "%s: fixture shapes", name)) {
        int *image_of = xmalloc(B * sizeof(int));
        for (int b = 0; b < B; b++) image_of[b] = -1; /* text only: the decoder alone */
        RmBatch bt = {B, T, ids, lengths, 0, NULL, NULL, image_of, NULL};
        Graph g;
        graph_init(&g, DEV_CPU, 1 << 20, 0);
        const float *h = tensor_f32(rm_hidden_states(&m, &g, &bt));
        /* only real positions: padded rows are undefined in mmrm */
        size_t real = 0;
        float *got = xmalloc(n_h * sizeof(float)), *want = xmalloc(n_h * sizeof(float));
        for (int b = 0; b < B; b++)
            for (int t = 0; t < lengths[b]; t++, real++) {
                memcpy(got + real * H, h + ((size_t)b * T + t) * H, H * sizeof(float));
                memcpy(want + real * H, hidden + ((size_t)b * T + t) * H, H * sizeof(float));
            }
        double eh = rel_err(got, want, real * H);
        CHECK(eh <= 1e-5, "%s: last hidden state relative error %.3g > 1e-5", name, eh);
        graph_reset(&g);
        const float *r = tensor_f32(rm_forward(&m, &g, &bt));
        double er = rel_err(r, rewards, B);
        CHECK(er <= 1e-5, "%s: rewards relative error %.3g > 1e-5", name, er);
        printf("    %s: hidden states (%zu rows) rel. error %.2e, rewards rel. error %.2e\n", name,
               real, eh, er);
        graph_free(&g);
        free(got); free(want); free(image_of);
    }
    free(ids); free(lengths); free(hidden); free(rewards);
    st_close(st);
    rm_free(&m);
}

TEST(test_hf_qwen2_decoder_matches_transformers_qwen2model) {
    run_hf_case("qwen2_1b", "Qwen2ForCausalLM");
}

TEST(test_hf_internlm2_decoder_matches_transformers_llama_with_wqkv_unpacked_as_internlm2_does) {
    run_hf_case("internlm2_8b", "InternLM2ForCausalLM");
}
