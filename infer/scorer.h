/* scorer.h - the inference engine shared by `mmrm score` and `mmrm eval`: groups of
 * (image, prompt, responses) in, one reward per response out.
 *
 * Each group's image is decoded and tiled once and shared by all its responses
 * (RmBatch.image_of); responses of several groups are packed into forwards of up to
 * batch_size sequences, right padded; a group with more responses than that spans
 * several forwards (its tiles are reused, the ViT runs once per forward). Padding and
 * packing do not change a score: every reward is that of the sequence alone.
 *
 * Failures are per group or per response, never fatal: a group whose image cannot be
 * read or decoded gets SCORE_IMAGE_FAILED for every response; a response the chat
 * template rejects (image block cut by max_length, no room for a response token, the text
 * "<IMG_CONTEXT>" written in it) gets that status and no score. A response cut to
 * max_length is scored (the template keeps its final <|im_end|>) and counted.
 *
 * Blank mode: every group shows the blank white IMAGE_BLANK_SIZE image as one tile, the
 * input of the shortcut-aware objective's bias branch, i.e. the model's text-only verdict.
 * The image files are not read at all, and the blank tile's ViT features are computed once
 * (the ViT is frozen at inference) and fed to every forward (RmBatch.vit_cache).
 *
 * Progress (at the end): a progress display on stderr for long loops, a bar with rate and
 * ETA on a terminal, a plain line every 10% (or 30 s) otherwise.
 */
#ifndef MMRM_INFER_SCORER_H
#define MMRM_INFER_SCORER_H

#include <stdio.h>

#include "models/image.h"
#include "models/reward_model.h"
#include "models/template.h"
#include "models/tokenizer.h"

typedef struct ScorerOptions {
    int batch_size;    /* sequences per forward, >= 1 */
    long max_tokens;   /* tokens of the rows per forward: a forward runs before a row would
                        * pass it (a longer row runs alone); 0: batch_size alone decides */
    int max_length;    /* tokens per sequence, <= the model's max_position_embeddings */
    ImageConfig image; /* image_size must be the model's run size */
    int blank;         /* every group shows the blank image as one tile */
    int share_prefix;  /* a forward's responses to one prompt share its prefix (default 1) */
    int packing;       /* a forward's rows as one stream without padding (default 1) */
    int t_bucket;      /* a forward's padded T (and with share_prefix / packing the compact
                        * rows' length, RewardModel.t_bucket) rounded up to a multiple, at
                        * most max_length, so GEMM shapes repeat across forwards (a GPU reuses
                        * its cuBLASLt plans); padding is never read, so no score changes.
                        * <= max_length; 0: auto, 64 (at most max_length) on a GPU and 1 on
                        * the CPU (training's rule) */
} ScorerOptions;

/* batch 8, max_length min(4096, max_position_embeddings), the InternVL2 tiling (image_size
 * from cfg, tiles 1..6, thumbnail, dynamic), blank off, share_prefix and packing on (the
 * model's layout, RewardModel.share_prefix: the same scores with less work), t_bucket auto */
void scorer_default_options(const ModelConfig *cfg, ScorerOptions *o);

typedef enum {
    SCORE_OK = 0,
    SCORE_IMAGE_FAILED,     /* the group's image is missing, unreadable or undecodable */
    SCORE_IMAGE_CUT,        /* max_length would cut into the image block */
    SCORE_NO_ROOM,          /* the prompt leaves no room for a response token */
    SCORE_IMAGE_TOKEN_TEXT, /* the prompt or response holds the text <IMG_CONTEXT> */
    SCORE_NSTATUS
} ScoreStatus;

/* "image unreadable", "image block cut by max_length", ... for messages and counters */
const char *score_status_name(ScoreStatus s);

typedef struct ScoreGroup {
    const char *prompt;
    const char *image;            /* file path (not read in blank mode) */
    const char *const *responses; /* (n) */
    int n;
} ScoreGroup;

#define SCORER_MSG_LEN 512

/* One entry per response; the responses of the groups back to back. */
typedef struct ScoreOut {
    float score;        /* NAN unless status is SCORE_OK */
    ScoreStatus status;
    int truncated;      /* the response was cut to max_length (and still scored) */
} ScoreOut;

/* Counters over the scorer's life, for throughput lines. */
typedef struct ScorerStats {
    long forwards;
    long sequences;     /* sequences scored */
    long tokens;        /* real tokens of those sequences */
    long padded;        /* B x T slots of the forwards (tokens + padding) */
    long computed;      /* token rows the decoder computed (share_prefix: a prompt's prefix
                         * once per forward; packing: no padding) */
    long images;        /* images decoded and tiled */
    long tiles;         /* tiles through the ViT (an image spanning k forwards counts k times;
                         * blank mode runs it once, in scorer_new, and counts 0) */
    double image_seconds, forward_seconds;
    long plan_hits, plan_misses; /* GEMM plan-cache lookups of its forwards (0 on the CPU);
                                  * a miss is a cuBLASLt heuristic query (t_bucket) */
} ScorerStats;

