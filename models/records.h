/* records.h - training and scoring records read from JSONL files (spec/data.md).
 *
 * Training records become preference pairs:
 * - pairwise: {id?, prompt, img_path, chosen, rejected, margin?} gives one pair;
 * - ratings (VLFeedback): {id?, prompt, img_path, completions: {annotations, model, response}}
 *   gives one pair per unordered pair (i < j) of completions, in (i, j) order; a completion's
 *   score is the mean over its annotation's aspects of float(Rating) (a number or a numeric
 *   string); the higher mean is chosen, equal means are skipped, and a pair with any rating that
 *   is not a finite number ("N/A") is skipped. `model` is not used.
 * Scoring records are {prompt, img_path, responses: [...]}.
 * Relative img_path values resolve against image_root, else the JSONL file's folder. At load the
 * image must exist and the decoder must read its header (image_info, no full decode).
 *
 * A bad record is counted under one reason and skipped, or with on_bad_record = fail stops the
 * load with "file:line: <reason> ... (hint)". Loading logs one summary line (mmrm_log), plus the
 * first message of each skip reason. Several files are read in order into one set.
 */
#ifndef MMRM_RECORDS_H
#define MMRM_RECORDS_H

#include <stddef.h>

typedef enum { REC_ON_BAD_SKIP, REC_ON_BAD_FAIL } RecOnBad;

typedef enum {
    REC_MALFORMED_JSON,
    REC_MISSING_FIELD,
    REC_WRONG_TYPE,
    REC_MISSING_IMAGE,
    REC_UNDECODABLE_IMAGE,
    REC_NO_VALID_PAIR, /* for scoring records: an empty responses list */
    REC_NREASONS
} RecReason;

typedef struct {
    const char *image_root; /* NULL or "": relative img_path resolves against the file's folder */
    RecOnBad on_bad_record; /* zero-initialised options mean skip */
} RecordOptions;

typedef struct RecArena RecArena;

/* Strings point into the set's arena; pairs from one ratings record share prompt, image, id. */
typedef struct {
    const char *id;     /* NULL when the record has none; a numeric id is kept as its text */
    const char *prompt;
    const char *image;  /* img_path resolved */
    const char *chosen, *rejected;
    float margin;       /* 0 unless has_margin */
    int has_margin;
    int file;           /* index into load.files */
    int line;           /* 1-based line in that file */
} Pair;

/* What one load read and skipped; both sets carry one. */
typedef struct {
    char **files;                   /* (nfiles,) the paths as given */
    int nfiles;
    long records;                   /* non-blank lines read */
    long skipped[REC_NREASONS];     /* records skipped, by reason */
    char *first_skip[REC_NREASONS]; /* the message of the first record skipped for each reason */
    char summary[512];              /* the line logged at the end of the load */
} RecLoad;

typedef struct {
    Pair *pairs;        /* (n,) */
    size_t n, cap;
    long tied, unrated; /* completion pairs not used within loaded ratings records */
    RecLoad load;
    RecArena *arena;
} PairSet;

typedef struct {
    const char *prompt;
    const char *img_path;          /* as written in the record (scoring output echoes it) */
    const char *image;             /* resolved */
    const char *const *responses;  /* (nresponses,) */
    int nresponses;
    int file, line;
} ScoreRecord;

typedef struct {
    ScoreRecord *recs; /* (n,) */
    size_t n, cap;
    RecLoad load;
    RecArena *arena;
} ScoreSet;

/* Load the files in order into *ps (zeroed first; opt NULL means the defaults). Returns 0, or
 * -1 with mmrm_last_error() for a file that cannot be read or, under fail, the first bad record;
 * the set is then left empty. A set with no pairs is not an error here. */
int pairset_load(PairSet *ps, const char *const *paths, int npaths, const RecordOptions *opt);
void pairset_free(PairSet *ps);

int scoreset_load(ScoreSet *ss, const char *const *paths, int npaths, const RecordOptions *opt);
void scoreset_free(ScoreSet *ss);

/* "malformed JSON", "missing field", ... as used in messages and summaries */
const char *rec_reason_name(RecReason r);

#endif
