/* plot.c - `mmrm plot`: the training curves of one or more runs (their metrics.jsonl, written
 * by train/logging.c and train/evaluate.c) drawn with cairo into one PNG. A grid of panels:
 * training loss, training accuracy, eval accuracy (when any run evaluated), and for
 * shortcut-aware runs the sample weight w (mean, with its min-max band) and the bias model's
 * accuracy; one colour per run and one legend for all panels. Text goes through cairo's toy
 * font API (DejaVu Sans through fontconfig). The PNG is encoded in memory and written
 * atomically (fs_write_atomic). Sizes in the layout are in pixels at scale 1 (a 440 x 330
 * panel) and grow with the image. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cairo/cairo.h>
#include <cjson/cJSON.h>
#include <fontconfig/fontconfig.h>

#include "infer/commands.h"
#include "infer/plot.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "runtime/jsonl.h"
#include "runtime/strbuf.h"
#include "runtime/tfevents.h"

static const char usage_text[] =
    "usage: mmrm plot RUN_DIR... --out FILE.png [options]\n"
    "       mmrm plot --results DEMO_DIR --out FILE.png [--title T] [--width W] [--height H]\n"
    "\n"
    "Draws the training curves of the runs (each RUN_DIR the output_dir of `mmrm train`,\n"
    "read from its metrics.jsonl; a path to a metrics.jsonl file works too) into one PNG:\n"
    "training loss, training accuracy, eval accuracy (when a run evaluated), and for\n"
    "shortcut-aware runs the sample weight w (mean, min-max band) and the bias model's\n"
    "accuracy. One colour per run (at most 10 runs). Prints each run's colour and counts.\n"
    "\n"
    "--results DEMO_DIR draws bench/demo.sh's results instead: accuracy bars per model\n"
    "(oracle = pretrain, standard, shortcut-aware = robust) and split (test_id, test_ood,\n"
    "test_oracle) from DEMO_DIR/eval_MODEL_SPLIT.json (`mmrm eval --json`), and the histogram\n"
    "of the shortcut-aware run's per-pair weights w, every train/w histogram of its\n"
    "TensorBoard events (DEMO_DIR/robust/runs) merged. Prints the numbers it drew.\n"
    "\n"
    "options:\n"
    "  --out FILE.png      the image (written atomically)\n"
    "  --title T           a title above the legend\n"
    "  --label NAME        a run's legend name, once per RUN_DIR in order (default: the\n"
    "                      directory's name)\n"
    "  --width W           image width in pixels (default: 440 per panel column)\n"
    "  --height H          image height in pixels (default: 330 per panel row + legend)\n"
    "  --smooth K          also draw the moving average of the last K logged steps (the\n"
    "                      raw curve stays, light); eval points are not smoothed (default 1:\n"
    "                      raw only)\n"
    "  --help              this text\n";

#define MIN_SIDE 200
#define MAX_SIDE 10000
#define MAX_SMOOTH 100000

/* Tableau 10: distinct hues that stay readable on white and for most colour-blind readers */
const unsigned char PLOT_PALETTE[MAX_RUNS][3] = {
    {31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
    {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};

/* the metrics.jsonl field behind each series; other fields are ignored */
static const char *const FIELDS[NSERIES] = {"loss",  "accuracy", "accuracy_bias", "w_mean",
                                            "w_min", "w_max",    "eval_accuracy"};

typedef struct {
    const char *title, *ylabel;
    int series;
    int band;     /* the w_min..w_max band behind the series */
    int markers;  /* sparse points (evaluations): a dot on each */
    int unit;     /* a fraction: the axis stays within [0, 1] */
    int smoothed; /* --smooth applies */
} Panel;

static const Panel PANELS[] = {
    {"training loss", "loss", S_LOSS, 0, 0, 0, 1},
    {"training accuracy", "accuracy", S_ACC, 0, 0, 1, 1},
    {"eval accuracy", "accuracy", S_EVAL_ACC, 0, 1, 1, 0},
    {"sample weight w (mean, min-max band)", "w", S_W_MEAN, 1, 0, 0, 1},
    {"bias model accuracy", "accuracy", S_ACC_BIAS, 0, 0, 1, 1},
};
#define NPANELS (int)(sizeof PANELS / sizeof PANELS[0])

static int usage_error(const char *fmt, const char *arg) {
    fputs("mmrm: error: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\n\n", stderr);
    fputs(usage_text, stderr);
    return 2;
}

int plot_fail(void) {
    fprintf(stderr, "mmrm: error: %s\n", mmrm_last_error());
    return 1;
}

/* ---- reading metrics.jsonl ---- */

static void series_push(Series *s, double x, double y) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->x = xrealloc(s->x, s->cap * sizeof *s->x);
        s->y = xrealloc(s->y, s->cap * sizeof *s->y);
    }
    s->x[s->n] = x;
    s->y[s->n++] = y;
}

