/* test_train_config.c - the training configuration (train/train_config.h): the committed
 * configs/internvl2_*.ini against the reference hyper-parameters of spec/algorithm.md written
 * out here, defaults, overrides, every error class with its location and hint, booleans,
 * quotes, lines longer than inih's buffer, and save -> load round trips of random
 * configurations (same struct, same text). Config files go to a mkdtemp folder. */
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/error.h"
#include "tests/harness.h"
#include "train/train_config.h"

static char g_dir[64];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void tmp_begin(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/mmrm_train_config_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        exit(2);
    }
}

static void tmp_end(void) { nftw(g_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS); }

/* writes text to g_dir/name; returns the path (static buffer) */
static const char *write_ini(const char *name, const char *text) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
    return path;
}

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = '\0';
    fclose(f);
    return s;
}

/* the keys every config needs, as a prefix of test files */
#define REQUIRED                         \
    "model_name_or_path = /m/InternVL2\n" \
    "dataset_path = /d/train.jsonl\n"     \
    "output_dir = /o/run\n"

/* loads text as a file; 0 or -1 (the struct is freed either way) */
static int load_text(const char *text, int n_ov, char **ov) {
    TrainConfig c;
    int rc = train_config_load(&c, write_ini("t.ini", text), n_ov, ov);
    if (rc == 0) train_config_free(&c);
    return rc;
}

/* the error of loading text must contain every given fragment */
static void expect_error(const char *text, int n_ov, char **ov, const char *frag1,
                         const char *frag2, const char *frag3) {
    int rc = load_text(text, n_ov, ov);
    const char *err = mmrm_last_error();
    CHECK(rc == -1, "%s: loaded, expected an error with '%s'", frag1, frag1);
    if (rc != -1) return;
    const char *frags[3] = {frag1, frag2, frag3};
    for (int i = 0; i < 3; i++)
        if (frags[i]) CHECK(strstr(err, frags[i]) != NULL, "'%s' not in: %s", frags[i], err);
    CHECK(strchr(err, '\n') == NULL, "one line: %s", err);
}

/* "DIR/t.ini:LINE:" for errors in load_text's file */
static const char *at_line(int line) {
    static char buf[128];
    snprintf(buf, sizeof buf, "%s/t.ini:%d: ", g_dir, line);
    return buf;
}

/* ---- the committed configs ---- */

static void check_reference(const char *path, const char *model_dir, const char *tmpl,
                            int robust) {
    TrainConfig c;
    if (!CHECK(train_config_load(&c, path, 0, NULL) == 0, "%s: %s", path, mmrm_last_error()))
        return;
    /* spec/algorithm.md, "Reference hyper-parameters" */
    CHECK(c.learning_rate == 1e-5, "%s: learning_rate %g", path, c.learning_rate);
    CHECK(c.lr_scheduler_type == SCHED_COSINE, "%s: schedule", path);
    CHECK(c.warmup_ratio == 0.1 && c.warmup_steps == 0, "%s: warmup", path);
    CHECK(c.weight_decay == 0.05, "%s: weight_decay %g", path, c.weight_decay);
    CHECK(c.adam_beta2 == 0.98, "%s: adam_beta2 %g", path, c.adam_beta2);
    CHECK(c.num_train_epochs == 1 && c.max_steps == -1, "%s: epochs", path);
    CHECK(c.per_device_train_batch_size == 4, "%s: batch %d", path,
          c.per_device_train_batch_size);
    CHECK(c.gradient_accumulation_steps == 2, "%s: accumulation", path);
    CHECK(c.max_length == 4096, "%s: max_length %d", path, c.max_length);
    CHECK(c.dynamic_image_size && c.max_dynamic_patch == 6 && c.use_thumbnail,
          "%s: dynamic tiles", path);
    CHECK(c.freeze_backbone && !c.freeze_llm && !c.freeze_mlp, "%s: frozen parts", path);
    CHECK(c.drop_path_rate == 0.1, "%s: drop_path_rate %g", path, c.drop_path_rate);
    CHECK(c.grad_checkpoint, "%s: grad_checkpoint", path);
    CHECK(c.save_steps == 100, "%s: save_steps %d", path, c.save_steps);
    CHECK(c.precision != PRECISION_FP32, "%s: the reference trains in bf16", path);
    /* the reference yaml */
    CHECK(c.logging_steps == 10 && c.save_total_limit == 10, "%s: logging/save limit", path);
    CHECK(strcmp(c.conv_style, tmpl) == 0, "%s: conv_style %s, expected %s", path, c.conv_style,
          tmpl);
    /* placeholders the user edits, obvious as such */
    CHECK(strncmp(c.model_name_or_path, "/path/to/", 9) == 0 &&
              strstr(c.model_name_or_path, model_dir),
          "%s: model %s", path, c.model_name_or_path);
    CHECK(c.n_dataset_paths == 1 && strncmp(c.dataset_paths[0], "/path/to/", 9) == 0,
          "%s: dataset", path);
    CHECK(strncmp(c.output_dir, "/path/to/", 9) == 0, "%s: output_dir %s", path, c.output_dir);
    if (robust) {
        CHECK(c.algorithm == TRAIN_SHORTCUT_AWARE, "%s: algorithm", path);
        CHECK(strcmp(c.bias_model_path, c.model_name_or_path) == 0,
              "%s: the bias model starts from the same checkpoint", path);
        CHECK(c.shortcut_eps == 1e-7, "%s: eps %g", path, c.shortcut_eps);
    } else {
        CHECK(c.algorithm == TRAIN_STANDARD, "%s: algorithm", path);
    }
    train_config_free(&c);
}

