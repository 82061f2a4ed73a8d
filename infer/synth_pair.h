/* synth_pair.h - one pair of the synthetic benchmark as drawn, shared by synth.c (the colour
 * task, rendering, files) and synth_tasks.c (the other task families and the cue kinds).
 * Internal to `mmrm synth`. */
#ifndef MMRM_SYNTH_PAIR_H
#define MMRM_SYNTH_PAIR_H

#include <stddef.h>

#include "infer/synth.h"
#include "runtime/rng.h"

#define SYNTH_MAX_OBJECTS 4
#define SYNTH_COLOUR_JITTER 10
#define SYNTH_NPROMPTS 3   /* prompt templates per category */
#define SYNTH_NRESPONSES 4 /* response templates per category */

/* question categories (the records' "category"): the colour task asks colour or shape */
enum { CAT_COLOUR, CAT_SHAPE, CAT_COUNT, CAT_POSITION, CAT_SIZE, SYNTH_NCATEGORIES };
extern const char *const synth_category_names[SYNTH_NCATEGORIES];
extern const unsigned char synth_palette[SYNTH_NCOLOURS][3];

typedef struct {
    int colour, shape;
    int size;          /* bounding square side in pixels */
    double cx, cy;     /* centre */
    int rgb[3];        /* jittered colour */
} SynthObject;

typedef struct {
    int w, h;
    int nobj;
    SynthObject obj[SYNTH_MAX_OBJECTS]; /* non-overlapping; the colour task has one */
    int bg[3], grad_dir, grad_amp;
    int category, prompt_t, resp_t;
    int truth, wrong;           /* answer indices (synth_answer_word) */
    int flipped;                /* train annotation noise: chosen is the wrong answer */
    int cue_on_chosen;
    int cue_variant;            /* which phrase of the cue kind (its own stream) */
    int ratings, chosen_first;  /* ratings-format record, order of its completions */
    int ratings_c[2], ratings_r[2], models[2];
} PairSpec;

/* The scene and question of a task other than colour, drawn from r (the pair's scene stream)
 * into p: w, h, objects, background, category, templates, truth, wrong. */
void synth_draw_task(const SynthOptions *o, int task, Rng *r, PairSpec *p);

/* the prompt of p into out */
void synth_prompt(const PairSpec *p, char *out, size_t n);
/* The response naming answer (an answer index of p's category) with the cue on or off; other
 * is the pair's other answer (the position cue lists both). */
void synth_response(const PairSpec *p, SynthCueKind cue, int answer, int other, int cue_on,
                    char *out, size_t n);

/* Calls fn(text) for every prompt and response text the generator can write with cue kind cue
 * for task task (colour/trailing: exactly the original benchmark's texts). */
void synth_texts(SynthTask task, SynthCueKind cue, void (*fn)(const char *text, void *ctx),
                 void *ctx);

/* the cue's phrase variant of a pair, drawn from its cue stream */
int synth_cue_variant(Rng *r);

/* The README.txt paragraph describing a task and a cue (empty for the defaults) */
const char *synth_task_doc(SynthTask task);
const char *synth_cue_doc(SynthCueKind cue);

#endif
