// graph.cu - CUDA graphs of the training step (cuda_backend.h: cuda_graph_begin/end, the
// train key cuda_graphs). A capture records the work queued on the compute stream instead of
// running it; cuda_graph_end turns it into an exec (kept per key, updated to each new capture
// of the key with cudaGraphExecUpdate, so a replay never runs stale arguments) and launches
// it. While capturing, context.cu routes what a graph cannot hold through here:
// - host-to-device copies: the host bytes are kept and a device-to-device copy from a staging
//   buffer is captured; the staging buffer is filled after the capture, before the launch, so
//   every replay reads the inputs of its own step;
// - frees (a scratch slot that grows): deferred until the graph has run;
// - host reads of device memory and host waits: they cannot happen inside a graph, so the
//   capture is declared unusable (cuda_graph_fail) and the caller runs the step eagerly;
// - a cuBLASLt plan-cache miss (a heuristic query inside the capture) likewise.
#include <stdio.h>
#include <string.h>

#include <vector>

#include "kernels/cuda/cuda_common.cuh"

namespace {
bool g_on = false;
char g_why[256];          // the first reason the capture cannot be launched ("" if none)
long g_misses_at_begin = 0;
// staging of the host-to-device copies of a capture: one device buffer, bump-allocated
// from 0 at every capture (so equal steps get equal addresses); a capture that outgrows it
// gets extra buffers, and the next capture starts with one buffer of the total size
char *g_stage = nullptr;
size_t g_stage_cap = 0, g_stage_used = 0, g_stage_high = 0;
std::vector<void *> g_stage_extra;
char *g_extra_cur = nullptr;
size_t g_extra_cap = 0, g_extra_used = 0;
struct Upload {
    void *dev;
    std::vector<char> bytes;
};
std::vector<Upload> g_uploads;
std::vector<void *> g_graveyard; // device memory freed during the capture
// execs by key, least recently used evicted
enum { EXECS = 16 };
struct Exec {
    uint64_t key;
    cudaGraphExec_t exec;
    long used;
} g_execs[EXECS];
long g_clock = 0, g_captured = 0, g_replayed = 0;
bool g_stale = false; // device memory was freed since the execs were made

void fail(const char *why) {
    if (!g_why[0]) snprintf(g_why, sizeof g_why, "%s", why);
}

void *stage_alloc(size_t bytes) {
    size_t need = (bytes + 255) & ~(size_t)255;
    g_stage_high += need;
    if (g_stage_used + need <= g_stage_cap) {
        void *p = g_stage + g_stage_used;
        g_stage_used += need;
        return p;
    }
    if (!g_extra_cur || g_extra_used + need > g_extra_cap) {
        g_extra_cap = need > (1u << 20) ? need : (1u << 20);
        g_extra_cur = (char *)cuda_malloc(g_extra_cap); // relaxed capture mode allows it
        g_stage_extra.push_back(g_extra_cur);
        g_extra_used = 0;
    }
    void *p = g_extra_cur + g_extra_used;
    g_extra_used += need;
    return p;
}

// after the graph was launched (or dropped): the memory freed meanwhile goes back
void release_graveyard(void) {
    for (void *p : g_graveyard) cuda_free(p); // cuda_free waits for the stream first
    g_graveyard.clear();
}

void exec_destroy(Exec *e) {
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream())); // it may still run
    CUDA_CHECK(cudaGraphExecDestroy(e->exec));
    *e = Exec{0, nullptr, 0};
}
} // namespace

int cuda_graph_capturing(void) { return g_on; }

void cuda_graph_fail(const char *why) { fail(why); }

void cuda_graph_memory_freed(void) { g_stale = true; }

void *cuda_graph_stage_upload(const void *src, size_t bytes) {
    void *dev = stage_alloc(bytes);
    g_uploads.push_back(Upload{dev, std::vector<char>((const char *)src, (const char *)src + bytes)});
    return dev;
}

void cuda_graph_defer_free(void *p) { g_graveyard.push_back(p); }

extern "C" void cuda_graph_begin(void) {
    cudaStream_t st = cuda_stream();
    if (g_on) {
        fprintf(stderr, "mmrm: cuda_graph_begin: a capture is already running\n");
        exit(1);
    }
    if (!g_stage || !g_stage_extra.empty() || g_stage_high > g_stage_cap) {
        for (void *p : g_stage_extra) cuda_free(p);
        g_stage_extra.clear();
        g_extra_cur = nullptr;
        if (g_stage) cuda_free(g_stage);
        g_stage_cap = g_stage_high + g_stage_high / 4;
        if (g_stage_cap < (1u << 20)) g_stage_cap = 1u << 20;
        g_stage = (char *)cuda_malloc(g_stage_cap);
    }
    g_stage_used = g_stage_high = 0;
    g_uploads.clear();
    g_why[0] = 0;
    long hits;
    cuda_matmul_plan_stats(&hits, &g_misses_at_begin);
    CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeRelaxed));
    g_on = true;
}

extern "C" const char *cuda_graph_end(uint64_t key) {
    cudaStream_t st = cuda_stream();
    cudaGraph_t graph = nullptr;
    cudaError_t rc = cudaStreamEndCapture(st, &graph);
    g_on = false;
    if (rc != cudaSuccess) {
        (void)cudaGetLastError();
        char b[200];
        snprintf(b, sizeof b, "the capture was invalidated (%s)", cudaGetErrorString(rc));
        fail(b);
    }
    long hits, misses;
    cuda_matmul_plan_stats(&hits, &misses);
    if (misses != g_misses_at_begin) fail("a cuBLASLt plan-cache miss (a heuristic query) inside the capture");
    if (g_why[0]) {
        if (graph) CUDA_CHECK(cudaGraphDestroy(graph));
        g_uploads.clear();
        release_graveyard();
        return g_why;
    }
    if (g_stale) { // the execs may hold freed addresses: made again under their keys
        for (int i = 0; i < EXECS; i++)
            if (g_execs[i].exec) exec_destroy(&g_execs[i]);
        g_stale = false;
    }
    Exec *e = nullptr, *lru = &g_execs[0];
    for (int i = 0; i < EXECS; i++) {
        if (g_execs[i].exec && g_execs[i].key == key) e = &g_execs[i];
        if (g_execs[i].used < lru->used) lru = &g_execs[i];
    }
    if (e) {
        cudaGraphExecUpdateResultInfo info;
        if (cudaGraphExecUpdate(e->exec, graph, &info) == cudaSuccess) {
            g_replayed++;
        } else { // another topology under the same key: a new exec
            (void)cudaGetLastError();
            exec_destroy(e);
        }
    }
    if (!e || !e->exec) {
        if (!e) e = lru;
        if (e->exec) exec_destroy(e);
        CUDA_CHECK(cudaGraphInstantiate(&e->exec, graph, 0));
        e->key = key;
        g_captured++;
    }
    e->used = ++g_clock;
    for (const Upload &u : g_uploads) cuda_copy_h2d(u.dev, u.bytes.data(), u.bytes.size());
    g_uploads.clear();
    CUDA_CHECK(cudaGraphLaunch(e->exec, st));
    CUDA_CHECK(cudaGraphDestroy(graph));
    release_graveyard();
    return nullptr;
}

extern "C" void cuda_graph_counts(long *captured, long *replayed) {
    *captured = g_captured;
    *replayed = g_replayed;
}
