/* batch.h - preference pairs to training batches: each pair's image decoded and tiled once
 * and shared by its two responses, both responses through the chat template, two row
 * layouts, seeded per-epoch shuffling, deterministic sharding across ranks, a cursor a
 * checkpoint can save, and prefetch on worker threads.
 *
 * Scan. Opening a loader checks every pair of the set once: the image header gives the tile
 * count (no decode), and both responses go through the template with tokens_per_tile x tiles
 * image tokens and max_length. A pair is skipped and counted by reason when its image header
 * cannot be read or the template rejects either row (image block cut, no room for a
 * response, "<IMG_CONTEXT>" written in the text); under REC_ON_BAD_FAIL the first such pair
 * fails the open instead. The n pairs that pass are the epoch's pairs. Responses cut to
 * max_length are kept (the template keeps the final <|im_end|>) and counted.
 *
 * Order and sharding. Epoch e visits the n pairs in the order batch_shuffle(seed, e, n), a
 * function of (seed, e, n) alone (the set's order without shuffling). Each step takes the next
 * G = P x R pairs of that order (P pairs per rank, R ranks) and rank r takes the contiguous
 * block [r*P, (r+1)*P) of them. An epoch has floor(n / G) steps; its last n mod G pairs (the
 * tail) are left out and counted, so that every rank's batches hold P pairs, the ranks'
 * shares are disjoint, and together they are all of the epoch's pairs but the tail. Epochs
 * follow one another without a break; epochs > 0 ends the sequence after epoch epochs - 1.
 *
 * Cursor. (epoch, pos): the next step starts at position pos of epoch's order. Every batch
 * carries the cursor after it; reopening with start = a saved cursor (same set, seed, P, R
 * and template options) yields exactly the batches that followed it. pos counts pairs, not
 * steps, so a run may also resume on another number of ranks: the rest of the epoch is then
 * split the new way.
 *
 * Prefetch. With num_workers > 0, worker threads build the next batches while the caller
 * uses the current one; at most prefetch + 1 batches exist at once, and they are delivered in
 * step order whichever worker finishes first, so the sequence is bitwise the same for any
 * num_workers (0: batch_loader_next builds each batch in the calling thread). A worker runs
 * the image ops' OpenMP regions on one thread, so W workers keep W cores busy. A build error
 * reaches the caller when the failed batch is due; the batches before it are delivered.
 *
 * An image that passed the scan but fails to decode (a corrupt body behind a valid header) is
 * only found when its batch is built: under skip the pair is left out of that batch and
 * counted, so such a batch holds fewer than P pairs (possibly none): losses must average over
 * the pairs a batch holds. Under fail it is a build error.
 */
#ifndef MMRM_BATCH_H
#define MMRM_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "models/image.h"
#include "models/reward_model.h"
#include "models/template.h"
#include "models/tokenizer.h"
#include "models/records.h"

typedef enum {
    BATCH_PADDED, /* (2P, T) rows, right padded: what RmBatch takes */
    BATCH_PACKED  /* one row of all tokens with per-sequence offsets and positions */
} BatchLayout;

typedef enum {
    BATCH_SKIP_IMAGE,            /* the image cannot be read or decoded */
    BATCH_SKIP_IMAGE_CUT,        /* max_length would cut into the image block */
    BATCH_SKIP_NO_ROOM,          /* the prompt leaves no room for a response token */
    BATCH_SKIP_IMAGE_TOKEN_TEXT, /* the prompt or a response holds the text <IMG_CONTEXT> */
    BATCH_NSKIP
} BatchSkip;

typedef struct BatchCursor {
    long epoch;
    long pos; /* pairs of the epoch's order already taken (by all ranks) */
} BatchCursor;

/* The token rows of a batch: B = 2P sequences, row 2i the chosen and row 2i+1 the rejected
 * response of pair i. The arrays of the other layout are NULL. */
typedef struct BatchRows {
    int B;
    int T;              /* the longest row, rounded up to BatchOptions.t_bucket */
    int total;          /* sum of lengths */
    int *lengths;       /* (B) tokens of each row; its last token is <|im_end|> */
    int *ids;           /* (B, T) padded: right padded with the tokenizer's pad id */
    int *packed;        /* (total) packed: the rows back to back */
    int *cu_seqlens;    /* (B + 1) packed: row b is packed[cu_seqlens[b] .. cu_seqlens[b+1]) */
    int *positions;     /* (total) packed: position in its row, from 0 for each row */
} BatchRows;

