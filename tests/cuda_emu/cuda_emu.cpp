// cuda_emu.cpp - the CPU emulator behind cuda_emu.h (tests/cuda_emu, README.md there): kernel
// launches run as fibers, the CUDA runtime API subset over host memory, and a cuBLASLt
// subset that computes the exact product.
//
// Launch: blocks run one at a time (order: EMU_ORDER). Every thread of a block is a fiber
// with its own stack (64 KiB plus a PROT_NONE guard page; 256 KiB under ASan). A scheduling
// round resumes every ready fiber once, in the order of the round (forward, reverse or a
// seeded shuffle); a fiber runs until it finishes or waits at a collective. After a round,
// each warp whose lanes all wait at a matching collective is released (its results computed
// from the values the lanes left), and when no warp can be released and every live thread
// waits at __syncthreads, the block barrier is released. Whatever else is left is an error
// (divergence, exited threads, bad masks) and stops the program naming kernel, block and
// threads. A fiber that finishes gives its stack back at once, so a kernel whose threads
// never wait runs its threads one after another on one (cache-hot) stack.
//
// Context switches: a small assembly routine on x86-64 (callee-saved registers, MXCSR and
// the x87 control word; no signal-mask system call as in swapcontext), ucontext elsewhere or
// with -DCUDA_EMU_UCONTEXT. Under AddressSanitizer every switch is announced with
// __sanitizer_start/finish_switch_fiber, so ASan knows which stack is live.
#include "tests/cuda_emu/cuda_emu.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#ifdef EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(__x86_64__) && !defined(CUDA_EMU_UCONTEXT)
#define EMU_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

namespace cuda_emu {
uint3 g_threadIdx, g_blockIdx;
dim3 g_blockDim, g_gridDim;
} // namespace cuda_emu

using namespace cuda_emu;

namespace {

// ---------------------------------------------------------------------------------------
// limits of the emulated device: sm_80 (A100), the smaller of the targeted architectures
// ---------------------------------------------------------------------------------------
constexpr size_t kSmemDefault = 48 * 1024; // dynamic shared memory without an opt-in
constexpr size_t kSmemOptin = 166912; // cudaFuncAttributeMaxDynamicSharedMemorySize max
constexpr size_t kTotalMem = (size_t)16 << 30; // reported by cudaMemGetInfo / properties
constexpr unsigned kMaxThreads = 1024;
#ifdef EMU_ASAN
constexpr size_t kStackBytes = 256 << 10;
#else
constexpr size_t kStackBytes = 64 << 10;
#endif
constexpr size_t kSmemGuard = 256; // bytes after the dynamic shared buffer, checked per block

// ---------------------------------------------------------------------------------------
// fibers
// ---------------------------------------------------------------------------------------
enum State { READY, WAIT_WARP, WAIT_BAR, DONE };

struct Fiber {
#ifdef EMU_ASM_SWITCH
    void *sp;
#else
    ucontext_t uc;
#endif
    char *stack; // bottom of the usable stack; null until started / after it finished
    uint3 tid;
    State state;
    int op; // WarpOp or BarOp of the collective it waits at
    unsigned mask; // warp collectives
    int arg, width;
    unsigned long long value, result;
    void *fake_stack; // ASan's fake stack of this fiber while it is switched out
};

struct Launch {
    const char *name;
    LaunchConfig cfg;
    ThreadBody body;
    void *ctx;
    unsigned nthreads;
    char *smem;
    size_t smem_bytes;
};

// ORDER_WARPS: one warp at a time runs as far as it can (to __syncthreads or exit), the
// others stay behind: warps skew as far as the barriers allow
enum Order { ORDER_FORWARD, ORDER_REVERSE, ORDER_RANDOM, ORDER_WARPS };

bool g_init = false;
Order g_order = ORDER_FORWARD;
std::mt19937_64 g_rng;
Launch *g_launch = nullptr;
Fiber *g_cur = nullptr; // the running fiber; null on the host side
std::vector<Fiber> g_fibers;
std::vector<char *> g_stack_pool;
std::vector<int> g_round;
#ifdef EMU_ASM_SWITCH
void *g_sched_sp;
uint64_t g_fpu_state; // MXCSR (low 32 bits) and x87 control word for new fibers
#else
ucontext_t g_sched_uc;
#endif
#ifdef EMU_ASAN
const void *g_host_stack_bottom;
size_t g_host_stack_size;
#endif
cudaError_t g_last_error = cudaSuccess;
struct Stats {
    unsigned long long launches, blocks, threads, waits, rounds;
    unsigned long long d2h, syncs; // copies into host memory, host waits (synchronize calls)
} g_stats;
std::map<std::string, unsigned long long> *g_kernel_launches; // EMU_KERNELS: per kernel

} // namespace

#ifdef EMU_ASM_SWITCH
// void cuda_emu_switch(void **save_sp, void *load_sp): saves the callee-saved state on the
// current stack and its sp into *save_sp, then continues on load_sp
extern "C" void cuda_emu_switch(void **save_sp, void *load_sp);
asm(R"(
    .text
    .p2align 4
    .globl cuda_emu_switch
    .hidden cuda_emu_switch
    .type cuda_emu_switch, @function
cuda_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size cuda_emu_switch, .-cuda_emu_switch
    .section .note.GNU-stack,"",@progbits
    .text
)");
#endif

