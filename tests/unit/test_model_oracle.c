/* test_model_oracle.c - the reward model against the independent PyTorch reference
 * (tests/oracle/model_oracle.py, fixtures in tests/fixtures/model/<case>/): rewards within
 * 1e-4 relative, every parameter gradient of sum(rewards) and of one Bradley-Terry loss
 * within 1e-3 relative norm-wise, the load-time position embedding resize, and
 * save -> load -> save byte identity. Run from the repository root. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/checkpoint.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "runtime/ops.h"
#include "runtime/safetensors.h"
#include "tests/harness.h"

#define FIX "tests/fixtures/model/"

typedef struct {
    RewardModel m;
    SafeTensors *bt;
    int B, T, n_tiles;
    int *ids, *lengths, *tiles, *image_of;
    float *pixels;
    RmBatch batch;
} Case;

static int *read_i32(SafeTensors *st, const char *name, size_t *n) {
    const StEntry *e = st_find(st, name);
    if (!e) return NULL;
    int *v = xmalloc(e->numel * sizeof(int));
    if (st_read_i32(st, e, v, e->numel)) { free(v); return NULL; }
    if (n) *n = e->numel;
    return v;
}

static float *read_f32(SafeTensors *st, const char *name, size_t *n) {
    const StEntry *e = st_find(st, name);
    if (!e) return NULL;
    float *v = xmalloc(e->numel * sizeof(float));
    if (st_read_f32(st, e, v, e->numel)) { free(v); return NULL; }
    if (n) *n = e->numel;
    return v;
}

static int case_open(Case *c, const char *name, LoadReport *rep) {
    memset(c, 0, sizeof *c);
    char dir[256], path[300];
    snprintf(dir, sizeof dir, FIX "%s", name);
    if (!CHECK(rm_load(&c->m, dir, DEV_CPU, NULL, 1, rep) == 0, "load %s: %s", dir, mmrm_last_error()))
        return -1;
    snprintf(path, sizeof path, "%s/batch.safetensors", dir);
    c->bt = st_open(path);
    if (!CHECK(c->bt != NULL, "%s", mmrm_last_error())) return -1;
    const StEntry *ids = st_find(c->bt, "input_ids");
    c->B = (int)ids->shape[0];
    c->T = (int)ids->shape[1];
    c->ids = read_i32(c->bt, "input_ids", NULL);
    c->lengths = read_i32(c->bt, "lengths", NULL);
    c->tiles = read_i32(c->bt, "tiles_per_sample", NULL);
    size_t np;
    c->pixels = read_f32(c->bt, "pixel_values", &np);
    c->image_of = xmalloc(c->B * sizeof(int));
    for (int b = 0; b < c->B; b++) c->image_of[b] = b; /* each sequence has its own tiles */
    c->batch = (RmBatch){c->B, c->T, c->ids, c->lengths, c->B, c->tiles, c->pixels, c->image_of, NULL};
    return 0;
}

static void case_close(Case *c) {
    rm_free(&c->m);
    st_close(c->bt);
    free(c->ids); free(c->lengths); free(c->tiles); free(c->image_of); free(c->pixels);
}

/* norm-wise relative error of got vs want (floats) */
static double rel_err(const float *got, const float *want, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    return sqrt(num) / fmax(sqrt(den), 1e-12);
}

static void check_grads(Case *c, const char *prefix, double tol) {
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < c->m.ps.n; i++) {
        Tensor *t = params_get(&c->m.ps, i);
        char name[200];
        snprintf(name, sizeof name, "%s%s", prefix, t->name);
        size_t n = 0;
        float *want = read_f32(c->bt, name, &n);
        if (!CHECK(want && n == t->numel, "fixture lacks %s (or its size differs)", name)) {
            free(want);
            continue;
        }
        double den = 0;
        for (size_t k = 0; k < n; k++) den += (double)want[k] * want[k];
        /* an unused layer's gradient is exactly zero in the reference: demand zero */
        double e = den == 0 ? rel_err(want, t->grad, n) : rel_err(t->grad, want, n);
        if (den == 0) {
            double s = 0;
            for (size_t k = 0; k < n; k++) s += fabs(t->grad[k]);
            e = s;
        }
        CHECK(e <= tol, "%s: relative error %.3g > %.3g", name, e, tol);
        if (e > worst) { worst = e; worst_name = t->name; }
        free(want);
    }
    printf("    %sworst gradient error %.2e (%s)\n", prefix, worst, worst_name);
}

