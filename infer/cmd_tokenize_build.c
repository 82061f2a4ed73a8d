/* cmd_tokenize_build.c - `mmrm tokenize build`: a word tokenizer (models/tokenizer.h,
 * TOKENIZER_WORD) for any training data set, so the tiny models trained from scratch read
 * data mmrm did not generate word by word. The records are read with models/records.h (every
 * training format); each record's prompt and distinct responses are split into word pieces,
 * counted, and the pieces seen at least --min-count times are kept, the --max-vocab most
 * frequent of them (ties by text). The vocabulary is sorted by text, so the output depends
 * only on the data and the options. */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/commands.h"
#include "models/records.h"
#include "models/tokenizer.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"

static const char USAGE[] =
    "usage: mmrm tokenize build --data FILE.jsonl [--data FILE ...] --out DIR [options]\n"
    "\n"
    "Writes DIR/mmrm_tokenizer.json, a word tokenizer (byte fallback, the chat templates'\n"
    "special tokens at 256..269, words from 270 on) for the training records of the files:\n"
    "pairwise {prompt, img_path, chosen, rejected} or ratings (VLFeedback) records, read as\n"
    "`mmrm train` reads them (images must exist; bad records are skipped and counted). A word\n"
    "is a run of ASCII letters and digits with the space before it; every prompt and response\n"
    "of a record counts once. Train with tokenizer_path = DIR and a model whose vocab_size is at\n"
    "least the printed vocabulary size.\n"
    "\n"
    "  --data FILE        a JSONL file of training records (repeatable)\n"
    "  --out DIR          the output folder (created if missing)\n"
    "  --min-count N      keep words seen at least N times (default 1)\n"
    "  --max-vocab N      keep at most the N most frequent words, ties by text (default 30000)\n"
    "  --image-root DIR   resolve relative img_path against DIR (default: each file's folder)\n"
    "  --help             this text\n";

#define MAX_DATA 64

