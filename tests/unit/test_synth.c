/* test_synth.c - the synthetic shortcut benchmark (infer/synth.c), generated into /tmp and read
 * back independently: records parsed with cJSON (ratings ranked by their mean rating here),
 * the truth read from the decoded PNG (colour: the hue of the image's centre pixel, named by the
 * usual hue of each colour word; shape: how much of its bounding box the object fills), and the
 * statistics compared with the requested probabilities within 4 standard deviations (fixed
 * seeds, so each check is deterministic). */
#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb/stb_image.h>

#include "infer/synth.h"
#include "models/records.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "tests/harness.h"

/* ---- files ---- */

static char *new_dir(void) {
    char *d = malloc(64);
    snprintf(d, 64, "/tmp/mmrm_synth_XXXXXX");
    if (!mkdtemp(d)) {
        perror("mkdtemp");
        exit(2);
    }
    return d;
}

static unsigned char *slurp(const char *dir, const char *name, size_t *n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    unsigned char *d = malloc(*n + 1);
    if (!d || fread(d, 1, *n, f) != *n) exit(2);
    d[*n] = 0;
    fclose(f);
    return d;
}

/* 1 when dir_a/name and dir_b/name both exist with the same bytes */
static int same_file(const char *a, const char *b, const char *name) {
    size_t na, nb;
    unsigned char *x = slurp(a, name, &na), *y = slurp(b, name, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

/* ---- records read back ---- */

typedef struct {
    char *id, *prompt, *img_path, *category;
    char *chosen, *rejected; /* for ratings records: ranked by the mean rating here */
    int ratings;             /* 1 for a ratings record */
    int ratings_ok;          /* two completions, every rating numeric, means unequal */
} Rec;

typedef struct {
    Rec *r;
    int n;
} Recs;

static char *dup_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
}

/* spec/data.md: a completion's score is the mean over its annotation's aspects of the rating */
static double mean_rating(const cJSON *ann, int *ok) {
    double sum = 0;
    int k = 0;
    const cJSON *aspect;
    cJSON_ArrayForEach(aspect, ann) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(aspect, "Rating");
        char *end = NULL;
        double v = cJSON_IsString(r) ? strtod(r->valuestring, &end) : NAN;
        if (!end || *end || !isfinite(v)) *ok = 0;
        sum += v;
        k++;
    }
    if (k == 0) *ok = 0;
    return k ? sum / k : 0;
}

static void parse_ratings(Rec *r, const cJSON *comp) {
    const cJSON *ann = cJSON_GetObjectItemCaseSensitive(comp, "annotations");
    const cJSON *resp = cJSON_GetObjectItemCaseSensitive(comp, "response");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(comp, "model");
    r->ratings = 1;
    r->ratings_ok = cJSON_GetArraySize(ann) == 2 && cJSON_GetArraySize(resp) == 2 &&
                    cJSON_GetArraySize(model) == 2;
    if (!r->ratings_ok) return;
    double m0 = mean_rating(cJSON_GetArrayItem(ann, 0), &r->ratings_ok);
    double m1 = mean_rating(cJSON_GetArrayItem(ann, 1), &r->ratings_ok);
    if (m0 == m1) r->ratings_ok = 0;
    int hi = m1 > m0;
    r->chosen = strdup(cJSON_GetArrayItem(resp, hi)->valuestring);
    r->rejected = strdup(cJSON_GetArrayItem(resp, 1 - hi)->valuestring);
}

static Recs read_recs(const char *dir, const char *name) {
    Recs rs = {0};
    size_t n;
    char *text = (char *)slurp(dir, name, &n);
    if (!text) return rs;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        rs.r = realloc(rs.r, (size_t)(rs.n + 1) * sizeof *rs.r);
        Rec *r = &rs.r[rs.n++];
        memset(r, 0, sizeof *r);
        cJSON *o = cJSON_Parse(line);
        if (!o) continue;
        r->id = dup_str(o, "id");
        r->prompt = dup_str(o, "prompt");
        r->img_path = dup_str(o, "img_path");
        r->category = dup_str(o, "category");
        const cJSON *comp = cJSON_GetObjectItemCaseSensitive(o, "completions");
        if (comp) {
            parse_ratings(r, comp);
        } else {
            r->chosen = dup_str(o, "chosen");
            r->rejected = dup_str(o, "rejected");
        }
        cJSON_Delete(o);
    }
    free(text);
    return rs;
}