namespace {

std::string launch_where() {
    char buf[512];
    if (!g_launch) return "";
    const LaunchConfig &c = g_launch->cfg;
    int n = snprintf(
        buf, sizeof buf, "\n  kernel %s, grid (%u,%u,%u), block (%u,%u,%u), dynamic smem %zu bytes",
        g_launch->name, c.grid.x, c.grid.y, c.grid.z, c.block.x, c.block.y, c.block.z, c.smem);
    n += snprintf(buf + n, sizeof buf - n, "\n  in block (%u,%u,%u)", g_blockIdx.x, g_blockIdx.y,
                  g_blockIdx.z);
    if (g_cur)
        snprintf(buf + n, sizeof buf - n, ", thread (%u,%u,%u)", g_cur->tid.x, g_cur->tid.y,
                 g_cur->tid.z);
    return buf;
}

[[noreturn]] void vfatal(const char *fmt, va_list ap) {
    fflush(stdout);
    fprintf(stderr, "cuda_emu: FATAL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "%s\n", launch_where().c_str());
    fflush(stderr);
    _exit(3);
}

// an API error: said on stderr (the CUDA error strings are generic), then returned
cudaError_t api_error(cudaError_t code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
cudaError_t api_error(cudaError_t code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    fprintf(stderr, "cuda_emu: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return code;
}

cublasStatus_t lt_error(cublasStatus_t code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
cublasStatus_t lt_error(cublasStatus_t code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    fprintf(stderr, "cuda_emu: cuBLASLt: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return code;
}

void init_once() {
    if (g_init) return;
    g_init = true;
    const char *o = getenv("EMU_ORDER");
    uint64_t seed = 12345;
    if (!o || !*o || !strcmp(o, "forward"))
        g_order = ORDER_FORWARD;
    else if (!strcmp(o, "reverse"))
        g_order = ORDER_REVERSE;
    else if (!strcmp(o, "warps"))
        g_order = ORDER_WARPS;
    else if (!strncmp(o, "random", 6) && (o[6] == 0 || o[6] == ':')) {
        g_order = ORDER_RANDOM;
        if (o[6] == ':') seed = strtoull(o + 7, nullptr, 10);
    } else {
        fprintf(stderr, "cuda_emu: EMU_ORDER=%s: want forward, reverse, warps, random or random:SEED\n",
                o);
        _exit(2);
    }
    g_rng.seed(seed);
    if (g_order != ORDER_FORWARD) fprintf(stderr, "cuda_emu: thread and block order %s\n", o);
#ifdef EMU_ASM_SWITCH
    uint32_t mxcsr;
    uint16_t cw;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(cw));
    g_fpu_state = mxcsr | (uint64_t)cw << 32;
#endif
    if (getenv("EMU_KERNELS") && strcmp(getenv("EMU_KERNELS"), "0")) {
        g_kernel_launches = new std::map<std::string, unsigned long long>;
        atexit([] {
            for (const auto &kv : *g_kernel_launches)
                fprintf(stderr, "cuda_emu: kernel %s: %llu launches\n", kv.first.c_str(), kv.second);
        });
    }
    if (getenv("EMU_STATS"))
        atexit([] {
            fprintf(
                stderr,
                "cuda_emu: %llu launches, %llu blocks, %llu threads, %llu waits at collectives, "
                "%llu scheduling rounds, %llu device-to-host copies, %llu host waits\n",
                g_stats.launches, g_stats.blocks, g_stats.threads, g_stats.waits, g_stats.rounds,
                g_stats.d2h, g_stats.syncs);
        });
}

// ---------------------------------------------------------------------------------------
// device memory bookkeeping: every cudaMalloc / cudaMallocHost range, for the checks of
// copies, kernel pointer arguments and cuBLASLt operands
// ---------------------------------------------------------------------------------------
std::map<uintptr_t, size_t> g_device, g_pinned;
size_t g_device_bytes = 0;

// the allocation of `m` holding p (p == end allowed when end_ok), or false
bool find_alloc(const std::map<uintptr_t, size_t> &m, const void *p, bool end_ok, uintptr_t *base,
                size_t *size) {
    uintptr_t a = (uintptr_t)p;
    auto it = m.upper_bound(a);
    if (it == m.begin()) return false;
    --it;
    if (a < it->first + it->second || (end_ok && a == it->first + it->second)) {
        if (base) *base = it->first;
        if (size) *size = it->second;
        return true;
    }
    return false;
}
bool is_device(const void *p) { return find_alloc(g_device, p, false, nullptr, nullptr); }

// [p, p+bytes) inside one device allocation; else a message in why
bool device_range(const void *p, size_t bytes, std::string *why) {
    uintptr_t base;
    size_t size;
    char buf[256];
    if (!find_alloc(g_device, p, bytes == 0, &base, &size)) {
        snprintf(buf, sizeof buf, "%p is not device memory (no cudaMalloc allocation holds it)", p);
        *why = buf;
        return false;
    }
    if ((uintptr_t)p + bytes > base + size) {
        snprintf(buf, sizeof buf,
                 "[%p, +%zu bytes) runs %zu bytes past the end of its allocation (%p, %zu bytes)",
                 p, bytes, (size_t)((uintptr_t)p + bytes - (base + size)), (void *)base, size);
        *why = buf;
        return false;
    }
    return true;
}

std::set<const void *> g_streams, g_events;
bool stream_ok(cudaStream_t s) { return s == nullptr || g_streams.count(s); }

// ---------------------------------------------------------------------------------------
// CUDA graphs. A capture (cudaStreamBeginCapture) records the kernel launches, device-to-
// device copies, memsets and cuBLASLt products queued on its stream, with their arguments,
// instead of running them; cudaGraphInstantiate copies the nodes into an exec,
// cudaGraphExecUpdate gives an exec the nodes of a graph of the same topology, and
// cudaGraphLaunch runs an exec's nodes in order, each checked again as at a launch (memory
// freed since the capture is an error). What CUDA forbids inside a capture or would replay
// wrongly invalidates it (cudaStreamEndCapture then fails): a host wait for the capturing
// stream (stream or device synchronize, an event recorded in the capture), a copy between
// host memory and the device on the capturing stream (a replay would read the host buffer
// as it is then), cudaFree, and cudaMalloc outside the relaxed mode. EMU_GRAPH_STRICT=1: an
// update that changes any argument of any node is fatal, i.e. every replay runs exactly the
// launches that were captured (a replay without the update would have been correct).
// ---------------------------------------------------------------------------------------
struct GraphNode {
    enum Kind { KERNEL, COPY, SET, LT } kind;
    std::string name;
    LaunchConfig cfg{};
    const void *kernel = nullptr;
    ThreadBody body = nullptr;
    std::shared_ptr<void> ctx; // KERNEL: the converted arguments
    std::vector<const void *> ptrs;
    void *dst = nullptr; // COPY, SET
    const void *src = nullptr;
    size_t bytes = 0;
    int value = 0;
    std::function<void()> run; // LT: the product with its operands bound
    std::vector<unsigned char> args; // every parameter's bytes: what an update compares
};
struct EmuGraph {
    std::vector<GraphNode> nodes;
};
std::set<const void *> g_graphs, g_execs;
bool g_cap_active = false;
cudaStream_t g_cap_stream = nullptr;
cudaStreamCaptureMode g_cap_mode = cudaStreamCaptureModeGlobal;
EmuGraph *g_cap_graph = nullptr;
std::string g_cap_invalid; // the first reason the capture cannot become a graph
std::set<const void *> g_cap_events;

bool cap_on(cudaStream_t s) { return g_cap_active && s != nullptr && s == g_cap_stream; }
// a call CUDA refuses during a capture: the capture is invalidated, the error returned
cudaError_t cap_refuse(cudaError_t code, const char *what) {
    if (g_cap_invalid.empty()) g_cap_invalid = what;
    return api_error(code, "%s during a stream capture (the capture is invalidated)", what);
}
template <class T> void put_bytes(std::vector<unsigned char> &v, const T &x) {
    const unsigned char *p = (const unsigned char *)&x;
    v.insert(v.end(), p, p + sizeof x);
}

// ---------------------------------------------------------------------------------------
// fiber switching
// ---------------------------------------------------------------------------------------
char *take_stack() {
    if (!g_stack_pool.empty()) {
        char *s = g_stack_pool.back();
        g_stack_pool.pop_back();
        return s;
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *m = (char *)mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) fatal("cannot map a %zu-byte fiber stack", kStackBytes);
    if (mprotect(m, page, PROT_NONE) != 0) fatal("cannot protect a fiber stack guard page");
    return m + page; // overflowing the stack faults on the guard page
}

void fiber_entry();

void start_fiber(Fiber *f) {
    f->stack = take_stack();
#ifdef EMU_ASM_SWITCH
    uint64_t *sp = (uint64_t *)(f->stack + kStackBytes);
    *--sp = 0; // fiber_entry's return address: it never returns
    *--sp = (uint64_t)&fiber_entry; // where cuda_emu_switch's ret goes
    for (int i = 0; i < 6; i++) *--sp = 0; // rbp rbx r12 r13 r14 r15
    *--sp = g_fpu_state;
    f->sp = sp;
#else
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack;
    f->uc.uc_stack.ss_size = kStackBytes;
    f->uc.uc_link = nullptr;
    makecontext(&f->uc, fiber_entry, 0);
#endif
}

// host (scheduler) -> fiber f, until f waits or finishes
void resume(Fiber *f) {
    g_cur = f;
    g_threadIdx = f->tid;
#ifdef EMU_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, f->stack, kStackBytes);
#endif
#ifdef EMU_ASM_SWITCH
    cuda_emu_switch(&g_sched_sp, f->sp);
#else
    swapcontext(&g_sched_uc, &f->uc);
#endif
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
    g_cur = nullptr;
}

// the running fiber -> host; returns when the scheduler resumes it (never when finished)
void suspend(Fiber *f, bool finished) {
#ifdef EMU_ASAN
    __sanitizer_start_switch_fiber(finished ? nullptr : &f->fake_stack, g_host_stack_bottom,
                                   g_host_stack_size);
#else
    (void)finished;
#endif
#ifdef EMU_ASM_SWITCH
    cuda_emu_switch(&f->sp, g_sched_sp);
#else
    swapcontext(&f->uc, &g_sched_uc);
#endif
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(f->fake_stack, &g_host_stack_bottom, &g_host_stack_size);
#endif
}

void fiber_entry() {
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &g_host_stack_bottom, &g_host_stack_size);
#endif
    g_launch->body(g_launch->ctx);
    Fiber *f = g_cur;
    f->state = DONE;
    suspend(f, true);
    __builtin_trap(); // a finished fiber is never resumed
}

// ---------------------------------------------------------------------------------------
// collectives
// ---------------------------------------------------------------------------------------
const char *warp_op_name(int op) {
    switch (op) {
    case W_SHFL: return "__shfl_sync";
    case W_SHFL_UP: return "__shfl_up_sync";
    case W_SHFL_DOWN: return "__shfl_down_sync";
    case W_SHFL_XOR: return "__shfl_xor_sync";
    case W_BALLOT: return "__ballot_sync";
    case W_ANY: return "__any_sync";
    case W_ALL: return "__all_sync";
    case W_SYNCWARP: return "__syncwarp";
    }
    return "?";
}

std::string tid_str(const Fiber &f) {
    char b[48];
    snprintf(b, sizeof b, "(%u,%u,%u)", f.tid.x, f.tid.y, f.tid.z);
    return b;
}

// releases the warps whose waiting lanes form complete groups; false when none waits.
// Every inconsistency is fatal.
bool release_warps() {
    const unsigned n = g_launch->nthreads;
    bool any = false;
    for (unsigned base = 0; base < n; base += 32) {
        const int w = (int)(base / 32);
        const unsigned lanes = std::min(32u, n - base);
        const unsigned exist = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1);
        unsigned waiting = 0;
        for (unsigned l = 0; l < lanes; l++)
            if (g_fibers[base + l].state == WAIT_WARP) waiting |= 1u << l;
        unsigned left = waiting;
        while (left) {
            const int first = __builtin_ctz(left);
            const Fiber &f0 = g_fibers[base + first];
            const unsigned M = f0.mask;
            if (M & ~exist)
                fatal(
                    "warp %d: %s by thread %s with mask 0x%08x, which names lanes that do not exist "
                    "(the block has %u threads)",
                    w, warp_op_name(f0.op), tid_str(f0).c_str(), M, n);
            for (unsigned l = 0; l < lanes; l++) {
                const unsigned bit = 1u << l;
                const Fiber &f = g_fibers[base + l];
                if ((waiting & bit) && f.mask == M && !(M & bit))
                    fatal(
                        "warp %d: thread %s (lane %u) executes %s with mask 0x%08x, which does not "
                        "include its own lane",
                        w, tid_str(f).c_str(), l, warp_op_name(f.op), M);
                if (!(M & bit)) continue;
                if (f.state == DONE)
                    fatal("warp %d: %s with mask 0x%08x (thread %s), but lane %u (thread %s) has "
                          "exited",
                          w, warp_op_name(f0.op), M, tid_str(f0).c_str(), l, tid_str(f).c_str());
                if (f.state == WAIT_BAR)
                    fatal(
                        "divergence in warp %d: lanes 0x%08x wait at %s (mask 0x%08x) while lane %u "
                        "(thread %s) waits at __syncthreads",
                        w, waiting & M, warp_op_name(f0.op), M, l, tid_str(f).c_str());
                if (f.state != WAIT_WARP)
                    fatal("internal: lane %u of warp %d is runnable after a round", l, w);
                if (f.mask != M)
                    fatal(
                        "divergence in warp %d: lane %u (thread %s) waits at %s with mask 0x%08x, "
                        "lane %d (thread %s) at %s with mask 0x%08x",
                        w, l, tid_str(f).c_str(), warp_op_name(f.op), f.mask, first,
                        tid_str(f0).c_str(), warp_op_name(f0.op), M);
                if (f.op != f0.op || f.width != f0.width)
                    fatal(
                        "divergence in warp %d: lane %u (thread %s) waits at %s (width %d), lane %d "
                        "(thread %s) at %s (width %d), both with mask 0x%08x",
                        w, l, tid_str(f).c_str(), warp_op_name(f.op), f.width, first,
                        tid_str(f0).c_str(), warp_op_name(f0.op), f0.width, M);
            }
            const int op = f0.op, width = f0.width;
            if (width < 1 || width > 32 || (width & (width - 1)))
                fatal("warp %d: %s with width %d (must be a power of two up to 32)", w,
                      warp_op_name(op), width);
            unsigned long long vote = 0;
            for (unsigned l = 0; l < 32; l++)
                if ((M >> l & 1) && g_fibers[base + l].value) vote |= 1ull << l;
            for (unsigned l = 0; l < 32; l++) {
                if (!(M >> l & 1)) continue;
                Fiber &f = g_fibers[base + l];
                const unsigned seg = l & ~(unsigned)(width - 1), local = l & (unsigned)(width - 1);
                int src = -1; // lane read, -1: own value
                switch (op) {
                case W_SHFL: src = (int)(seg + ((unsigned)f.arg & (unsigned)(width - 1))); break;
                case W_SHFL_UP: src = (unsigned)f.arg <= local ? (int)(l - f.arg) : -1; break;
                case W_SHFL_DOWN:
                    src = local + (unsigned)f.arg < (unsigned)width ? (int)(l + f.arg) : -1;
                    break;
                case W_SHFL_XOR:
                    if (f.arg < 0 || f.arg > 31)
                        fatal(
                            "warp %d: __shfl_xor_sync by thread %s with lane mask %d (must be 0..31)",
                            w, tid_str(f).c_str(), f.arg);
                    src =
                        (l ^ (unsigned)f.arg) <= seg + width - 1 ? (int)(l ^ (unsigned)f.arg) : -1;
                    break;
                default: break;
                }
                switch (op) {
                case W_SHFL:
                case W_SHFL_UP:
                case W_SHFL_DOWN:
                case W_SHFL_XOR:
                    if (src >= 0 && !(M >> src & 1))
                        fatal(
                            "warp %d: %s: lane %u (thread %s) reads lane %d, which is not in the mask "
                            "0x%08x (undefined on the GPU)",
                            w, warp_op_name(op), l, tid_str(f).c_str(), src, M);
                    f.result = src >= 0 ? g_fibers[base + src].value : f.value;
                    break;
                case W_BALLOT: f.result = vote; break;
                case W_ANY: f.result = vote != 0; break;
                case W_ALL: f.result = vote == M; break;
                default: f.result = 0; break;
                }
            }
            for (unsigned l = 0; l < 32; l++)
                if (M >> l & 1) g_fibers[base + l].state = READY;
            left &= ~M;
            any = true;
        }
    }
    return any;
}

void release_block_barrier() {
    const unsigned n = g_launch->nthreads;
    unsigned at_bar = 0, done = 0;
    int first_bar = -1, first_done = -1;
    long long count = 0;
    for (unsigned i = 0; i < n; i++) {
        const Fiber &f = g_fibers[i];
        if (f.state == WAIT_BAR) {
            at_bar++;
            if (first_bar < 0) first_bar = (int)i;
            count += f.value != 0;
        } else if (f.state == DONE) {
            done++;
            if (first_done < 0) first_done = (int)i;
        }
    }
    if (at_bar + done != n)
        fatal("internal: deadlock (%u threads at __syncthreads, %u exited, of %u)", at_bar, done,
              n);
    if (done)
        fatal("__syncthreads reached by %u threads (e.g. thread %s) while %u threads of the block "
              "have exited (e.g. thread %s): undefined on the GPU",
              at_bar, tid_str(g_fibers[first_bar]).c_str(), done,
              tid_str(g_fibers[first_done]).c_str());
    const int op = g_fibers[first_bar].op;
    for (unsigned i = 0; i < n; i++) {
        Fiber &f = g_fibers[i];
        if (f.op != op)
            fatal("__syncthreads variants differ: thread %s and thread %s", tid_str(f).c_str(),
                  tid_str(g_fibers[first_bar]).c_str());
        f.result = op == B_COUNT ? count
                   : op == B_AND ? count == (long long)n
                   : op == B_OR  ? count > 0
                                 : 0;
        f.state = READY;
    }
}

unsigned long long g_block_serial; // blocks run so far, this one included (cuda_emu::block_serial)

void run_block() {
    g_block_serial++;
    const unsigned n = g_launch->nthreads;
    const dim3 b = g_launch->cfg.block;
    for (unsigned i = 0; i < n; i++) {
        Fiber &f = g_fibers[i];
        f.stack = nullptr;
        f.state = READY;
        f.tid = uint3{i % b.x, (i / b.x) % b.y, i / (b.x * b.y)};
        f.fake_stack = nullptr;
    }
    unsigned live = n;
    for (;;) {
        g_round.clear();
        for (unsigned i = 0; i < n; i++)
            if (g_fibers[i].state == READY) g_round.push_back((int)i);
        if (g_order == ORDER_WARPS && !g_round.empty()) { // the lowest warp with work
            const int w = g_round.front() / 32;
            g_round.erase(std::remove_if(g_round.begin(), g_round.end(),
                                         [w](int i) { return i / 32 != w; }),
                          g_round.end());
        }
        if (g_order == ORDER_REVERSE)
            std::reverse(g_round.begin(), g_round.end());
        else if (g_order == ORDER_RANDOM)
            std::shuffle(g_round.begin(), g_round.end(), g_rng);
        g_stats.rounds++;
        for (int i : g_round) {
            Fiber *f = &g_fibers[i];
            if (!f->stack) start_fiber(f);
            resume(f);
            if (f->state == DONE) {
                g_stack_pool.push_back(f->stack);
                f->stack = nullptr;
                live--;
            } else {
                g_stats.waits++;
            }
        }
        if (live == 0) break;
        if (release_warps()) continue;
        bool ready = false; // ORDER_WARPS: other warps have not run yet
        for (unsigned i = 0; i < n && !ready; i++) ready = g_fibers[i].state == READY;
        if (!ready) release_block_barrier();
    }
}

std::map<const void *, size_t> g_func_smem; // cudaFuncAttributeMaxDynamicSharedMemorySize

} // namespace

// ---------------------------------------------------------------------------------------
// the device-side interface of cuda_emu.h
// ---------------------------------------------------------------------------------------
namespace cuda_emu {

unsigned long long block_serial(void) { return g_block_serial; }

void fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfatal(fmt, ap);
}

unsigned long long warp_op(WarpOp op, unsigned mask, unsigned long long bits, int arg, int width) {
    Fiber *f = g_cur;
    if (!f) fatal("%s called outside a kernel", warp_op_name(op));
    f->op = op;
    f->mask = mask;
    f->value = bits;
    f->arg = arg;
    f->width = width;
    f->state = WAIT_WARP;
    suspend(f, false);
    return f->result;
}

int block_barrier(BarOp op, int pred) {
    Fiber *f = g_cur;
    if (!f) fatal("__syncthreads called outside a kernel");
    f->op = op;
    f->value = pred != 0;
    f->state = WAIT_BAR;
    suspend(f, false);
    return (int)f->result;
}

void *dynamic_smem(void) {
    if (!g_cur || !g_launch) fatal("dynamic shared memory used outside a kernel");
    return g_launch->smem;
}

cudaError_t func_set_attribute(const void *kernel, cudaFuncAttribute attr, int value) {
    init_once();
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
        if (value < 0 || (size_t)value > kSmemOptin)
            return api_error(
                cudaErrorInvalidValue,
                "cudaFuncSetAttribute(MaxDynamicSharedMemorySize, %d): the device allows "
                "at most %zu bytes",
                value, kSmemOptin);
        g_func_smem[kernel] = (size_t)value;
        return cudaSuccess;
    }
    if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
    return api_error(cudaErrorInvalidValue, "cudaFuncSetAttribute: attribute %d not emulated",
                     (int)attr);
}

// the driver's checks of a launch (at the launch, or when a capture records it): false with
// the error recorded for cudaGetLastError when the launch is refused
static bool launch_ok(const LaunchConfig &c, const char *name, const void *kernel,
                      const void *const *ptrs, int nptrs) {
    init_once();
    if (g_cur)
        fatal("kernel %s launched from inside a kernel (dynamic parallelism is not emulated)",
              name);
    const dim3 g = c.grid, b = c.block;
    const unsigned long long threads = (unsigned long long)b.x * b.y * b.z;
    if (!g.x || !g.y || !g.z || !b.x || !b.y || !b.z) {
        g_last_error =
            api_error(cudaErrorInvalidConfiguration,
                      "launch of %s refused: grid (%u,%u,%u) / block (%u,%u,%u) has a zero "
                      "dimension",
                      name, g.x, g.y, g.z, b.x, b.y, b.z);
        return false;
    }
    if (b.x > 1024 || b.y > 1024 || b.z > 64 || threads > kMaxThreads) {
        g_last_error =
            api_error(cudaErrorInvalidConfiguration,
                      "launch of %s refused: block (%u,%u,%u) = %llu threads (at most 1024, "
                      "dims 1024 x 1024 x 64)",
                      name, b.x, b.y, b.z, threads);
        return false;
    }
    if (g.x > 2147483647u || g.y > 65535 || g.z > 65535) {
        g_last_error =
            api_error(cudaErrorInvalidConfiguration,
                      "launch of %s refused: grid (%u,%u,%u) exceeds 2^31-1 x 65535 x 65535", name,
                      g.x, g.y, g.z);
        return false;
    }
    if (c.max_threads && threads > c.max_threads) {
        g_last_error = api_error(cudaErrorLaunchOutOfResources,
                                 "launch of %s refused: %llu threads per block, but the kernel is "
                                 "compiled for __launch_bounds__(%u)",
                                 name, threads, c.max_threads);
        return false;
    }
    size_t limit = kSmemDefault;
    auto it = g_func_smem.find(kernel);
    if (it != g_func_smem.end()) limit = std::max(limit, it->second);
    if (c.smem > limit) {
        g_last_error =
            api_error(cudaErrorInvalidValue,
                      "launch of %s refused: %zu bytes of dynamic shared memory, the kernel "
                      "allows %zu (cudaFuncSetAttribute(MaxDynamicSharedMemorySize) raises "
                      "the 48 KiB default)",
                      name, c.smem, limit);
        return false;
    }
    if (!stream_ok(c.stream)) {
        g_last_error = api_error(cudaErrorInvalidResourceHandle,
                                 "launch of %s refused: unknown stream %p", name, (void *)c.stream);
        return false;
    }
    for (int i = 0; i < nptrs; i++)
        if (ptrs[i] && !find_alloc(g_device, ptrs[i], true, nullptr, nullptr) &&
            !find_alloc(g_pinned, ptrs[i], true, nullptr, nullptr))
            fatal("kernel %s: pointer argument %d (%p) is neither device memory nor pinned host "
                  "memory (a host pointer passed to the GPU?)",
                  name, i + 1, ptrs[i]);
    return true;
}

void launch(const LaunchConfig &c, const char *name, const void *kernel, ThreadBody body, void *ctx,
            const void *const *ptrs, int nptrs) {
    if (!launch_ok(c, name, kernel, ptrs, nptrs)) return;
    const dim3 g = c.grid, b = c.block;
    const unsigned long long threads = (unsigned long long)b.x * b.y * b.z;

    // dynamic shared memory: exactly the launch's size, then a guard zone; filled with 0xff
    // (NaN as floats) before every block, as the GPU leaves it uninitialised
    Launch L{name, c, body, ctx, (unsigned)threads, nullptr, c.smem};
    void *sm = nullptr;
    if (posix_memalign(&sm, 256, c.smem + kSmemGuard) != 0) fatal("out of host memory");
    L.smem = (char *)sm;
#ifdef EMU_ASAN
    ASAN_POISON_MEMORY_REGION(L.smem + c.smem, kSmemGuard);
#endif
    if (g_fibers.size() < threads) g_fibers.resize(threads);
    g_launch = &L;
    g_gridDim = g;
    g_blockDim = b;
    g_stats.launches++;
    if (g_kernel_launches) (*g_kernel_launches)[name]++;

    const unsigned long long nblocks = (unsigned long long)g.x * g.y * g.z;
    std::vector<unsigned long long> perm;
    if (g_order == ORDER_RANDOM) {
        perm.resize(nblocks);
        for (unsigned long long i = 0; i < nblocks; i++) perm[i] = i;
        std::shuffle(perm.begin(), perm.end(), g_rng);
    }
    for (unsigned long long k = 0; k < nblocks; k++) {
        unsigned long long id = g_order == ORDER_REVERSE  ? nblocks - 1 - k
                                : g_order == ORDER_RANDOM ? perm[k]
                                                          : k;
        g_blockIdx = uint3{(unsigned)(id % g.x), (unsigned)(id / g.x % g.y),
                           (unsigned)(id / ((unsigned long long)g.x * g.y))};
        if (c.smem) memset(L.smem, 0xff, c.smem);
#ifndef EMU_ASAN
        memset(L.smem + c.smem, 0xa5, kSmemGuard);
#endif
        run_block();
#ifndef EMU_ASAN
        for (size_t i = 0; i < kSmemGuard; i++)
            if ((unsigned char)L.smem[c.smem + i] != 0xa5)
                fatal("dynamic shared memory written %zu bytes past its end (%zu bytes)", i,
                      c.smem);
#endif
        g_stats.blocks++;
        g_stats.threads += threads;
    }
#ifdef EMU_ASAN
    ASAN_UNPOISON_MEMORY_REGION(L.smem + c.smem, kSmemGuard);
#endif
    free(L.smem);
    g_launch = nullptr;
}

bool capturing(cudaStream_t s) { return cap_on(s); }

void record_launch(const LaunchConfig &c, const char *name, const void *kernel, ThreadBody body,
                   std::shared_ptr<void> ctx, const void *const *ptrs, int nptrs,
                   const unsigned char *args, size_t args_bytes) {
    if (!launch_ok(c, name, kernel, ptrs, nptrs)) {
        if (g_cap_invalid.empty()) g_cap_invalid = "a refused kernel launch";
        return;
    }
    GraphNode n;
    n.kind = GraphNode::KERNEL;
    n.name = name;
    n.cfg = c;
    n.kernel = kernel;
    n.body = body;
    n.ctx = std::move(ctx);
    n.ptrs.assign(ptrs, ptrs + nptrs);
    n.args.assign(args, args + args_bytes);
    put_bytes(n.args, c.grid);
    put_bytes(n.args, c.block);
    put_bytes(n.args, c.smem);
    g_cap_graph->nodes.push_back(std::move(n));
}

} // namespace cuda_emu

