/* plot_results.c - `mmrm plot --results DEMO_DIR`: bench/demo.sh's figure, accuracy bars per
 * model and split from the eval JSONs and the shortcut-aware run's w histogram from its
 * TensorBoard events; drawn with plot.c's helpers (plot.h). */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cairo/cairo.h>
#include <cjson/cJSON.h>
#include <fontconfig/fontconfig.h>

#include "infer/plot.h"
#include "runtime/error.h"
#include "runtime/fsutil.h"
#include "runtime/strbuf.h"
#include "runtime/tfevents.h"

/* the demo's models (bench/demo.sh's run folders) and splits, with their names in the figure */
static const char *const RES_MODELS[3][2] = {
    {"pretrain", "oracle (grounding run)"}, {"standard", "standard"}, {"robust", "shortcut-aware"}};
static const char *const RES_SPLITS[3][2] = {
    {"test_id", "i.i.d."}, {"test_ood", "o.o.d."}, {"test_oracle", "oracle split"}};
#define W_BINS 20
#define TB_MAX_BUCKETS 4096

typedef struct {
    double acc[3][3];    /* [model][split] */
    double w[W_BINS];    /* pairs per bin of [0, 1] */
    double w_num, w_sum; /* pairs and the sum of their w */
    long w_steps;        /* histograms merged */
    int W, H;            /* the image */
} Results;

/* "accuracy" of DIR/eval_MODEL_SPLIT.json (`mmrm eval --json`) */
static int results_accuracy(const char *dir, const char *model, const char *split, double *acc) {
    char name[128], path[PATH_MAX];
    snprintf(name, sizeof name, "eval_%s_%s.json", model, split);
    if (!fs_join(path, sizeof path, dir, name)) return -1;
    char *text = fs_read_file(path, NULL);
    if (!text) return -1;
    cJSON *j = cJSON_Parse(text);
    free(text);
    const cJSON *a = j ? cJSON_GetObjectItemCaseSensitive(j, "accuracy") : NULL;
    int ok = cJSON_IsNumber(a) && a->valuedouble >= 0 && a->valuedouble <= 1;
    if (ok) *acc = a->valuedouble;
    cJSON_Delete(j);
    MMRM_REQUIRE(ok, "%s: %s (want `mmrm eval --json` output with \"accuracy\" in [0, 1])", path,
                 !j ? "not JSON" : "field \"accuracy\" is missing or not a number in [0, 1]");
    return 0;
}

/* every train/w histogram of the run's TensorBoard events merged into W_BINS bins of [0, 1]:
 * each bucket's pairs at its centre (train writes 20 buckets over the step's own w range) */
static int results_w(const char *dir, Results *r) {
    char path[PATH_MAX];
    if (!fs_join(path, sizeof path, dir, "robust/runs")) return -1;
    TfEventList l = {0};
    if (tfevents_collect(path, INT64_MAX, &l)) {
        tf_list_free(&l);
        return -1;
    }
    double *limit = xmalloc(2 * TB_MAX_BUCKETS * sizeof *limit), *count = limit + TB_MAX_BUCKETS;
    int err = 0;
    for (long i = 0; i < l.count && !err; i++) {
        if (strcmp(l.ev[i].tag, "train/w")) continue;
        TfHistogram h;
        int got = tf_event_histogram_parse(l.ev[i].data, l.ev[i].n, &h, limit, count, TB_MAX_BUCKETS);
        if (got < 0) {
            mmrm_set_error("%s: the train/w histogram of step %lld is malformed", path, (long long)l.ev[i].step);
            err = 1;
        }
        if (got != 1) continue;
        for (int k = 0; k < h.n; k++) {
            double lo = k ? limit[k - 1] : h.min, c = fmin(fmax((lo + limit[k]) / 2, h.min), h.max);
            int b = (int)floor(c * W_BINS);
            r->w[b < 0 ? 0 : b >= W_BINS ? W_BINS - 1 : b] += count[k];
        }
        r->w_num += h.num;
        r->w_sum += h.sum;
        r->w_steps++;
    }
    free(limit);
    tf_list_free(&l);
    if (err) return -1;
    MMRM_REQUIRE(r->w_steps > 0 && r->w_num > 0, "%s: no train/w histogram (the shortcut-aware run writes one per "
                 "logged step with report_to = tensorboard)", path);
    return 0;
}

/* the accuracy bars: a group per split, a bar per model */
static void results_bars(Canvas *cv, const Results *r, double x, double y, double w, double h) {
    cairo_t *cr = cv->cr;
    double s = cv->s;
    Frame f = {.L = x + 58 * s, .R = x + w - 12 * s, .T = y + 30 * s, .B = y + h - 44 * s};
    f.y = (Axis){0, 1, 0.2, 1};
    f.x = (Axis){0, 3, 1, 0};
    plot_frame_paint(cv, &f, x, y, h, "accuracy against the image-grounded truth", "test split", "accuracy", 0);
    double bw = 0.24;
    plot_font(cv, 10, 0);
    for (int g = 0; g < 3; g++) {
        for (int m = 0; m < 3; m++) {
            double c = g + 0.5 + (m - 1) * (bw + 0.03), v = r->acc[m][g];
            double x0 = round(plot_px(&f, c - bw / 2)), x1 = round(plot_px(&f, c + bw / 2)), top = round(plot_py(&f, v));
            cairo_rectangle(cr, x0, top, x1 - x0, round(f.B) - top);
            plot_set_rgb(cr, PLOT_PALETTE[m], 1.0);
            cairo_fill(cr);
            char buf[16];
            snprintf(buf, sizeof buf, "%.2f", v);
            cairo_set_source_rgb(cr, 0.15, 0.15, 0.17);
            plot_text(cv, buf, (x0 + x1) / 2, top - 2 * s, 0.5, 1);
        }
        plot_font(cv, 11, 0);
        cairo_set_source_rgb(cr, 0.33, 0.33, 0.36);
        plot_text(cv, RES_SPLITS[g][1], plot_px(&f, g + 0.5), f.B + 5 * s, 0.5, 0);
        plot_font(cv, 10, 0);
    }
    /* chance */
    double dash = 4 * s;
    cairo_set_dash(cr, &dash, 1, 0);
    cairo_set_line_width(cr, 1.2 * s);
    cairo_set_source_rgb(cr, 0.35, 0.35, 0.38);
    cairo_move_to(cr, f.L, round(plot_py(&f, 0.5)) + 0.5);
    cairo_line_to(cr, f.R, round(plot_py(&f, 0.5)) + 0.5);
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
}