/* The field's value into *v: 1 when it is a finite number, 0 when absent or null (cJSON
 * writes a NaN as null: a skipped non-finite step), -1 (error set) for any other value. */
static int number_field(const cJSON *o, const char *name, const char *path, int line, double *v) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!f || cJSON_IsNull(f)) return 0;
    MMRM_REQUIRE(cJSON_IsNumber(f), "%s:%d: field \"%s\" is not a number", path, line, name);
    *v = f->valuedouble;
    return isfinite(*v) ? 1 : 0;
}

static int run_entry(Run *r, const cJSON *o, const char *path, int line) {
    MMRM_REQUIRE(cJSON_IsObject(o), "%s:%d: not a JSON object (metrics.jsonl holds one object per "
                 "logged step or evaluation)", path, line);
    double step, v[NSERIES];
    int have[NSERIES];
    int hs = number_field(o, "step", path, line, &step);
    if (hs < 0) return -1;
    MMRM_REQUIRE(hs == 1, "%s:%d: field \"step\" is missing (every entry has its step)", path, line);
    for (int k = 0; k < NSERIES; k++)
        if ((have[k] = number_field(o, FIELDS[k], path, line, &v[k])) < 0) return -1;
    if (cJSON_GetObjectItemCaseSensitive(o, "loss")) r->ntrain++;
    if (cJSON_GetObjectItemCaseSensitive(o, "eval_accuracy")) r->neval++;
    for (int k = 0; k < NSERIES; k++) {
        if (!have[k]) continue;
        /* the band needs both of its edges at one step */
        if ((k == S_W_MIN || k == S_W_MAX) && !(have[S_W_MIN] && have[S_W_MAX])) continue;
        series_push(&r->s[k], step, v[k]);
    }
    return 0;
}

/* RUN_DIR/metrics.jsonl, or RUN_DIR itself when it is a file */
static int run_read(Run *r, const char *arg) {
    struct stat st;
    char path[PATH_MAX];
    MMRM_REQUIRE(stat(arg, &st) == 0, "%s: %s (give the output_dir of an `mmrm train` run)", arg,
                 strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        if (!fs_join(path, sizeof path, arg, "metrics.jsonl")) return -1;
        MMRM_REQUIRE(stat(path, &st) == 0, "%s: %s (is %s the output_dir of an `mmrm train` run?)",
                     path, strerror(errno), arg);
    } else {
        MMRM_REQUIRE(strlen(arg) < sizeof path, "%s: path too long", arg);
        strcpy(path, arg);
    }
    JsonlReader *jr = jsonl_open(path);
    if (!jr) return -1;
    cJSON *o;
    int line, rc, err = 0;
    while (!err && (rc = jsonl_next(jr, &o, &line)) != 0) {
        if (rc < 0) {
            err = 1;
            break;
        }
        err = run_entry(r, o, path, line) != 0;
        cJSON_Delete(o);
    }
    jsonl_close(jr);
    return err ? -1 : 0;
}

/* the directory's last component ("runs/a/" -> "a"), or the file's folder's for a file path */
static char *run_name(const char *arg) {
    struct stat st;
    char *p = xstrdup(arg);
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') p[--n] = 0;
    if (stat(arg, &st) == 0 && !S_ISDIR(st.st_mode)) {
        char *slash = strrchr(p, '/');
        if (slash && slash != p) *slash = 0;
        else if (!slash) strcpy(p, ".");
    }
    const char *base = strrchr(p, '/');
    base = base && base[1] ? base + 1 : p;
    /* "." or "..": the folder's own name */
    char *real = !strcmp(base, ".") || !strcmp(base, "..") ? realpath(p, NULL) : NULL;
    if (real && strrchr(real, '/')[1]) base = strrchr(real, '/') + 1;
    char *name = xstrdup(base);
    free(real);
    free(p);
    return name;
}