// ---------------------------------------------------------------------------------------
// runtime API
// ---------------------------------------------------------------------------------------
extern "C" {

// EMU_DEVICES=N (default 1) emulated devices, all backed by this process's memory: enough
// for several ranks of one emulated node to each take "their" GPU (NCCL runs need that)
static int emu_devices() {
    const char *e = getenv("EMU_DEVICES");
    int n = e ? atoi(e) : 1;
    return n >= 1 && n <= 64 ? n : 1;
}
static int g_current_device = 0;

cudaError_t cudaGetDeviceCount(int *count) {
    init_once();
    *count = emu_devices();
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
    init_once();
    if (device < 0 || device >= emu_devices())
        return api_error(cudaErrorInvalidDevice,
                         "cudaSetDevice(%d): %d emulated device(s) (EMU_DEVICES)", device,
                         emu_devices());
    g_current_device = device;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device) {
    *device = g_current_device;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int device) {
    init_once();
    if (device < 0 || device >= emu_devices())
        return api_error(cudaErrorInvalidDevice,
                         "cudaGetDeviceProperties(%d): %d emulated device(s) (EMU_DEVICES)",
                         device, emu_devices());
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "CPU emulator (mmrm tests/cuda_emu)");
    p->totalGlobalMem = kTotalMem;
    p->sharedMemPerBlock = kSmemDefault;
    p->sharedMemPerBlockOptin = kSmemOptin;
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = 1024, p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 2147483647, p->maxGridSize[1] = 65535, p->maxGridSize[2] = 65535;
    p->major = 8, p->minor = 0;
    p->multiProcessorCount = 108;
    p->maxThreadsPerMultiProcessor = 2048;
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
    if (g_cap_active) return cap_refuse(cudaErrorStreamCaptureUnsupported, "cudaDeviceSynchronize");
    g_stats.syncs++;
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
    cudaError_t e = g_last_error;
    g_last_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return g_last_error; }

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidDeviceFunction: return "cudaErrorInvalidDeviceFunction";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorGraphExecUpdateFailure: return "cudaErrorGraphExecUpdateFailure";
    case cudaErrorCapturedEvent: return "cudaErrorCapturedEvent";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    }
    return "cudaErrorUnknown";
}

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorGraphExecUpdateFailure: return "the graph update was not performed because it included changes which violated constraints specific to instantiated graph update";
    case cudaErrorCapturedEvent: return "operation not permitted on an event last recorded in a capturing stream";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorIllegalState: return "an operation was performed that is not allowed in the current state";
    }
    return "unrecognized error code";
}