/* the histogram of the shortcut-aware run's per-pair weights, as fractions of its pairs */
static void results_hist(Canvas *cv, const Results *r, double x, double y, double w, double h) {
    cairo_t *cr = cv->cr;
    double s = cv->s, top = 0;
    for (int b = 0; b < W_BINS; b++) top = fmax(top, r->w[b] / r->w_num);
    Frame f = {.L = x + 58 * s, .R = x + w - 12 * s, .T = y + 30 * s, .B = y + h - 44 * s};
    f.x = (Axis){0, 1, 0.2, 1};
    f.y = plot_axis_make(0, top, 5, 0.04, 1, 0);
    plot_frame_paint(cv, &f, x, y, h, "shortcut-aware run: sample weight w", "w (all logged training steps)",
                "fraction of pairs", 1);
    plot_set_rgb(cr, PLOT_PALETTE[2], 1.0);
    for (int b = 0; b < W_BINS; b++) {
        double x0 = round(plot_px(&f, (double)b / W_BINS)) + 1, x1 = round(plot_px(&f, (double)(b + 1) / W_BINS));
        double t = round(plot_py(&f, r->w[b] / r->w_num));
        cairo_rectangle(cr, x0, t, x1 - x0, round(f.B) - t);
    }
    cairo_fill(cr);
    char buf[96];
    snprintf(buf, sizeof buf, "%.0f pairs, mean w %.3f", r->w_num, r->w_sum / r->w_num);
    plot_font(cv, 11, 0);
    cairo_set_source_rgb(cr, 0.15, 0.15, 0.17);
    plot_text(cv, buf, f.R - 6 * s, f.T + 6 * s, 1, 0);
}

/* the bars and the histogram side by side below the header (top) */
static int results_body(Canvas *cv, double top, const void *ctx) {
    const Results *r = ctx;
    double m = 12 * cv->s, cw = (r->W - 2 * m) / 2, ch = r->H - top - m;
    MMRM_REQUIRE(cw >= 200 * cv->s && ch >= 160 * cv->s, "plot: %dx%d pixels is too small for the "
                 "results figure; give a larger --width/--height", r->W, r->H);
    results_bars(cv, r, m, top, cw, ch);
    results_hist(cv, r, m + cw, top, cw, ch);
    return 0;
}

/* the figure into *png: title, legend (the models), bars and histogram side by side */
static int results_render(Results *r, const char *title, int W, int H, StrBuf *png) {
    double s = fmax(0.8, fmin(3.0, fmin(W / (2 * CELL_W), H / (CELL_H + 60))));
    Run names[3] = {{.name = RES_MODELS[0][1]}, {.name = RES_MODELS[1][1]}, {.name = RES_MODELS[2][1]}};
    r->W = W;
    r->H = H;
    return plot_render(W, H, s, names, 3, title, results_body, r, png);
}

int plot_results(const char *dir, const char *out, const char *title, int W, int H) {
    Results r = {0};
    for (int m = 0; m < 3; m++)
        for (int g = 0; g < 3; g++)
            if (results_accuracy(dir, RES_MODELS[m][0], RES_SPLITS[g][0], &r.acc[m][g])) return plot_fail();
    if (results_w(dir, &r)) return plot_fail();
    if (!W) W = (int)(2 * CELL_W);
    if (!H) H = (int)(CELL_H + (title ? 86 : 60));
    StrBuf png = {0};
    if (results_render(&r, title, W, H, &png) || fs_write_atomic(out, png.s, png.len)) {
        sb_free(&png);
        return plot_fail();
    }
    sb_free(&png);
    printf("%s: %dx%d pixels: accuracy of %s, %s, %s on %s, %s, %s; w histogram of %.0f pairs "
           "(%ld logged steps), mean w %.4f\n", out, W, H, RES_MODELS[0][1], RES_MODELS[1][1],
           RES_MODELS[2][1], RES_SPLITS[0][0], RES_SPLITS[1][0], RES_SPLITS[2][0], r.w_num, r.w_steps,
           r.w_sum / r.w_num);
    for (int m = 0; m < 3; m++)
        printf("  %-24s #%02x%02x%02x  %.4f %.4f %.4f\n", RES_MODELS[m][1], PLOT_PALETTE[m][0], PLOT_PALETTE[m][1],
               PLOT_PALETTE[m][2], r.acc[m][0], r.acc[m][1], r.acc[m][2]);
    return 0;
}