typedef struct Scorer Scorer;

/* m and tok must outlive the scorer; m's parameters are only read. NULL with
 * mmrm_last_error() for bad options, an unknown template name in the model config, or a
 * tokenizer the template cannot use. */
Scorer *scorer_new(RewardModel *m, const Tokenizer *tok, const ScorerOptions *o);
/* on a GPU, a scorer that ran forwards logs its "plans: H hits, M misses" line first */
void scorer_free(Scorer *s);

/* Scores every response of groups[0..n) into out (sum of the groups' n entries). msg (may
 * be NULL) gets, per group, "" or the message of the group's first failure (the image's
 * path and reason, or which response the template rejected and why). Returns 0, or -1 with
 * mmrm_last_error() for a failure that is not the data's (the tokenizer and the model
 * disagree: a token id outside the model's vocabulary, ...). */
int scorer_score(Scorer *s, const ScoreGroup *groups, int n, ScoreOut *out,
                 char (*msg)[SCORER_MSG_LEN]);

const ScorerStats *scorer_stats(const Scorer *s);
/* the options in effect (t_bucket auto resolved for the model's device) */
const ScorerOptions *scorer_options(const Scorer *s);

/* ---- what score and eval share on the command line ---- */

/* Loads DIR's model onto device d with every group frozen (inference only), with bf16
 * weight copies when bf16 (a GPU only; scorer_cli_device's *bf16), and its
 * tokenizer file, and logs one line about it (a missing score head is warned about: its
 * scores mean nothing). 0, or -1 with mmrm_last_error(); nothing is left allocated on error. */
int scorer_load_model(const char *dir, Device d, int bf16, RewardModel *m, Tokenizer **tok);
/* the same with a LoRA adapter directory (PEFT's layout, models/lora.h) on top of DIR's
 * model; NULL: none */
int scorer_load_model_adapter(const char *dir, const char *adapter, Device d, int bf16,
                              RewardModel *m, Tokenizer **tok);

/* The scoring options a command line may override; zero means the default. */
typedef struct ScorerCli {
    int batch_size, max_length;
    int max_tokens;            /* --max-tokens */
    int t_bucket;              /* --t-bucket (0: auto) */
    int min_patch, max_patch;  /* dynamic tiles */
    int no_thumbnail, no_dynamic;
    int no_share_prefix, no_packing;
    int thumbnail, dynamic;    /* --thumbnail, --dynamic: on even where the config says off */
    const char *image_root;
    const char *device;        /* --device: auto (default), cpu, cuda, cuda:N */
    const char *precision;     /* --precision: fp32 (default) or bf16 (a GPU only) */
    const char *adapter;       /* --adapter: a LoRA adapter directory on top of --model */
    const char *attention_impl; /* --attention-impl: auto (default), mmrm, cudnn */
} ScorerCli;

/* Consumes argv[*i] (and its value) when it is one of the options below, advancing *i:
 * 1 consumed, 0 not one of them, -1 a bad value (message printed). --device is checked
 * by scorer_cli_device. */
int scorer_cli_option(ScorerCli *c, int argc, char **argv, int *i);
/* the device --device names (GPU local_rank when several processes share a node), and
 * --precision checked against it (*bf16: 1 for bf16, which scorer_load_model takes: the
 * model then keeps bf16 weight copies, and a scorer over it runs bf16 GEMMs and stores
 * activations in bf16); 0, or -1 with a message printed */
int scorer_cli_device(const ScorerCli *c, int local_rank, Device *out, int *bf16);
/* usage lines for those options */
extern const char SCORER_CLI_USAGE[];
/* "mmrm: error: " + fmt (with arg), a blank line, then usage (a format taking
 * SCORER_CLI_USAGE) on stderr; returns 2, the usage-error exit status */
int scorer_cli_usage_error(const char *usage, const char *fmt, const char *arg);
/* the defaults for cfg with the command line's overrides */
void scorer_cli_options(const ScorerCli *c, const ModelConfig *cfg, ScorerOptions *o);

/* ---- progress on stderr ---- */

typedef struct Progress {
    const char *what;   /* unit, e.g. "responses" */
    long total, done;
    double start, last_print;
    int tty, last_decile;
} Progress;

void progress_start(Progress *p, const char *what, long total);
/* adds n to done and redraws when due */
void progress_add(Progress *p, long n);
/* the final state (ends the bar's line on a terminal) */
void progress_end(Progress *p);

#endif