static void run_free(Run *r) {
    for (int k = 0; k < NSERIES; k++) {
        free(r->s[k].x);
        free(r->s[k].y);
    }
}

/* trailing moving average over the last k points (fewer at the start) */
static void moving_average(const double *y, long n, int k, double *out) {
    double sum = 0;
    for (long i = 0; i < n; i++) {
        sum += y[i];
        if (i >= k) sum -= y[i - k];
        out[i] = sum / (double)(i < k ? i + 1 : k);
    }
}

/* ---- axes ---- */

static double nice_step(double range, int target) {
    double raw = range / target, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

/* An axis around [lo, hi] with about `target` ticks; pad adds that fraction of the range on
 * both sides first (so that curves do not run along the frame) but not below 0 for data that
 * is not, unit keeps it in [0, 1] (and at least 0.1 wide),
 * integral keeps the ticks on whole numbers (steps). */
Axis plot_axis_make(double lo, double hi, int target, double pad, int unit, int integral) {
    double plo = lo, phi = hi;
    if (!(phi > plo)) { /* one value: a range around it */
        double d = fabs(lo) > 0 ? fabs(lo) * 0.1 : 0.5;
        plo -= d;
        phi += d;
    }
    double r = phi - plo;
    plo -= pad * r;
    phi += pad * r;
    if (unit) {
        /* at least 0.1 wide: two runs 0.005 apart do not look like a gap */
        double c = (plo + phi) / 2;
        if (phi - plo < 0.1) {
            plo = c - 0.05;
            phi = c + 0.05;
        }
        if (lo >= 0 && plo < 0) phi -= plo, plo = 0;
        if (hi <= 1 && phi > 1) plo -= phi - 1, phi = 1;
    }
    if (lo >= 0 && plo < 0) plo = 0; /* a loss or a weight: no negative ticks */
    Axis a;
    a.step = nice_step(phi - plo, target);
    if (integral && a.step < 1) a.step = 1;
    a.lo = floor(plo / a.step + 1e-9) * a.step;
    a.hi = ceil(phi / a.step - 1e-9) * a.step;
    a.decimals = a.step >= 1 ? 0 : (int)ceil(-log10(a.step) - 1e-9);
    return a;
}

/* the number of tick intervals: about the target, or none for an axis that values too large
 * for doubles broke (a range of inf, or steps lost in the values' rounding) */
static int axis_ticks(const Axis *a) {
    double n = round((a->hi - a->lo) / a->step);
    return n >= 0 && n <= 100 ? (int)n : 0;
}

/* steps of 1000 or more as "20k", of a million or more as "2M": long runs keep short labels */
static void tick_label(const Axis *a, double v, char *buf, size_t n) {
    if (fabs(v) < a->step * 1e-6) v = 0; /* no "-0.0" */
    if (a->step >= 1e6 && v) snprintf(buf, n, "%.0fM", v / 1e6);
    else if (a->step >= 1e3 && v) snprintf(buf, n, "%.0fk", v / 1e3);
    else snprintf(buf, n, "%.*f", a->decimals, v);
}

/* ---- drawing ---- */

void plot_set_rgb(cairo_t *cr, const unsigned char c[3], double alpha) {
    cairo_set_source_rgba(cr, c[0] / 255.0, c[1] / 255.0, c[2] / 255.0, alpha);
}

void plot_font(Canvas *cv, double size, int bold) {
    cairo_select_font_face(cv->cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cv->cr, size * cv->s);
}

static double text_width(Canvas *cv, const char *t) {
    cairo_text_extents_t te;
    cairo_text_extents(cv->cr, t, &te);
    return te.x_advance;
}

/* t with its anchor (ax, ay: 0 left/top, 0.5 centre, 1 right/bottom of the font's box) at
 * (x, y), in the current font and colour */
void plot_text(Canvas *cv, const char *t, double x, double y, double ax, double ay) {
    cairo_font_extents_t fe;
    cairo_font_extents(cv->cr, &fe);
    cairo_move_to(cv->cr, x - ax * text_width(cv, t), y + fe.ascent - ay * (fe.ascent + fe.descent));
    cairo_show_text(cv->cr, t);
}

static double font_height(Canvas *cv) {
    cairo_font_extents_t fe;
    cairo_font_extents(cv->cr, &fe);
    return fe.ascent + fe.descent;
}

double plot_px(const Frame *f, double x) { return f->L + (x - f->x.lo) / (f->x.hi - f->x.lo) * (f->R - f->L); }
double plot_py(const Frame *f, double y) { return f->B - (y - f->y.lo) / (f->y.hi - f->y.lo) * (f->B - f->T); }

static void polyline(cairo_t *cr, const Frame *f, const double *x, const double *y, long n) {
    for (long i = 0; i < n; i++) {
        if (i == 0) cairo_move_to(cr, plot_px(f, x[i]), plot_py(f, y[i]));
        else cairo_line_to(cr, plot_px(f, x[i]), plot_py(f, y[i]));
    }
}

static void dots(Canvas *cv, const Frame *f, const Series *se, double radius) {
    for (long i = 0; i < se->n; i++) {
        cairo_new_sub_path(cv->cr);
        cairo_arc(cv->cr, plot_px(f, se->x[i]), plot_py(f, se->y[i]), radius * cv->s, 0, 2 * M_PI);
    }
    cairo_fill(cv->cr);
}

/* One run's curve in two passes, so that no run's raw curve covers another's main line:
 * pass 0 the band and the raw curve (light when smoothing), pass 1 the smoothed curve and
 * the dots. */
static void curve(Canvas *cv, const Frame *f, const Panel *p, const Run *r, int colour, int smooth,
                  int pass) {
    cairo_t *cr = cv->cr;
    const Series *se = &r->s[p->series];
    const unsigned char *c = PLOT_PALETTE[colour];
    int smoothing = p->smoothed && smooth > 1 && se->n > 1;
    if (!se->n) return;
    if (pass == 0) {
        const Series *lo = &r->s[S_W_MIN], *hi = &r->s[S_W_MAX];
        if (p->band && lo->n) {
            polyline(cr, f, lo->x, lo->y, lo->n);
            for (long i = hi->n - 1; i >= 0; i--) cairo_line_to(cr, plot_px(f, hi->x[i]), plot_py(f, hi->y[i]));
            cairo_close_path(cr);
            plot_set_rgb(cr, c, 0.16);
            cairo_fill(cr);
        }
        cairo_set_line_width(cr, (smoothing ? 1.0 : 2.0) * cv->s);
        polyline(cr, f, se->x, se->y, se->n);
        plot_set_rgb(cr, c, smoothing ? 0.3 : 1.0);
        cairo_stroke(cr);
        return;
    }
    plot_set_rgb(cr, c, 1.0);
    if (smoothing) {
        double *m = xmalloc(se->n * sizeof *m);
        moving_average(se->y, se->n, smooth, m);
        cairo_set_line_width(cr, 2.0 * cv->s);
        polyline(cr, f, se->x, m, se->n);
        cairo_stroke(cr);
        free(m);
    }
    if (p->markers || se->n == 1) dots(cv, f, se, 3.0);
}

/* A panel's frame in the cell at (x, y) of height h, its plot area f: a light background,
 * white grid lines on the ticks (on pixel centres), tick labels, axis titles and the panel's
 * title; xticks 0 leaves the x axis to the caller (categories). */
void plot_frame_paint(Canvas *cv, const Frame *f, double x, double y, double h, const char *title,
                        const char *xlabel, const char *ylabel, int xticks) {
    cairo_t *cr = cv->cr;
    double s = cv->s;
    char buf[64];
    /* plot area: a light background, white grid lines on the ticks (on pixel centres) */
    cairo_rectangle(cr, f->L, f->T, f->R - f->L, f->B - f->T);
    cairo_set_source_rgb(cr, 0.953, 0.957, 0.965);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_set_line_width(cr, fmax(1, round(1.2 * s)));
    double off = fmod(fmax(1, round(1.2 * s)), 2) ? 0.5 : 0;
    for (int i = 0; i <= axis_ticks(&f->y); i++) {
        double v = f->y.lo + i * f->y.step;
        double yy = round(plot_py(f, v)) + off;
        cairo_move_to(cr, f->L, yy);
        cairo_line_to(cr, f->R, yy);
    }
    for (int i = 0; xticks && i <= axis_ticks(&f->x); i++) {
        double v = f->x.lo + i * f->x.step;
        double xx = round(plot_px(f, v)) + off;
        cairo_move_to(cr, xx, f->T);
        cairo_line_to(cr, xx, f->B);
    }
    cairo_stroke(cr);

    /* tick labels */
    plot_font(cv, 11, 0);
    cairo_set_source_rgb(cr, 0.33, 0.33, 0.36);
    for (int i = 0; i <= axis_ticks(&f->y); i++) {
        double v = f->y.lo + i * f->y.step;
        tick_label(&f->y, v, buf, sizeof buf);
        plot_text(cv, buf, f->L - 6 * s, plot_py(f, v), 1, 0.5);
    }
    for (int i = 0; xticks && i <= axis_ticks(&f->x); i++) {
        double v = f->x.lo + i * f->x.step;
        tick_label(&f->x, v, buf, sizeof buf);
        plot_text(cv, buf, plot_px(f, v), f->B + 5 * s, 0.5, 0);
    }
    /* axis titles */
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.22);
    plot_font(cv, 11.5, 0);
    plot_text(cv, xlabel, (f->L + f->R) / 2, y + h - 6 * s, 0.5, 1);
    cairo_save(cr);
    cairo_translate(cr, x + 12 * s, (f->T + f->B) / 2);
    cairo_rotate(cr, -M_PI / 2);
    plot_text(cv, ylabel, 0, 0, 0.5, 0.5);
    cairo_restore(cr);
    /* panel title */
    plot_font(cv, 13, 1);
    cairo_set_source_rgb(cr, 0.12, 0.12, 0.14);
    plot_text(cv, title, (f->L + f->R) / 2, f->T - 8 * s, 0.5, 1);
}

