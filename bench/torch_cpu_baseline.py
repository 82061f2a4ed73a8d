#!/usr/bin/env python3
"""torch_cpu_baseline.py - the reward model's training step in PyTorch eager on the CPU, for a
side-by-side pairs/s comparison with `mmrm train` (bench/cpu_vs_torch.sh runs both).

The network is tests/oracle/model_oracle.py's plain-torch re-implementation of mmrm's model
(InternViT + mlp1 + Qwen2 decoder + score head), here in float32 with the shapes of
configs/model/<model>.json; one step = the forward of a batch of PAIRS pairs (2 rows of
TOKENS tokens each, one 1-tile image per pair shared by both rows, ViT frozen as in mmrm),
the Bradley-Terry loss, the backward and an AdamW update. --objective robust costs what mmrm's
shortcut_aware does: a bias model of the same shape trained alongside (its own forward,
Bradley-Terry loss, backward and AdamW update) whose detached margins weight the main model's
per-pair losses (the weighting formula here is a stand-in with the same cost, not the paper's). Rows all have TOKENS tokens
(no padding: the cheapest case for torch). Prints the BLAS torch uses and one line
`pairs/s X` per run. Pinned: torch 2.4.1 (PyPI wheel, OpenBLAS/MKL inside) - e.g. the
/tmp/hfvenv interpreter.

    python bench/torch_cpu_baseline.py --model tiny --tokens 259 --threads 1 --steps 5
"""
import argparse
import json
import os
import re
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "oracle"))
import model_oracle as mo  # noqa: E402

PINNED_TORCH = "2.4.1"


def case_from_config(path):
    with open(path) as f:
        c = json.load(f)
    v, l = c["vision_config"], c["llm_config"]
    return dict(name=os.path.basename(path), seed=1,
                vision=dict(hidden=v["hidden_size"], heads=v["num_attention_heads"],
                            intermediate=v["intermediate_size"], layers=v["num_hidden_layers"],
                            image_size=v["image_size"], patch=v["patch_size"],
                            qkv_bias=v.get("qkv_bias", True), qk_norm=v.get("qk_normalization", False),
                            norm_type=v.get("norm_type", "layer_norm"), eps=v.get("layer_norm_eps", 1e-6)),
                force_image_size=c["force_image_size"], select_layer=c.get("select_layer", -1),
                template=c.get("template", "Hermes-2"),
                llm=dict(arch=l["architectures"][0], hidden=l["hidden_size"],
                         heads=l["num_attention_heads"], kv_heads=l["num_key_value_heads"],
                         intermediate=l["intermediate_size"], layers=l["num_hidden_layers"],
                         rope_theta=l["rope_theta"], rms_eps=l["rms_norm_eps"],
                         max_pos=l["max_position_embeddings"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny", help="configs/model/NAME.json (tiny, small)")
    ap.add_argument("--tokens", type=int, default=259, help="tokens per row")
    ap.add_argument("--pairs", type=int, default=8, help="pairs per step (batch 2x)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5, help="timed steps (after 2 warm-up steps)")
    ap.add_argument("--objective", choices=("standard", "robust"), default="standard")
    a = ap.parse_args()
    if torch.__version__.split("+")[0] != PINNED_TORCH:
        print("warning: torch %s, pinned %s" % (torch.__version__, PINNED_TORCH), file=sys.stderr)
    torch.set_num_threads(a.threads)
    cfg = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "model", a.model + ".json")
    case = case_from_config(cfg)
    B = 2 * a.pairs
    case["tiles"] = [1] * B
    case["lengths"] = [a.tokens] * B
    gen = torch.Generator().manual_seed(1)
    mo.VOCAB = 270
    P = mo.init_params(case, gen)
    frozen = [n for n in P if n.startswith("vision_model.")]
    train = [n for n in P if n not in frozen]
    for n in train:
        P[n].requires_grad_(True)
    params = [P[n] for n in train]
    bias_P = None
    if a.objective == "robust":
        bias_P = {n: t.detach().clone() for n, t in P.items()}
        for n in train:
            bias_P[n].requires_grad_(True)
        params += [bias_P[n] for n in train]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    batch = mo.make_batch(case, gen)
    conf = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=(\w+)", conf)
    print("torch %s, %d threads, BLAS %s (torch.__config__.show())"
          % (torch.__version__, torch.get_num_threads(), blas.group(1) if blas else "unknown"))
    print("model %s: %d parameters (%d trainable), %d pairs x 2 rows x %d tokens, objective %s"
          % (a.model, sum(t.numel() for t in P.values()), sum(P[n].numel() for n in train),
             a.pairs, a.tokens, a.objective))

    def step():
        r, _ = mo.reward_forward(P, case, batch)
        margin = r[0::2] - r[1::2]
        if bias_P is None:
            loss = F.softplus(-margin).mean()
        else:
            rb, _ = mo.reward_forward(bias_P, case, batch)
            mb = rb[0::2] - rb[1::2]
            w = 2 * torch.sigmoid(-mb).detach()
            loss = (w * F.softplus(-margin)).mean() + F.softplus(-mb).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = time.perf_counter() - t0
    print("pairs/s %.3f  (%d steps in %.2f s, %.0f tokens/s)"
          % (a.steps * a.pairs / dt, a.steps, dt, a.steps * B * a.tokens / dt))


if __name__ == "__main__":
    main()
