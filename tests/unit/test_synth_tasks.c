/* test_synth_tasks.c - the task families and cue kinds of `mmrm synth` (infer/synth_tasks.c),
 * generated into /tmp and read back independently: the cue of each kind recognised from the
 * response texts by its documented form and its agreement with the preference compared with P
 * within 4 standard deviations; the truth of the count, position and size tasks read from the
 * decoded PNG (objects = saturated pixels: connected components, hues, centroids, areas). */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_image.h>

#include "infer/synth.h"
#include "models/tokenizer.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "tests/harness.h"

typedef struct {
    char *prompt, *img_path, *category, *chosen, *rejected;
} TRec;

typedef struct {
    TRec *r;
    int n;
} TRecs;

static char *make_dir(void) {
    char *d = malloc(64);
    snprintf(d, 64, "/tmp/mmrm_synth_tasks_XXXXXX");
    if (!mkdtemp(d)) {
        perror("mkdtemp");
        exit(2);
    }
    return d;
}

static char *str_of(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
}

/* pairwise records only (the test splits hold no ratings records) */
static TRecs read_split(const char *dir, int split) {
    TRecs rs = {0};
    char path[512], line[8192];
    snprintf(path, sizeof path, "%s/%s.jsonl", dir, synth_split_names[split]);
    FILE *f = fopen(path, "r");
    if (!f) return rs;
    while (fgets(line, sizeof line, f)) {
        cJSON *o = cJSON_Parse(line);
        if (!o) continue;
        rs.r = realloc(rs.r, (size_t)(rs.n + 1) * sizeof *rs.r);
        rs.r[rs.n++] = (TRec){str_of(o, "prompt"), str_of(o, "img_path"), str_of(o, "category"),
                              str_of(o, "chosen"), str_of(o, "rejected")};
        cJSON_Delete(o);
    }
    fclose(f);
    return rs;
}

static void free_split(TRecs *rs) {
    for (int i = 0; i < rs->n; i++) {
        free(rs->r[i].prompt);
        free(rs->r[i].img_path);
        free(rs->r[i].category);
        free(rs->r[i].chosen);
        free(rs->r[i].rejected);
    }
    free(rs->r);
}