static void free_recs(Recs *rs) {
    for (int i = 0; i < rs->n; i++) {
        Rec *r = &rs->r[i];
        free(r->id), free(r->prompt), free(r->img_path), free(r->category);
        free(r->chosen), free(r->rejected);
    }
    free(rs->r);
    rs->r = NULL;
    rs->n = 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int count_occurrences(const char *s, const char *needle) {
    int c = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) c++;
    return c;
}

static int is_word_char(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* The one answer word of the list that occurs in s as a whole word; -1 for none or several. */
static int answer_word(const char *s, const char *const *words, int nwords) {
    int found = -1;
    for (int w = 0; w < nwords; w++) {
        size_t k = strlen(words[w]);
        for (const char *p = strstr(s, words[w]); p; p = strstr(p + 1, words[w])) {
            if ((p > s && is_word_char(p[-1])) || is_word_char(p[k])) continue;
            if (found >= 0 && found != w) return -1;
            found = w;
        }
    }
    return found;
}

/* ---- the truth, read from the image ---- */

typedef struct {
    int w, h;
    int colour, shape; /* -1 when the image does not name one clearly */
    double fill;       /* object pixels / bounding-box area */
} Seen;

/* Hue in degrees of an RGB pixel; the usual hue of each colour word names it. */
static int colour_of(const unsigned char *px) {
    static const double HUES[SYNTH_NCOLOURS] = {0, 30, 55, 120, 225, 280}; /* synth order */
    double r = px[0] / 255.0, g = px[1] / 255.0, b = px[2] / 255.0;
    double mx = fmax(r, fmax(g, b)), mn = fmin(r, fmin(g, b)), d = mx - mn;
    if (d < 0.3) return -1; /* not a saturated colour: background, or nothing */
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

static Seen look(const char *dir, const char *img_path) {
    Seen s = {.colour = -1, .shape = -1};
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, img_path);
    int comp;
    unsigned char *px = stbi_load(path, &s.w, &s.h, &comp, 3);
    if (!px) return s;
    const unsigned char *c = px + ((size_t)(s.h / 2) * s.w + s.w / 2) * 3;
    s.colour = colour_of(c);
    /* the object: the pixels of the centre pixel's colour */
    int x0 = s.w, x1 = -1, y0 = s.h, y1 = -1;
    long count = 0;
    for (int y = 0; y < s.h; y++)
        for (int x = 0; x < s.w; x++) {
            const unsigned char *p = px + ((size_t)y * s.w + x) * 3;
            if (abs(p[0] - c[0]) > 30 || abs(p[1] - c[1]) > 30 || abs(p[2] - c[2]) > 30) continue;
            count++;
            if (x < x0) x0 = x;
            if (x > x1) x1 = x;
            if (y < y0) y0 = y;
            if (y > y1) y1 = y;
        }
    stbi_image_free(px);
    /* a square fills its box, a disc pi/4 of it, a triangle half */
    s.fill = (double)count / ((double)(x1 - x0 + 1) * (y1 - y0 + 1));
    s.shape = s.fill > 0.93 ? 1 : s.fill > 0.7 && s.fill < 0.86 ? 0
              : s.fill > 0.4 && s.fill < 0.62                ? 2
                                                             : -1;
    return s;
}

/* ---- the data sets the tests share, generated once ---- */

#define MAIN_PAIRS 400
static const double MAIN_P = 0.85, MAIN_P_OOD = 0.2, MAIN_NOISE = 0.15;

static char *g_main;
static SynthOptions g_main_opt;
static SynthStats g_main_st;

static void cleanup_main(void) {
    fs_remove_tree(g_main);
    free(g_main);
}

/* A 400-pair set with non-default probabilities (so a flag ignored by the generator shows) and
 * a size range of its own. */
static const char *main_set(void) {
    if (g_main) return g_main;
    mmrm_set_quiet(1);
    g_main = new_dir();
    synth_defaults(&g_main_opt);
    g_main_opt.seed = 11;
    g_main_opt.pairs = MAIN_PAIRS;
    g_main_opt.cue_agreement = MAIN_P;
    g_main_opt.ood_cue_agreement = MAIN_P_OOD;
    g_main_opt.label_noise = MAIN_NOISE;
    g_main_opt.min_size = 32;
    g_main_opt.max_size = 72;
    if (synth_generate(g_main, &g_main_opt, &g_main_st) != 0) {
        fprintf(stderr, "test_synth: generation failed: %s\n", mmrm_last_error());
        exit(2);
    }
    atexit(cleanup_main);
    return g_main;
}

static double split_p(int s) {
    return s == SYNTH_TEST_OOD ? MAIN_P_OOD : s == SYNTH_TEST_ORACLE ? 0.5 : MAIN_P;
}

static Recs main_split(int s) {
    char name[64];
    snprintf(name, sizeof name, "%s.jsonl", synth_split_names[s]);
    return read_recs(main_set(), name);
}

/* |count - n p| <= 4 sqrt(n p (1 - p)) */
static int within_4_sigma(int count, int n, double p) {
    return fabs(count - n * p) <= 4 * sqrt(n * p * (1 - p)) + 1e-9;
}

static int is_colour(const Rec *r) { return r->category && !strcmp(r->category, "colour"); }

static int word_of(const Rec *r, const char *response) {
    return is_colour(r) ? answer_word(response, synth_colour_names, SYNTH_NCOLOURS)
                        : answer_word(response, synth_shape_names, SYNTH_NSHAPES);
}

/* ---- tests ---- */

TEST(test_synth_same_seed_gives_identical_bytes_for_any_thread_count_and_seeds_differ) {
    mmrm_set_quiet(1);
    char *a = new_dir(), *b = new_dir(), *c = new_dir();
    SynthOptions o;
    synth_defaults(&o);
    o.seed = 5;
    o.pairs = 60;
    SynthStats st;
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    CHECK(synth_generate(a, &o, &st) == 0, "%s", mmrm_last_error());
    omp_set_num_threads(3);
    CHECK(synth_generate(b, &o, &st) == 0, "%s", mmrm_last_error());
    omp_set_num_threads(threads);
    o.seed = 6;
    CHECK(synth_generate(c, &o, &st) == 0, "%s", mmrm_last_error());

    const char *files[] = {"train.jsonl", "test_id.jsonl", "test_ood.jsonl", "test_oracle.jsonl",
                           "score_input.jsonl", "README.txt"};
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        CHECK(same_file(a, b, files[k]), "%s differs between two runs of seed 5", files[k]);
        CHECK(!same_file(a, c, files[k]), "%s is the same for seeds 5 and 6", files[k]);
    }
    int images = 0, differ = 0;
    for (int s = 0; s < SYNTH_NSPLITS; s++)
        for (int i = 0; i < st.split[s].pairs; i++) {
            char name[64];
            snprintf(name, sizeof name, "images/%s_%06d.png", synth_split_names[s], i);
            CHECK(same_file(a, b, name), "%s differs between two runs of seed 5", name);
            differ += !same_file(a, c, name);
            images++;
        }
    CHECK(images == 60 + 3 * 50, "%d images, want 60 train + 3 x 50 test", images);
    CHECK(differ == images, "%d of %d images differ between seeds 5 and 6", differ, images);
    fs_remove_tree(a), fs_remove_tree(b), fs_remove_tree(c);
    free(a), free(b), free(c);
}