static void run_case(const char *name) {
    Case c;
    LoadReport rep;
    if (case_open(&c, name, &rep) != 0) return;
    CHECK(rep.n_ignored == 1 && !rep.score_initialised && !strcmp(rep.disk_dtype, "F32"),
          "load report: ignored %d, score init %d, dtype %s", rep.n_ignored, rep.score_initialised,
          rep.disk_dtype);
    Graph g;
    graph_init(&g, DEV_CPU, 1 << 20, 1);
    /* rewards and d(sum rewards) */
    params_zero_grad(&c.m.ps);
    Tensor *r = rm_forward(&c.m, &g, &c.batch);
    float *want = read_f32(c.bt, "rewards", NULL);
    double ref[16];
    for (int b = 0; b < c.B; b++) ref[b] = want[b];
    EXPECT_CLOSE("rewards", tensor_f32(r), ref, c.B, 1e-4, 1e-5);
    printf("    rewards: relative error %.2e\n", rel_err(tensor_f32(r), want, c.B));
    float ones[16];
    for (int b = 0; b < c.B; b++) ones[b] = 1.0f;
    graph_backward_from(&g, r, ones);
    check_grads(&c, "grad.", 1e-3);
    /* one Bradley-Terry step: sequence 2i chosen, 2i+1 rejected */
    graph_reset(&g);
    params_zero_grad(&c.m.ps);
    r = op_reshape(&g, rm_forward(&c.m, &g, &c.batch), 2, (int[]){c.B, 1});
    int P = c.B / 2, ic[8], ir[8];
    for (int i = 0; i < P; i++) ic[i] = 2 * i, ir[i] = 2 * i + 1;
    Tensor *loss = op_bt_loss(&g, op_gather_rows(&g, r, ic, P), op_gather_rows(&g, r, ir, P), NULL, NULL);
    float *want_loss = read_f32(c.bt, "bt_loss", NULL);
    double lref = want_loss[0];
    EXPECT_CLOSE("bt_loss", tensor_f32(loss), &lref, 1, 1e-4, 1e-6);
    graph_backward(&g, loss);
    check_grads(&c, "bt_grad.", 1e-3);
    free(want); free(want_loss);
    graph_free(&g);
    case_close(&c);
}

TEST(test_qwen2_gqa_model_matches_the_pytorch_reference) { run_case("qwen2_gqa"); }
TEST(test_internlm2_packed_wqkv_qknorm_model_matches_the_pytorch_reference) { run_case("internlm2_qknorm"); }
TEST(test_llama_model_with_resized_position_embedding_matches_the_pytorch_reference) {
    run_case("llama_resized_pos");
}

TEST(test_position_embedding_resize_matches_torch_bicubic) {
    Case c;
    LoadReport rep;
    if (case_open(&c, "llama_resized_pos", &rep) != 0) return;
    CHECK(rep.pos_resized_from == 4, "resized from %d, want 4", rep.pos_resized_from);
    size_t n = 0;
    float *want = read_f32(c.bt, "resized.vision_model.embeddings.position_embedding", &n);
    if (CHECK(want && n == c.m.pos->numel, "fixture resized position embedding")) {
        double *ref = malloc(n * sizeof(double));
        for (size_t i = 0; i < n; i++) ref[i] = want[i];
        EXPECT_CLOSE("resized position embedding", tensor_f32(c.m.pos), ref, n, 1e-5, 1e-6);
        free(ref);
    }
    free(want);
    case_close(&c);
}