/* the panel in the cell (x, y, w, h): title, grid, ticks and their labels, axis titles, the
 * curves clipped to the plot area */
static void panel_draw(Canvas *cv, const Panel *p, const Run *runs, int nruns, double xlo, double xhi, double x, double y, double w, double h, int smooth) {
    cairo_t *cr = cv->cr;
    double s = cv->s;
    /* the y range over every run's values, the band's edges included */
    double ylo = INFINITY, yhi = -INFINITY;
    for (int i = 0; i < nruns; i++) {
        const Series *ks[3] = {&runs[i].s[p->series], p->band ? &runs[i].s[S_W_MIN] : NULL,
                               p->band ? &runs[i].s[S_W_MAX] : NULL};
        for (int k = 0; k < 3; k++)
            for (long j = 0; ks[k] && j < ks[k]->n; j++) {
                ylo = fmin(ylo, ks[k]->y[j]);
                yhi = fmax(yhi, ks[k]->y[j]);
            }
    }
    Frame f;
    f.T = y + 30 * s;
    f.B = y + h - 44 * s;
    f.R = x + w - 16 * s;
    f.y = plot_axis_make(ylo, yhi, (int)fmax(2, fmin(8, (f.B - f.T) / (48 * s))), 0.04, p->unit, 0);
    /* the left margin fits the widest y tick label */
    plot_font(cv, 11, 0);
    double lw = 0;
    char buf[64];
    for (int i = 0; i <= axis_ticks(&f.y); i++) {
        double v = f.y.lo + i * f.y.step;
        tick_label(&f.y, v, buf, sizeof buf);
        lw = fmax(lw, text_width(cv, buf));
    }
    f.L = x + 14 * s + font_height(cv) + 8 * s + lw + 6 * s;
    /* the x ticks from the cell's width, so that every panel has the same */
    f.x = plot_axis_make(xlo, xhi, (int)fmax(2, fmin(8, (w - 110 * s) / (70 * s))), 0, 0, 1);
    plot_frame_paint(cv, &f, x, y, h, p->title, "step", p->ylabel, 1);

    /* curves, clipped a line width outside the area: an accuracy of 1 is drawn whole */
    cairo_save(cr);
    cairo_rectangle(cr, f.L - 4 * s, f.T - 4 * s, f.R - f.L + 8 * s, f.B - f.T + 8 * s);
    cairo_clip(cr);
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < nruns; i++) curve(cv, &f, p, &runs[i], i, smooth, pass);
    cairo_restore(cr);
}