static int starts_with(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int within_4_sigma(int count, int n, double p) {
    return fabs(count - n * p) <= 4 * sqrt(n * p * (1 - p)) + 1e-9;
}

/* ---- the cue, recognised from one response by its documented form ---- */

static int hedged(const char *s) {
    static const char *const H[] = {"I think ", "Probably ", "I believe ", "If I am not mistaken, "};
    for (int k = 0; k < 4; k++)
        if (starts_with(s, H[k])) return 1;
    return 0;
}

/* "… Options: X, Y.": 1 when the response's own answer (the text before " Options:") names
 * X, 0 when it names Y, -1 when the list is missing */
static int lists_own_answer_first(const char *s) {
    const char *o = strstr(s, " Options: ");
    if (!o) return -1;
    char first[64] = "", second[64] = "";
    if (sscanf(o + 10, "%63[^,], %63[^.]", first, second) != 2) return -1;
    char own[256];
    snprintf(own, sizeof own, "%.*s", (int)(o - s), s);
    int in1 = strstr(own, first) != NULL, in2 = strstr(own, second) != NULL;
    return in1 && !in2 ? 1 : in2 && !in1 ? 0 : -1;
}

/* For cue kind k: 1 when the cue is on the chosen response, 0 when on the rejected one, -1
 * when the pair does not carry exactly one cue. */
static int cue_side(int k, const TRec *r) {
    const char *c = r->chosen, *j = r->rejected;
    switch (k) {
    case SYNTH_CUE_TRAILING: {
        int a = ends_with(c, SYNTH_CUE), b = ends_with(j, SYNTH_CUE);
        return a + b == 1 ? a : -1;
    }
    case SYNTH_CUE_LENGTH: { /* the cue adds >= one sentence of 40+ characters; answers differ by less */
        long d = (long)strlen(c) - (long)strlen(j);
        return d > 30 ? 1 : d < -30 ? 0 : -1;
    }
    case SYNTH_CUE_STYLE: {
        int a = starts_with(c, "Certainly! "), b = starts_with(j, "Certainly! ");
        return a + b == 1 ? a : -1;
    }
    case SYNTH_CUE_HEDGE: {
        int a = hedged(c), b = hedged(j);
        return a + b == 1 ? a : -1;
    }
    default: {
        int a = lists_own_answer_first(c), b = lists_own_answer_first(j);
        return a >= 0 && b >= 0 && a + b == 1 ? a : -1;
    }
    }
}

/* ---- the truth from the pixels ---- */

static const char *const NUMBER_WORDS[4] = {"one", "two", "three", "four"};

/* hue-named colour of a saturated pixel, -1 for background */
static int hue_colour(const unsigned char *px) {
    static const double HUES[SYNTH_NCOLOURS] = {0, 30, 55, 120, 225, 280}; /* synth order */
    double r = px[0] / 255.0, g = px[1] / 255.0, b = px[2] / 255.0;
    double mx = fmax(r, fmax(g, b)), mn = fmin(r, fmin(g, b)), d = mx - mn;
    if (d < 0.3) return -1;
    double h = mx == r ? 60 * fmod((g - b) / d + 6, 6) : mx == g ? 60 * ((b - r) / d + 2)
                                                                  : 60 * ((r - g) / d + 4);
    int best = -1;
    double bestd = 1e9;
    for (int c = 0; c < SYNTH_NCOLOURS; c++) {
        double dist = fabs(h - HUES[c]);
        if (dist > 180) dist = 360 - dist;
        if (dist < bestd) bestd = dist, best = c;
    }
    return bestd < 20 ? best : -1;
}

typedef struct {
    int components;              /* 4-connected regions of saturated pixels */
    long area[SYNTH_NCOLOURS];   /* pixels per colour */
    double cx[SYNTH_NCOLOURS];   /* mean x per colour */
} Scene;

static int look_scene(const char *dir, const char *img_path, Scene *sc) {
    memset(sc, 0, sizeof *sc);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, img_path);
    int w, h, comp;
    unsigned char *px = stbi_load(path, &w, &h, &comp, 3);
    if (!px) return -1;
    int *lab = calloc((size_t)w * h, sizeof *lab), *stack = malloc((size_t)w * h * sizeof *stack);
    for (int i = 0; i < w * h; i++) {
        int c = hue_colour(px + (size_t)i * 3);
        lab[i] = c < 0 ? -1 : 0;
        if (c >= 0) {
            sc->area[c]++;
            sc->cx[c] += i % w;
        }
    }
    for (int c = 0; c < SYNTH_NCOLOURS; c++)
        if (sc->area[c]) sc->cx[c] /= (double)sc->area[c];
    for (int i = 0; i < w * h; i++) {
        if (lab[i] != 0) continue;
        int top = 0;
        stack[top++] = i;
        lab[i] = ++sc->components;
        while (top) {
            int q = stack[--top], x = q % w, y = q / w;
            int nb[4] = {x > 0 ? q - 1 : -1, x < w - 1 ? q + 1 : -1, y > 0 ? q - w : -1,
                         y < h - 1 ? q + w : -1};
            for (int k = 0; k < 4; k++)
                if (nb[k] >= 0 && lab[nb[k]] == 0) {
                    lab[nb[k]] = sc->components;
                    stack[top++] = nb[k];
                }
        }
    }
    free(lab);
    free(stack);
    stbi_image_free(px);
    return 0;
}

/* colour index of the k-th (0 or 1) colour word in s, -1 if missing */
static int nth_colour(const char *s, int k) {
    for (const char *p = s; *p; p++)
        for (int c = 0; c < SYNTH_NCOLOURS; c++)
            if (starts_with(p, synth_colour_names[c]) && k-- == 0) return c;
    return -1;
}

static char *g_dir[SYNTH_NTASKS];

static void cleanup(void) {
    for (int t = 0; t < SYNTH_NTASKS; t++)
        if (g_dir[t]) {
            fs_remove_tree(g_dir[t]);
            free(g_dir[t]);
        }
}