// Device memory is host memory, 256-byte aligned like cudaMalloc's, filled with 0xff (NaN
// as floats, -1 as ints) since the GPU does not clear it. Under ASan the allocation has
// exactly the requested size, so kernels reading or writing past it are reported.
cudaError_t cudaMalloc(void **ptr, size_t bytes) {
    init_once();
    if (g_cap_active && g_cap_mode != cudaStreamCaptureModeRelaxed) {
        *ptr = nullptr;
        return cap_refuse(cudaErrorStreamCaptureUnsupported,
                          "cudaMalloc outside cudaStreamCaptureModeRelaxed");
    }
    if (g_device_bytes + bytes > kTotalMem) {
        *ptr = nullptr;
        return api_error(cudaErrorMemoryAllocation,
                         "cudaMalloc(%zu bytes): the emulated device has %zu of %zu bytes free",
                         bytes, kTotalMem - g_device_bytes, kTotalMem);
    }
    void *p = nullptr;
    if (posix_memalign(&p, 256, bytes ? bytes : 1) != 0)
        return api_error(cudaErrorMemoryAllocation, "cudaMalloc(%zu bytes): host out of memory",
                         bytes);
    memset(p, 0xff, bytes);
    g_device[(uintptr_t)p] = bytes ? bytes : 1;
    g_device_bytes += bytes;
    *ptr = p;
    return cudaSuccess;
}

cudaError_t cudaFree(void *ptr) {
    if (!ptr) return cudaSuccess;
    if (g_cap_active)
        return cap_refuse(cudaErrorStreamCaptureUnsupported,
                          "cudaFree (the captured work may still use the memory)");
    auto it = g_device.find((uintptr_t)ptr);
    if (it == g_device.end())
        return api_error(cudaErrorInvalidDevicePointer,
                         "cudaFree(%p): not the start of a live cudaMalloc allocation", ptr);
    g_device_bytes -= it->second;
    g_device.erase(it);
    free(ptr);
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **ptr, size_t bytes) {
    init_once();
    void *p = malloc(bytes ? bytes : 1);
    if (!p)
        return api_error(cudaErrorMemoryAllocation, "cudaMallocHost(%zu bytes): out of memory",
                         bytes);
    g_pinned[(uintptr_t)p] = bytes ? bytes : 1;
    *ptr = p;
    return cudaSuccess;
}

cudaError_t cudaFreeHost(void *ptr) {
    if (!ptr) return cudaSuccess;
    auto it = g_pinned.find((uintptr_t)ptr);
    if (it == g_pinned.end())
        return api_error(cudaErrorInvalidValue, "cudaFreeHost(%p): not a cudaMallocHost allocation",
                         ptr);
    g_pinned.erase(it);
    free(ptr);
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    *free_bytes = kTotalMem - g_device_bytes;
    *total_bytes = kTotalMem;
    return cudaSuccess;
}