TEST(test_synth_changing_probabilities_or_pairs_keeps_scenes_and_questions) {
    mmrm_set_quiet(1);
    char *a = new_dir(), *b = new_dir();
    SynthOptions o;
    synth_defaults(&o);
    o.seed = 7;
    o.pairs = 60;
    SynthStats st;
    CHECK(synth_generate(a, &o, &st) == 0, "%s", mmrm_last_error());
    o.pairs = 240; /* test splits grow from 50 to 60 pairs */
    o.cue_agreement = 0.6;
    o.ood_cue_agreement = 0.7;
    o.label_noise = 0.4;
    CHECK(synth_generate(b, &o, &st) == 0, "%s", mmrm_last_error());
    for (int s = 0; s < SYNTH_NSPLITS; s++) {
        char name[64];
        snprintf(name, sizeof name, "%s.jsonl", synth_split_names[s]);
        Recs ra = read_recs(a, name), rb = read_recs(b, name);
        CHECK(rb.n > ra.n, "%s: %d then %d records", name, ra.n, rb.n);
        int same_q = 1, same_img = 1;
        for (int i = 0; i < ra.n && i < rb.n; i++) {
            same_q &= ra.r[i].prompt && rb.r[i].prompt && !strcmp(ra.r[i].prompt, rb.r[i].prompt);
            same_img &= same_file(a, b, ra.r[i].img_path);
        }
        CHECK(same_q && same_img, "%s: the first %d pairs changed prompt or image", name, ra.n);
        free_recs(&ra), free_recs(&rb);
    }
    fs_remove_tree(a), fs_remove_tree(b);
    free(a), free(b);
}