TEST(test_committed_configs_carry_the_reference_hyperparameters) {
    static const struct {
        const char *size, *model, *tmpl;
    } m[] = {{"8b", "InternVL2-8B", "internlm2-chat"},
             {"2b", "InternVL2-2B", "internlm2-chat"},
             {"1b", "InternVL2-1B", "Hermes-2"}};
    for (int i = 0; i < 3; i++) {
        char path[96];
        snprintf(path, sizeof path, "configs/internvl2_%s_standard.ini", m[i].size);
        check_reference(path, m[i].model, m[i].tmpl, 0);
        snprintf(path, sizeof path, "configs/internvl2_%s_robust.ini", m[i].size);
        check_reference(path, m[i].model, m[i].tmpl, 1);
    }
}

TEST(test_defaults_are_the_reference_recipe_and_hf_values) {
    tmp_begin();
    TrainConfig c;
    if (CHECK(train_config_load(&c, write_ini("t.ini", REQUIRED), 0, NULL) == 0, "%s",
              mmrm_last_error())) {
        CHECK(c.learning_rate == 1e-5 && c.lr_scheduler_type == SCHED_COSINE &&
                  c.warmup_ratio == 0.1 && c.weight_decay == 0.05 && c.adam_beta2 == 0.98,
              "spec optimiser defaults");
        CHECK(c.num_train_epochs == 1 && c.per_device_train_batch_size == 4 &&
                  c.gradient_accumulation_steps == 2 && c.max_length == 4096,
              "spec batch defaults");
        CHECK(c.max_dynamic_patch == 6 && c.min_dynamic_patch == 1 && c.use_thumbnail &&
                  c.dynamic_image_size && c.force_image_size == 0,
              "image defaults");
        CHECK(c.freeze_backbone && !c.freeze_llm && !c.freeze_mlp && c.grad_checkpoint &&
                  c.drop_path_rate == 0.1,
              "model defaults");
        CHECK(c.adam_beta1 == 0.9 && c.adam_epsilon == 1e-8 && c.max_grad_norm == 1.0 &&
                  c.seed == 42 && c.max_steps == -1 && c.warmup_steps == 0,
              "HF defaults");
        CHECK(c.algorithm == TRAIN_STANDARD && c.shortcut_eps == 1e-7 && c.zero_stage == 0 &&
                  c.resume && !c.overwrite_output_dir && c.save_bias_model &&
                  c.precision == PRECISION_AUTO && c.device == TRAIN_DEVICE_AUTO &&
                  c.on_bad_record == REC_ON_BAD_SKIP,
              "mmrm defaults");
        CHECK(c.save_steps == 100 && c.save_total_limit == 10 && c.logging_steps == 10 &&
                  c.eval_steps == 0,
              "run defaults");
        CHECK(c.image_root && !c.image_root[0] && c.conv_style && !c.conv_style[0] &&
                  c.bias_model_path && !c.bias_model_path[0] && c.n_eval_dataset_paths == 0,
              "unset strings are \"\"");
        CHECK(strcmp(c.model_name_or_path, "/m/InternVL2") == 0 && c.n_dataset_paths == 1 &&
                  strcmp(c.dataset_paths[0], "/d/train.jsonl") == 0 &&
                  strcmp(c.output_dir, "/o/run") == 0,
              "required values");
        train_config_free(&c);
    }
    tmp_end();
}

TEST(test_overrides_win_over_the_file_and_later_overrides_win) {
    tmp_begin();
    char *ov[] = {"learning_rate=3e-4", " seed = 7 ", "dataset_path=a.jsonl, b.jsonl,c.jsonl",
                  "learning_rate=2e-5", "algorithm=shortcut_aware",
                  "bias_model_path=/m/bias"};
    TrainConfig c;
    const char *path = write_ini("t.ini", REQUIRED "learning_rate = 1e-3\nseed = 1\n");
    if (CHECK(train_config_load(&c, path, 6, ov) == 0, "%s", mmrm_last_error())) {
        CHECK(c.learning_rate == 2e-5, "later override wins: %g", c.learning_rate);
        CHECK(c.seed == 7, "override with spaces: %lld", c.seed);
        CHECK(c.n_dataset_paths == 3 && strcmp(c.dataset_paths[0], "a.jsonl") == 0 &&
                  strcmp(c.dataset_paths[1], "b.jsonl") == 0 &&
                  strcmp(c.dataset_paths[2], "c.jsonl") == 0,
              "list override replaces the file's list (%d entries)", c.n_dataset_paths);
        CHECK(c.algorithm == TRAIN_SHORTCUT_AWARE && strcmp(c.bias_model_path, "/m/bias") == 0,
              "algorithm override");
        train_config_free(&c);
    }
    /* without a file, the overrides alone */
    char *only[] = {"init_model_config=/m/config.json", "dataset_path=x.jsonl", "output_dir=o"};
    if (CHECK(train_config_load(&c, NULL, 3, only) == 0, "%s", mmrm_last_error())) {
        CHECK(strcmp(c.init_model_config, "/m/config.json") == 0 && !c.model_name_or_path[0],
              "init_model_config instead of a model path");
        train_config_free(&c);
    }
    tmp_end();
}

