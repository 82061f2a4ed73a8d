/* test_records.c - training and scoring records to pairs (spec/data.md) on JSONL files and tiny
 * images written by the tests: pairwise and ratings formats, ties, N/A ratings, every skip
 * reason under skip and fail, img_path resolution and several files in order.
 *
 * JSONL text in this file is written with ' for " (see write_jsonl) to keep it readable. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/error.h"
#include "tests/harness.h"
#include "models/records.h"

static char g_dir[64];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f)) {
        perror(path);
        exit(2);
    }
}

/* A valid 1x1 24-bit BMP, written byte by byte: 14-byte file header, 40-byte info header, one
 * BGR pixel padded to 4 bytes. */
static void write_bmp(const char *path) {
    static const unsigned char bmp[58] = {
        'B', 'M', 58, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0,         /* size 58, pixels at 54 */
        40, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 24, 0,       /* 1x1, 1 plane, 24 bpp */
        0, 0, 0, 0, 4, 0, 0, 0, 0x13, 0x0b, 0, 0, 0x13, 0x0b, 0, 0, /* no compression */
        0, 0, 0, 0, 0, 0, 0, 0,
        0x20, 0x40, 0x80, 0};
    write_file(path, bmp, sizeof bmp);
}

/* The test folder: img.bmp, sub/deep.bmp, bad.bmp (text), folder.bmp/ (a directory) and an
 * image root root/ holding only rooted.bmp. */
static void tmp_begin(void) {
    mmrm_set_quiet(1);
    snprintf(g_dir, sizeof g_dir, "/tmp/mmrm_records_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        exit(2);
    }
    char p[256];
    snprintf(p, sizeof p, "%s/img.bmp", g_dir);
    write_bmp(p);
    snprintf(p, sizeof p, "%s/sub", g_dir);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/sub/deep.bmp", g_dir);
    write_bmp(p);
    snprintf(p, sizeof p, "%s/bad.bmp", g_dir);
    write_file(p, "this is not an image\n", 21);
    snprintf(p, sizeof p, "%s/folder.bmp", g_dir);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/root", g_dir);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/root/rooted.bmp", g_dir);
    write_bmp(p);
}

static void tmp_end(void) {
    nftw(g_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    mmrm_set_quiet(0);
}

/* Writes text to g_dir/name with every ' turned into " ; returns the path (static buffer, one of
 * four, so a few paths can be live at once). */
static const char *write_jsonl(const char *name, const char *text) {
    static char paths[4][256];
    static int next;
    char *path = paths[next++ % 4];
    snprintf(path, 256, "%s/%s", g_dir, name);
    size_t n = strlen(text);
    char *t = malloc(n + 1);
    for (size_t i = 0; i <= n; i++) t[i] = text[i] == '\'' ? '"' : text[i];
    write_file(path, t, n);
    free(t);
    return path;
}

static const char *in_dir(const char *rel) {
    static char paths[4][256];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, 256, "%s/%s", g_dir, rel);
    return p;
}

static int load_pairs(PairSet *ps, const char *path, const char *image_root, RecOnBad on_bad) {
    RecordOptions opt = {.image_root = image_root, .on_bad_record = on_bad};
    return pairset_load(ps, &path, 1, &opt);
}

