/* score_resume.h - what earlier runs of `mmrm score` wrote, read back so that a rerun skips
 * it: the keys of the lines in the output and in part files (a torn last line cut away), the
 * tag before a part file's line, and the lock on the output. */
#ifndef MMRM_SCORE_RESUME_H
#define MMRM_SCORE_RESUME_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/strbuf.h"

/* a 128-bit hash of a (prompt, img_path, response) triple, or of a whole --grouped record */
typedef struct {
    uint64_t a, b;
} ScoreKey;

/* a multiset of keys; {0} is empty */
typedef struct {
    ScoreKey *keys;
    long *count; /* 0: an empty slot; else 1 + the occurrences not yet taken */
    size_t cap, n;
} KeySet;

ScoreKey key_triple(const char *prompt, const char *img_path, const char *response);
ScoreKey key_record(const char *prompt, const char *img_path, const char *const *responses,
                    int n);
/* 1 (and one occurrence fewer) when the set holds k */
int keyset_take(KeySet *s, ScoreKey k);
void keyset_free(KeySet *s);

/* A part file's line is "LINE J " and the output line, LINE the record's line in the input
 * and J the response's index (0 for a --grouped line): the merge sorts by them. put appends
 * the tag (nothing when line < 0: a line of OUT itself); parse returns the output line after
 * it, or NULL when the tag is malformed. */
void score_put_tag(StrBuf *b, long line, int j);
const char *score_parse_tag(const char *s, long *line, long *j);

/* Adds path's lines to done and counts them in *lines (tagged: a part file). A last line
 * without its newline or that is not an output line is what a crash mid-write leaves: the
 * file is cut back to the end of the line before it. Any other bad line is an error (the
 * file is not ours), as is a line of the other kind (grouped or not). 0 or -1; a missing
 * file is an empty output. */
int score_read_done(const char *path, int grouped, int tagged, KeySet *done, long *lines);

/* Opens the output for appending and takes its exclusive lock; the fd, or -1 with the error
 * set (another process holding the lock included). */
int score_open_locked(const char *output);

#endif