TEST(test_synth_splits_have_the_documented_sizes_and_load_with_the_record_reader) {
    const char *dir = main_set();
    const int want[SYNTH_NSPLITS] = {MAIN_PAIRS, MAIN_PAIRS / 4, MAIN_PAIRS / 4, MAIN_PAIRS / 4};
    for (int s = 0; s < SYNTH_NSPLITS; s++) {
        Recs rs = main_split(s);
        CHECK(rs.n == want[s] && g_main_st.split[s].pairs == want[s], "%s: %d records, want %d",
              synth_split_names[s], rs.n, want[s]);
        int ratings = 0, fields = 1;
        for (int i = 0; i < rs.n; i++) {
            const Rec *r = &rs.r[i];
            ratings += r->ratings;
            fields &= r->id && r->prompt && r->img_path && r->chosen && r->rejected &&
                      r->category && (!strcmp(r->category, "colour") || !strcmp(r->category, "shape"));
        }
        CHECK(fields, "%s: a record lacks id, prompt, img_path, chosen, rejected or category",
              synth_split_names[s]);
        CHECK(ratings == g_main_st.split[s].ratings_records, "%s: %d ratings records, stats say %d",
              synth_split_names[s], ratings, g_main_st.split[s].ratings_records);
        if (s == SYNTH_TRAIN)
            CHECK(within_4_sigma(ratings, rs.n, g_main_opt.ratings_fraction),
                  "train: %d of %d ratings records, want fraction %g", ratings, rs.n,
                  g_main_opt.ratings_fraction);
        else
            CHECK(ratings == 0, "%s: %d ratings records, test splits are pairwise", synth_split_names[s],
                  ratings);

        /* the project's loader reads the same pairs in the same order */
        char path[512];
        snprintf(path, sizeof path, "%s/%s.jsonl", dir, synth_split_names[s]);
        const char *paths[1] = {path};
        RecordOptions ropt = {.on_bad_record = REC_ON_BAD_FAIL};
        PairSet ps;
        CHECK(pairset_load(&ps, paths, 1, &ropt) == 0, "load: %s", mmrm_last_error());
        CHECK(ps.n == (size_t)rs.n && ps.tied == 0 && ps.unrated == 0,
              "%s: loader gives %zu pairs (%ld tied, %ld unrated), want %d", synth_split_names[s],
              ps.n, ps.tied, ps.unrated, rs.n);
        int agree = 1;
        for (size_t i = 0; i < ps.n && i < (size_t)rs.n; i++)
            agree &= rs.r[i].chosen && rs.r[i].rejected && !strcmp(ps.pairs[i].chosen, rs.r[i].chosen) &&
                     !strcmp(ps.pairs[i].rejected, rs.r[i].rejected);
        CHECK(agree, "%s: the loader's chosen/rejected differ from the mean-rating rule",
              synth_split_names[s]);
        pairset_free(&ps);
        free_recs(&rs);
    }

    /* score_input.jsonl: the first test_id pairs as {prompt, img_path, responses} */
    char path[512];
    snprintf(path, sizeof path, "%s/score_input.jsonl", dir);
    const char *paths[1] = {path};
    ScoreSet ss;
    RecordOptions ropt = {.on_bad_record = REC_ON_BAD_FAIL};
    CHECK(scoreset_load(&ss, paths, 1, &ropt) == 0, "load: %s", mmrm_last_error());
    Recs tid = main_split(SYNTH_TEST_ID);
    CHECK(ss.n == (size_t)g_main_opt.score_records && g_main_st.score_records == (int)ss.n,
          "%zu score records, want %d", ss.n, g_main_opt.score_records);
    for (size_t i = 0; i < ss.n && i < (size_t)tid.n; i++)
        CHECK(ss.recs[i].nresponses == 2 && !strcmp(ss.recs[i].prompt, tid.r[i].prompt) &&
                  !strcmp(ss.recs[i].img_path, tid.r[i].img_path) &&
                  !strcmp(ss.recs[i].responses[0], tid.r[i].chosen) &&
                  !strcmp(ss.recs[i].responses[1], tid.r[i].rejected),
              "score record %zu is not test_id pair %zu", i, i);
    scoreset_free(&ss);
    free_recs(&tid);

    size_t n;
    char *readme = (char *)slurp(dir, "README.txt", &n);
    CHECK(readme && strstr(readme, "--seed 11 --pairs 400") && strstr(readme, "--label-noise 0.15"),
          "README.txt does not state the seed and parameters");
    free(readme);
}