TEST(test_save_load_save_is_byte_identical_and_keeps_the_rewards) {
    const char *cases[] = {"qwen2_gqa", "internlm2_qknorm", "llama_resized_pos"};
    for (int k = 0; k < 3; k++) {
        Case c;
        if (case_open(&c, cases[k], NULL) != 0) return;
        char d1[256], d2[256];
        snprintf(d1, sizeof d1, "/tmp/mmrm_test_%d_save1", (int)getpid());
        snprintf(d2, sizeof d2, "/tmp/mmrm_test_%d_save2", (int)getpid());
        CHECK(rm_save(&c.m, d1, "F32") == 0, "save: %s", mmrm_last_error());
        RewardModel m2;
        LoadReport rep;
        CHECK(rm_load(&m2, d1, DEV_CPU, NULL, 1, &rep) == 0, "reload: %s", mmrm_last_error());
        CHECK(rep.n_ignored == 0 && rep.pos_resized_from == 0, "reload resized or ignored tensors");
        EXPECT_SAME("parameters after reload", c.m.ps.data, m2.ps.data, c.m.ps.numel);
        CHECK(rm_save(&m2, d2, "F32") == 0, "second save: %s", mmrm_last_error());
        const char *files[] = {"model.safetensors", "config.json"};
        for (int f = 0; f < 2; f++) {
            char p1[300], p2[300];
            snprintf(p1, sizeof p1, "%s/%s", d1, files[f]);
            snprintf(p2, sizeof p2, "%s/%s", d2, files[f]);
            size_t n1 = 0, n2 = 0;
            unsigned char *b1 = (unsigned char *)fs_read_file(p1, &n1),
                          *b2 = (unsigned char *)fs_read_file(p2, &n2);
            CHECK(b1 && b2 && n1 == n2 && memcmp(b1, b2, n1) == 0, "%s: %s differs between saves",
                  cases[k], files[f]);
            free(b1); free(b2);
            unlink(p1); unlink(p2);
        }
        rmdir(d1); rmdir(d2);
        rm_free(&m2);
        case_close(&c);
    }
}

TEST(test_missing_tensor_is_an_error_and_missing_score_is_initialised) {
    Case c;
    if (case_open(&c, "qwen2_gqa", NULL) != 0) return;
    char d[256];
    snprintf(d, sizeof d, "/tmp/mmrm_test_%d_partial", (int)getpid());
    /* write the model without score.weight, then without one LLM weight */
    for (int pass = 0; pass < 2; pass++) {
        CHECK(rm_save(&c.m, d, "BF16") == 0, "save: %s", mmrm_last_error());
        char path[300];
        snprintf(path, sizeof path, "%s/model.safetensors", d);
        SafeTensors *st = st_open(path);
        int n = st_count(st), k = 0;
        StTensorOut *t = calloc(n, sizeof *t);
        const char *drop = pass == 0 ? "score.weight" : "language_model.model.layers.1.mlp.up_proj.weight";
        uint16_t **bufs = calloc(n, sizeof *bufs);
        for (int i = 0; i < n; i++) {
            const StEntry *e = st_get(st, i);
            if (!strcmp(e->name, drop)) continue;
            bufs[k] = malloc(e->numel * 2);
            st_read_bf16(st, e, bufs[k], e->numel);
            t[k] = (StTensorOut){.name = e->name, .src = DT_BF16, .dtype = ST_BF16, .ndim = e->ndim, .data = bufs[k]};
            memcpy(t[k].shape, e->shape, sizeof e->shape);
            k++;
        }
        char path2[300];
        snprintf(path2, sizeof path2, "%s/model2.safetensors", d);
        CHECK(st_save(path2, t, k, NULL, 0) == 0, "%s", mmrm_last_error());
        st_close(st);
        rename(path2, path);
        for (int i = 0; i < k; i++) free(bufs[i]);
        free(bufs); free(t);
        RewardModel m2;
        LoadReport rep;
        int rc = rm_load(&m2, d, DEV_CPU, NULL, 5, &rep);
        if (pass == 0) {
            CHECK(rc == 0 && rep.score_initialised && !strcmp(rep.disk_dtype, "BF16"),
                  "missing score.weight: rc %d init %d dtype %s (%s)", rc, rep.score_initialised,
                  rep.disk_dtype, mmrm_last_error());
            if (rc == 0) {
                double s = 0;
                for (size_t i = 0; i < m2.score->numel; i++) s += (double)tensor_f32(m2.score)[i] * tensor_f32(m2.score)[i];
                double std = sqrt(s / m2.score->numel), want = 1.0 / (c.m.cfg.llm.hidden + 1);
                CHECK(std > 0.3 * want && std < 3 * want, "score init std %g, want about %g", std, want);
                rm_free(&m2);
            }
        } else {
            CHECK(rc == -1 && strstr(mmrm_last_error(), drop), "missing tensor: %s", mmrm_last_error());
        }
        unlink(path);
        snprintf(path, sizeof path, "%s/config.json", d);
        unlink(path);
    }
    rmdir(d);
    case_close(&c);
}
