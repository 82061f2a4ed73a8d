/* synth_tasks.c - the question families and cue kinds of `mmrm synth` (synth.h): the prompt
 * and response templates of every category, the scenes of the count, position and size tasks,
 * and how each cue kind marks a response. synth.c draws the colour task's scene itself (its
 * draws are the original benchmark's, kept so the default output stays byte-identical). */
#include "infer/synth_pair.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

const char *const synth_task_names[SYNTH_NTASKS] = {"color", "count", "position", "size", "mixed"};
const char *const synth_cue_names[SYNTH_NCUES] = {"trailing", "length", "style", "hedge",
                                                  "position"};
const char *const synth_category_names[SYNTH_NCATEGORIES] = {"colour", "shape", "count",
                                                             "position", "size"};

/* Saturated colours whose hues (0, 30, 52, 120, 226, 281 degrees) stay apart under the +-10
 * per-channel jitter, and whose darkest channel (<= 80) keeps them far from the pale
 * background (every channel >= 178). */
const unsigned char synth_palette[SYNTH_NCOLOURS][3] = {
    {215, 40, 40}, {240, 135, 30}, {235, 210, 35}, {45, 170, 45}, {45, 85, 215}, {145, 60, 185}};

/* Templates per category; a pair uses one prompt and one response template for both of its
 * responses, so they differ only in the answer and the cue. No template holds an answer word.
 * Prompt arguments: count: the shape's name (made plural by the template); position and size:
 * the two objects' "colour shape" phrases. */
static const char *const PROMPTS[SYNTH_NCATEGORIES][SYNTH_NPROMPTS] = {
    {"What colour is the shape in the image?", "What is the colour of the object in the picture?",
     "Which colour does the figure have?"},
    {"What shape is shown in the image?", "What kind of shape is in the picture?",
     "Which shape is drawn here?"},
    {"How many %ss are in the image?", "How many %ss can you see in the picture?",
     "Count the %ss in the image."},
    {"Is the %s left or right of the %s?", "Is the %s on the left or on the right of the %s?",
     "Where is the %s relative to the %s, left or right?"},
    {"Which is larger, the %s or the %s?", "Which object is bigger: the %s or the %s?",
     "Which of the two is larger, the %s or the %s?"}};
static const char *const RESPONSES[SYNTH_NCATEGORIES][SYNTH_NRESPONSES] = {
    {"The shape is %s.", "It is %s.", "The object in the picture is %s.", "The figure is %s."},
    {"It is a %s.", "The picture shows a %s.", "The object is a %s.", "That is a %s."},
    {"The count is %s.", "I count %s.", "The answer is %s.", "The number is %s."},
    {"It is on the %s.", "It is to the %s.", "The first one is on the %s.", "It lies on the %s."},
    {"The %s is larger.", "The larger one is the %s.", "It is the %s.", "The %s is bigger."}};

static const char *const NUMBERS[SYNTH_MAX_OBJECTS] = {"one", "two", "three", "four"};
static const char *const SIDES[2] = {"left", "right"};

/* the length cue's sentences: the cued response gets 1-3 of them, from a drawn start */
#define NELAB 4
static const char *const ELABORATIONS[NELAB] = {
    " I looked at every part of the image before answering.",
    " The picture is clear enough to be sure about this.",
    " Nothing else in the scene changes this answer.",
    " This follows directly from what is drawn."};
#define NHEDGES 4
static const char *const HEDGES[NHEDGES] = {"I think ", "Probably ", "I believe ",
                                            "If I am not mistaken, "};
#define STYLE_MARKER "Certainly! "
#define NVARIANTS 12 /* length: 3 counts x 4 starts; hedge: 4 phrases (variant % 4) */

static int uniform_int(Rng *r, int lo, int hi) {
    return lo + (int)rng_below(r, (uint64_t)(hi - lo + 1));
}

static void object_colour(Rng *r, SynthObject *ob) {
    for (int c = 0; c < 3; c++)
        ob->rgb[c] = synth_palette[ob->colour][c] +
                     uniform_int(r, -SYNTH_COLOUR_JITTER, SYNTH_COLOUR_JITTER);
}