// copies are synchronous; each side is checked against the direction, and overlapping
// ranges (undefined in CUDA) are refused
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
    init_once();
    if (!stream_ok(stream))
        return api_error(cudaErrorInvalidResourceHandle, "cudaMemcpyAsync: unknown stream %p",
                         (void *)stream);
    if (bytes == 0) return cudaSuccess;
    std::string why;
    const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice ||
                         (kind == cudaMemcpyDefault && is_device(dst));
    const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice ||
                         (kind == cudaMemcpyDefault && is_device(src));
    if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault)
        return api_error(cudaErrorInvalidMemcpyDirection, "cudaMemcpyAsync: kind %d", (int)kind);
    if (dst_dev && !device_range(dst, bytes, &why))
        return api_error(cudaErrorInvalidValue, "cudaMemcpyAsync destination %s", why.c_str());
    if (src_dev && !device_range(src, bytes, &why))
        return api_error(cudaErrorInvalidValue, "cudaMemcpyAsync source %s", why.c_str());
    if (!dst_dev && is_device(dst))
        return api_error(
            cudaErrorInvalidValue,
            "cudaMemcpyAsync: destination %p is device memory but the kind (%d) says host", dst,
            (int)kind);
    if (!src_dev && is_device(src))
        return api_error(cudaErrorInvalidValue,
                         "cudaMemcpyAsync: source %p is device memory but the kind (%d) says host",
                         src, (int)kind);
    if ((uintptr_t)dst < (uintptr_t)src + bytes && (uintptr_t)src < (uintptr_t)dst + bytes)
        return api_error(
            cudaErrorInvalidValue,
            "cudaMemcpyAsync: source [%p, +%zu) and destination %p overlap (undefined in CUDA)",
            src, bytes, dst);
    if (cap_on(stream)) {
        if (!dst_dev || !src_dev)
            return cap_refuse(cudaErrorStreamCaptureUnsupported,
                              "cudaMemcpyAsync between host memory and the device on the capturing "
                              "stream (a replay would read the host buffer as it is then)");
        GraphNode n;
        n.kind = GraphNode::COPY;
        n.name = "cudaMemcpyAsync (device to device)";
        n.dst = dst, n.src = src, n.bytes = bytes;
        put_bytes(n.args, dst), put_bytes(n.args, src), put_bytes(n.args, bytes);
        g_cap_graph->nodes.push_back(std::move(n));
        return cudaSuccess;
    }
    if (src_dev && !dst_dev) g_stats.d2h++;
    memcpy(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    return cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
}

cudaError_t cudaMemsetAsync(void *ptr, int value, size_t bytes, cudaStream_t stream) {
    init_once();
    if (!stream_ok(stream))
        return api_error(cudaErrorInvalidResourceHandle, "cudaMemsetAsync: unknown stream %p",
                         (void *)stream);
    if (bytes == 0) return cudaSuccess;
    std::string why;
    if (!device_range(ptr, bytes, &why))
        return api_error(cudaErrorInvalidValue, "cudaMemsetAsync: %s", why.c_str());
    if (cap_on(stream)) {
        GraphNode n;
        n.kind = GraphNode::SET;
        n.name = "cudaMemsetAsync";
        n.dst = ptr, n.value = value, n.bytes = bytes;
        put_bytes(n.args, ptr), put_bytes(n.args, value), put_bytes(n.args, bytes);
        g_cap_graph->nodes.push_back(std::move(n));
        return cudaSuccess;
    }
    memset(ptr, value, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemset(void *ptr, int value, size_t bytes) {
    return cudaMemsetAsync(ptr, value, bytes, nullptr);
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags) {
    init_once();
    (void)flags;
    cudaStream_t s = (cudaStream_t) new char[1];
    g_streams.insert(s);
    *stream = s;
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *stream) { return cudaStreamCreateWithFlags(stream, 0); }

cudaError_t cudaDeviceGetStreamPriorityRange(int *least, int *greatest) {
    *least = 0, *greatest = -5; // what an H100 reports
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithPriority(cudaStream_t *stream, unsigned int flags, int priority) {
    if (priority > 0 || priority < -5)
        return api_error(cudaErrorInvalidValue, "cudaStreamCreateWithPriority: priority %d outside [-5, 0]",
                         priority);
    return cudaStreamCreateWithFlags(stream, flags);
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    if (!g_streams.erase(stream))
        return api_error(cudaErrorInvalidResourceHandle, "cudaStreamDestroy: unknown stream %p",
                         (void *)stream);
    delete[](char *) stream;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    if (!stream_ok(stream))
        return api_error(cudaErrorInvalidResourceHandle, "cudaStreamSynchronize: unknown stream %p",
                         (void *)stream);
    if (cap_on(stream))
        return cap_refuse(cudaErrorStreamCaptureUnsupported, "cudaStreamSynchronize of the capturing stream");
    g_stats.syncs++;
    return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags) {
    (void)flags;
    cudaEvent_t e = (cudaEvent_t) new char[1];
    g_events.insert(e);
    *event = e;
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *event) { return cudaEventCreateWithFlags(event, 0); }

cudaError_t cudaEventDestroy(cudaEvent_t event) {
    if (!g_events.erase(event))
        return api_error(cudaErrorInvalidResourceHandle, "cudaEventDestroy: unknown event %p",
                         (void *)event);
    delete[](char *) event;
    return cudaSuccess;
}

// the handle checks of an event call on a stream (what names the call in the message)
static cudaError_t event_on_stream(const char *what, cudaEvent_t event, cudaStream_t stream) {
    if (!g_events.count(event))
        return api_error(cudaErrorInvalidResourceHandle, "%s: unknown event %p", what,
                         (void *)event);
    if (!stream_ok(stream))
        return api_error(cudaErrorInvalidResourceHandle, "%s: unknown stream %p", what,
                         (void *)stream);
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
    cudaError_t rc = event_on_stream("cudaEventRecord", event, stream);
    if (rc != cudaSuccess) return rc;
    if (cap_on(stream))
        g_cap_events.insert(event);
    else
        g_cap_events.erase(event);
    return cudaSuccess;
}

// for the emulated NCCL (nccl_emu.c): 1 when [p, p + bytes) lies in one emulated device
// allocation, else 0 with the reason in why
int cuda_emu_device_range(const void *p, size_t bytes, char *why, size_t why_len) {
    std::string w;
    if (device_range(p, bytes, &w)) return 1;
    snprintf(why, why_len, "%s", w.c_str());
    return 0;
}

int cuda_emu_stream_ok(cudaStream_t s) { return stream_ok(s); }

// work runs when it is queued, so a stream never has anything to wait for: this checks
// the handles only
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
    cudaError_t rc = event_on_stream("cudaStreamWaitEvent", event, stream);
    if (rc != cudaSuccess) return rc;
    if (flags != 0)
        return api_error(cudaErrorInvalidValue, "cudaStreamWaitEvent: flags %u", flags);
    if (g_cap_events.count(event) && !cap_on(stream))
        return cap_refuse(cudaErrorStreamCaptureUnsupported,
                          "cudaStreamWaitEvent of another stream on an event of the capture (joining "
                          "a second stream into a capture is not emulated)");
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
    if (!g_events.count(event))
        return api_error(cudaErrorInvalidResourceHandle, "cudaEventSynchronize: unknown event %p",
                         (void *)event);
    if (g_cap_active && g_cap_events.count(event))
        return cap_refuse(cudaErrorCapturedEvent, "cudaEventSynchronize of an event recorded in the capture");
    g_stats.syncs++;
    return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
    if (!g_events.count(start) || !g_events.count(end))
        return api_error(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: unknown event");
    *ms = 0.0f;
    return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
    init_once();
    if (!stream || !g_streams.count(stream))
        return api_error(cudaErrorInvalidResourceHandle,
                         "cudaStreamBeginCapture: %p is not a created stream (the legacy stream "
                         "cannot be captured)",
                         (void *)stream);
    if (g_cap_active)
        return api_error(cudaErrorIllegalState,
                         "cudaStreamBeginCapture: a capture is already active (one at a time is "
                         "emulated)");
    g_cap_active = true;
    g_cap_stream = stream;
    g_cap_mode = mode;
    g_cap_graph = new EmuGraph;
    g_cap_invalid.clear();
    g_cap_events.clear();
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph) {
    *graph = nullptr;
    if (!cap_on(stream))
        return api_error(cudaErrorIllegalState, "cudaStreamEndCapture: stream %p is not capturing",
                         (void *)stream);
    g_cap_active = false;
    g_cap_stream = nullptr;
    g_cap_events.clear();
    if (!g_cap_invalid.empty()) {
        delete g_cap_graph;
        g_cap_graph = nullptr;
        return api_error(cudaErrorStreamCaptureInvalidated, "cudaStreamEndCapture: invalidated by %s",
                         g_cap_invalid.c_str());
    }
    g_graphs.insert(g_cap_graph);
    *graph = (cudaGraph_t)g_cap_graph;
    g_cap_graph = nullptr;
    return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus *status) {
    if (!stream_ok(stream))
        return api_error(cudaErrorInvalidResourceHandle, "cudaStreamIsCapturing: unknown stream %p",
                         (void *)stream);
    *status = !cap_on(stream)            ? cudaStreamCaptureStatusNone
              : g_cap_invalid.empty() ? cudaStreamCaptureStatusActive
                                      : cudaStreamCaptureStatusInvalidated;
    return cudaSuccess;
}

cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t *nodes, size_t *count) {
    if (!g_graphs.count(graph))
        return api_error(cudaErrorInvalidResourceHandle, "cudaGraphGetNodes: unknown graph");
    if (nodes) return api_error(cudaErrorInvalidValue, "cudaGraphGetNodes: only the count is emulated");
    *count = ((EmuGraph *)graph)->nodes.size();
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags) {
    if (!g_graphs.count(graph))
        return api_error(cudaErrorInvalidResourceHandle, "cudaGraphInstantiate: unknown graph");
    if (flags) return api_error(cudaErrorInvalidValue, "cudaGraphInstantiate: flags %llu", flags);
    EmuGraph *e = new EmuGraph(*(EmuGraph *)graph);
    g_execs.insert(e);
    *exec = (cudaGraphExec_t)e;
    return cudaSuccess;
}

// same topology: as many nodes, each of the same kind and (kernels) the same function
cudaError_t cudaGraphExecUpdate(cudaGraphExec_t exec, cudaGraph_t graph,
                                cudaGraphExecUpdateResultInfo *info) {
    if (!g_execs.count(exec) || !g_graphs.count(graph))
        return api_error(cudaErrorInvalidResourceHandle, "cudaGraphExecUpdate: unknown exec or graph");
    EmuGraph *x = (EmuGraph *)exec, *g = (EmuGraph *)graph;
    *info = cudaGraphExecUpdateResultInfo{cudaGraphExecUpdateSuccess, nullptr, nullptr};
    if (x->nodes.size() != g->nodes.size()) {
        info->result = cudaGraphExecUpdateErrorTopologyChanged;
        return cudaErrorGraphExecUpdateFailure;
    }
    static const bool strict = getenv("EMU_GRAPH_STRICT") && strcmp(getenv("EMU_GRAPH_STRICT"), "0");
    for (size_t i = 0; i < g->nodes.size(); i++) {
        const GraphNode &a = x->nodes[i], &b = g->nodes[i];
        if (a.kind != b.kind || a.name != b.name) {
            info->result = cudaGraphExecUpdateErrorNodeTypeChanged;
            return cudaErrorGraphExecUpdateFailure;
        }
        if (a.kernel != b.kernel) {
            info->result = cudaGraphExecUpdateErrorFunctionChanged;
            return cudaErrorGraphExecUpdateFailure;
        }
        if (strict && a.args != b.args) {
            size_t k = 0;
            while (k < a.args.size() && k < b.args.size() && a.args[k] == b.args[k]) k++;
            fatal("cudaGraphExecUpdate (EMU_GRAPH_STRICT=1): node %zu of %zu, %s, was captured with "
                  "other arguments than the exec holds (first difference at parameter byte %zu of "
                  "%zu): a replay of the exec without this update would run stale arguments",
                  i, g->nodes.size(), b.name.c_str(), k, b.args.size());
        }
    }
    x->nodes = g->nodes;
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
    if (!g_execs.count(exec))
        return api_error(cudaErrorInvalidResourceHandle, "cudaGraphLaunch: unknown exec");
    if (!stream_ok(stream))
        return api_error(cudaErrorInvalidResourceHandle, "cudaGraphLaunch: unknown stream %p", (void *)stream);
    if (cap_on(stream))
        return cap_refuse(cudaErrorStreamCaptureUnsupported, "cudaGraphLaunch into the capturing stream");
    for (const GraphNode &n : ((EmuGraph *)exec)->nodes) {
        cudaError_t rc = cudaSuccess;
        switch (n.kind) {
        case GraphNode::KERNEL: {
            LaunchConfig c = n.cfg;
            c.stream = stream;
            if (!launch_ok(c, n.name.c_str(), n.kernel, n.ptrs.data(), (int)n.ptrs.size()))
                rc = cudaErrorInvalidConfiguration;
            else
                launch(c, n.name.c_str(), n.kernel, n.body, n.ctx.get(), n.ptrs.data(), (int)n.ptrs.size());
            break;
        }
        case GraphNode::COPY: rc = cudaMemcpyAsync(n.dst, n.src, n.bytes, cudaMemcpyDeviceToDevice, stream); break;
        case GraphNode::SET: rc = cudaMemsetAsync(n.dst, n.value, n.bytes, stream); break;
        case GraphNode::LT: n.run(); break;
        }
        if (rc != cudaSuccess) fatal("cudaGraphLaunch: node %s failed at the replay", n.name.c_str());
    }
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    if (!g_execs.erase(exec))
        return api_error(cudaErrorInvalidResourceHandle, "cudaGraphExecDestroy: unknown exec");
    delete (EmuGraph *)exec;
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
    if (!g_graphs.erase(graph))
        return api_error(cudaErrorInvalidResourceHandle, "cudaGraphDestroy: unknown graph");
    delete (EmuGraph *)graph;
    return cudaSuccess;
}

} // extern "C"

// ---------------------------------------------------------------------------------------
// cuBLASLt: D = alpha * op(A) op(B) + beta * C (+ bias[i] on row i), column-major, fp32
// storage (A and B may be CUDA_R_16BF under CUBLAS_COMPUTE_32F, widened exactly); the
// product is exact: float products summed in double, rounded once. The BGRADB epilogue
// stores the sums of op(B) over k (n floats; B as the product reads it), likewise in double. In
// CUBLAS_COMPUTE_32F_FAST_16BF mode A and B are first rounded to bf16 (round to nearest
// even), FAST_TF32 to tf32, as the tensor cores take them. The heuristic returns one
// algorithm, which records the problem it was chosen for (shape, ops, epilogue, compute
// type, the alignments the preference promised, the bias pointer's alignment); cublasLtMatmul
// refuses (CUBLAS_STATUS_INVALID_VALUE, with a message) an algorithm used for another
// problem or with operands less aligned than promised, operands outside device memory, an
// in-place product with different C and D layouts, an output overlapping an input, and a
// workspace smaller than the algorithm's. EMU_LT_REJECT=bias,bgrad,bf16,tf32,bf16io makes the
// heuristic find nothing for the bias / bias gradient epilogue / those compute types / bf16 A
// and B (to exercise fallbacks).
// ---------------------------------------------------------------------------------------
namespace {

struct LtDesc {
    cublasComputeType_t compute;
    int32_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
    uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    const void *bias = nullptr;
    int32_t bias_type = -1; // -1: the type of D (cuBLASLt's default)
};
struct LtLayout {
    uint64_t rows, cols;
    int64_t ld;
    cudaDataType type; // CUDA_R_32F or CUDA_R_16BF
    size_t elem() const { return type == CUDA_R_16BF ? 2 : 4; }
};
struct LtPref {
    uint64_t workspace = 0;
    uint32_t align[4] = {256, 256, 256, 256};
};
std::set<const void *> g_lt_handles, g_lt_descs, g_lt_layouts, g_lt_prefs;
constexpr uint64_t kAlgoMagic = 0x656d75616c676f31ull; // "emualgo1"
constexpr size_t kAlgoWorkspace = 1 << 20;

// largest power of two (elem..256) dividing the address and the leading dimension in bytes
uint32_t alignment_of(const void *p, int64_t ld_elems, size_t elem = 4) {
    uint32_t a = 256;
    while (a > elem && (((uintptr_t)p % a) != 0 || ((uint64_t)ld_elems * elem) % a != 0)) a /= 2;
    return a;
}
uint32_t pointer_alignment(const void *p) { return alignment_of(p, 64); }

bool lt_rejects(const char *what) {
    const char *r = getenv("EMU_LT_REJECT");
    if (!r) return false;
    std::string s = std::string(",") + r + ",";
    return s.find(std::string(",") + what + ",") != std::string::npos;
}

float round_mantissa(float x, int drop_bits) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return x; // NaN stays NaN
    const uint32_t half = (1u << (drop_bits - 1)) - 1;
    u += half + ((u >> drop_bits) & 1u);
    u &= ~((1u << drop_bits) - 1);
    memcpy(&x, &u, 4);
    return x;
}

// op(X) as rows x k, row-major, in double (after the compute type's input rounding); a bf16
// matrix is widened exactly
void pack(std::vector<double> &out, const void *x, const LtLayout &l, bool trans, uint64_t rows,
          uint64_t k, int drop_bits) {
    out.resize(rows * k);
    for (uint64_t r = 0; r < rows; r++)
        for (uint64_t c = 0; c < k; c++) {
            uint64_t at = trans ? c + r * (uint64_t)l.ld : r + c * (uint64_t)l.ld;
            float v;
            if (l.type == CUDA_R_16BF) {
                uint32_t u = (uint32_t)((const uint16_t *)x)[at] << 16;
                memcpy(&v, &u, 4);
            } else {
                v = ((const float *)x)[at];
            }
            out[r * k + c] = drop_bits ? round_mantissa(v, drop_bits) : v;
        }
}

// the extent of a matrix in bytes: (cols - 1) * ld + rows elements
size_t extent_bytes(const LtLayout &l) {
    return ((l.cols - 1) * (uint64_t)l.ld + l.rows) * l.elem();
}

// the operand types of a problem, recorded in the algorithm (bit 0: A bf16, bit 1: B bf16,
// bit 2: D bf16)
uint64_t type_bits(const LtLayout &A, const LtLayout &B, const LtLayout &D) {
    return (uint64_t)(A.type == CUDA_R_16BF) | (uint64_t)(B.type == CUDA_R_16BF) << 1 |
           (uint64_t)(D.type == CUDA_R_16BF) << 2;
}

bool overlap(const void *a, size_t na, const void *b, size_t nb) {
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y + nb && y < x + na;
}

} // namespace

