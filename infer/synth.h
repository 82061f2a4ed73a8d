/* synth.h - a synthetic multimodal preference benchmark with a text-only shortcut
 * (spec/algorithm.md, "What a faithful synthetic shortcut benchmark needs"), small enough for
 * tiny models trained from scratch on a CPU.
 *
 * Each pair shows one big coloured shape (6 colours x 3 shapes) on a pale, lightly varied
 * background; W and H are drawn independently from the size range, so aspect ratios vary. The
 * question asks for the colour or the shape; chosen is the correct answer and rejected another
 * colour/shape in the same sentence, so the answer words alone carry no signal. In train a
 * fraction label_noise of pairs is swapped (annotation noise); then the cue SYNTH_CUE is
 * appended to the final chosen response with probability P, else to the rejected one, so that
 * in train the image and the cue each predict the label about equally well. Test splits are
 * noise-free: test_id keeps P, test_ood uses the o.o.d. agreement, test_oracle P = 0.5.
 *
 * Task families (--task, synth_tasks.c): colour (the above, the default), count ("how many
 * circles?": 1-4 shapes of one kind in the cells of a 2x2 grid), position (is object A left or
 * right of object B), size (which of two objects is larger), mixed (each pair draws one of the
 * four). Cue kinds (--cue): trailing (SYNTH_CUE appended, the default), length (one to three
 * extra sentences make the cued response longer), style ("Certainly! " before it), hedge (a
 * hedging opener such as "I think"), position (both responses end with the list of the two
 * candidate answers; the cued one lists its own answer first). The defaults reproduce the
 * original benchmark byte for byte.
 *
 * Every pair draws from its own RNG streams (seed, split, index): output is byte-identical for
 * a seed, the first k train pairs do not depend on --pairs, and changing P, the noise rate or
 * the ratings fraction changes neither the images nor the questions.
 */
#ifndef MMRM_SYNTH_H
#define MMRM_SYNTH_H

#include <stdint.h>

#define SYNTH_NCOLOURS 6
#define SYNTH_NSHAPES 3
#define SYNTH_CUE " Hope this helps!"

extern const char *const synth_colour_names[SYNTH_NCOLOURS]; /* red orange yellow green blue purple */
extern const char *const synth_shape_names[SYNTH_NSHAPES];   /* circle square triangle */

typedef enum { SYNTH_TASK_COLOUR, SYNTH_TASK_COUNT, SYNTH_TASK_POSITION, SYNTH_TASK_SIZE,
               SYNTH_TASK_MIXED, SYNTH_NTASKS } SynthTask;
typedef enum { SYNTH_CUE_TRAILING, SYNTH_CUE_LENGTH, SYNTH_CUE_STYLE, SYNTH_CUE_HEDGE,
               SYNTH_CUE_POSITION, SYNTH_NCUES } SynthCueKind;
extern const char *const synth_task_names[SYNTH_NTASKS]; /* "color", "count", ... (--task) */
extern const char *const synth_cue_names[SYNTH_NCUES];   /* "trailing", "length", ... (--cue) */

typedef enum { SYNTH_TRAIN, SYNTH_TEST_ID, SYNTH_TEST_OOD, SYNTH_TEST_ORACLE, SYNTH_NSPLITS } SynthSplit;
extern const char *const synth_split_names[SYNTH_NSPLITS]; /* file stems: "train", "test_id", ... */

typedef struct {
    uint64_t seed;
    int pairs;                /* train pairs; each test split has max(pairs / 4, 50) */
    double cue_agreement;     /* P(cue on the final chosen) in train and test_id */
    double ood_cue_agreement; /* the same in test_ood */
    double label_noise;       /* fraction of train pairs swapped before the cue is attached */
    double ratings_fraction;  /* train records written in the ratings (VLFeedback) format */
    int min_size, max_size;   /* image width and height range in pixels, 16 <= min <= max <= 4096 */
    int score_records;        /* test_id pairs copied into score_input.jsonl */
    SynthTask task;           /* the question family (default SYNTH_TASK_COLOUR) */
    SynthCueKind cue;         /* the text-only cue (default SYNTH_CUE_TRAILING) */
} SynthOptions;

typedef struct {
    int pairs;
    int ratings_records; /* of pairs, written in the ratings format (train only) */
    int cue_on_chosen;   /* pairs whose final chosen response carries the cue */
    int flipped;         /* pairs whose chosen answer contradicts the image (train only) */
} SynthSplitStats;

typedef struct {
    SynthSplitStats split[SYNTH_NSPLITS];
    int score_records;
    double seconds; /* wall time of the generation */
} SynthStats;

/* seed 1, 2000 pairs, P 0.9 / 0.1, noise 0.1, 30% ratings records, sizes 40..96, 8 scored,
 * colour task, trailing cue */
void synth_defaults(SynthOptions *o);

/* Writes DIR/{train,test_id,test_ood,test_oracle}.jsonl, DIR/score_input.jsonl, DIR/README.txt
 * and DIR/images/<split>_<index>.png (DIR and images/ are created if missing; every file is
 * written atomically). Returns 0 with *st filled, or -1 with mmrm_last_error() for bad options
 * (naming the option) or a file that cannot be written. */
int synth_generate(const char *dir, const SynthOptions *o, SynthStats *st);

#endif