/* ---- errors ---- */

TEST(test_unknown_keys_name_file_line_and_the_nearest_key) {
    tmp_begin();
    expect_error(REQUIRED "\n# comment\nlerning_rate = 1e-5\n", 0, NULL, at_line(6),
                 "unknown key 'lerning_rate'", "(did you mean learning_rate?)");
    expect_error("[train]\n" REQUIRED "Per_Device_Train_Batch_Size = 2\n", 0, NULL, at_line(5),
                 "did you mean per_device_train_batch_size?", NULL);
    expect_error(REQUIRED "colour = blue\n", 0, NULL, at_line(4), "unknown key 'colour'",
                 "learning_rate");
    /* the reference's own keys say what to write instead */
    expect_error(REQUIRED "bf16 = true\n", 0, NULL, at_line(4), "precision = bf16", NULL);
    expect_error(REQUIRED "gradient_checkpointing = true\n", 0, NULL, at_line(4),
                 "grad_checkpoint", NULL);
    expect_error(REQUIRED "deepspeed = configs/deepspeed/zero3.json\n", 0, NULL, at_line(4),
                 "zero_stage", NULL);
    char *ov[] = {"lerning_rate=1e-5"};
    expect_error(REQUIRED, 1, ov, "override 'lerning_rate=1e-5': unknown key 'lerning_rate'",
                 "did you mean learning_rate?", NULL);
    char *bad[] = {"learning_rate"};
    expect_error(REQUIRED, 1, bad, "override 'learning_rate': expected key=value", NULL, NULL);
    tmp_end();
}

TEST(test_bad_values_name_the_key_the_value_and_the_valid_range) {
    tmp_begin();
    expect_error(REQUIRED "learning_rate = fast\n", 0, NULL, at_line(4),
                 "learning_rate = 'fast' is not a finite number", NULL);
    expect_error(REQUIRED "learning_rate = 1e-5x\n", 0, NULL, at_line(4), "learning_rate",
                 "not a finite number");
    expect_error(REQUIRED "learning_rate = nan\n", 0, NULL, at_line(4), "learning_rate", NULL);
    expect_error(REQUIRED "per_device_train_batch_size = 4.0\n", 0, NULL, at_line(4),
                 "per_device_train_batch_size = '4.0' is not an integer", NULL);
    expect_error(REQUIRED "save_steps = 99999999999999999999\n", 0, NULL, at_line(4),
                 "save_steps", "not an integer");
    expect_error(REQUIRED "adam_beta2 = 1\n", 0, NULL, at_line(4),
                 "adam_beta2 = 1 is out of range", "[0, 1)");
    expect_error(REQUIRED "per_device_train_batch_size = 0\n", 0, NULL, at_line(4),
                 "out of range", "[1, 65536]");
    expect_error(REQUIRED "max_dynamic_patch = 65\n", 0, NULL, at_line(4), "max_dynamic_patch",
                 "[1, 64]");
    expect_error(REQUIRED "adam_epsilon = 0\n", 0, NULL, at_line(4), "adam_epsilon", "(0, 1]");
    expect_error(REQUIRED "zero_stage = 3\n", 0, NULL, at_line(4), "zero_stage", "[0, 1]");
    expect_error(REQUIRED "max_steps = 0\n", 0, NULL, at_line(4), "max_steps = 0", "-1");
    expect_error(REQUIRED "lr_scheduler_type = cosin\n", 0, NULL, at_line(4),
                 "lr_scheduler_type = 'cosin' is not one of cosine, linear, constant, "
                 "constant_with_warmup",
                 "(did you mean cosine?)");
    expect_error(REQUIRED "device = tpu\n", 0, NULL, at_line(4), "auto, cpu, cuda", NULL);
    expect_error(REQUIRED "freeze_llm = maybe\n", 0, NULL, at_line(4),
                 "freeze_llm = 'maybe' is not a boolean", "true/false, 1/0 or yes/no");
    expect_error(REQUIRED "conv_style = chatml\n", 0, NULL, at_line(4), "conv_style",
                 "internlm2-chat");
    char *empty[] = {"dataset_path=a.jsonl,,b.jsonl"};
    expect_error(REQUIRED, 1, empty, "dataset_path has an empty entry (entry 2", NULL, NULL);
    char *ov[] = {"warmup_ratio=1.5"};
    expect_error(REQUIRED, 1, ov, "override 'warmup_ratio=1.5': warmup_ratio = 1.5 is out",
                 "[0, 1]", NULL);
    char *semi[] = {"output_dir=/o/a ;b"};
    expect_error(REQUIRED, 1, semi, "output_dir", "comment", NULL);
    tmp_end();
}