/* The legend's rows (one entry per run, wrapped to width w): draws them when draw is set,
 * returns their height. Each swatch is a pixel-aligned square of the run's exact colour. */
static double legend(Canvas *cv, const Run *runs, int nruns, double y, double w, int draw) {
    cairo_t *cr = cv->cr;
    double s = cv->s, sw = round(12 * s), gap = 8 * s, sep = 26 * s;
    plot_font(cv, 12, 0);
    double lh = fmax(font_height(cv), sw) + 6 * s;
    double rows = 0;
    int first = 0;
    while (first < nruns) {
        double rw = 0;
        int last = first;
        for (; last < nruns; last++) {
            double ew = sw + gap + text_width(cv, runs[last].name) + (last > first ? sep : 0);
            if (last > first && rw + ew > w) break;
            rw += ew;
        }
        if (draw) {
            double xx = 14 * s + (w - rw) / 2, yc = y + rows * lh + lh / 2;
            for (int i = first; i < last; i++) {
                if (i > first) xx += sep;
                cairo_rectangle(cr, round(xx), round(yc - sw / 2), sw, sw);
                plot_set_rgb(cr, PLOT_PALETTE[i], 1.0);
                cairo_fill(cr);
                xx += sw + gap;
                cairo_set_source_rgb(cr, 0.15, 0.15, 0.17);
                plot_text(cv, runs[i].name, xx, yc, 0, 0.5);
                xx += text_width(cv, runs[i].name);
            }
        }
        rows++;
        first = last;
    }
    return rows * lh;
}