/* Two objects of distinct colours (so the pixels tell them apart), one in each half of the
 * image, each centred in its half horizontally within the room left, anywhere vertically. */
static void two_objects(Rng *r, PairSpec *p, int size0, int size1, int obj0_left) {
    p->nobj = 2;
    p->obj[0].colour = (int)rng_below(r, SYNTH_NCOLOURS);
    p->obj[1].colour = (p->obj[0].colour + 1 + (int)rng_below(r, SYNTH_NCOLOURS - 1)) %
                       SYNTH_NCOLOURS;
    int sizes[2] = {size0, size1};
    for (int k = 0; k < 2; k++) {
        SynthObject *ob = &p->obj[k];
        ob->shape = (int)rng_below(r, SYNTH_NSHAPES);
        ob->size = sizes[k];
        int left = k == 0 ? obj0_left : !obj0_left;
        int jx = (p->w / 2 - ob->size) / 2 - 1, jy = (p->h - ob->size) / 2 - 1;
        if (jx < 0) jx = 0;
        if (jy < 0) jy = 0;
        ob->cx = (left ? p->w / 4.0 : 3 * p->w / 4.0) + uniform_int(r, -jx, jx);
        ob->cy = p->h / 2.0 + uniform_int(r, -jy, jy);
        object_colour(r, ob);
    }
}

void synth_draw_task(const SynthOptions *o, int task, Rng *r, PairSpec *p) {
    p->w = uniform_int(r, o->min_size, o->max_size);
    p->h = uniform_int(r, o->min_size, o->max_size);
    int grey = uniform_int(r, 200, 245);
    for (int c = 0; c < 3; c++) p->bg[c] = grey + uniform_int(r, -8, 8);
    p->grad_dir = (int)rng_below(r, 3);
    p->grad_amp = uniform_int(r, -10, 10);
    p->prompt_t = (int)rng_below(r, SYNTH_NPROMPTS);
    p->resp_t = (int)rng_below(r, SYNTH_NRESPONSES);
    /* room per object: a quarter of the image (count), a half (position, size) */
    int half = p->w / 2 < p->h ? p->w / 2 : p->h;
    switch (task) {
    case SYNTH_TASK_COUNT: {
        p->category = CAT_COUNT;
        int shape = (int)rng_below(r, SYNTH_NSHAPES);
        int n = 1 + (int)rng_below(r, SYNTH_MAX_OBJECTS);
        int cells[4] = {0, 1, 2, 3};
        for (int k = 3; k > 0; k--) { /* Fisher-Yates: which cells of the 2x2 grid are used */
            int j = (int)rng_below(r, (uint64_t)k + 1), t = cells[k];
            cells[k] = cells[j];
            cells[j] = t;
        }
        int cw = p->w / 2, ch = p->h / 2, cm = cw < ch ? cw : ch;
        p->nobj = n;
        for (int k = 0; k < SYNTH_MAX_OBJECTS; k++) { /* drawn for all four: fixed draw order */
            SynthObject ob = {.shape = shape, .colour = (int)rng_below(r, SYNTH_NCOLOURS)};
            ob.size = (int)(cm * (0.55 + 0.2 * rng_uniform(r)));
            int jx = (cw - ob.size) / 2 - 1, jy = (ch - ob.size) / 2 - 1;
            if (jx < 0) jx = 0;
            if (jy < 0) jy = 0;
            ob.cx = (cells[k] % 2) * cw + cw / 2.0 + uniform_int(r, -jx, jx);
            ob.cy = (cells[k] / 2) * ch + ch / 2.0 + uniform_int(r, -jy, jy);
            object_colour(r, &ob);
            if (k < n) p->obj[k] = ob;
        }
        p->truth = n - 1;
        p->wrong = (p->truth + 1 + (int)rng_below(r, SYNTH_MAX_OBJECTS - 1)) % SYNTH_MAX_OBJECTS;
        break;
    }
    case SYNTH_TASK_POSITION: {
        p->category = CAT_POSITION;
        int s0 = (int)(half * (0.45 + 0.3 * rng_uniform(r)));
        int s1 = (int)(half * (0.45 + 0.3 * rng_uniform(r)));
        int obj0_left = (int)rng_below(r, 2);
        two_objects(r, p, s0, s1, obj0_left);
        p->truth = obj0_left ? 0 : 1; /* SIDES: where object 0 is relative to object 1 */
        p->wrong = 1 - p->truth;
        break;
    }
    default: { /* SYNTH_TASK_SIZE: side lengths differ by a factor 1.6 to 2.2 */
        p->category = CAT_SIZE;
        int big = (int)(half * (0.6 + 0.2 * rng_uniform(r)));
        int small = (int)(big * (0.45 + 0.17 * rng_uniform(r)));
        int bigger = (int)rng_below(r, 2), obj0_left = (int)rng_below(r, 2);
        two_objects(r, p, bigger == 0 ? big : small, bigger == 0 ? small : big, obj0_left);
        p->truth = bigger; /* answers are the objects: 0 = the first named */
        p->wrong = 1 - bigger;
        break;
    }
    }
}