TEST(test_file_structure_errors_give_the_line) {
    tmp_begin();
    expect_error(REQUIRED "learning_rate = 1e-5\n\nlearning_rate = 2e-5\n", 0, NULL, at_line(6),
                 "learning_rate is set twice (also at line 4)", NULL);
    expect_error(REQUIRED "[model]\nfreeze_llm = true\n", 0, NULL, at_line(5),
                 "section [model] (line 4)", NULL);
    expect_error(REQUIRED "seed = 1\n   2\n", 0, NULL, at_line(5), "indented", NULL);
    expect_error(REQUIRED "just some words\nseed = 1\n", 0, NULL, at_line(4), "key = value",
                 NULL);
    expect_error(REQUIRED "[train\n", 0, NULL, at_line(4), "[train", NULL);
    TrainConfig c;
    CHECK(train_config_load(&c, "/nonexistent/dir/x.ini", 0, NULL) == -1 &&
              strstr(mmrm_last_error(), "/nonexistent/dir/x.ini") &&
              strstr(mmrm_last_error(), "No such file"),
          "missing file: %s", mmrm_last_error());
    CHECK(train_config_load(&c, g_dir, 0, NULL) == -1 && strstr(mmrm_last_error(), g_dir) &&
              strstr(mmrm_last_error(), "cannot read"),
          "a directory: %s", mmrm_last_error());
    tmp_end();
}

TEST(test_missing_required_keys_depend_on_the_algorithm) {
    tmp_begin();
    expect_error("dataset_path = d.jsonl\noutput_dir = o\n", 0, NULL, "model_name_or_path",
                 "init_model_config", NULL);
    expect_error("model_name_or_path = m\noutput_dir = o\n", 0, NULL,
                 "dataset_path is required", NULL, NULL);
    expect_error("model_name_or_path = m\ndataset_path = d.jsonl\noutput_dir =\n", 0, NULL,
                 "output_dir is required", NULL, NULL);
    expect_error(REQUIRED "algorithm = shortcut_aware\n", 0, NULL, at_line(4),
                 "bias_model_path", "init_bias_model_config");
    char *ov[] = {"algorithm=shortcut_aware"};
    expect_error(REQUIRED, 1, ov, "override 'algorithm=shortcut_aware'", "bias_model_path",
                 NULL);
    CHECK(load_text(REQUIRED "algorithm = shortcut_aware\nbias_model_path = m\n", 0, NULL) == 0,
          "bias_model_path: %s", mmrm_last_error());
    CHECK(load_text(REQUIRED "algorithm = shortcut_aware\ninit_bias_model_config = c.json\n", 0,
                    NULL) == 0,
          "init_bias_model_config: %s", mmrm_last_error());
    CHECK(load_text("init_model_config = c.json\ndataset_path = d\noutput_dir = o\n", 0,
                    NULL) == 0,
          "init_model_config: %s", mmrm_last_error());
    CHECK(load_text("init_model_config = c.json\ntokenizer_path = t\ndataset_path = d\noutput_dir = o\n",
                    0, NULL) == 0,
          "tokenizer_path with init_model_config: %s", mmrm_last_error());
    expect_error("model_name_or_path = m\ntokenizer_path = t\ndataset_path = d\noutput_dir = o\n", 0,
                 NULL, at_line(2), "tokenizer_path is for a model built from init_model_config", NULL);
    CHECK(load_text(REQUIRED "bias_model_path = \n", 0, NULL) == 0,
          "standard needs no bias model: %s", mmrm_last_error());
    expect_error(REQUIRED "max_dynamic_patch = 4\nmin_dynamic_patch = 5\n", 0, NULL, at_line(5),
                 "min_dynamic_patch = 5 is larger than max_dynamic_patch = 4", NULL);
    tmp_end();
}

/* ---- values ---- */

TEST(test_booleans_accept_every_spelling_in_any_case) {
    tmp_begin();
    static const char *const spell[] = {"true", "false", "1", "0", "yes", "no"};
    TRng r = trng(11);
    for (int trial = 0; trial < 24; trial++) {
        int s = trial % 6, want = s % 2 == 0;
        char word[8], text[256];
        snprintf(word, sizeof word, "%s", spell[s]);
        for (char *w = word; *w; w++)
            if (trng_uniform(&r) < 0.5 && *w >= 'a' && *w <= 'z') *w = (char)(*w - 'a' + 'A');
        snprintf(text, sizeof text, REQUIRED "freeze_llm = %s\nresume = %s\n", word, word);
        TrainConfig c;
        if (!CHECK(train_config_load(&c, write_ini("t.ini", text), 0, NULL) == 0, "%s: %s",
                   word, mmrm_last_error()))
            continue;
        CHECK(c.freeze_llm == want && c.resume == want, "%s read as %d", word, c.freeze_llm);
        train_config_free(&c);
    }
    expect_error(REQUIRED "resume = on\n", 0, NULL, "resume = 'on' is not a boolean", NULL, NULL);
    tmp_end();
}

