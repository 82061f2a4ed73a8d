/* bench_tokenizer.c - encoding speed of a model directory's tokenizer on one thread: every line
 * of a corpus (default: the BPE oracle corpus and InternVL2-1B's Qwen2 tokenizer, the fixtures
 * of tests/oracle/gen_bpe_fixtures.py) through tokenizer_encode, one call per line. Prints the
 * first pass (cold piece cache) and the best of the next passes in MB/s of input and tokens/s;
 * bench/bench_tokenizer_hf.py prints the same for HF tokenizers on the same corpus.
 *
 * Run: build/bench_tokenizer [--tokenizer DIR] [--corpus FILE] [--passes N (5)]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/tokenizer.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "runtime/strbuf.h"

typedef struct {
    const char *s;
    size_t n;
} Line;

/* one pass over the lines; the ids it produced */
static long encode_all(const Tokenizer *tok, const Line *lines, int n_lines, int *ids, int cap) {
    long total = 0;
    for (int i = 0; i < n_lines; i++) {
        int k = tokenizer_encode(tok, lines[i].s, lines[i].n, ids, cap);
        MMRM_CHECK(k >= 0 && k <= cap, "bench_tokenizer: line %d: %s", i + 1, mmrm_last_error());
        total += k;
    }
    return total;
}

int main(int argc, char **argv) {
    const char *dir = "tests/fixtures/tokenizers/qwen2";
    const char *corpus = "tests/fixtures/tokenizers/bpe_corpus.txt";
    int passes = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--corpus") && i + 1 < argc) corpus = argv[++i];
        else if (!strcmp(argv[i], "--passes") && i + 1 < argc) passes = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_tokenizer [--tokenizer DIR] [--corpus FILE] [--passes N]\n");
            return 2;
        }
    }
    double t0 = clock_seconds();
    Tokenizer *tok = tokenizer_load(dir);
    MMRM_CHECK(tok, "bench_tokenizer: %s", mmrm_last_error());
    double t_load = clock_seconds() - t0;
    size_t size;
    char *text = fs_read_file(corpus, &size);
    MMRM_CHECK(text, "bench_tokenizer: %s", mmrm_last_error());
    int n_lines = 0, cap = 1;
    for (size_t i = 0; i < size; i++) n_lines += text[i] == '\n';
    Line *lines = xmalloc((size_t)(n_lines + 1) * sizeof *lines);
    n_lines = 0;
    for (size_t i = 0; i < size;) {
        char *e = memchr(text + i, '\n', size - i);
        size_t n = e ? (size_t)(e - (text + i)) : size - i;
        lines[n_lines++] = (Line){text + i, n};
        if (3 * (int)n + 1 > cap) cap = 3 * (int)n + 1; /* NFC grows text at most 3x */
        i += n + 1;
    }
    int *ids = xmalloc((size_t)cap * sizeof *ids);
    printf("tokenizer %s (%d ids, loaded in %.2f s); corpus %s: %d lines, %.2f MB\n", dir,
           tok->vocab_size, t_load, corpus, n_lines, size / 1e6);
    double best = 0;
    long tokens = 0;
    for (int p = 0; p < passes; p++) {
        double t = clock_seconds();
        tokens = encode_all(tok, lines, n_lines, ids, cap);
        t = clock_seconds() - t;
        if (p == 0)
            printf("mmrm, 1 thread, first pass (cold cache): %.2f MB/s, %.0f tokens/s (%ld tokens "
                   "in %.3f s)\n", size / 1e6 / t, tokens / t, tokens, t);
        else if (best == 0 || t < best)
            best = t;
    }
    if (best > 0)
        printf("mmrm, 1 thread, best of %d more passes: %.2f MB/s, %.0f tokens/s (%.3f s)\n",
               passes - 1, size / 1e6 / best, tokens / best, best);
    free(ids);
    free(lines);
    free(text);
    tokenizer_free(tok);
    return 0;
}