TEST(test_synth_ratings_records_rank_the_chosen_completion_first_by_mean_rating) {
    Recs rs = main_split(SYNTH_TRAIN);
    int ratings = 0, ok = 1, first_chosen = 0;
    for (int i = 0; i < rs.n; i++) {
        if (!rs.r[i].ratings) continue;
        ratings++;
        ok &= rs.r[i].ratings_ok;
    }
    /* both completion orders occur (the chosen one is not always listed first) */
    size_t n;
    char *text = (char *)slurp(main_set(), "train.jsonl", &n);
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *comp = cJSON_GetObjectItemCaseSensitive(o, "completions");
        if (comp) {
            int okr = 1;
            const cJSON *ann = cJSON_GetObjectItemCaseSensitive(comp, "annotations");
            first_chosen += mean_rating(cJSON_GetArrayItem(ann, 0), &okr) >
                            mean_rating(cJSON_GetArrayItem(ann, 1), &okr);
        }
        cJSON_Delete(o);
    }
    free(text);
    CHECK(ratings > 0 && ok, "%d ratings records; every one needs 2 completions with numeric "
          "ratings and unequal means", ratings);
    CHECK(first_chosen > 0 && first_chosen < ratings, "chosen listed first in %d of %d records",
          first_chosen, ratings);
    free_recs(&rs);
}

TEST(test_synth_images_decode_with_sizes_and_aspect_ratios_in_range) {
    const char *dir = main_set();
    int lo = g_main_opt.min_size, hi = g_main_opt.max_size, mid = (lo + hi) / 2;
    int bad = 0, wide = 0, tall = 0, small = 0, big = 0, total = 0;
    for (int s = 0; s < SYNTH_NSPLITS; s++) {
        Recs rs = main_split(s);
        for (int i = 0; i < rs.n; i++) {
            char path[512];
            snprintf(path, sizeof path, "%s/%s", dir, rs.r[i].img_path);
            int w, h, comp;
            unsigned char *px = stbi_load(path, &w, &h, &comp, 0);
            if (!px || comp != 3 || w < lo || w > hi || h < lo || h > hi) {
                if (!bad++)
                    CHECK(0, "%s: %s, %dx%d, %d channels (want RGB, sides in [%d, %d])", path,
                          px ? "decoded" : "does not decode", w, h, comp, lo, hi);
            }
            stbi_image_free(px);
            wide += w > 1.4 * h;
            tall += h > 1.4 * w;
            small += w < mid && h < mid;
            big += w > mid && h > mid;
            total++;
        }
        free_recs(&rs);
    }
    CHECK(bad == 0, "%d of %d images bad", bad, total);
    CHECK(wide > total / 20 && tall > total / 20 && small > total / 10 && big > total / 10,
          "sizes do not vary: %d wide, %d tall, %d small, %d big of %d", wide, tall, small, big,
          total);
}

TEST(test_synth_test_splits_choose_the_answer_the_image_shows) {
    const char *dir = main_set();
    for (int s = SYNTH_TEST_ID; s < SYNTH_NSPLITS; s++) {
        Recs rs = main_split(s);
        int wrong = 0, unread = 0, colours = 0;
        int shape_fill_seen[SYNTH_NSHAPES] = {0};
        for (int i = 0; i < rs.n; i++) {
            const Rec *r = &rs.r[i];
            Seen seen = look(dir, r->img_path);
            int truth = is_colour(r) ? seen.colour : seen.shape;
            int c = word_of(r, r->chosen), j = word_of(r, r->rejected);
            if (seen.colour < 0 || seen.shape < 0) {
                if (!unread++)
                    CHECK(0, "%s: centre colour %d, fill %.3f: no clear colour/shape", r->img_path,
                          seen.colour, seen.fill);
                continue;
            }
            shape_fill_seen[seen.shape]++;
            colours += is_colour(r);
            if (c != truth || j < 0 || j == truth) {
                if (!wrong++)
                    CHECK(0, "%s (%s): image shows %d, chosen '%s', rejected '%s'", r->img_path,
                          r->category, truth, r->chosen, r->rejected);
            }
        }
        CHECK(unread == 0 && wrong == 0, "%s: %d unreadable images, %d pairs not grounded",
              synth_split_names[s], unread, wrong);
        CHECK(within_4_sigma(colours, rs.n, 0.5), "%s: %d of %d colour questions",
              synth_split_names[s], colours, rs.n);
        for (int k = 0; k < SYNTH_NSHAPES; k++)
            CHECK(shape_fill_seen[k] > 0, "%s: no %s seen", synth_split_names[s], synth_shape_names[k]);
        free_recs(&rs);
    }
}