/* panels side by side up to three, then 2 x 2 or rows of three */
static void grid(int n, int *cols, int *rows) {
    *cols = n <= 3 ? n : n == 4 ? 2 : 3;
    *rows = (n + *cols - 1) / *cols;
}

cairo_status_t plot_png_to_buffer(void *closure, const unsigned char *data, unsigned int n) {
    sb_append(closure, (const char *)data, n);
    return CAIRO_STATUS_SUCCESS;
}

/* a context on surf with the plot's font and line settings */
cairo_t *plot_context(cairo_surface_t *surf) {
    cairo_t *cr = cairo_create(surf);
    cairo_font_options_t *fo = cairo_font_options_create();
    /* grey antialiasing: subpixel colour fringes would stay in the PNG */
    cairo_font_options_set_antialias(fo, CAIRO_ANTIALIAS_GRAY);
    cairo_font_options_set_hint_style(fo, CAIRO_HINT_STYLE_SLIGHT);
    cairo_set_font_options(cr, fo);
    cairo_font_options_destroy(fo);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    return cr;
}

/* The title (when given) and the legend from the top of a W-pixel-wide image: drawn when draw
 * is set; returns where the panels start. */
double plot_header(Canvas *cv, const Run *runs, int nruns, const char *title, int W, int draw) {
    double s = cv->s, y = 12 * s;
    if (title) {
        plot_font(cv, 16, 1);
        cairo_set_source_rgb(cv->cr, 0.1, 0.1, 0.12);
        if (draw) plot_text(cv, title, W / 2.0, y, 0.5, 0);
        y += font_height(cv) + 6 * s;
    }
    y += legend(cv, runs, nruns, y, W - 28 * s, draw);
    return y + 4 * s;
}

/* The height that gives every panel row CELL_H x scale pixels under the header (measured on a
 * scratch surface: the legend may wrap). */
static int default_height(const Run *runs, int nruns, const char *title, int W, int rows, double s) {
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
    Canvas cv = {plot_context(surf), s};
    double top = plot_header(&cv, runs, nruns, title, W, 0);
    cairo_destroy(cv.cr);
    cairo_surface_destroy(surf);
    return (int)fmin(MAX_SIDE, ceil(top + rows * CELL_H * s + 12 * s));
}

/* The image lifecycle of both figures (the curves, plot_results.c's): a W x H white image at
 * scale s, the header (title, legend of runs), body below it, the PNG into *png (the caller
 * frees it): 0, or -1 with the error set. */