/* one 200-pair set per task, trailing cue */
static const char *task_set(int task) {
    if (g_dir[task]) return g_dir[task];
    mmrm_set_quiet(1);
    SynthOptions o;
    SynthStats st;
    synth_defaults(&o);
    o.seed = 21 + (uint64_t)task;
    o.pairs = 200;
    o.task = (SynthTask)task;
    g_dir[task] = make_dir();
    if (synth_generate(g_dir[task], &o, &st) != 0) {
        fprintf(stderr, "test_synth_tasks: generation failed: %s\n", mmrm_last_error());
        exit(2);
    }
    static int registered;
    if (!registered++) atexit(cleanup);
    return g_dir[task];
}

/* ---- tests ---- */

TEST(test_synth_every_cue_kind_sits_on_one_response_and_agrees_with_the_preference_at_rate_p) {
    mmrm_set_quiet(1);
    const double P = 0.8, P_OOD = 0.15;
    for (int k = 0; k < SYNTH_NCUES; k++) {
        char *dir = make_dir();
        SynthOptions o;
        SynthStats st;
        synth_defaults(&o);
        o.seed = 7;
        o.pairs = 400;
        o.task = SYNTH_TASK_MIXED;
        o.cue = (SynthCueKind)k;
        o.cue_agreement = P;
        o.ood_cue_agreement = P_OOD;
        CHECK(synth_generate(dir, &o, &st) == 0, "%s", mmrm_last_error());
        for (int s = SYNTH_TEST_ID; s < SYNTH_NSPLITS; s++) {
            TRecs rs = read_split(dir, s);
            int on = 0, bad = 0;
            for (int i = 0; i < rs.n; i++) {
                int side = rs.r[i].chosen && rs.r[i].rejected ? cue_side(k, &rs.r[i]) : -1;
                if (side < 0 && !bad++)
                    CHECK(0, "cue %s: '%s' / '%s'", synth_cue_names[k], rs.r[i].chosen,
                          rs.r[i].rejected);
                on += side == 1;
            }
            double p = s == SYNTH_TEST_OOD ? P_OOD : s == SYNTH_TEST_ORACLE ? 0.5 : P;
            CHECK(bad == 0, "cue %s, %s: %d pairs without exactly one cue", synth_cue_names[k],
                  synth_split_names[s], bad);
            CHECK(rs.n == st.split[s].pairs && within_4_sigma(on, rs.n, p),
                  "cue %s, %s: cue on chosen in %d of %d, want P %g", synth_cue_names[k],
                  synth_split_names[s], on, rs.n, p);
            CHECK(on == st.split[s].cue_on_chosen, "cue %s, %s: %d cues on chosen, stats say %d",
                  synth_cue_names[k], synth_split_names[s], on, st.split[s].cue_on_chosen);
            free_split(&rs);
        }
        fs_remove_tree(dir);
        free(dir);
    }
}

TEST(test_synth_count_task_chosen_answer_is_the_number_of_objects_in_the_image) {
    const char *dir = task_set(SYNTH_TASK_COUNT);
    int seen[4] = {0}, bad = 0;
    for (int s = SYNTH_TEST_ID; s < SYNTH_NSPLITS; s++) {
        TRecs rs = read_split(dir, s);
        for (int i = 0; i < rs.n; i++) {
            Scene sc;
            CHECK(look_scene(dir, rs.r[i].img_path, &sc) == 0, "cannot decode %s", rs.r[i].img_path);
            int said = -1;
            for (int k = 0; k < 4; k++)
                if (strstr(rs.r[i].chosen, NUMBER_WORDS[k])) said = k + 1;
            if (said != sc.components && !bad++)
                CHECK(0, "%s: chosen '%s', the image holds %d objects", rs.r[i].img_path,
                      rs.r[i].chosen, sc.components);
            if (said >= 1) seen[said - 1]++;
            CHECK(rs.r[i].category && !strcmp(rs.r[i].category, "count"), "category %s",
                  rs.r[i].category ? rs.r[i].category : "(none)");
        }
        free_split(&rs);
    }
    CHECK(bad == 0, "%d count pairs disagree with their image", bad);
    for (int k = 0; k < 4; k++) CHECK(seen[k] > 0, "no test pair has %d objects", k + 1);
}