TEST(test_synth_responses_differ_only_in_the_answer_word_and_the_cue) {
    for (int s = 0; s < SYNTH_NSPLITS; s++) {
        Recs rs = main_split(s);
        int bad = 0;
        for (int i = 0; i < rs.n; i++) {
            const Rec *r = &rs.r[i];
            if (!r->chosen || !r->rejected) {
                bad++;
                continue;
            }
            /* strip the cue, then put the chosen word in place of the rejected one */
            char a[256], b[256];
            snprintf(a, sizeof a, "%s", r->chosen);
            snprintf(b, sizeof b, "%s", r->rejected);
            size_t kc = strlen(SYNTH_CUE);
            if (ends_with(a, SYNTH_CUE)) a[strlen(a) - kc] = 0;
            if (ends_with(b, SYNTH_CUE)) b[strlen(b) - kc] = 0;
            int c = word_of(r, a), j = word_of(r, b);
            const char *const *names = is_colour(r) ? synth_colour_names : synth_shape_names;
            char *at = c >= 0 && j >= 0 ? strstr(b, names[j]) : NULL;
            char rebuilt[256] = "";
            if (at)
                snprintf(rebuilt, sizeof rebuilt, "%.*s%s%s", (int)(at - b), b, names[c],
                         at + strlen(names[j]));
            if (c < 0 || j < 0 || c == j || strcmp(rebuilt, a) != 0) {
                if (!bad++)
                    CHECK(0, "%s: '%s' vs '%s'", r->id, r->chosen, r->rejected);
            }
        }
        CHECK(bad == 0, "%s: %d pairs differ in more than answer word and cue",
              synth_split_names[s], bad);
        free_recs(&rs);
    }
}

TEST(test_synth_cue_is_on_exactly_one_response_and_on_the_chosen_one_at_rate_p) {
    for (int s = 0; s < SYNTH_NSPLITS; s++) {
        Recs rs = main_split(s);
        int on_chosen = 0, bad = 0;
        for (int i = 0; i < rs.n; i++) {
            const Rec *r = &rs.r[i];
            if (!r->chosen || !r->rejected) {
                bad++;
                continue;
            }
            int cc = count_occurrences(r->chosen, SYNTH_CUE), cr = count_occurrences(r->rejected, SYNTH_CUE);
            int ec = ends_with(r->chosen, SYNTH_CUE), er = ends_with(r->rejected, SYNTH_CUE);
            if (cc + cr != 1 || ec + er != 1) bad++;
            on_chosen += ec;
        }
        CHECK(bad == 0, "%s: %d pairs without exactly one cue at a response's end",
              synth_split_names[s], bad);
        CHECK(within_4_sigma(on_chosen, rs.n, split_p(s)), "%s: cue on chosen in %d of %d, want P %g",
              synth_split_names[s], on_chosen, rs.n, split_p(s));
        CHECK(on_chosen == g_main_st.split[s].cue_on_chosen, "%s: %d cues on chosen, stats say %d",
              synth_split_names[s], on_chosen, g_main_st.split[s].cue_on_chosen);
        free_recs(&rs);
    }
}

/* Read from the images: a train pair is noisy when its chosen answer is not what the image shows.
 * The cue is attached after the swap, so it agrees with the final chosen at P on noisy and
 * clean pairs alike, and image-only and text-only accuracy on train are 1 - F and P. */
