/* parity_graph.c - CUDA graphs as the training step uses them (kernels/cuda/graph.cu): an
 * upload, a scale by a by-value factor and a GEMM captured, launched, captured again with
 * other host data and another factor under the same key (the exec updated, not rebuilt),
 * each result checked against the CPU; a capture with a host read inside is refused with a
 * reason and runs nothing; a capture of another topology under the key gets a new exec.
 * Under the emulator with EMU_GRAPH_STRICT=1 the second capture must stop the program (its
 * factor changed): tests/integration/cuda_graphs.sh checks that the check fires. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_backend.h"
#include "tests/gpu/parity.h"

enum { N = 37, C = 24, OC = 20 };

/* out = (x * s) W^T + b on the CPU */
static void reference(float *out, const float *x, float s, const float *w, const float *b) {
    float xs[N * C];
    memcpy(xs, x, sizeof xs);
    kernels_cpu.scale_inplace(xs, s, N * C);
    kernels_cpu.matmul_forward(out, xs, w, NULL, b, N, C, OC, KP_FP32);
}

/* the captured work: x uploaded into dx, scaled by s, multiplied into dout */
static void work(float *dout, float *dx, const float *x, float s, const float *dw, const float *db) {
    cuda_copy_h2d(dx, x, N * C * sizeof *x);
    kernels_cuda.scale_inplace(dx, s, N * C);
    kernels_cuda.matmul_forward(dout, dx, dw, NULL, db, N, C, OC, KP_FP32);
}

void parity_graph(Parity *p) {
    float *w = h_rand(p, OC * C, -0.5f, 0.5f), *b = h_rand(p, OC, -0.5f, 0.5f);
    float *x1 = h_rand(p, N * C, -1, 1), *x2 = h_rand(p, N * C, -1, 1);
    float *dw = d_upload(w, OC * C), *db = d_upload(b, OC), *dx = d_zeros(N * C), *dout = d_zeros(N * OC);
    float ref[N * OC], got[N * OC];
    long cap0, rep0, cap, rep;
    cuda_graph_counts(&cap0, &rep0);
    work(dout, dx, x1, 0.5f, dw, db); /* eager first: the GEMM plan is cached */

    cuda_graph_begin();
    work(dout, dx, x1, 1.5f, dw, db);
    const char *why = cuda_graph_end(42);
    if (why) printf("     capture refused: %s\n", why);
    reference(ref, x1, 1.5f, w, b);
    d_download(got, dout, N * OC);
    parity_check(p, "graph: captured and launched (upload, scale, GEMM)", ref, got, N * OC, parity_tol(p));

    cuda_graph_begin(); /* same key, other host data and another by-value factor */
    work(dout, dx, x2, -0.75f, dw, db);
    why = cuda_graph_end(42);
    if (why) printf("     capture refused: %s\n", why);
    reference(ref, x2, -0.75f, w, b);
    d_download(got, dout, N * OC);
    parity_check(p, "graph: replayed after the update (new data, new factor)", ref, got, N * OC, parity_tol(p));
    cuda_graph_counts(&cap, &rep);
    int ok = cap - cap0 == 1 && rep - rep0 == 1;
    printf("%s graph: 1 exec instantiated, 1 update replayed (got %ld, %ld)\n", ok ? "ok  " : "FAIL",
           cap - cap0, rep - rep0);
    ok ? p->passed++ : p->failed++;

    float before[N * OC];
    memcpy(before, got, sizeof before);
    cuda_graph_begin(); /* a host read inside: refused, and the work must not run */
    work(dout, dx, x1, 2.0f, dw, db);
    float peek;
    cuda_copy_d2h(&peek, dout, sizeof peek);
    why = cuda_graph_end(42);
    d_download(got, dout, N * OC);
    ok = why && strstr(why, "read of device memory by the host");
    printf("%s graph: a host read inside the capture refused (%s)\n", ok ? "ok  " : "FAIL", why ? why : "not refused");
    ok ? p->passed++ : p->failed++;
    parity_check(p, "graph: the refused capture ran nothing (output unchanged)", before, got, N * OC, 0);

    cuda_graph_begin(); /* another topology under the key: a new exec */
    work(dout, dx, x1, 3.0f, dw, db);
    kernels_cuda.scale_inplace(dout, 2.0f, N * OC);
    why = cuda_graph_end(42);
    if (why) printf("     capture refused: %s\n", why);
    reference(ref, x1, 3.0f, w, b);
    kernels_cpu.scale_inplace(ref, 2.0f, N * OC);
    d_download(got, dout, N * OC);
    parity_check(p, "graph: another topology under the key (new exec)", ref, got, N * OC, parity_tol(p));
    cuda_graph_counts(&cap, &rep);
    ok = cap - cap0 == 2 && rep - rep0 == 1;
    printf("%s graph: the changed topology instantiated a second exec (got %ld, %ld)\n", ok ? "ok  " : "FAIL",
           cap - cap0, rep - rep0);
    ok ? p->passed++ : p->failed++;
    d_free(dw), d_free(db), d_free(dx), d_free(dout);
    free(w), free(b), free(x1), free(x2);
}
