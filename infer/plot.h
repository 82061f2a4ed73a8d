/* plot.h - private to `mmrm plot` (plot.c: the curves, the axes and drawing helpers, the
 * command; plot_results.c: --results, the demo's figure). */
#ifndef MMRM_PLOT_H
#define MMRM_PLOT_H

#include <cairo/cairo.h>

#include "runtime/strbuf.h"

#define MAX_RUNS 10
#define CELL_W 440.0
#define CELL_H 330.0

extern const unsigned char PLOT_PALETTE[MAX_RUNS][3];

enum { S_LOSS, S_ACC, S_ACC_BIAS, S_W_MEAN, S_W_MIN, S_W_MAX, S_EVAL_ACC, NSERIES };
typedef struct {
    double *x, *y; /* (n) step, value */
    long n, cap;
} Series;

typedef struct {
    const char *name;
    Series s[NSERIES];
    long ntrain, neval; /* entries with a loss / an eval_accuracy */
} Run;

typedef struct {
    double lo, hi, step; /* the axis spans [lo, hi]; ticks every step (1, 2 or 5 x 10^k) */
    int decimals;        /* of the tick labels */
} Axis;

typedef struct {
    cairo_t *cr;
    double s; /* scale */
} Canvas;

typedef struct {
    double L, R, T, B; /* the plot area in pixels */
    Axis x, y;
} Frame;

/* "mmrm: error: " and mmrm_last_error() on stderr; returns 1 */
int plot_fail(void);
Axis plot_axis_make(double lo, double hi, int target, double pad, int unit, int integral);
void plot_set_rgb(cairo_t *cr, const unsigned char c[3], double alpha);
void plot_font(Canvas *cv, double size, int bold);
/* t with its anchor (ax, ay: 0 left/top, 0.5 centre, 1 right/bottom) at (x, y) */
void plot_text(Canvas *cv, const char *t, double x, double y, double ax, double ay);
double plot_px(const Frame *f, double x);
double plot_py(const Frame *f, double y);
/* a panel's frame: background, grid, ticks and labels, the title */
void plot_frame_paint(Canvas *cv, const Frame *f, double x, double y, double h, const char *title,
                      const char *xlabel, const char *ylabel, int xticks);
/* the title and the legend of runs (nruns 0: title only); its height (draw 0: measure only) */
double plot_header(Canvas *cv, const Run *runs, int nruns, const char *title, int W, int draw);
cairo_t *plot_context(cairo_surface_t *surf);
/* draws a figure's body below the header (top: its height); 0, or -1 with the error set */
typedef int (*PlotBody)(Canvas *cv, double top, const void *ctx);
/* a W x H white image at scale s: the header (title, legend of runs), body(cv, top, ctx), and
 * the PNG into *png (the caller frees it); 0, or -1 with the error set */
int plot_render(int W, int H, double s, const Run *runs, int nruns, const char *title,
                PlotBody body, const void *ctx, StrBuf *png);
cairo_status_t plot_png_to_buffer(void *closure, const unsigned char *data, unsigned int n);

/* --results DEMO_DIR: the demo's figure into out (W, H: 0 = default); 0, or 1 (reported) */
int plot_results(const char *dir, const char *out, const char *title, int W, int H);

#endif