int plot_render(int W, int H, double s, const Run *runs, int nruns, const char *title,
                PlotBody body, const void *ctx, StrBuf *png) {
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
    MMRM_REQUIRE(cairo_surface_status(surf) == CAIRO_STATUS_SUCCESS, "plot: a %dx%d image: %s", W, H,
                 cairo_status_to_string(cairo_surface_status(surf)));
    Canvas cv = {plot_context(surf), s};
    cairo_t *cr = cv.cr;
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    int rc = body(&cv, plot_header(&cv, runs, nruns, title, W, 1), ctx);
    cairo_status_t st = cairo_status(cr);
    if (!rc && st != CAIRO_STATUS_SUCCESS) {
        mmrm_set_error("plot: drawing failed: %s", cairo_status_to_string(st));
        rc = -1;
    }
    if (!rc && (st = cairo_surface_write_to_png_stream(surf, plot_png_to_buffer, png)) != CAIRO_STATUS_SUCCESS) {
        mmrm_set_error("plot: PNG encoding failed: %s", cairo_status_to_string(st));
        rc = -1;
    }
    cairo_destroy(cr);
    cairo_surface_destroy(surf);
    /* cairo and fontconfig keep their font caches for the life of the process; with no cairo
     * object left, release them, so that leak checkers see only our own allocations */
    cairo_debug_reset_static_data();
    FcFini();
    return rc;
}

typedef struct {
    const Run *runs;
    int nruns, nshown, W, H, smooth;
    const int *shown;
} Curves;

/* the panels of the curves below the header (top): 0, or -1 with the error set */
static int curves_body(Canvas *cv, double top, const void *ctx) {
    const Curves *c = ctx;
    double s = cv->s, m = 12 * s;
    int cols, rows;
    grid(c->nshown, &cols, &rows);
    double cw = (c->W - 2 * m) / cols, ch = (c->H - top - m) / rows;
    MMRM_REQUIRE(cw >= 150 * s && ch >= 120 * s, "plot: %dx%d pixels is too small for %d panels "
                 "(%d x %d); give a larger --width/--height", c->W, c->H, c->nshown, cols, rows);
    double xlo = INFINITY, xhi = -INFINITY;
    for (int i = 0; i < c->nruns; i++)
        for (int k = 0; k < NSERIES; k++)
            for (long j = 0; j < c->runs[i].s[k].n; j++) {
                xlo = fmin(xlo, c->runs[i].s[k].x[j]);
                xhi = fmax(xhi, c->runs[i].s[k].x[j]);
            }
    for (int i = 0; i < c->nshown; i++)
        panel_draw(cv, &PANELS[c->shown[i]], c->runs, c->nruns, xlo, xhi, m + (i % cols) * cw,
                   top + (i / cols) * ch, cw, ch, c->smooth);
    return 0;
}

/* ---- the command ---- */

static int parse_int(const char *s, int lo, int hi, int *v) {
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (end == s || *end || errno || x < lo || x > hi) return -1;
    *v = (int)x;
    return 0;
}