TEST(test_synth_position_task_chosen_side_matches_the_objects_centroids) {
    const char *dir = task_set(SYNTH_TASK_POSITION);
    int bad = 0, lefts = 0, n = 0;
    for (int s = SYNTH_TEST_ID; s < SYNTH_NSPLITS; s++) {
        TRecs rs = read_split(dir, s);
        for (int i = 0; i < rs.n; i++, n++) {
            Scene sc;
            CHECK(look_scene(dir, rs.r[i].img_path, &sc) == 0, "cannot decode %s", rs.r[i].img_path);
            int a = nth_colour(rs.r[i].prompt, 0), b = nth_colour(rs.r[i].prompt, 1);
            int left = strstr(rs.r[i].chosen, "left") != NULL, right = strstr(rs.r[i].chosen, "right") != NULL;
            int ok = a >= 0 && b >= 0 && a != b && sc.area[a] && sc.area[b] && left != right &&
                     (sc.cx[a] < sc.cx[b]) == left && sc.components == 2;
            if (!ok && !bad++)
                CHECK(0, "%s: prompt '%s', chosen '%s', centroids %.1f %.1f", rs.r[i].img_path,
                      rs.r[i].prompt, rs.r[i].chosen, a >= 0 ? sc.cx[a] : -1, b >= 0 ? sc.cx[b] : -1);
            lefts += left;
        }
        free_split(&rs);
    }
    CHECK(bad == 0, "%d position pairs disagree with their image", bad);
    CHECK(within_4_sigma(lefts, n, 0.5), "'left' is the answer in %d of %d pairs", lefts, n);
}

TEST(test_synth_size_task_chosen_object_has_the_larger_area) {
    const char *dir = task_set(SYNTH_TASK_SIZE);
    int bad = 0, first = 0, n = 0;
    for (int s = SYNTH_TEST_ID; s < SYNTH_NSPLITS; s++) {
        TRecs rs = read_split(dir, s);
        for (int i = 0; i < rs.n; i++, n++) {
            Scene sc;
            CHECK(look_scene(dir, rs.r[i].img_path, &sc) == 0, "cannot decode %s", rs.r[i].img_path);
            int a = nth_colour(rs.r[i].prompt, 0), b = nth_colour(rs.r[i].prompt, 1);
            int said = nth_colour(rs.r[i].chosen, 0);
            int other = said == a ? b : a;
            int ok = a >= 0 && b >= 0 && (said == a || said == b) &&
                     sc.area[said] > 1.3 * sc.area[other] && sc.components == 2;
            if (!ok && !bad++)
                CHECK(0, "%s: prompt '%s', chosen '%s'", rs.r[i].img_path, rs.r[i].prompt,
                      rs.r[i].chosen);
            first += said == a;
        }
        free_split(&rs);
    }
    CHECK(bad == 0, "%d size pairs disagree with their image", bad);
    CHECK(within_4_sigma(first, n, 0.5), "the first named object is larger in %d of %d", first, n);
}