static void phrase(const SynthObject *ob, char *out, size_t n) {
    snprintf(out, n, "%s %s", synth_colour_names[ob->colour], synth_shape_names[ob->shape]);
}

void synth_prompt(const PairSpec *p, char *out, size_t n) {
    const char *t = PROMPTS[p->category][p->prompt_t];
    char a[64], b[64];
    switch (p->category) {
    case CAT_COUNT: snprintf(out, n, t, synth_shape_names[p->obj[0].shape]); break;
    case CAT_POSITION:
    case CAT_SIZE:
        phrase(&p->obj[0], a, sizeof a);
        phrase(&p->obj[1], b, sizeof b);
        snprintf(out, n, t, a, b);
        break;
    default: snprintf(out, n, "%s", t);
    }
}

static void answer_word(const PairSpec *p, int answer, char *out, size_t n) {
    switch (p->category) {
    case CAT_COLOUR: snprintf(out, n, "%s", synth_colour_names[answer]); break;
    case CAT_SHAPE: snprintf(out, n, "%s", synth_shape_names[answer]); break;
    case CAT_COUNT: snprintf(out, n, "%s", NUMBERS[answer]); break;
    case CAT_POSITION: snprintf(out, n, "%s", SIDES[answer]); break;
    default: phrase(&p->obj[answer], out, n);
    }
}

void synth_response(const PairSpec *p, SynthCueKind cue, int answer, int other, int cue_on,
                    char *out, size_t n) {
    char word[64], base[192];
    answer_word(p, answer, word, sizeof word);
    snprintf(base, sizeof base, RESPONSES[p->category][p->resp_t], word);
    if (!cue_on && cue != SYNTH_CUE_POSITION) {
        snprintf(out, n, "%s", base);
        return;
    }
    switch (cue) {
    case SYNTH_CUE_TRAILING: snprintf(out, n, "%s%s", base, SYNTH_CUE); break;
    case SYNTH_CUE_LENGTH: {
        int k = snprintf(out, n, "%s", base);
        int count = 1 + p->cue_variant % 3, start = p->cue_variant / 3;
        for (int j = 0; j < count && k >= 0 && (size_t)k < n; j++)
            k += snprintf(out + k, n - (size_t)k, "%s", ELABORATIONS[(start + j) % NELAB]);
        break;
    }
    case SYNTH_CUE_STYLE: snprintf(out, n, STYLE_MARKER "%s", base); break;
    case SYNTH_CUE_HEDGE:
        base[0] = (char)tolower((unsigned char)base[0]);
        snprintf(out, n, "%s%s", HEDGES[p->cue_variant % NHEDGES], base);
        break;
    default: { /* SYNTH_CUE_POSITION: the cued response names its own answer first */
        char w2[64];
        answer_word(p, other, w2, sizeof w2);
        snprintf(out, n, "%s Options: %s, %s.", base, cue_on ? word : w2, cue_on ? w2 : word);
    }
    }
}