typedef struct Batch {
    int P;              /* pairs: the options' P, fewer only after a late decode failure */
    BatchRows rows;
    int n_images;       /* P: one image per pair, in pair order */
    int *tiles;         /* (P) */
    float *pixels;      /* (sum tiles, 3, S, S) every image's tiles, in image order */
    int *image_of;      /* (2P) image_of[2i] = image_of[2i + 1] = i */
    size_t *pair;       /* (P) index into the PairSet */
    float *margin;      /* (P) the pair's margin, 0 when it has none */
    /* with blank_rows: the bias branch's input, the same conversations with the blank
     * IMAGE_BLANK_SIZE image as one tile (tokens_per_tile <IMG_CONTEXT> per row) */
    BatchRows blank;
    const float *blank_pixels; /* (1, 3, S, S) */
    int *blank_image_of;       /* (2P) all 0: every blank row shows the one blank tile */
    BatchCursor at;     /* where this step's global slice starts */
    BatchCursor next;   /* the cursor after this step: what a checkpoint saves */
} Batch;

typedef struct BatchOptions {
    int pairs;                 /* P: pairs per rank and step */
    int rank, world;           /* this rank r of R = world ranks */
    uint64_t seed;
    int shuffle;               /* 0: every epoch in the set's order */
    BatchLayout layout;
    int epochs;                /* batches end after epoch epochs - 1; 0: endless */
    BatchCursor start;         /* {0, 0}, or a saved cursor */
    TemplateKind template_kind;
    const char *system_message; /* NULL: the template's own (config_system_message) */
    int max_length;            /* tokens per row */
    int t_bucket;              /* padded T rounded up to a multiple of this (at most max_length);
                                * 0 or 1: the longest row. Padding rows change no result: a GPU
                                * reuses its GEMM plans across batches of one bucket */
    int tokens_per_tile;       /* <IMG_CONTEXT> tokens per tile (config_tokens_per_tile) */
    ImageConfig image;
    int blank_rows;            /* also build Batch.blank for the shortcut-aware objective */
    RecOnBad on_bad;           /* skip (and count) or fail on a pair that cannot be used */
    int num_workers;           /* threads building batches (and scanning); 0: synchronous */
    int prefetch;              /* batches built ahead of the one in use; 0: max(2, workers) */
} BatchOptions;

typedef struct BatchStats {
    size_t pairs;                /* pairs in the set */
    size_t usable;               /* n: pairs that passed the scan */
    long skipped[BATCH_NSKIP];   /* by reason: the scan's, plus late decode failures so far */
    char first_skip[BATCH_NSKIP][512]; /* the message of the first pair skipped per reason */
    long truncated;              /* usable rows whose response was cut to max_length */
    long steps_per_epoch;        /* floor(n / G) */
    size_t tail;                 /* n mod G: pairs of each epoch left out */
    char summary[768];           /* the line logged at open */
} BatchStats;

typedef struct BatchLoader BatchLoader;

/* Scans the set (see above), logs a summary line and starts the workers. ps and tok must
 * outlive the loader. NULL with mmrm_last_error() for bad options, a tokenizer the template
 * cannot use, a cursor past its epoch's pairs, fewer usable pairs than one step needs, or,
 * under fail, the first pair that cannot be used. */
BatchLoader *batch_loader_open(const PairSet *ps, const Tokenizer *tok, const BatchOptions *opt);

/* The next batch in *out: 1; 0 after the last epoch; -1 with mmrm_last_error() (and again on
 * every later call) when building it failed. *out stays valid until the next call or close. */
int batch_loader_next(BatchLoader *L, const Batch **out);

/* the cursor after the last batch delivered; before the first, where the first starts */
BatchCursor batch_loader_cursor(const BatchLoader *L);
const BatchStats *batch_loader_stats(const BatchLoader *L);

/* Stops and joins the workers (a batch being built is abandoned) and frees everything. */
void batch_loader_close(BatchLoader *L);

/* order (n) = the epoch's permutation of 0..n-1: Fisher-Yates driven by the counter RNG on
 * (seed, a shuffling stream of the epoch) */
void batch_shuffle(uint64_t seed, long epoch, size_t n, size_t *order);

/* Checks that each row holds tokens_per_tile x (its image's tiles) <IMG_CONTEXT> tokens (one
 * tile for blank rows): 0, or -1 with an error naming the pair (its file:line when ps is not
 * NULL), the row and both counts. The loader checks every batch it builds. */
int batch_check(const Batch *b, const PairSet *ps, int img_context_id, int tokens_per_tile);

/* The model's view of a padded batch's rows, images and image_of (no copy; valid as long as
 * the batch); the _blank view shows the blank rows and the one blank tile. */
void batch_rm_view(const Batch *b, RmBatch *out);
void batch_rm_view_blank(const Batch *b, RmBatch *out);

/* "image unreadable", "image block cut by max_length", ... for counters and summaries */
const char *batch_skip_name(BatchSkip s);

#endif