int cmd_plot(int argc, char **argv) {
    const char *out = NULL, *title = NULL, *results = NULL;
    const char **dirs = xcalloc(argc, sizeof *dirs), **labels = xcalloc(argc, sizeof *labels);
    int ndirs = 0, nlabels = 0, W = 0, H = 0, smooth = 1, rc = 2;
    char msg[160];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_text, stdout);
            rc = 0;
            goto out_args;
        }
        if (strncmp(a, "--", 2) != 0) {
            dirs[ndirs++] = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        char opt[32];
        size_t on = eq ? (size_t)(eq - a) : strlen(a);
        if (on >= sizeof opt) {
            usage_error("plot: unknown option '%s'", a);
            goto out_args;
        }
        memcpy(opt, a, on);
        opt[on] = 0;
        if (strcmp(opt, "--out") && strcmp(opt, "--title") && strcmp(opt, "--label") &&
            strcmp(opt, "--width") && strcmp(opt, "--height") && strcmp(opt, "--smooth") &&
            strcmp(opt, "--results")) {
            usage_error("plot: unknown option '%s'", a);
            goto out_args;
        }
        if (eq) val = eq + 1;
        else if (i + 1 < argc) val = argv[++i];
        else {
            usage_error("plot: %s needs a value", opt);
            goto out_args;
        }
        if (!strcmp(opt, "--out")) out = val;
        else if (!strcmp(opt, "--title")) title = val;
        else if (!strcmp(opt, "--label")) labels[nlabels++] = val;
        else if (!strcmp(opt, "--results")) results = val;
        else if (!strcmp(opt, "--smooth")) {
            if (parse_int(val, 1, MAX_SMOOTH, &smooth)) {
                snprintf(msg, sizeof msg, "plot: --smooth '%%s': want a whole number of steps, 1 to %d",
                         MAX_SMOOTH);
                usage_error(msg, val);
                goto out_args;
            }
        } else if (parse_int(val, MIN_SIDE, MAX_SIDE, !strcmp(opt, "--width") ? &W : &H)) {
            snprintf(msg, sizeof msg, "plot: %s '%%s': want pixels, %d to %d", opt, MIN_SIDE, MAX_SIDE);
            usage_error(msg, val);
            goto out_args;
        }
    }
    if (!out) {
        usage_error("plot: %s is required", "--out FILE.png");
        goto out_args;
    }
    if (results) {
        if (ndirs || nlabels || smooth != 1)
            usage_error("plot: %s", "--results takes no RUN_DIR, --label or --smooth");
        else rc = plot_results(results, out, title, W, H);
        goto out_args;
    }
    if (!ndirs) {
        usage_error("plot: %s", "no RUN_DIR given");
        goto out_args;
    }
    if (ndirs > MAX_RUNS) {
        snprintf(msg, sizeof msg, "plot: %d runs; at most %d (one colour each)%%s", ndirs, MAX_RUNS);
        usage_error(msg, "");
        goto out_args;
    }
    if (nlabels && nlabels != ndirs) {
        snprintf(msg, sizeof msg, "plot: %d --label for %d runs%%s: give one per RUN_DIR, in order",
                 nlabels, ndirs);
        usage_error(msg, "");
        goto out_args;
    }

    rc = 1;
    Run runs[MAX_RUNS] = {0};
    char *names[MAX_RUNS] = {0};
    int err = 0;
    for (int i = 0; i < ndirs && !err; i++) {
        names[i] = nlabels ? xstrdup(labels[i]) : run_name(dirs[i]);
        runs[i].name = names[i];
        err = run_read(&runs[i], dirs[i]) != 0;
    }
    if (err) {
        plot_fail();
        goto out_runs;
    }
    int shown[NPANELS], nshown = 0;
    for (int p = 0; p < NPANELS; p++) {
        int any = 0;
        for (int i = 0; i < ndirs; i++) any |= runs[i].s[PANELS[p].series].n > 0;
        if (any) shown[nshown++] = p;
    }
    if (!nshown) {
        fprintf(stderr, "mmrm: error: no data to plot: %s no entry with a finite loss, accuracy or "
                "eval_accuracy\n", ndirs == 1 ? "the run's metrics.jsonl has" : "no run's metrics.jsonl has");
        goto out_runs;
    }
    for (int i = 0; i < ndirs; i++)
        if (!runs[i].ntrain && !runs[i].neval)
            mmrm_warn("%s: no training or eval entries yet; it is in the legend only", dirs[i]);
    /* scale 1 is a 440 x 330 panel; a given size scales the layout to fit */
    int cols, nrows;
    grid(nshown, &cols, &nrows);
    if (!W) W = (int)(cols * CELL_W);
    double s = fmax(0.8, fmin(3.0, W / (cols * CELL_W)));
    if (!H) H = default_height(runs, ndirs, title, W, nrows, s);
    else s = fmax(0.8, fmin(s, H / (nrows * CELL_H + 12 + (title ? 26 : 0) + 24)));
    StrBuf png = {0};
    Curves curves = {runs, ndirs, nshown, W, H, smooth, shown};
    if (plot_render(W, H, s, runs, ndirs, title, curves_body, &curves, &png) ||
        fs_write_atomic(out, png.s, png.len)) {
        sb_free(&png);
        plot_fail();
        goto out_runs;
    }
    printf("%s: %dx%d pixels, %d panel%s, %d run%s\n", out, W, H, nshown, nshown > 1 ? "s" : "", ndirs,
           ndirs > 1 ? "s" : "");
    for (int i = 0; i < ndirs; i++)
        printf("  %-24s #%02x%02x%02x  %ld training entries, %ld eval entries\n", runs[i].name,
               PLOT_PALETTE[i][0], PLOT_PALETTE[i][1], PLOT_PALETTE[i][2], runs[i].ntrain, runs[i].neval);
    sb_free(&png);
    rc = 0;
out_runs:
    for (int i = 0; i < ndirs; i++) {
        run_free(&runs[i]);
        free(names[i]);
    }
out_args:
    free(dirs);
    free(labels);
    return rc;
}