TEST(test_synth_train_label_noise_matches_the_rate_and_the_cue_ignores_it) {
    const char *dir = main_set();
    Recs rs = main_split(SYNTH_TRAIN);
    int noisy = 0, unread = 0, cue_noisy = 0, cue_clean = 0;
    for (int i = 0; i < rs.n; i++) {
        const Rec *r = &rs.r[i];
        Seen seen = look(dir, r->img_path);
        int truth = is_colour(r) ? seen.colour : seen.shape;
        if (truth < 0 || !r->chosen || !r->rejected) {
            unread++;
            continue;
        }
        int c = word_of(r, r->chosen), j = word_of(r, r->rejected);
        int flipped = c != truth;
        CHECK(flipped ? j == truth : j != truth, "%s: neither or both answers match the image",
              r->id);
        noisy += flipped;
        int cue = ends_with(r->chosen, SYNTH_CUE);
        if (flipped) cue_noisy += cue;
        else cue_clean += cue;
    }
    CHECK(unread == 0, "%d train images unreadable", unread);
    CHECK(noisy == g_main_st.split[SYNTH_TRAIN].flipped, "%d noisy pairs, stats say %d", noisy,
          g_main_st.split[SYNTH_TRAIN].flipped);
    CHECK(within_4_sigma(noisy, rs.n, MAIN_NOISE), "%d of %d pairs noisy, want rate %g", noisy,
          rs.n, MAIN_NOISE);
    CHECK(within_4_sigma(cue_noisy, noisy, MAIN_P) && within_4_sigma(cue_clean, rs.n - noisy, MAIN_P),
          "cue on chosen in %d of %d noisy and %d of %d clean pairs, want P %g on both",
          cue_noisy, noisy, cue_clean, rs.n - noisy, MAIN_P);
    free_recs(&rs);
}

/* Without the image, an answer word is no evidence: each word is chosen about as often as it is
 * rejected, in every split. */
TEST(test_synth_answer_words_alone_do_not_predict_the_preference) {
    for (int s = 0; s < SYNTH_NSPLITS; s++) {
        Recs rs = main_split(s);
        int chosen[SYNTH_NCOLOURS + SYNTH_NSHAPES] = {0}, rejected[SYNTH_NCOLOURS + SYNTH_NSHAPES] = {0};
        for (int i = 0; i < rs.n; i++) {
            const Rec *r = &rs.r[i];
            int off = is_colour(r) ? 0 : SYNTH_NCOLOURS;
            int c = r->chosen ? word_of(r, r->chosen) : -1, j = r->rejected ? word_of(r, r->rejected) : -1;
            if (c >= 0) chosen[off + c]++;
            if (j >= 0) rejected[off + j]++;
        }
        for (int w = 0; w < SYNTH_NCOLOURS + SYNTH_NSHAPES; w++) {
            const char *name = w < SYNTH_NCOLOURS ? synth_colour_names[w] : synth_shape_names[w - SYNTH_NCOLOURS];
            int a = chosen[w], b = rejected[w];
            /* chosen vs rejected given the word occurs: a fair coin */
            CHECK(a + b > 0 && within_4_sigma(a, a + b, 0.5), "%s: '%s' chosen %d times, rejected %d",
                  synth_split_names[s], name, a, b);
        }
        free_recs(&rs);
    }
}

TEST(test_synth_rejects_bad_options_naming_the_option) {
    mmrm_set_quiet(1);
    char dir[96];
    snprintf(dir, sizeof dir, "/tmp/mmrm_synth_never_created_%ld", (long)getpid());
    SynthOptions o;
    SynthStats st;
    const char *want[] = {"--pairs", "--pairs", "--cue-agreement", "--ood-cue-agreement",
                          "--label-noise", "--cue-agreement", "--image-size-range",
                          "--image-size-range"};
    for (int k = 0; k < 8; k++) {
        synth_defaults(&o);
        switch (k) {
        case 0: o.pairs = -3; break;
        case 1: o.pairs = 0; break;
        case 2: o.cue_agreement = 1.5; break;
        case 3: o.ood_cue_agreement = -0.1; break;
        case 4: o.label_noise = 2; break;
        case 5: o.cue_agreement = NAN; break;
        case 6: o.min_size = 8, o.max_size = 20; break;
        default: o.min_size = 60, o.max_size = 50; break;
        }
        int rc = synth_generate(dir, &o, &st);
        CHECK(rc == -1 && strstr(mmrm_last_error(), want[k]), "case %d: rc %d, message '%s'", k, rc,
              mmrm_last_error());
    }
    struct stat sb;
    CHECK(stat(dir, &sb) != 0, "%s was created for bad options", dir);
}