static int usage_error(const char *fmt, const char *arg) {
    fputs("mmrm: error: tokenize build: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs(" (see mmrm tokenize build --help)\n", stderr);
    return 2;
}

/* ---- word counts: open addressing over (text, len) ---- */

typedef struct {
    char *text;
    size_t len;
    long count;
} Word;

typedef struct {
    Word *slot; /* (cap) text NULL = empty */
    size_t cap, n;
    long pieces; /* word pieces counted */
} Counts;

static uint64_t hash_text(const char *s, size_t n) { /* FNV-1a */
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static void counts_grow(Counts *c) {
    Counts g = {xcalloc(c->cap ? 2 * c->cap : 1024, sizeof(Word)), c->cap ? 2 * c->cap : 1024, c->n,
                c->pieces};
    for (size_t i = 0; i < c->cap; i++) {
        if (!c->slot[i].text) continue;
        size_t j = hash_text(c->slot[i].text, c->slot[i].len) & (g.cap - 1);
        while (g.slot[j].text) j = (j + 1) & (g.cap - 1);
        g.slot[j] = c->slot[i];
    }
    free(c->slot);
    *c = g;
}

static void count_piece(const char *piece, size_t len, void *ctx) {
    Counts *c = ctx;
    if (2 * (c->n + 1) > c->cap) counts_grow(c);
    size_t j = hash_text(piece, len) & (c->cap - 1);
    while (c->slot[j].text && !(c->slot[j].len == len && !memcmp(c->slot[j].text, piece, len)))
        j = (j + 1) & (c->cap - 1);
    if (!c->slot[j].text) {
        c->slot[j].text = xmalloc(len + 1);
        memcpy(c->slot[j].text, piece, len);
        c->slot[j].text[len] = 0;
        c->slot[j].len = len;
        c->n++;
    }
    c->slot[j].count++;
    c->pieces++;
}

static void count_text(Counts *c, const char *text) {
    tokenizer_word_pieces(text, strlen(text), count_piece, c);
}

static int by_count_then_text(const void *a, const void *b) {
    const Word *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return strcmp(x->text, y->text);
}

static int by_text(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Counts each record's prompt once and each of its distinct responses once: the pairs a
 * ratings record yields are consecutive and share the loader's string pointers. */
static void count_pairs(Counts *c, const PairSet *ps) {
    const char **seen = xmalloc((2 * ps->n + 1) * sizeof *seen);
    size_t nseen = 0;
    for (size_t i = 0; i < ps->n; i++) {
        const Pair *p = &ps->pairs[i];
        int same = i > 0 && ps->pairs[i - 1].file == p->file && ps->pairs[i - 1].line == p->line;
        if (!same) {
            nseen = 0;
            count_text(c, p->prompt);
        }
        const char *two[2] = {p->chosen, p->rejected};
        for (int k = 0; k < 2; k++) {
            size_t j = 0;
            while (j < nseen && seen[j] != two[k]) j++;
            if (j < nseen) continue;
            seen[nseen++] = two[k];
            count_text(c, two[k]);
        }
    }
    free(seen);
}

static int parse_count(const char *s, long lo, long hi, long *v) {
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (end == s || *end || errno || x < lo || x > hi) return -1;
    *v = x;
    return 0;
}

int cmd_tokenize_build(int argc, char **argv) {
    const char *data[MAX_DATA], *out = NULL, *image_root = NULL;
    int ndata = 0;
    long min_count = 1, max_vocab = 30000;
    /* the word ids follow the 270 byte and special ids and stay below 65536 */
    const long max_words = 65536 - 270;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(USAGE, stdout);
            return 0;
        }
        if (strcmp(a, "--data") && strcmp(a, "--out") && strcmp(a, "--min-count") &&
            strcmp(a, "--max-vocab") && strcmp(a, "--image-root"))
            return usage_error("unknown option '%s'", a);
        if (i + 1 >= argc) return usage_error("%s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--data")) {
            if (ndata == MAX_DATA) return usage_error("at most 64 --data files (got more at '%s')", v);
            data[ndata++] = v;
        } else if (!strcmp(a, "--out")) {
            out = v;
        } else if (!strcmp(a, "--image-root")) {
            image_root = v;
        } else if (!strcmp(a, "--min-count")) {
            if (parse_count(v, 1, LONG_MAX, &min_count))
                return usage_error("--min-count must be an integer >= 1 (got '%s')", v);
        } else if (parse_count(v, 1, max_words, &max_vocab)) {
            return usage_error("--max-vocab must be an integer in [1, 65266] (got '%s')", v);
        }
    }
    if (!ndata) return usage_error("%s is required", "--data FILE.jsonl");
    if (!out || !*out) return usage_error("%s is required", "--out DIR");

    PairSet ps = {0};
    RecordOptions ropt = {.image_root = image_root, .on_bad_record = REC_ON_BAD_SKIP};
    if (pairset_load(&ps, data, ndata, &ropt)) {
        fprintf(stderr, "mmrm: error: tokenize build: %s\n", mmrm_last_error());
        return 1;
    }
    if (ps.n == 0) {
        fprintf(stderr, "mmrm: error: tokenize build: no usable training pairs in the data (%s)\n",
                ps.load.summary);
        pairset_free(&ps);
        return 1;
    }
    Counts c = {0};
    count_pairs(&c, &ps);
    Word *w = xmalloc((c.n + 1) * sizeof *w);
    size_t nw = 0;
    for (size_t i = 0; i < c.cap; i++)
        if (c.slot[i].text) w[nw++] = c.slot[i];
    qsort(w, nw, sizeof *w, by_count_then_text);
    size_t keep = 0;
    long covered = 0;
    while (keep < nw && keep < (size_t)max_vocab && w[keep].count >= min_count)
        covered += w[keep++].count;
    char **words = xmalloc((keep + 1) * sizeof *words);
    for (size_t i = 0; i < keep; i++) words[i] = w[i].text;
    qsort(words, keep, sizeof *words, by_text);

    int rc = 1;
    Tokenizer *tok = tokenizer_word_new((const char *const *)words, (int)keep, 0);
    if (!tok) {
        fprintf(stderr, "mmrm: error: tokenize build: %s\n", mmrm_last_error());
    } else if (fs_mkdir_p(out) != 0 || tokenizer_save(tok, out) != 0) {
        fprintf(stderr, "mmrm: error: tokenize build: cannot write %s/%s: %s\n", out,
                TOKENIZER_FILE, mmrm_last_error());
    } else {
        printf("tokenize build: %zu pairs from %d file(s); %ld word pieces, %zu distinct\n",
               ps.n, ndata, c.pieces, nw);
        printf("  kept %zu words (min count %ld, max %ld), covering %.2f%% of the word pieces\n",
               keep, min_count, max_vocab, c.pieces ? 100.0 * (double)covered / (double)c.pieces : 0.0);
        printf("  wrote %s/%s: vocab_size %d (a model needs vocab_size >= %d)\n", out,
               TOKENIZER_FILE, tok->vocab_size, tok->vocab_size);
        rc = 0;
    }
    tokenizer_free(tok);
    free(words);
    for (size_t i = 0; i < c.cap; i++) free(c.slot[i].text);
    free(c.slot);
    free(w);
    pairset_free(&ps);
    return rc;
}