static int same(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

static int starts_with(const char *s, const char *prefix) {
    return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

static long total_skipped(const RecLoad *ld) {
    long t = 0;
    for (int r = 0; r < REC_NREASONS; r++) t += ld->skipped[r];
    return t;
}

#define RATE(r) "{'Helpfulness':{'Rating':" r ",'Rationale':'x'}}"
#define RATE2(r1, r2) "{'Helpfulness':{'Rating':" r1 "},'Visual Faithfulness':{'Rating':" r2 "}}"

TEST(test_pairwise_records_give_one_pair_each_with_optional_id_and_margin) {
    tmp_begin();
    const char *p = write_jsonl("pw.jsonl",
        "{'id':'r1','prompt':'What is shown?','img_path':'img.bmp','chosen':'a cat',"
        "'rejected':'a dog','margin':0.5}\n"
        "\n"
        "{'prompt':'P2','img_path':'img.bmp','chosen':'c2','rejected':'r2'}\n"
        "{'id':42,'prompt':'P3','img_path':'img.bmp','chosen':'c3','rejected':'r3',"
        "'margin':null}\n");
    PairSet ps;
    CHECK(load_pairs(&ps, p, NULL, REC_ON_BAD_FAIL) == 0, "load: %s", mmrm_last_error());
    CHECK(ps.n == 3, "%zu pairs", ps.n);
    if (ps.n == 3) {
        const Pair *a = &ps.pairs[0], *b = &ps.pairs[1], *c = &ps.pairs[2];
        CHECK(same(a->id, "r1") && same(a->prompt, "What is shown?") &&
                  same(a->image, in_dir("img.bmp")) && same(a->chosen, "a cat") &&
                  same(a->rejected, "a dog") && a->has_margin && a->margin == 0.5f &&
                  a->file == 0 && a->line == 1,
              "first pair");
        CHECK(b->id == NULL && same(b->chosen, "c2") && !b->has_margin && b->margin == 0.0f &&
                  b->line == 3,
              "no id, no margin, line 3 after a blank line");
        CHECK(same(c->id, "42") && !c->has_margin && c->line == 4, "numeric id, null margin");
    }
    CHECK(ps.load.records == 3 && total_skipped(&ps.load) == 0, "3 records, none skipped");
    CHECK(same(ps.load.summary, "loaded 3 pairs from 1 file; skipped 0 records"), "summary: %s",
          ps.load.summary);
    pairset_free(&ps);
    tmp_end();
}

TEST(test_ratings_record_gives_every_unordered_pair_with_the_higher_mean_chosen) {
    tmp_begin();
    /* means: r0 4.5, r1 3, r2 5, r3 3 (a tie with r1) */
    const char *p = write_jsonl("vlf.jsonl",
        "{'id':'v1','prompt':'Describe.','img_path':'img.bmp','completions':{"
        "'annotations':[" RATE2("'4'", "'5'") "," RATE2("'3'", "3") "," RATE2("5", "'5'") ","
        RATE2("'2'", "'4'") "],"
        "'model':['m0','m1','m2','m3'],'response':['r0','r1','r2','r3']}}\n");
    PairSet ps;
    CHECK(load_pairs(&ps, p, NULL, REC_ON_BAD_FAIL) == 0, "load: %s", mmrm_last_error());
    /* (i, j) in order i < j, the tie (1, 3) skipped */
    const char *want[][2] = {{"r0", "r1"}, {"r2", "r0"}, {"r0", "r3"}, {"r2", "r1"}, {"r2", "r3"}};
    CHECK(ps.n == 5, "%zu pairs, want 5", ps.n);
    for (size_t i = 0; i < ps.n && i < 5; i++)
        CHECK(same(ps.pairs[i].chosen, want[i][0]) && same(ps.pairs[i].rejected, want[i][1]) &&
                  same(ps.pairs[i].id, "v1") && same(ps.pairs[i].prompt, "Describe.") &&
                  !ps.pairs[i].has_margin && ps.pairs[i].line == 1,
              "pair %zu: %s > %s, want %s > %s", i, ps.pairs[i].chosen, ps.pairs[i].rejected,
              want[i][0], want[i][1]);
    CHECK(ps.tied == 1 && ps.unrated == 0, "tied %ld unrated %ld", ps.tied, ps.unrated);
    CHECK(same(ps.load.summary, "loaded 5 pairs from 1 file (not used: 1 tied and 0 unrated "
                                "completion pairs); skipped 0 records"),
          "summary: %s", ps.load.summary);
    pairset_free(&ps);
    tmp_end();
}

TEST(test_ratings_with_a_non_numeric_rating_skip_every_pair_of_that_completion) {
    tmp_begin();
    const char *p = write_jsonl("na.jsonl",
        "{'prompt':'P','img_path':'img.bmp','completions':{'annotations':["
        RATE2("'4'", "'4'") "," RATE2("'5'", "'N/A'") "," RATE2("'1'", "'2'") ","
        RATE2("'3'", "null") "," RATE2("'3'", "''") "],"
        "'model':['a','b','c','d','e'],'response':['r0','r1','r2','r3','r4']}}\n");
    PairSet ps;
    CHECK(load_pairs(&ps, p, NULL, REC_ON_BAD_FAIL) == 0, "load: %s", mmrm_last_error());
    CHECK(ps.n == 1 && same(ps.pairs[0].chosen, "r0") && same(ps.pairs[0].rejected, "r2"),
          "only (0, 2) is usable; got %zu pairs", ps.n);
    CHECK(ps.unrated == 9 && ps.tied == 0, "unrated %ld (want 9 of 10) tied %ld", ps.unrated,
          ps.tied);
    pairset_free(&ps);
    tmp_end();
}

TEST(test_ratings_given_as_numbers_and_numeric_strings_compare_by_value) {
    tmp_begin();
    const char *p = write_jsonl("num.jsonl",
        "{'prompt':'P','img_path':'img.bmp','completions':{'annotations':["
        RATE("4") "," RATE("'4'") "," RATE("' 4.0 '") "," RATE("'4.5'") "," RATE("'1e0'") ","
        RATE("'0x4'") "],"
        "'model':['a','b','c','d','e','f'],'response':['n4','s4','s40','s45','s1','hex']}}\n");
    PairSet ps;
    CHECK(load_pairs(&ps, p, NULL, REC_ON_BAD_FAIL) == 0, "load: %s", mmrm_last_error());
    /* 4 == "4" == " 4.0 " tie among themselves; "4.5" beats all; "1e0" loses to all; hex is
     * not a number */
    const char *want[][2] = {{"s45", "n4"},  {"n4", "s1"},  {"s45", "s4"}, {"s4", "s1"},
                             {"s45", "s40"}, {"s40", "s1"}, {"s45", "s1"}};
    CHECK(ps.n == 7, "%zu pairs, want 7", ps.n);
    for (size_t i = 0; i < ps.n && i < 7; i++)
        CHECK(same(ps.pairs[i].chosen, want[i][0]) && same(ps.pairs[i].rejected, want[i][1]),
              "pair %zu: %s > %s, want %s > %s", i, ps.pairs[i].chosen, ps.pairs[i].rejected,
              want[i][0], want[i][1]);
    CHECK(ps.tied == 3 && ps.unrated == 5, "tied %ld (want 3) unrated %ld (want 5)", ps.tied,
          ps.unrated);
    pairset_free(&ps);
    tmp_end();
}

TEST(test_ratings_record_without_two_distinct_rated_completions_has_no_valid_pair) {
    tmp_begin();
    const char *p = write_jsonl("novalid.jsonl",
        "{'prompt':'one','img_path':'img.bmp','completions':{'annotations':[" RATE("'5'") "],"
        "'model':['a'],'response':['only']}}\n"
        "{'prompt':'ties','img_path':'img.bmp','completions':{'annotations':[" RATE("'3'") ","
        RATE("3") "],'model':['a','b'],'response':['x','y']}}\n"
        "{'prompt':'na','img_path':'img.bmp','completions':{'annotations':[" RATE("'N/A'") ","
        RATE("'4'") "],'model':['a','b'],'response':['x','y']}}\n"
        "{'prompt':'empty','img_path':'img.bmp','completions':{'annotations':[],"
        "'model':[],'response':[]}}\n"
        "{'prompt':'no aspects','img_path':'img.bmp','completions':{'annotations':[{},"
        RATE("'4'") "],'model':['a','b'],'response':['x','y']}}\n");
    PairSet ps;
    CHECK(load_pairs(&ps, p, NULL, REC_ON_BAD_SKIP) == 0, "load: %s", mmrm_last_error());
    CHECK(ps.n == 0 && ps.load.skipped[REC_NO_VALID_PAIR] == 5 && total_skipped(&ps.load) == 5,
          "%zu pairs, %ld no valid pair", ps.n, ps.load.skipped[REC_NO_VALID_PAIR]);
    CHECK(ps.tied == 0 && ps.unrated == 0, "skipped records add no tie/unrated counts");
    pairset_free(&ps);

    CHECK(load_pairs(&ps, p, NULL, REC_ON_BAD_FAIL) == -1, "fail policy stops");
    char want[512];
    snprintf(want, sizeof want, "%s:1: no valid pair (1 completion:", p);
    CHECK(starts_with(mmrm_last_error(), want), "message: %s", mmrm_last_error());
    tmp_end();
}

TEST(test_unicode_prompts_and_empty_responses_are_kept_byte_exact) {
    tmp_begin();
    const char *p = write_jsonl("uni.jsonl",
        "{'prompt':'\xe5\x9b\xbe\xe9\x87\x8c\xe6\x9c\x89\xe4\xbb\x80\xe4\xb9\x88? caf\\u00e9 "
        "\\ud83d\\ude00','img_path':'img.bmp','chosen':'','rejected':'no \\\"quote\\\"\\n'}\n"
        "{'prompt':'\xf0\x9f\x90\x88','img_path':'img.bmp','completions':{'annotations':["
        RATE("'1'") "," RATE("'2'") "],'model':['a','b'],'response':['','\xc3\xa9']}}\n");
    PairSet ps;
    CHECK(load_pairs(&ps, p, NULL, REC_ON_BAD_FAIL) == 0, "load: %s", mmrm_last_error());
    CHECK(ps.n == 2, "%zu pairs", ps.n);
    if (ps.n == 2) {
        CHECK(same(ps.pairs[0].prompt, "\xe5\x9b\xbe\xe9\x87\x8c\xe6\x9c\x89\xe4\xbb\x80\xe4\xb9"
                                       "\x88? caf\xc3\xa9 \xf0\x9f\x98\x80"),
              "unicode prompt: %s", ps.pairs[0].prompt);
        CHECK(same(ps.pairs[0].chosen, "") && same(ps.pairs[0].rejected, "no \"quote\"\n"),
              "empty chosen, escapes decoded");
        CHECK(same(ps.pairs[1].prompt, "\xf0\x9f\x90\x88") && same(ps.pairs[1].chosen, "\xc3\xa9")
                  && same(ps.pairs[1].rejected, ""),
              "empty response in a ratings record");
    }
    pairset_free(&ps);
    tmp_end();
}

TEST(test_malformed_ratings_structure_is_missing_field_or_wrong_type) {
    tmp_begin();
    const char *p = write_jsonl("shape.jsonl",
        /* 1: lengths differ */
        "{'prompt':'P','img_path':'img.bmp','completions':{'annotations':[" RATE("'1'") ","
        RATE("'2'") "],'model':['a','b','c'],'response':['x','y','z']}}\n"
        /* 2: no response array */
        "{'prompt':'P','img_path':'img.bmp','completions':{'annotations':[" RATE("'1'") "]}}\n"
        /* 3: annotations not an array */
        "{'prompt':'P','img_path':'img.bmp','completions':{'annotations':{},'response':[]}}\n"
        /* 4: a response that is not a string */
        "{'prompt':'P','img_path':'img.bmp','completions':{'annotations':[" RATE("'1'") ","
        RATE("'2'") "],'response':['x',3]}}\n"
        /* 5: an aspect that is not an object */
        "{'prompt':'P','img_path':'img.bmp','completions':{'annotations':[{'Helpfulness':'4'},"
        RATE("'2'") "],'response':['x','y']}}\n"
        /* 6: an aspect without Rating */
        "{'prompt':'P','img_path':'img.bmp','completions':{'annotations':[{'Helpfulness':"
        "{'Rationale':'r'}}," RATE("'2'") "],'response':['x','y']}}\n"
        /* 7: completions not an object */
        "{'prompt':'P','img_path':'img.bmp','completions':[]}\n"
        /* 8: both formats at once */
        "{'prompt':'P','img_path':'img.bmp','chosen':'c','completions':{'annotations':[],"
        "'response':[]}}\n"
        /* 9: an annotation that is not an object */
        "{'prompt':'P','img_path':'img.bmp','completions':{'annotations':['4'," RATE("'2'") "],"
        "'response':['x','y']}}\n");
    PairSet ps;
    CHECK(load_pairs(&ps, p, NULL, REC_ON_BAD_SKIP) == 0, "load: %s", mmrm_last_error());
    CHECK(ps.n == 0 && ps.load.skipped[REC_WRONG_TYPE] == 7 &&
              ps.load.skipped[REC_MISSING_FIELD] == 2 && total_skipped(&ps.load) == 9,
          "wrong type %ld (want 7), missing field %ld (want 2)", ps.load.skipped[REC_WRONG_TYPE],
          ps.load.skipped[REC_MISSING_FIELD]);
    char want[512];
    snprintf(want, sizeof want, "%s:1: wrong type: completions.annotations has 2 entries but "
             "completions.response has 3", p);
    CHECK(starts_with(ps.load.first_skip[REC_WRONG_TYPE], want), "first wrong type: %s",
          ps.load.first_skip[REC_WRONG_TYPE]);
    snprintf(want, sizeof want, "%s:2: missing field \"completions.response\"", p);
    CHECK(starts_with(ps.load.first_skip[REC_MISSING_FIELD], want), "first missing field: %s",
          ps.load.first_skip[REC_MISSING_FIELD]);
    pairset_free(&ps);
    tmp_end();
}

/* One bad record per reason (line numbers in the comments), some twice, between good ones. */
static const char *const EVERY_REASON =
    "{'prompt':'ok1','img_path':'img.bmp','chosen':'c','rejected':'r'}\n"   /* 1 */
    "{'prompt':'P','img_path':'img.bmp','chosen':'c',\n"                    /* 2 malformed */
    "{'prompt':'P','img_path':'img.bmp','rejected':'r'}\n"                  /* 3 missing */
    "{'prompt':7,'img_path':'img.bmp','chosen':'c','rejected':'r'}\n"       /* 4 wrong type */
    "{'prompt':'P','img_path':'nope.bmp','chosen':'c','rejected':'r'}\n"    /* 5 missing image */
    "{'prompt':'P','img_path':'bad.bmp','chosen':'c','rejected':'r'}\n"     /* 6 undecodable */
    "{'prompt':'P','img_path':'img.bmp','completions':{'annotations':[" RATE("'2'") "],"
    "'response':['x']}}\n"                                                   /* 7 no valid pair */
    "\n"                                                                     /* 8 blank */
    "{'prompt':'P','img_path':'gone/x.bmp','chosen':'c','rejected':'r'}\n"  /* 9 missing image */
    "{'prompt':'P','img_path':'folder.bmp','chosen':'c','rejected':'r'}\n"  /* 10 missing image */
    "[1,2]\n"                                                                /* 11 wrong type */
    "{'prompt':'ok2','img_path':'sub/deep.bmp','chosen':'c','rejected':'r'}"; /* 12, no LF */

TEST(test_skip_policy_counts_every_reason_and_summarises_largest_first) {
    tmp_begin();
    const char *p = write_jsonl("mixed.jsonl", EVERY_REASON);
    PairSet ps;
    CHECK(load_pairs(&ps, p, NULL, REC_ON_BAD_SKIP) == 0, "load: %s", mmrm_last_error());
    const long want[REC_NREASONS] = {[REC_MALFORMED_JSON] = 1, [REC_MISSING_FIELD] = 1,
                                     [REC_WRONG_TYPE] = 2,     [REC_MISSING_IMAGE] = 3,
                                     [REC_UNDECODABLE_IMAGE] = 1, [REC_NO_VALID_PAIR] = 1};
    for (int r = 0; r < REC_NREASONS; r++)
        CHECK(ps.load.skipped[r] == want[r], "%s: %ld skipped, want %ld",
              rec_reason_name((RecReason)r), ps.load.skipped[r], want[r]);
    CHECK(ps.n == 2 && same(ps.pairs[0].prompt, "ok1") && same(ps.pairs[1].prompt, "ok2") &&
              ps.pairs[1].line == 12 && same(ps.pairs[1].image, in_dir("sub/deep.bmp")),
          "the two good records load");
    CHECK(ps.load.records == 11, "%ld records read (blank line not counted)", ps.load.records);
    CHECK(same(ps.load.summary, "loaded 2 pairs from 1 file; skipped 9 records: 3 missing image, "
                                "2 wrong type, 1 malformed JSON, 1 missing field, 1 undecodable "
                                "image, 1 no valid pair"),
          "summary: %s", ps.load.summary);
    const int first_line[REC_NREASONS] = {2, 3, 4, 5, 6, 7};
    for (int r = 0; r < REC_NREASONS; r++) {
        char prefix[512];
        snprintf(prefix, sizeof prefix, "%s:%d: %s", p, first_line[r],
                 rec_reason_name((RecReason)r));
        CHECK(starts_with(ps.load.first_skip[r], prefix), "first %s: %s",
              rec_reason_name((RecReason)r), ps.load.first_skip[r]);
    }
    pairset_free(&ps);
    tmp_end();
}

TEST(test_fail_policy_stops_at_the_first_bad_record_naming_file_line_and_reason) {
    tmp_begin();
    /* each reason's record from EVERY_REASON, after a good line and a blank line */
    const char *bad_lines[REC_NREASONS] = {
        "{'prompt':'P','img_path':'img.bmp','chosen':'c',",
        "{'prompt':'P','img_path':'img.bmp','rejected':'r'}",
        "{'prompt':7,'img_path':'img.bmp','chosen':'c','rejected':'r'}",
        "{'prompt':'P','img_path':'nope.bmp','chosen':'c','rejected':'r'}",
        "{'prompt':'P','img_path':'bad.bmp','chosen':'c','rejected':'r'}",
        "{'prompt':'P','img_path':'img.bmp','completions':{'annotations':[" RATE("'2'") "],"
        "'response':['x']}}",
    };
    const char *hints[REC_NREASONS] = {
        "malformed JSON (unexpected end of line",
        "missing field \"chosen\" (pairwise records need prompt, img_path, chosen, rejected)",
        "wrong type for \"prompt\": a number (expected a string)",
        "missing image ",
        "undecodable image ",
        "no valid pair (1 completion:",
    };
    for (int r = 0; r < REC_NREASONS; r++) {
        char text[1024];
        snprintf(text, sizeof text,
                 "{'prompt':'ok','img_path':'img.bmp','chosen':'c','rejected':'r'}\n\n%s\n"
                 "{'prompt':'after','img_path':'img.bmp','chosen':'c','rejected':'r'}\n",
                 bad_lines[r]);
        const char *p = write_jsonl("fail.jsonl", text);
        PairSet ps;
        CHECK(load_pairs(&ps, p, NULL, REC_ON_BAD_FAIL) == -1, "%s: the load fails",
              rec_reason_name((RecReason)r));
        char want[512];
        snprintf(want, sizeof want, "%s:3: %s", p, hints[r]);
        CHECK(starts_with(mmrm_last_error(), want), "message: %s\n      want prefix: %s",
              mmrm_last_error(), want);
        CHECK(ps.n == 0 && ps.pairs == NULL && ps.load.nfiles == 0, "the set is left empty");
        pairset_free(&ps);
    }
    char want[512];
    CHECK(load_pairs(&(PairSet){0}, write_jsonl("img.jsonl", bad_lines[REC_MISSING_IMAGE]), NULL,
                     REC_ON_BAD_FAIL) == -1, "missing image fails");
    snprintf(want, sizeof want, "%s (No such file or directory; relative img_path resolves "
             "against the JSONL file's folder unless image_root is set)", in_dir("nope.bmp"));
    CHECK(strstr(mmrm_last_error(), want), "missing image hint: %s", mmrm_last_error());
    tmp_end();
}

TEST(test_img_path_resolves_against_image_root_else_the_files_folder) {
    tmp_begin();
    char abs_line[512];
    snprintf(abs_line, sizeof abs_line,
             "{'prompt':'abs','img_path':'%s','chosen':'c','rejected':'r'}\n", in_dir("img.bmp"));
    char text[2048];
    snprintf(text, sizeof text,
             "{'prompt':'local','img_path':'img.bmp','chosen':'c','rejected':'r'}\n"
             "{'prompt':'rooted','img_path':'rooted.bmp','chosen':'c','rejected':'r'}\n"
             "{'prompt':'sub','img_path':'sub/deep.bmp','chosen':'c','rejected':'r'}\n%s",
             abs_line);
    const char *p = write_jsonl("paths.jsonl", text);

    PairSet ps;
    CHECK(load_pairs(&ps, p, NULL, REC_ON_BAD_SKIP) == 0, "load: %s", mmrm_last_error());
    CHECK(ps.n == 3 && ps.load.skipped[REC_MISSING_IMAGE] == 1, "folder: %zu pairs", ps.n);
    if (ps.n == 3)
        CHECK(same(ps.pairs[0].image, in_dir("img.bmp")) &&
                  same(ps.pairs[1].image, in_dir("sub/deep.bmp")) &&
                  same(ps.pairs[2].image, in_dir("img.bmp")) && same(ps.pairs[2].prompt, "abs"),
              "against the file's folder: %s, %s, %s", ps.pairs[0].image, ps.pairs[1].image,
              ps.pairs[2].image);
    pairset_free(&ps);

    char root[256];
    snprintf(root, sizeof root, "%s/", in_dir("root")); /* a trailing slash adds no second one */
    CHECK(load_pairs(&ps, p, root, REC_ON_BAD_SKIP) == 0, "load: %s", mmrm_last_error());
    CHECK(ps.n == 2 && ps.load.skipped[REC_MISSING_IMAGE] == 2, "root: %zu pairs", ps.n);
    if (ps.n == 2)
        CHECK(same(ps.pairs[0].image, in_dir("root/rooted.bmp")) &&
                  same(ps.pairs[1].image, in_dir("img.bmp")) && same(ps.pairs[1].prompt, "abs"),
              "against image_root: %s, %s", ps.pairs[0].image, ps.pairs[1].image);
    CHECK(strstr(ps.load.first_skip[REC_MISSING_IMAGE], "resolves against image_root"),
          "hint names image_root: %s", ps.load.first_skip[REC_MISSING_IMAGE]);
    pairset_free(&ps);

    CHECK(load_pairs(&ps, p, "", REC_ON_BAD_SKIP) == 0 && ps.n == 3,
          "an empty image_root means the file's folder");
    pairset_free(&ps);
    tmp_end();
}

TEST(test_several_files_concatenate_in_order_with_their_file_index) {
    tmp_begin();
    const char *paths[3];
    paths[0] = write_jsonl("one.jsonl",
        "{'prompt':'a1','img_path':'img.bmp','chosen':'c','rejected':'r'}\n"
        "{'prompt':'a2','img_path':'img.bmp','chosen':'c','rejected':'r'}\n");
    paths[1] = write_jsonl("two.jsonl",
        "{'prompt':'b1','img_path':'img.bmp','completions':{'annotations':[" RATE("1") ","
        RATE("2") "],'response':['lo','hi']}}\n");
    paths[2] = write_jsonl("three.jsonl",
        "not json\n{'prompt':'c1','img_path':'img.bmp','chosen':'c','rejected':'r'}\n");
    PairSet ps;
    CHECK(pairset_load(&ps, paths, 3, NULL) == 0, "load: %s", mmrm_last_error());
    const char *prompts[] = {"a1", "a2", "b1", "c1"};
    const int files[] = {0, 0, 1, 2}, lines[] = {1, 2, 1, 2};
    CHECK(ps.n == 4, "%zu pairs", ps.n);
    for (size_t i = 0; i < ps.n && i < 4; i++)
        CHECK(same(ps.pairs[i].prompt, prompts[i]) && ps.pairs[i].file == files[i] &&
                  ps.pairs[i].line == lines[i],
              "pair %zu: %s from file %d line %d", i, ps.pairs[i].prompt, ps.pairs[i].file,
              ps.pairs[i].line);
    CHECK(ps.load.nfiles == 3 && same(ps.load.files[1], in_dir("two.jsonl")), "file names kept");
    CHECK(same(ps.load.summary, "loaded 4 pairs from 3 files; skipped 1 record: 1 malformed JSON"),
          "summary: %s", ps.load.summary);
    pairset_free(&ps);
    tmp_end();
}

TEST(test_a_dataset_file_that_cannot_be_opened_fails_under_either_policy) {
    tmp_begin();
    const char *paths[2] = {write_jsonl("ok.jsonl", "{'prompt':'a','img_path':'img.bmp',"
                                                    "'chosen':'c','rejected':'r'}\n"),
                            in_dir("missing.jsonl")};
    for (int policy = REC_ON_BAD_SKIP; policy <= REC_ON_BAD_FAIL; policy++) {
        PairSet ps;
        RecordOptions opt = {.on_bad_record = (RecOnBad)policy};
        CHECK(pairset_load(&ps, paths, 2, &opt) == -1 && ps.n == 0, "policy %d fails", policy);
        CHECK(strstr(mmrm_last_error(), "missing.jsonl") &&
                  strstr(mmrm_last_error(), "No such file"),
              "message: %s", mmrm_last_error());
        ScoreSet ss;
        CHECK(scoreset_load(&ss, paths, 2, &opt) == -1 && ss.n == 0, "scoring, policy %d",
              policy);
    }
    tmp_end();
}

TEST(test_records_of_the_wrong_shape_are_wrong_type) {
    tmp_begin();
    const char *p = write_jsonl("shape.jsonl",
        "[{'prompt':'P'}]\n"
        "'just a string'\n"
        "{'prompt':'P','img_path':'img.bmp','chosen':'c','rejected':null}\n"
        "{'prompt':'P','img_path':'img.bmp','chosen':'c','rejected':'r','margin':'0.5'}\n"
        "{'prompt':'P','img_path':'img.bmp','chosen':'c','rejected':'r','margin':1e300}\n"
        "{'prompt':'P','img_path':'img.bmp','chosen':'c','rejected':'r','id':[1]}\n"
        "{'prompt':'P','img_path':'','chosen':'c','rejected':'r'}\n");
    PairSet ps;
    CHECK(load_pairs(&ps, p, NULL, REC_ON_BAD_SKIP) == 0, "load: %s", mmrm_last_error());
    CHECK(ps.n == 0 && ps.load.skipped[REC_WRONG_TYPE] == 6 &&
              ps.load.skipped[REC_MISSING_FIELD] == 1,
          "wrong type %ld (want 6), missing field %ld (want 1: empty img_path)",
          ps.load.skipped[REC_WRONG_TYPE], ps.load.skipped[REC_MISSING_FIELD]);
    char want[512];
    snprintf(want, sizeof want, "%s:1: wrong type: the record is an array (expected a JSON "
             "object)", p);
    CHECK(same(ps.load.first_skip[REC_WRONG_TYPE], want), "message: %s",
          ps.load.first_skip[REC_WRONG_TYPE]);
    pairset_free(&ps);
    tmp_end();
}

TEST(test_repeated_keys_use_the_last_value_like_python_json) {
    tmp_begin();
    const char *p = write_jsonl("dup.jsonl",
        "{'prompt':'first','prompt':'last','img_path':'nope.bmp','img_path':'img.bmp',"
        "'chosen':'c','rejected':'r'}\n"
        "{'prompt':'P','img_path':'img.bmp','completions':{'annotations':["
        "{'H':{'Rating':'1'},'V':{'Rating':'5'},'H':{'Rating':'3'}}," RATE("'3.8'") "],"
        "'response':['dup','other']}}\n");
    PairSet ps;
    CHECK(load_pairs(&ps, p, NULL, REC_ON_BAD_FAIL) == 0, "load: %s", mmrm_last_error());
    CHECK(ps.n == 2 && same(ps.pairs[0].prompt, "last"), "the last prompt wins");
    /* {H: 3, V: 5} has mean 4 > 3.8; counting H twice would give 11/3, the first H 3 */
    CHECK(ps.n == 2 && same(ps.pairs[1].chosen, "dup"), "a repeated aspect counts once");
    pairset_free(&ps);
    tmp_end();
}

TEST(test_scoring_records_keep_responses_and_both_image_paths) {
    tmp_begin();
    const char *p = write_jsonl("score.jsonl",
        "{'prompt':'P1','img_path':'img.bmp','responses':['a','','c']}\n"
        "{'prompt':'P2','img_path':'img.bmp','responses':[]}\n"
        "{'prompt':'P3','img_path':'img.bmp','responses':['a',1]}\n"
        "{'prompt':'P4','img_path':'img.bmp'}\n"
        "{'prompt':'P5','img_path':'nope.bmp','responses':['a']}\n"
        "{'prompt':'P6','img_path':'rooted.bmp','responses':['z']}\n");
    ScoreSet ss;
    char root[256];
    snprintf(root, sizeof root, "%s", in_dir("root"));
    RecordOptions opt = {0};
    CHECK(scoreset_load(&ss, &p, 1, &opt) == 0, "load: %s", mmrm_last_error());
    CHECK(ss.n == 1 && ss.recs[0].nresponses == 3 && same(ss.recs[0].responses[0], "a") &&
              same(ss.recs[0].responses[1], "") && same(ss.recs[0].responses[2], "c") &&
              same(ss.recs[0].img_path, "img.bmp") && same(ss.recs[0].image, in_dir("img.bmp")) &&
              same(ss.recs[0].prompt, "P1") && ss.recs[0].line == 1,
          "the good record");
    const long want[REC_NREASONS] = {[REC_NO_VALID_PAIR] = 1, [REC_WRONG_TYPE] = 1,
                                     [REC_MISSING_FIELD] = 1, [REC_MISSING_IMAGE] = 2};
    for (int r = 0; r < REC_NREASONS; r++)
        CHECK(ss.load.skipped[r] == want[r], "%s: %ld, want %ld", rec_reason_name((RecReason)r),
              ss.load.skipped[r], want[r]);
    CHECK(same(ss.load.summary, "loaded 1 scoring record (3 responses) from 1 file; skipped 5 "
                                "records: 2 missing image, 1 missing field, 1 wrong type, 1 no "
                                "valid pair"),
          "summary: %s", ss.load.summary);
    scoreset_free(&ss);

    opt.image_root = root;
    opt.on_bad_record = REC_ON_BAD_FAIL;
    CHECK(scoreset_load(&ss, &p, 1, &opt) == -1, "fail policy");
    char msg[512];
    snprintf(msg, sizeof msg, "%s:1: missing image %s", p, in_dir("root/img.bmp"));
    CHECK(starts_with(mmrm_last_error(), msg), "message: %s", mmrm_last_error());
    tmp_end();
}