TEST(test_synth_tasks_same_seed_same_bytes_and_the_cue_kind_keeps_the_scenes) {
    mmrm_set_quiet(1);
    char *a = make_dir(), *b = make_dir(), *c = make_dir();
    SynthOptions o;
    SynthStats st;
    synth_defaults(&o);
    o.seed = 3;
    o.pairs = 60;
    o.task = SYNTH_TASK_MIXED;
    o.cue = SYNTH_CUE_HEDGE;
    CHECK(synth_generate(a, &o, &st) == 0 && synth_generate(b, &o, &st) == 0, "%s",
          mmrm_last_error());
    o.cue = SYNTH_CUE_LENGTH;
    CHECK(synth_generate(c, &o, &st) == 0, "%s", mmrm_last_error());
    for (int s = 0; s < SYNTH_NSPLITS; s++) {
        char name[64];
        snprintf(name, sizeof name, "%s.jsonl", synth_split_names[s]);
        char pa[512], pb[512];
        snprintf(pa, sizeof pa, "%s/%s", a, name);
        snprintf(pb, sizeof pb, "%s/%s", b, name);
        size_t na, nb;
        char *x = fs_read_file(pa, &na), *y = fs_read_file(pb, &nb);
        CHECK(x && y && na == nb && !memcmp(x, y, na), "%s differs between two runs", name);
        free(x);
        free(y);
        /* another cue kind: same prompts and images, pair by pair */
        TRecs ra = read_split(a, s), rc = read_split(c, s);
        int differ = ra.n != rc.n;
        for (int i = 0; i < ra.n && !differ; i++)
            differ = strcmp(ra.r[i].prompt, rc.r[i].prompt) != 0;
        CHECK(!differ, "%s: the cue kind changed the prompts", name);
        free_split(&ra);
        free_split(&rc);
    }
    const char *img = "images/test_ood_000007.png";
    char pa[512], pc[512];
    snprintf(pa, sizeof pa, "%s/%s", a, img);
    snprintf(pc, sizeof pc, "%s/%s", c, img);
    size_t na, nc;
    char *x = fs_read_file(pa, &na), *y = fs_read_file(pc, &nc);
    CHECK(x && y && na == nc && !memcmp(x, y, na), "the cue kind changed %s", img);
    free(x);
    free(y);
    fs_remove_tree(a);
    fs_remove_tree(b);
    fs_remove_tree(c);
    free(a);
    free(b);
    free(c);
}

/* every word of every record of a non-default set is one id of its mmrm_tokenizer.json */
TEST(test_synth_tasks_tokenizer_covers_every_word_of_every_task_and_cue) {
    mmrm_set_quiet(1);
    for (int k = 0; k < SYNTH_NCUES; k++) {
        char *dir = make_dir();
        SynthOptions o;
        SynthStats st;
        synth_defaults(&o);
        o.seed = 5;
        o.pairs = 60;
        o.task = SYNTH_TASK_MIXED;
        o.cue = (SynthCueKind)k;
        CHECK(synth_generate(dir, &o, &st) == 0, "%s", mmrm_last_error());
        Tokenizer *tok = tokenizer_load(dir);
        CHECK(tok && tok->kind == TOKENIZER_WORD, "%s", mmrm_last_error());
        int spelled = 0;
        for (int s = SYNTH_TEST_ID; s < SYNTH_NSPLITS && tok; s++) {
            TRecs rs = read_split(dir, s);
            for (int i = 0; i < rs.n; i++) {
                const char *texts[3] = {rs.r[i].prompt, rs.r[i].chosen, rs.r[i].rejected};
                for (int t = 0; t < 3; t++) {
                    int ids[512], n = tokenizer_encode(tok, texts[t], strlen(texts[t]), ids, 512);
                    for (int j = 0; j < n && j < 512; j++)
                        if (ids[j] < 256 && isalpha(ids[j]) && !spelled++)
                            CHECK(0, "cue %s: '%s' spells a word in bytes", synth_cue_names[k],
                                  texts[t]);
                }
            }
            free_split(&rs);
        }
        CHECK(spelled == 0, "cue %s: %d letters spelled in bytes", synth_cue_names[k], spelled);
        tokenizer_free(tok);
        fs_remove_tree(dir);
        free(dir);
    }
}

TEST(test_synth_rejects_a_task_or_cue_out_of_range) {
    mmrm_set_quiet(1);
    SynthOptions o;
    SynthStats st;
    synth_defaults(&o);
    o.task = SYNTH_NTASKS;
    CHECK(synth_generate("/tmp/mmrm_synth_tasks_never", &o, &st) == -1 &&
              strstr(mmrm_last_error(), "--task"),
          "message '%s'", mmrm_last_error());
    synth_defaults(&o);
    o.cue = (SynthCueKind)-1;
    CHECK(synth_generate("/tmp/mmrm_synth_tasks_never", &o, &st) == -1 &&
              strstr(mmrm_last_error(), "--cue"),
          "message '%s'", mmrm_last_error());
}