TEST(test_quotes_sections_comments_and_enum_case_follow_the_ini_rules) {
    tmp_begin();
    const char *text = "\xEF\xBB\xBF# the reference's yaml values, quoted\n"
                       "model_name_or_path = \"OpenGVLab/InternVL2-8B\"\n"
                       "[Train]\n"
                       "dataset_path = \"a.jsonl\", 'b c.jsonl' ; two files\n"
                       "  ; an indented comment\n"
                       "output_dir: 'out/run;1'\n"
                       "conv_style = \"internlm2-chat\"\n"
                       "lr_scheduler_type = Constant_With_Warmup\r\n"
                       "learning_rate = \"2e-5\"\n"
                       "image_root = it's\n";
    TrainConfig c;
    if (CHECK(train_config_load(&c, write_ini("t.ini", text), 0, NULL) == 0, "%s",
              mmrm_last_error())) {
        CHECK(strcmp(c.model_name_or_path, "OpenGVLab/InternVL2-8B") == 0, "quoted: %s",
              c.model_name_or_path);
        CHECK(c.n_dataset_paths == 2 && strcmp(c.dataset_paths[0], "a.jsonl") == 0 &&
                  strcmp(c.dataset_paths[1], "b c.jsonl") == 0,
              "quoted list entries");
        CHECK(strcmp(c.output_dir, "out/run;1") == 0, "':' separator, ';' inside a word: %s",
              c.output_dir);
        CHECK(strcmp(c.conv_style, "internlm2-chat") == 0, "conv_style");
        CHECK(c.lr_scheduler_type == SCHED_CONSTANT_WITH_WARMUP, "enum in any case, CRLF");
        CHECK(c.learning_rate == 2e-5, "quoted number");
        CHECK(strcmp(c.image_root, "it's") == 0, "a quote inside a value stays: %s",
              c.image_root);
        train_config_free(&c);
    }
    expect_error(REQUIRED "image_root = \"\"x\"\"\n", 0, NULL, at_line(4), "image_root",
                 "quotes");
    tmp_end();
}

TEST(test_lines_longer_than_the_ini_buffer_keep_their_values_and_line_numbers) {
    tmp_begin();
    /* three ~150-character paths: one 480-character line, far past inih's 200 bytes */
    char paths[3][160], text[2048];
    for (int i = 0; i < 3; i++) {
        int n = snprintf(paths[i], sizeof paths[i], "/data/%d/", i);
        for (; n < 150; n++) paths[i][n] = (char)('a' + (n * 7 + i) % 26);
        paths[i][n] = '\0';
    }
    snprintf(text, sizeof text,
             "model_name_or_path = /m\n"
             "dataset_path =   %s , %s,%s   ; the three shards\n"
             "image_root = %s%s\n"
             "output_dir = o\n"
             "# %s%s%s\n"
             "seed = 5\n"
             "lerning_rate = 1\n",
             paths[0], paths[1], paths[2], paths[0], paths[1], paths[0], paths[1], paths[2]);
    TrainConfig c;
    const char *path = write_ini("long.ini", text);
    CHECK(train_config_load(&c, path, 0, NULL) == -1, "the typo on line 7 is found");
    char want[256];
    snprintf(want, sizeof want, "%s:7: unknown key 'lerning_rate'", path);
    CHECK(strstr(mmrm_last_error(), want) != NULL, "line numbers past long lines: %s",
          mmrm_last_error());
    /* the same file without the typo */
    *strstr(text, "lerning_rate") = '\0';
    path = write_ini("long.ini", text);
    if (CHECK(train_config_load(&c, path, 0, NULL) == 0, "%s", mmrm_last_error())) {
        CHECK(c.n_dataset_paths == 3, "three shards: %d", c.n_dataset_paths);
        for (int i = 0; i < 3 && i < c.n_dataset_paths; i++)
            CHECK(strcmp(c.dataset_paths[i], paths[i]) == 0, "shard %d: %s", i,
                  c.dataset_paths[i]);
        char joined[400];
        snprintf(joined, sizeof joined, "%s%s", paths[0], paths[1]);
        CHECK(strcmp(c.image_root, joined) == 0, "300-character value");
        CHECK(c.seed == 5, "key after a long comment");
        train_config_free(&c);
    }
    tmp_end();
}

/* ---- printing and saving ---- */

static int same_list(char **a, int na, char **b, int nb) {
    if (na != nb) return 0;
    for (int i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0) return 0;
    return 1;
}