extern "C" {

cublasStatus_t cublasLtCreate(cublasLtHandle_t *handle) {
    init_once();
    cublasLtHandle_t h = (cublasLtHandle_t) new char[1];
    g_lt_handles.insert(h);
    *handle = h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
    if (!g_lt_handles.erase(handle))
        return lt_error(CUBLAS_STATUS_NOT_INITIALIZED, "cublasLtDestroy: unknown handle");
    delete[](char *) handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *desc, cublasComputeType_t compute,
                                        cudaDataType_t scale_type) {
    if (scale_type != CUDA_R_32F)
        return lt_error(CUBLAS_STATUS_NOT_SUPPORTED,
                        "cublasLtMatmulDescCreate: scale type %d not emulated (CUDA_R_32F only)",
                        (int)scale_type);
    if (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_16BF &&
        compute != CUBLAS_COMPUTE_32F_FAST_TF32)
        return lt_error(CUBLAS_STATUS_NOT_SUPPORTED,
                        "cublasLtMatmulDescCreate: compute type %d not emulated", (int)compute);
    LtDesc *d = new LtDesc;
    d->compute = compute;
    g_lt_descs.insert(d);
    *desc = (cublasLtMatmulDesc_t)d;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
    if (!g_lt_descs.erase(desc))
        return lt_error(CUBLAS_STATUS_INVALID_VALUE,
                        "cublasLtMatmulDescDestroy: unknown (or destroyed) descriptor %p",
                        (void *)desc);
    delete (LtDesc *)desc;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc,
                                              cublasLtMatmulDescAttributes_t attr, const void *buf,
                                              size_t bytes) {
    if (!g_lt_descs.count(desc))
        return lt_error(CUBLAS_STATUS_INVALID_VALUE,
                        "cublasLtMatmulDescSetAttribute: unknown descriptor %p", (void *)desc);
    LtDesc *d = (LtDesc *)desc;
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB: {
        if (bytes != sizeof(int32_t))
            return lt_error(CUBLAS_STATUS_INVALID_VALUE, "TRANSA/TRANSB: %zu bytes, want 4", bytes);
        int32_t v;
        memcpy(&v, buf, 4);
        if (v != CUBLAS_OP_N && v != CUBLAS_OP_T)
            return lt_error(CUBLAS_STATUS_NOT_SUPPORTED, "TRANSA/TRANSB %d not emulated", (int)v);
        (attr == CUBLASLT_MATMUL_DESC_TRANSA ? d->ta : d->tb) = v;
        return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
        if (bytes != sizeof(uint32_t))
            return lt_error(CUBLAS_STATUS_INVALID_VALUE, "EPILOGUE: %zu bytes, want 4", bytes);
        memcpy(&d->epilogue, buf, 4);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
        if (bytes != sizeof(void *))
            return lt_error(CUBLAS_STATUS_INVALID_VALUE, "BIAS_POINTER: %zu bytes, want %zu", bytes,
                            sizeof(void *));
        memcpy(&d->bias, buf, sizeof(void *));
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
        if (bytes != sizeof(int32_t))
            return lt_error(CUBLAS_STATUS_INVALID_VALUE, "BIAS_DATA_TYPE: %zu bytes, want 4", bytes);
        memcpy(&d->bias_type, buf, 4);
        return CUBLAS_STATUS_SUCCESS;
    default:
        return lt_error(CUBLAS_STATUS_NOT_SUPPORTED,
                        "cublasLtMatmulDescSetAttribute: attribute %d not emulated", (int)attr);
    }
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *layout, cudaDataType type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
    if (type != CUDA_R_32F && type != CUDA_R_16BF)
        return lt_error(CUBLAS_STATUS_NOT_SUPPORTED,
                        "cublasLtMatrixLayoutCreate: type %d not emulated", (int)type);
    if (rows == 0 || cols == 0 || ld < (int64_t)rows)
        return lt_error(
            CUBLAS_STATUS_INVALID_VALUE,
            "cublasLtMatrixLayoutCreate: rows %llu cols %llu ld %lld (want rows, cols >= 1 and ld >= rows)",
            (unsigned long long)rows, (unsigned long long)cols, (long long)ld);
    LtLayout *l = new LtLayout{rows, cols, ld, type};
    g_lt_layouts.insert(l);
    *layout = (cublasLtMatrixLayout_t)l;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
    if (!g_lt_layouts.erase(layout))
        return lt_error(CUBLAS_STATUS_INVALID_VALUE,
                        "cublasLtMatrixLayoutDestroy: unknown (or destroyed) layout %p",
                        (void *)layout);
    delete (LtLayout *)layout;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *pref) {
    LtPref *p = new LtPref;
    g_lt_prefs.insert(p);
    *pref = (cublasLtMatmulPreference_t)p;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
    if (!g_lt_prefs.erase(pref))
        return lt_error(CUBLAS_STATUS_INVALID_VALUE,
                        "cublasLtMatmulPreferenceDestroy: unknown preference %p", (void *)pref);
    delete (LtPref *)pref;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void *buf, size_t bytes) {
    if (!g_lt_prefs.count(pref))
        return lt_error(CUBLAS_STATUS_INVALID_VALUE,
                        "cublasLtMatmulPreferenceSetAttribute: unknown preference %p",
                        (void *)pref);
    LtPref *p = (LtPref *)pref;
    switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES:
        if (bytes != sizeof(uint64_t))
            return lt_error(CUBLAS_STATUS_INVALID_VALUE, "MAX_WORKSPACE_BYTES: %zu bytes, want 8",
                            bytes);
        memcpy(&p->workspace, buf, 8);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: {
        if (bytes != sizeof(uint32_t))
            return lt_error(CUBLAS_STATUS_INVALID_VALUE, "MIN_ALIGNMENT: %zu bytes, want 4", bytes);
        uint32_t v;
        memcpy(&v, buf, 4);
        if (v == 0 || (v & (v - 1)))
            return lt_error(CUBLAS_STATUS_INVALID_VALUE, "MIN_ALIGNMENT %u is not a power of two",
                            v);
        p->align[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES] = v;
        return CUBLAS_STATUS_SUCCESS;
    }
    default:
        return lt_error(CUBLAS_STATUS_NOT_SUPPORTED,
                        "cublasLtMatmulPreferenceSetAttribute: attribute %d not emulated",
                        (int)attr);
    }
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dl,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t results[],
                                              int *returned) {
    if (!g_lt_handles.count(handle))
        return lt_error(CUBLAS_STATUS_NOT_INITIALIZED, "heuristic: unknown handle");
    if (!g_lt_descs.count(desc) || !g_lt_layouts.count(a) || !g_lt_layouts.count(b) ||
        !g_lt_layouts.count(c) || !g_lt_layouts.count(dl) || !g_lt_prefs.count(pref))
        return lt_error(CUBLAS_STATUS_INVALID_VALUE,
                        "heuristic: unknown (or destroyed) descriptor, layout or preference");
    if (requested < 1 || !results || !returned)
        return lt_error(CUBLAS_STATUS_INVALID_VALUE, "heuristic: requested %d", requested);
    *returned = 0;
    const LtDesc &d = *(LtDesc *)desc;
    const LtLayout &A = *(LtLayout *)a, &B = *(LtLayout *)b, &C = *(LtLayout *)c,
                   &D = *(LtLayout *)dl;
    const LtPref &p = *(LtPref *)pref;
    const uint64_t m = D.rows, n = D.cols;
    const uint64_t am = d.ta ? A.cols : A.rows, k = d.ta ? A.rows : A.cols;
    const uint64_t bk = d.tb ? B.cols : B.rows, bn = d.tb ? B.rows : B.cols;
    if (am != m || bn != n || bk != k || C.rows != m || C.cols != n)
        return lt_error(
            CUBLAS_STATUS_INVALID_VALUE,
            "heuristic: shapes do not match: op(A) %llux%llu, op(B) %llux%llu, C %llux%llu, D %llux%llu",
            (unsigned long long)am, (unsigned long long)k, (unsigned long long)bk,
            (unsigned long long)bn, (unsigned long long)C.rows, (unsigned long long)C.cols,
            (unsigned long long)m, (unsigned long long)n);
    if (d.epilogue != CUBLASLT_EPILOGUE_DEFAULT && d.epilogue != CUBLASLT_EPILOGUE_BIAS &&
        d.epilogue != CUBLASLT_EPILOGUE_BGRADB)
        return lt_error(CUBLAS_STATUS_NOT_SUPPORTED, "heuristic: epilogue %u not emulated",
                        d.epilogue);
    // the emulated type combinations: all fp32, or bf16 A and B with fp32 or bf16 C and D
    // (C and D alike) under CUBLAS_COMPUTE_32F, a bias of D's type or fp32 (cuBLASLt's
    // table has more; mmrm uses these)
    if (A.type != B.type || C.type != D.type ||
        (D.type == CUDA_R_16BF && A.type != CUDA_R_16BF) ||
        (A.type == CUDA_R_16BF && d.compute != CUBLAS_COMPUTE_32F) ||
        (d.bias_type != -1 && d.bias_type != CUDA_R_32F && d.bias_type != (int32_t)D.type))
        return lt_error(CUBLAS_STATUS_NOT_SUPPORTED,
                        "heuristic: types A %d B %d C %d D %d with compute %d not emulated",
                        (int)A.type, (int)B.type, (int)C.type, (int)D.type, (int)d.compute);
    if (A.type == CUDA_R_16BF && lt_rejects("bf16io"))
        return CUBLAS_STATUS_NOT_SUPPORTED; // (EMU_LT_REJECT) no algorithm for bf16 storage
    if (D.type == CUDA_R_16BF && lt_rejects("bf16out"))
        return CUBLAS_STATUS_NOT_SUPPORTED; // (EMU_LT_REJECT) no algorithm for a bf16 D
    if ((d.epilogue == CUBLASLT_EPILOGUE_BIAS && lt_rejects("bias")) ||
        (d.epilogue == CUBLASLT_EPILOGUE_BGRADB && lt_rejects("bgrad")) ||
        (d.compute == CUBLAS_COMPUTE_32F_FAST_16BF && lt_rejects("bf16")) ||
        (d.compute == CUBLAS_COMPUTE_32F_FAST_TF32 && lt_rejects("tf32")))
        return CUBLAS_STATUS_NOT_SUPPORTED; // (EMU_LT_REJECT) no algorithm, quietly as cuBLASLt
    cublasLtMatmulHeuristicResult_t r;
    memset(&r, 0, sizeof r);
    r.algo.data[0] = kAlgoMagic;
    r.algo.data[1] = m;
    r.algo.data[2] = n;
    r.algo.data[3] = k;
    r.algo.data[4] = (uint64_t)d.ta | (uint64_t)d.tb << 1 | type_bits(A, B, D) << 4 |
                     (uint64_t)d.epilogue << 8 | (uint64_t)d.compute << 32;
    r.algo.data[5] = (uint64_t)p.align[0] | (uint64_t)p.align[1] << 16 |
                     (uint64_t)p.align[2] << 32 | (uint64_t)p.align[3] << 48;
    // the bias pointer's alignment is read now (as cuBLASLt does) and assumed later
    r.algo.data[6] = d.epilogue != CUBLASLT_EPILOGUE_DEFAULT
                         ? (d.bias ? pointer_alignment(d.bias) : 256)
                         : 0;
    r.algo.data[7] = std::min<uint64_t>(p.workspace, kAlgoWorkspace);
    r.workspaceSize = (size_t)r.algo.data[7];
    r.state = CUBLAS_STATUS_SUCCESS;
    r.wavesCount = 1.0f;
    results[0] = r;
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void *alpha,
                              const void *Aptr, cublasLtMatrixLayout_t Adesc, const void *Bptr,
                              cublasLtMatrixLayout_t Bdesc, const void *beta, const void *Cptr,
                              cublasLtMatrixLayout_t Cdesc, void *Dptr,
                              cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t *algo,
                              void *workspace, size_t workspace_bytes, cudaStream_t stream) {
    if (!g_lt_handles.count(handle))
        return lt_error(CUBLAS_STATUS_NOT_INITIALIZED, "matmul: unknown handle");
    if (!g_lt_descs.count(desc) || !g_lt_layouts.count(Adesc) || !g_lt_layouts.count(Bdesc) ||
        !g_lt_layouts.count(Cdesc) || !g_lt_layouts.count(Ddesc))
        return lt_error(CUBLAS_STATUS_INVALID_VALUE,
                        "matmul: unknown (or destroyed) descriptor or layout");
    if (!stream_ok(stream)) return lt_error(CUBLAS_STATUS_INVALID_VALUE, "matmul: unknown stream");
    if (!algo || algo->data[0] != kAlgoMagic)
        return lt_error(CUBLAS_STATUS_INVALID_VALUE,
                        "matmul: no algorithm from cublasLtMatmulAlgoGetHeuristic");
    const LtDesc &d = *(LtDesc *)desc;
    const LtLayout &A = *(LtLayout *)Adesc, &B = *(LtLayout *)Bdesc, &C = *(LtLayout *)Cdesc,
                   &D = *(LtLayout *)Ddesc;
    const uint64_t m = D.rows, n = D.cols, k = d.ta ? A.rows : A.cols;
    const uint64_t ops = (uint64_t)d.ta | (uint64_t)d.tb << 1 | type_bits(A, B, D) << 4 |
                         (uint64_t)d.epilogue << 8 | (uint64_t)d.compute << 32;
    if (algo->data[1] != m || algo->data[2] != n || algo->data[3] != k || algo->data[4] != ops)
        return lt_error(
            CUBLAS_STATUS_INVALID_VALUE,
            "matmul: the algorithm was chosen for m=%llu n=%llu k=%llu ops 0x%llx, used for m=%llu n=%llu k=%llu ops 0x%llx",
            (unsigned long long)algo->data[1], (unsigned long long)algo->data[2],
            (unsigned long long)algo->data[3], (unsigned long long)algo->data[4],
            (unsigned long long)m, (unsigned long long)n, (unsigned long long)k,
            (unsigned long long)ops);
    if ((d.ta ? A.cols : A.rows) != m || (d.tb ? B.cols : B.rows) != k ||
        (d.tb ? B.rows : B.cols) != n || C.rows != m || C.cols != n)
        return lt_error(CUBLAS_STATUS_INVALID_VALUE,
                        "matmul: layouts do not match the shape m=%llu n=%llu k=%llu",
                        (unsigned long long)m, (unsigned long long)n, (unsigned long long)k);
    if (!alpha || !beta || is_device(alpha) || is_device(beta))
        return lt_error(CUBLAS_STATUS_INVALID_VALUE,
                        "matmul: alpha/beta must be host pointers (pointer mode host)");
    const float al = *(const float *)alpha, be = *(const float *)beta;
    if (Cptr == Dptr && (C.rows != D.rows || C.cols != D.cols || C.ld != D.ld))
        return lt_error(CUBLAS_STATUS_INVALID_VALUE,
                        "matmul: in place (C == D) with different C and D layouts");
    std::string why;
    struct Op {
        const char *name;
        const void *p;
        const LtLayout *l;
        int slot;
    } opnd[4] = {{"A", Aptr, &A, 0}, {"B", Bptr, &B, 1}, {"C", Cptr, &C, 2}, {"D", Dptr, &D, 3}};
    for (const Op &o : opnd) {
        if (o.slot == 2 && be == 0.0f) continue; // C is not read with beta 0
        if (!device_range(o.p, extent_bytes(*o.l), &why))
            return lt_error(CUBLAS_STATUS_INVALID_VALUE,
                            "matmul: operand %s (%llu x %llu, ld %lld): %s", o.name,
                            (unsigned long long)o.l->rows, (unsigned long long)o.l->cols,
                            (long long)o.l->ld, why.c_str());
        const uint32_t promised = (uint32_t)(algo->data[5] >> (16 * o.slot)) & 0xffff;
        const uint32_t actual = alignment_of(o.p, o.l->ld, o.l->elem());
        if (actual < promised)
            return lt_error(
                CUBLAS_STATUS_INVALID_VALUE,
                "matmul: operand %s at %p (ld %lld) is %u-byte aligned, but the algorithm was chosen for %u (MIN_ALIGNMENT_%s_BYTES)",
                o.name, o.p, (long long)o.l->ld, actual, promised, o.name);
    }
    if (overlap(Dptr, extent_bytes(D), Aptr, extent_bytes(A)) ||
        overlap(Dptr, extent_bytes(D), Bptr, extent_bytes(B)) ||
        (Cptr != Dptr && be != 0.0f && overlap(Dptr, extent_bytes(D), Cptr, extent_bytes(C))))
        return lt_error(CUBLAS_STATUS_INVALID_VALUE, "matmul: D overlaps an input");
    const void *bias = nullptr;
    float *bgrad = nullptr;
    const bool bias16 = d.bias_type == -1 ? D.type == CUDA_R_16BF : d.bias_type == CUDA_R_16BF;
    if (d.epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
        const bool grad = d.epilogue == CUBLASLT_EPILOGUE_BGRADB;
        const uint64_t len = grad ? n : m; // BIAS: one per row of D; BGRADB: per column
        const size_t esz = !grad && bias16 ? 2 : sizeof(float); // a bias gradient is fp32
        bias = d.bias;
        if (!bias || !device_range(bias, len * esz, &why))
            return lt_error(CUBLAS_STATUS_INVALID_VALUE,
                            "matmul: %s epilogue: vector (%llu floats) %s", grad ? "BGRADB" : "bias",
                            (unsigned long long)len, bias ? why.c_str() : "is NULL");
        if (grad && (overlap(bias, len * sizeof(float), Dptr, extent_bytes(D)) ||
                     overlap(bias, len * sizeof(float), Bptr, extent_bytes(B))))
            return lt_error(CUBLAS_STATUS_INVALID_VALUE,
                            "matmul: BGRADB epilogue: the bias gradient overlaps B or D");
        if (grad) bgrad = (float *)d.bias, bias = nullptr;
        if (pointer_alignment(d.bias) < algo->data[6])
            return lt_error(
                CUBLAS_STATUS_INVALID_VALUE,
                "matmul: bias at %p is %u-byte aligned, but was %llu-byte aligned when the algorithm was chosen",
                d.bias, pointer_alignment(d.bias), (unsigned long long)algo->data[6]);
    }
    const size_t need_ws = (size_t)algo->data[7];
    if (need_ws && (workspace_bytes < need_ws || !device_range(workspace, need_ws, &why)))
        return lt_error(
            CUBLAS_STATUS_INVALID_VALUE,
            "matmul: the algorithm needs %zu bytes of device workspace, got %p (%zu bytes)",
            need_ws, workspace, workspace_bytes);

    const int drop = d.compute == CUBLAS_COMPUTE_32F_FAST_16BF   ? 16
                     : d.compute == CUBLAS_COMPUTE_32F_FAST_TF32 ? 13
                                                                 : 0;
    // the product, with every operand bound by value (a capture replays it as it was queued)
    auto work = [=]() {
    std::vector<double> pa, pb;
    pack(pa, Aptr, A, d.ta == CUBLAS_OP_T, m, k, drop);
    pack(pb, Bptr, B, d.tb == CUBLAS_OP_N, n, k, drop); // op(B)^T: n x k
    // a bf16 C is widened exactly; a bf16 D (and bias) rounded to nearest even from the
    // float result
    auto bf16_to_f = [](uint16_t h) {
        uint32_t u = (uint32_t)h << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    };
    auto f_to_bf16 = [](float f) {
        uint32_t u;
        memcpy(&u, &f, 4);
        if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
        u += 0x7fffu + ((u >> 16) & 1u);
        return (uint16_t)(u >> 16);
    };
    const bool d16 = D.type == CUDA_R_16BF;
#pragma omp parallel for schedule(static) if (m * n * k > (1u << 20))
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) {
            const double *x = &pa[i * k], *y = &pb[j * k];
            double s[4] = {0.0, 0.0, 0.0, 0.0}; // a fixed order: the result is deterministic
            uint64_t l = 0;
            for (; l + 4 <= k; l += 4)
                for (int u = 0; u < 4; u++) s[u] += x[l + u] * y[l + u];
            for (; l < k; l++) s[0] += x[l] * y[l];
            double r = (double)al * ((s[0] + s[1]) + (s[2] + s[3]));
            const uint64_t ci = i + j * (uint64_t)C.ld, di = i + j * (uint64_t)D.ld;
            if (be != 0.0f)
                r += (double)be * (d16 ? bf16_to_f(((const uint16_t *)Cptr)[ci])
                                       : ((const float *)Cptr)[ci]);
            if (bias)
                r += bias16 ? bf16_to_f(((const uint16_t *)bias)[i]) : ((const float *)bias)[i];
            if (d16)
                ((uint16_t *)Dptr)[di] = f_to_bf16((float)r);
            else
                ((float *)Dptr)[di] = (float)r;
        }
    if (bgrad)
        for (uint64_t j = 0; j < n; j++) {
            double s = 0.0;
            for (uint64_t l = 0; l < k; l++) s += pb[j * k + l];
            bgrad[j] = (float)s;
        }
    };
    if (cap_on(stream)) {
        GraphNode nd;
        nd.kind = GraphNode::LT;
        nd.name = "cublasLtMatmul";
        nd.run = [=]() {
            std::string w;
            if (!device_range(Aptr, extent_bytes(A), &w) || !device_range(Bptr, extent_bytes(B), &w) ||
                !device_range(Dptr, extent_bytes(D), &w))
                fatal("cublasLtMatmul replayed by cudaGraphLaunch: an operand %s", w.c_str());
            work();
        };
        const void *ptr[6] = {Aptr, Bptr, Cptr, Dptr, bias, bgrad};
        const uint64_t dims[4] = {m, n, k, ops};
        const int64_t lds[4] = {A.ld, B.ld, C.ld, D.ld};
        put_bytes(nd.args, ptr), put_bytes(nd.args, dims), put_bytes(nd.args, lds);
        put_bytes(nd.args, al), put_bytes(nd.args, be), put_bytes(nd.args, drop);
        g_cap_graph->nodes.push_back(std::move(nd));
        return CUBLAS_STATUS_SUCCESS;
    }
    work();
    return CUBLAS_STATUS_SUCCESS;
}

} // extern "C"