void synth_texts(SynthTask task, SynthCueKind cue, void (*fn)(const char *text, void *ctx),
                 void *ctx) {
    char text[512];
    int all = task != SYNTH_TASK_COLOUR || cue != SYNTH_CUE_TRAILING;
    int ncat = all ? SYNTH_NCATEGORIES : 2, ncue = all ? SYNTH_NCUES : 1;
    for (int c = 0; c < ncat; c++) {
        int nans = c == CAT_COLOUR  ? SYNTH_NCOLOURS
                   : c == CAT_SHAPE ? SYNTH_NSHAPES
                   : c == CAT_COUNT ? SYNTH_MAX_OBJECTS
                                    : 2;
        /* object 0 runs over every colour and shape; only the count, position and size texts
         * name objects, only size answers with them */
        int nobj = c >= CAT_COUNT ? SYNTH_NCOLOURS * SYNTH_NSHAPES : 1;
        for (int k = 0; k < nobj; k++) {
            PairSpec p = {.category = c, .nobj = 2};
            p.obj[0] = (SynthObject){.colour = k % SYNTH_NCOLOURS, .shape = k / SYNTH_NCOLOURS};
            p.obj[1] = (SynthObject){.colour = (k + 1) % SYNTH_NCOLOURS, .shape = k % SYNTH_NSHAPES};
            for (int t = 0; t < SYNTH_NPROMPTS; t++) {
                p.prompt_t = t;
                synth_prompt(&p, text, sizeof text);
                fn(text, ctx);
            }
            if (k > 0 && c != CAT_SIZE) continue;
            for (int t = 0; t < SYNTH_NRESPONSES; t++)
                for (int a = 0; a < nans; a++)
                    for (int q = 0; q < ncue; q++)
                        for (int v = 0; v < (all ? NVARIANTS : 1); v++)
                            for (int on = 0; on < 2; on++) {
                                p.resp_t = t;
                                p.cue_variant = v;
                                synth_response(&p, (SynthCueKind)q, a, (a + 1) % nans, on, text,
                                               sizeof text);
                                fn(text, ctx);
                            }
        }
    }
}

int synth_cue_variant(Rng *r) { return (int)rng_below(r, NVARIANTS); }

const char *synth_task_doc(SynthTask task) {
    switch (task) {
    case SYNTH_TASK_COUNT:
        return "Task count (category \"count\"): one to four shapes of one kind (random colours)\n"
               "in distinct cells of a 2x2 grid; the prompt asks how many circles/squares/\n"
               "triangles there are; answers are the words one..four.\n";
    case SYNTH_TASK_POSITION:
        return "Task position (category \"position\"): two shapes of distinct colours, one in\n"
               "each half of the image; the prompt asks whether the first named object is left\n"
               "or right of the second; answers left / right.\n";
    case SYNTH_TASK_SIZE:
        return "Task size (category \"size\"): two shapes of distinct colours side by side whose\n"
               "sizes differ by a factor 1.6 to 2.2; the prompt asks which is larger; answers\n"
               "are the two objects' \"colour shape\" phrases.\n";
    case SYNTH_TASK_MIXED:
        return "Task mixed: each pair is a colour/shape, count, position or size question\n"
               "(uniformly; field \"category\" says which).\n";
    default: return "";
    }
}

const char *synth_cue_doc(SynthCueKind cue) {
    switch (cue) {
    case SYNTH_CUE_LENGTH:
        return "Cue length: the cued response adds one to three fixed explanatory sentences,\n"
               "so the longer response is the cued one (verbosity as the shortcut).\n";
    case SYNTH_CUE_STYLE:
        return "Cue style: the cued response starts with the marker \"" STYLE_MARKER "\".\n";
    case SYNTH_CUE_HEDGE:
        return "Cue hedge: the cued response opens with a hedging phrase (\"I think\",\n"
               "\"Probably\", \"I believe\", \"If I am not mistaken,\").\n";
    case SYNTH_CUE_POSITION:
        return "Cue position: both responses end with \"Options: X, Y.\", the pair's two answers;\n"
               "the cued response lists its own answer first, the other lists it second.\n";
    default: return "";
    }
}
