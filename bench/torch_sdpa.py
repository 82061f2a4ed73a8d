#!/usr/bin/env python3
"""torch_sdpa.py - PyTorch's scaled_dot_product_attention at the kernel lab's attention shapes
(bench/lab/attention.cu, perf_table), forward and backward, bf16, the column that
`bench_cuda --only attention` cannot print itself. tests/gpu/attention.sh runs both in one
device call.

Shapes (16384 query tokens per call, as the lab): InternViT-300M (bidirectional, 16 heads x 64,
1025 tokens, 7 tiles), Qwen2-0.5B (14 heads, 2 KV heads, 64, causal, T 512..4096),
InternLM2-7B (32 heads, 8 KV heads, 128, causal, T 1024..4096). Grouped KV heads are expanded
to the query heads before timing (the flash backend of torch 2.4 has no GQA), so the timed
kernel does the same flop as the lab's. TFLOP/s: 4 B NH T^2 HD forward (causal: T(T+1)/2
pairs), 2.5x that backward, as the lab; % of peak against the device's dense bf16 peak
(--peak, else by device name).

Pinned: torch 2.4.1 (PyPI wheel; the cu121 build on a GPU, e.g. /tmp/hfvenv), Python 3.11.
On a GPU the backend is forced (--backend flash, the default, or cudnn / efficient / math)
so that a backend that cannot take a shape is an error, not a silent fallback. On the CPU
(--device cpu, --tiny for small shapes) only the math backend exists: a check of this script.

    python bench/torch_sdpa.py                       # GPU, flash backend
    python bench/torch_sdpa.py --backend cudnn       # PyTorch's cuDNN attention
    python bench/torch_sdpa.py --device cpu --tiny   # a CPU run at tiny shapes
"""
import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

SHAPES = (  # model, B, T, NH, KV, HD, causal
    [("InternViT-300M", 7, 1025, 16, 16, 64, False)]
    + [("Qwen2-0.5B", 16384 // t, t, 14, 2, 64, True) for t in (512, 1024, 2048, 4096)]
    + [("InternLM2-7B", 16384 // t, t, 32, 8, 128, True) for t in (1024, 2048, 4096)]
)
TINY = [  # the same kinds at sizes a CPU runs in seconds
    ("InternViT-300M", 2, 65, 4, 4, 64, False),
    ("Qwen2-0.5B", 2, 64, 14, 2, 64, True),
    ("InternLM2-7B", 1, 96, 8, 2, 128, True),
]


def bf16_peak_tflops(name):
    """dense bf16 tensor-core peak by device name (datasheets, no sparsity); 0 if unknown"""
    if "H200" in name or "H100 80GB HBM3" in name or "H100 SXM" in name:
        return 989.4
    if "H100 NVL" in name:
        return 835.0
    if "H100" in name:
        return 756.0
    if "A100" in name:
        return 312.0
    return 0.0


def flop_fwd(B, T, NH, HD, causal):
    pairs = T * (T + 1) / 2 if causal else T * T
    return 4.0 * B * NH * HD * pairs


def timer(device):
    """median ms of fn over reps runs after one warm-up"""

    def run(fn, reps):
        fn()
        times = []
        for _ in range(reps):
            if device.type == "cuda":
                a = torch.cuda.Event(enable_timing=True)
                b = torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                b.synchronize()
                times.append(a.elapsed_time(b))
            else:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    return run


def backend_context(name):
    """the one SDPA backend allowed inside the block (a shape it cannot take raises)"""
    sdpb = torch.nn.attention.SDPBackend
    table = {"flash": sdpb.FLASH_ATTENTION, "efficient": sdpb.EFFICIENT_ATTENTION,
             "math": sdpb.MATH}
    if hasattr(sdpb, "CUDNN_ATTENTION"):
        table["cudnn"] = sdpb.CUDNN_ATTENTION
    if name not in table:
        sys.exit(f"torch_sdpa.py: backend {name} is not in this torch ({torch.__version__}): "
                 f"one of {', '.join(sorted(table))}")
    return torch.nn.attention.sdpa_kernel(table[name])


def bench_shape(shape, device, dtype, backend, reps, peak, run):
    model, B, T, NH, KV, HD, causal = shape
    g = torch.Generator(device="cpu").manual_seed(401)

    def rand(*s):
        return (torch.rand(*s, generator=g) * 2 - 1).to(device=device, dtype=dtype)

    # (B, T, H, D) memory like mmrm's, seen as (B, H, T, D); KV heads expanded for GQA
    q = rand(B, T, NH, HD).transpose(1, 2).requires_grad_(True)
    k = rand(B, T, KV, HD).transpose(1, 2).repeat_interleave(NH // KV, dim=1).detach()
    v = rand(B, T, KV, HD).transpose(1, 2).repeat_interleave(NH // KV, dim=1).detach()
    k.requires_grad_(True)
    v.requires_grad_(True)
    dout = rand(B, T, NH, HD).transpose(1, 2)
    with backend_context(backend):
        def fwd():
            with torch.no_grad():
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)

        def bwd():
            torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)

        ms_f = run(fwd, reps)
        ms_b = run(bwd, reps)
    # the result against the math formula in fp32 on a few rows (catches a wrong mask)
    rows = min(T, 8)
    s = (q[:1, :1].float() @ k[:1, :1].float().transpose(-1, -2)) / HD ** 0.5
    if causal:
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool, device=device).triu(1), float("-inf"))
    ref = (s.softmax(-1) @ v[:1, :1].float())[..., T - rows:, :]
    got = out[:1, :1, T - rows:, :].float()
    rel = ((got - ref).norm() / ref.norm()).item()
    fl = flop_fwd(B, T, NH, HD, causal)
    cells = []
    for ms, f in ((ms_f, fl), (ms_b, 2.5 * fl)):
        tf = f / ms / 1e9
        pk = f"{100 * tf / peak:5.1f}%" if peak > 0 else "    -"
        cells.append(f"{ms:9.3f} ms {tf:7.1f} TF/s {pk}")
    print(f"{model:<14} B={B:<2d} T={T:<4d} NH={NH:<2d} KV={KV:<2d} HD={HD:<3d} "
          f"{'causal' if causal else 'bidir':<6} torch {backend:<9} fwd {cells[0]} | bwd {cells[1]}"
          f" | out rel err {rel:.1e}")
    sys.stdout.flush()
    if not rel < 2e-2:
        sys.exit(f"torch_sdpa.py: {model} T={T}: the output differs from the fp32 formula "
                 f"(rel {rel:.2e})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backend", default=None,
                    help="flash (GPU default), cudnn, efficient, math; the CPU runs math")
    ap.add_argument("--tiny", action="store_true", help="small shapes (a CPU check)")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--peak", type=float, default=None, help="dense bf16 peak, TFLOP/s")
    a = ap.parse_args()
    device = torch.device(a.device)
    backend = a.backend or ("flash" if device.type == "cuda" else "math")
    if device.type != "cuda" and backend != "math":
        sys.exit(f"torch_sdpa.py: --backend {backend} needs a GPU; the CPU has math only")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = a.peak if a.peak is not None else bf16_peak_tflops(name)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {cudnn}), device {name}, "
          f"backend {backend}, bf16 peak {peak or 'unknown'} TFLOP/s; ms, TFLOP/s, % of peak; "
          f"backward = 2.5x the forward's flop; KV heads expanded to NH")
    run = timer(device)
    for shape in TINY if a.tiny else SHAPES:
        bench_shape(shape, device, torch.bfloat16, backend, a.reps, peak, run)


if __name__ == "__main__":
    main()