/* field by field, written out here so that a field the key table forgets is caught */
static int same_config(const TrainConfig *a, const TrainConfig *b) {
    int ok = 1;
#define SAME_STR(f) ok &= CHECK(strcmp(a->f, b->f) == 0, #f ": '%s' vs '%s'", a->f, b->f)
#define SAME(f) ok &= CHECK(a->f == b->f, #f " differs")
    SAME_STR(model_name_or_path);
    SAME_STR(init_model_config);
    SAME(algorithm);
    SAME_STR(bias_model_path);
    SAME_STR(init_bias_model_config);
    SAME_STR(tokenizer_path);
    SAME(freeze_llm);
    SAME(freeze_backbone);
    SAME(freeze_mlp);
    SAME(grad_checkpoint);
    SAME(share_prefix);
    SAME(packing);
    SAME(drop_path_rate);
    SAME(lora_r);
    SAME(lora_alpha);
    SAME(lora_dropout);
    ok &= CHECK(same_list(a->lora_target_modules, a->n_lora_target_modules,
                          b->lora_target_modules, b->n_lora_target_modules),
                "lora_target_modules differ");
    SAME(precision);
    SAME(device);
    SAME(cuda_graphs);
    ok &= CHECK(same_list(a->dataset_paths, a->n_dataset_paths, b->dataset_paths,
                          b->n_dataset_paths),
                "dataset_paths differ");
    ok &= CHECK(same_list(a->eval_dataset_paths, a->n_eval_dataset_paths, b->eval_dataset_paths,
                          b->n_eval_dataset_paths),
                "eval_dataset_paths differ");
    SAME_STR(image_root);
    SAME_STR(conv_style);
    SAME(max_length);
    SAME(t_bucket);
    SAME(dynamic_image_size);
    SAME(min_dynamic_patch);
    SAME(max_dynamic_patch);
    SAME(use_thumbnail);
    SAME(force_image_size);
    SAME(on_bad_record);
    SAME(num_workers);
    SAME(num_train_epochs);
    SAME(max_steps);
    SAME(per_device_train_batch_size);
    SAME(gradient_accumulation_steps);
    SAME(learning_rate);
    SAME(lr_scheduler_type);
    SAME(warmup_ratio);
    SAME(warmup_steps);
    SAME(weight_decay);
    SAME(adam_beta1);
    SAME(adam_beta2);
    SAME(adam_epsilon);
    SAME(max_grad_norm);
    SAME(shortcut_eps);
    SAME(seed);
    SAME(zero_stage);
    SAME_STR(output_dir);
    SAME(overwrite_output_dir);
    SAME(resume);
    SAME(logging_steps);
    SAME(save_steps);
    SAME(save_total_limit);
    SAME(save_bias_model);
    SAME(eval_steps);
#undef SAME
#undef SAME_STR
    return ok;
}

/* a random double in [lo, hi) with all 53 bits in play (the save must keep every bit) */
static double rand_double(TRng *r, double lo, double hi) {
    return lo + (hi - lo) * trng_uniform(r);
}

/* Overrides that set every key to a random valid value; returns their number. */
static int random_overrides(TRng *r, char buf[][512], char **ov) {
    int n = 0;
    char path[300];
    int plen = 1 + (int)(trng_uniform(r) * 260); /* past inih's line buffer half the time */
    static const char chars[] = "abcdefghij/._-xyz0123";
    for (int i = 0; i < plen; i++) path[i] = chars[(int)(trng_uniform(r) * (sizeof chars - 1))];
    path[plen] = '\0';
#define OV(...) (snprintf(buf[n], 512, __VA_ARGS__), ov[n] = buf[n], n++)
    OV("model_name_or_path=/m/%s", path);
    OV("init_model_config=%s", trng_uniform(r) < 0.5 ? "" : "cfg/config.json");
    OV("algorithm=%s", trng_uniform(r) < 0.5 ? "standard" : "shortcut_aware");
    OV("bias_model_path=/b/%s", path);
    OV("init_bias_model_config=%s", trng_uniform(r) < 0.5 ? "" : "b.json");
    OV("freeze_llm=%d", trng_uniform(r) < 0.5);
    OV("freeze_backbone=%s", trng_uniform(r) < 0.5 ? "no" : "YES");
    OV("freeze_mlp=%d", trng_uniform(r) < 0.5);
    OV("grad_checkpoint=%d", trng_uniform(r) < 0.5);
    OV("share_prefix=%d", trng_uniform(r) < 0.5);
    OV("packing=%d", trng_uniform(r) < 0.5);
    OV("drop_path_rate=%.17g", rand_double(r, 0, 1));
    OV("precision=%s", (const char *[]){"auto", "fp32", "bf16"}[(int)(trng_uniform(r) * 3)]);
    OV("device=%s", (const char *[]){"auto", "cpu", "cuda"}[(int)(trng_uniform(r) * 3)]);
    OV("dataset_path=%s,d2.jsonl, d 3.jsonl", path);
    OV("eval_dataset_path=%s", trng_uniform(r) < 0.5 ? "" : "e1.jsonl,e2.jsonl");
    OV("image_root=%s", trng_uniform(r) < 0.5 ? "" : "img root/x");
    OV("conv_style=%s",
       (const char *[]){"", "internlm2-chat", "Hermes-2"}[(int)(trng_uniform(r) * 3)]);
    OV("max_length=%d", 1 + (int)(trng_uniform(r) * 8192));
    OV("t_bucket=%d", (int)(trng_uniform(r) * 200));
    OV("dynamic_image_size=%d", trng_uniform(r) < 0.5);
    int lo = 1 + (int)(trng_uniform(r) * 6);
    OV("min_dynamic_patch=%d", lo);
    OV("max_dynamic_patch=%d", lo + (int)(trng_uniform(r) * 20));
    OV("use_thumbnail=%d", trng_uniform(r) < 0.5);
    OV("force_image_size=%d", (int)(trng_uniform(r) * 1000));
    OV("on_bad_record=%s", trng_uniform(r) < 0.5 ? "skip" : "fail");
    OV("num_workers=%d", (int)(trng_uniform(r) * 9));
    OV("num_train_epochs=%.17g", rand_double(r, 0.01, 5));
    OV("max_steps=%d", trng_uniform(r) < 0.5 ? -1 : 1 + (int)(trng_uniform(r) * 1000));
    OV("per_device_train_batch_size=%d", 1 + (int)(trng_uniform(r) * 16));
    OV("gradient_accumulation_steps=%d", 1 + (int)(trng_uniform(r) * 16));
    OV("learning_rate=%.17g", rand_double(r, 0, 1e-3));
    static const char *const schedules[] = {"cosine", "linear", "constant",
                                            "constant_with_warmup"};
    OV("lr_scheduler_type=%s", schedules[(int)(trng_uniform(r) * 4)]);
    OV("warmup_ratio=%.17g", rand_double(r, 0, 1));
    OV("warmup_steps=%d", (int)(trng_uniform(r) * 500));
    OV("weight_decay=%.17g", rand_double(r, 0, 0.2));
    OV("adam_beta1=%.17g", rand_double(r, 0, 1));
    OV("adam_beta2=%.17g", rand_double(r, 0.9, 1));
    OV("adam_epsilon=%.17g", rand_double(r, 1e-10, 1e-6));
    OV("max_grad_norm=%.17g", rand_double(r, 0, 10));
    OV("shortcut_eps=%.17g", rand_double(r, 1e-9, 1e-5));
    OV("seed=%llu", (unsigned long long)(trng_uniform(r) * 9e18));
    OV("zero_stage=%d", trng_uniform(r) < 0.5);
    OV("output_dir=out/%s", path);
    OV("overwrite_output_dir=%d", trng_uniform(r) < 0.5);
    OV("resume=%d", trng_uniform(r) < 0.5);
    OV("logging_steps=%d", 1 + (int)(trng_uniform(r) * 100));
    OV("save_steps=%d", (int)(trng_uniform(r) * 1000));
    OV("save_total_limit=%d", (int)(trng_uniform(r) * 20));
    OV("save_bias_model=%d", trng_uniform(r) < 0.5);
    OV("eval_steps=%d", (int)(trng_uniform(r) * 1000));
#undef OV
    return n;
}

static const char *override_value(char **ov, int n, const char *key) {
    size_t len = strlen(key);
    for (int i = 0; i < n; i++)
        if (strncmp(ov[i], key, len) == 0 && ov[i][len] == '=') return ov[i] + len + 1;
    return "";
}

TEST(test_save_then_load_gives_the_same_config_and_the_same_text) {
    tmp_begin();
    TRng r = trng(2024);
    for (int trial = 0; trial < 20; trial++) {
        static char buf[64][512];
        char *ov[64];
        int n = random_overrides(&r, buf, ov);
        TrainConfig a, b;
        if (!CHECK(train_config_load(&a, NULL, n, ov) == 0, "trial %d: %s", trial,
                   mmrm_last_error()))
            continue;
        /* the struct holds what the overrides said, read independently with strtod */
        CHECK(a.learning_rate == strtod(override_value(ov, n, "learning_rate"), NULL) &&
                  a.adam_beta2 == strtod(override_value(ov, n, "adam_beta2"), NULL) &&
                  strcmp(a.output_dir, override_value(ov, n, "output_dir")) == 0,
              "trial %d: doubles exact", trial);
        char p1[96], p2[96];
        snprintf(p1, sizeof p1, "%s/saved.ini", g_dir);
        snprintf(p2, sizeof p2, "%s/saved_again.ini", g_dir);
        if (CHECK(train_config_save(&a, p1) == 0, "save: %s", mmrm_last_error()) &&
            CHECK(train_config_load(&b, p1, 0, NULL) == 0, "trial %d reload: %s", trial,
                  mmrm_last_error())) {
            CHECK(same_config(&a, &b), "trial %d: struct changed by save + load", trial);
            CHECK(train_config_save(&b, p2) == 0, "save again: %s", mmrm_last_error());
            char *t1 = read_all(p1), *t2 = read_all(p2);
            CHECK(t1 && t2 && strcmp(t1, t2) == 0, "trial %d: second save differs", trial);
            free(t1);
            free(t2);
            train_config_free(&b);
        }
        train_config_free(&a);
    }
    tmp_end();
}

TEST(test_printed_config_lists_every_key_once_and_reads_back_as_an_ini) {
    tmp_begin();
    TrainConfig a, b;
    char *ov[] = {"dataset_path=x.jsonl,y.jsonl", "learning_rate=0.1", "seed=3"};
    if (!CHECK(train_config_load(&a, write_ini("t.ini", REQUIRED), 3, ov) == 0, "%s",
               mmrm_last_error())) {
        tmp_end();
        return;
    }
    char path[96];
    snprintf(path, sizeof path, "%s/printed.ini", g_dir);
    FILE *f = fopen(path, "w");
    train_config_print(&a, f);
    fclose(f);
    char *text = read_all(path);
    /* every struct key named in the header's table appears once, as "key =" at line start */
    static const char *const keys[] = {
        "model_name_or_path", "init_model_config", "algorithm", "bias_model_path",
        "init_bias_model_config", "tokenizer_path", "freeze_llm", "freeze_backbone", "freeze_mlp",
        "grad_checkpoint", "share_prefix", "packing", "drop_path_rate", "lora_r", "lora_alpha", "lora_dropout",
        "lora_target_modules", "precision", "device", "attention_impl", "cuda_graphs", "dataset_path",
        "eval_dataset_path", "image_root", "conv_style", "max_length", "t_bucket", "dynamic_image_size",
        "min_dynamic_patch", "max_dynamic_patch", "use_thumbnail", "force_image_size",
        "on_bad_record", "num_workers", "num_train_epochs", "max_steps",
        "per_device_train_batch_size", "max_tokens_per_batch", "gradient_accumulation_steps", "learning_rate",
        "lr_scheduler_type", "warmup_ratio", "warmup_steps", "weight_decay", "adam_beta1",
        "adam_beta2", "adam_epsilon", "max_grad_norm", "shortcut_eps", "seed", "zero_stage", "grad_bucket_mb", "overlap_grad_reduce",
        "output_dir", "overwrite_output_dir", "resume", "logging_steps", "save_steps",
        "save_total_limit", "save_bias_model", "eval_steps", "report_to"};
    int nkeys = (int)(sizeof keys / sizeof keys[0]), lines = 0;
    for (const char *s = text; *s; s++) lines += *s == '\n';
    CHECK(lines == nkeys, "%d lines for %d keys", lines, nkeys);
    for (int i = 0; i < nkeys; i++) {
        char pat[64];
        snprintf(pat, sizeof pat, "\n%s =", keys[i]);
        const char *hit = strncmp(text, pat + 1, strlen(pat) - 1) == 0 ? text : strstr(text, pat);
        CHECK(hit != NULL, "%s missing from the print", keys[i]);
        if (hit) CHECK(strstr(hit + 1, pat) == NULL, "%s printed twice", keys[i]);
    }
    CHECK(strstr(text, "dataset_path = x.jsonl,y.jsonl\n") && strstr(text, "\nimage_root =\n"),
          "list and unset values");
    if (CHECK(train_config_load(&b, path, 0, NULL) == 0, "%s", mmrm_last_error())) {
        CHECK(same_config(&a, &b), "the print reads back to the same config");
        train_config_free(&b);
    }
    free(text);
    train_config_free(&a);
    tmp_end();
}

TEST(test_save_replaces_atomically_and_fails_cleanly) {
    tmp_begin();
    TrainConfig a;
    if (CHECK(train_config_load(&a, write_ini("t.ini", REQUIRED), 0, NULL) == 0, "%s",
              mmrm_last_error())) {
        char path[96];
        snprintf(path, sizeof path, "%s/out.ini", g_dir);
        write_ini("out.ini", "old contents\n");
        CHECK(train_config_save(&a, path) == 0, "%s", mmrm_last_error());
        char *text = read_all(path);
        CHECK(text && strncmp(text, "# mmrm", 6) == 0 && strstr(text, "[train]\n"),
              "replaced: %.40s", text ? text : "(none)");
        free(text);
        /* nothing but out.ini and t.ini: no temporary left behind */
        snprintf(path, sizeof path, "%s/out.ini.tmp.%d", g_dir, (int)getpid());
        CHECK(access(path, F_OK) != 0, "temporary file left behind");
        CHECK(train_config_save(&a, "/nonexistent/dir/c.ini") == -1 &&
                  strstr(mmrm_last_error(), "/nonexistent/dir/c.ini"),
              "unwritable path: %s", mmrm_last_error());
        train_config_free(&a);
    }
    tmp_end();
}

/* found by tests/fuzz/fuzz_train_config.c: "output_dir=;out" loaded, was saved as
 * "output_dir = ;out" and read back as unset (" ;" starts an inline comment) */
TEST(test_a_value_starting_with_a_semicolon_is_refused_since_it_would_not_read_back) {
    char *ov[] = {"model_name_or_path=/m", "output_dir=out", "dataset_path=d.jsonl", NULL};
    static char *const bad[] = {"output_dir=;out", "dataset_path=;a.jsonl,b.jsonl",
                                "image_root= ;x"};
    for (int i = 0; i < 3; i++) {
        ov[3] = bad[i];
        TrainConfig c;
        CHECK(train_config_load(&c, NULL, 4, ov) == -1 && strstr(mmrm_last_error(), "comment"),
              "%s: %s", bad[i], mmrm_last_error());
    }
    ov[3] = "output_dir=a;b";
    TrainConfig c;
    if (CHECK(train_config_load(&c, NULL, 4, ov) == 0, "a ';' inside: %s", mmrm_last_error()))
        train_config_free(&c);
}
