#!/usr/bin/env python3
"""torch_baseline.py - the reward model's training step in PyTorch + transformers on a GPU, the
baseline build/bench_step is compared with (tests/gpu/run.sh runs both at the same shape).

The network is the InternVL2-1B-shaped reward model of configs/model/internvl2_1b.json (read
from that file, so the shapes are mmrm's): InternViT in plain PyTorch (LayerNorm, qkv with
bias, layer scale, exact GELU MLP; attention through F.scaled_dot_product_attention), pixel
shuffle v2 and the mlp1 connector, the decoder as transformers' Qwen2Model with sdpa
attention, and a bias-free score head on each sequence's last token. Weights are random (the
time does not depend on them). Training as the reference does: ViT frozen, bf16 autocast over
fp32 master weights, gradient-norm clipping at 1.0, fused AdamW (lr 1e-5, betas 0.9/0.98,
weight decay 0.05).

One step: P pairs (2 sequences each, S = tiles x 256 image tokens + TEXT text tokens, every
row full length, the cheapest case for PyTorch), the chosen and rejected sequence of a pair
sharing one image.
  standard:        Bradley-Terry loss -log sigmoid(r_chosen - r_rejected), mean over pairs;
  shortcut_aware:  as the reference runs it: a second full reward model (its own frozen ViT
                   run on blank images every step, its own connector, decoder and head) on the
                   same text; per pair Lm, Lb = softplus(-margin) of the main and bias model,
                   w = eps/2 + Lb / (eps + Lb + Lm) (no gradient through w), loss =
                   mean(w Lm + Lb); both models trained.
Reported like build/bench_step: median step time, pairs/s, tokens/s, MFU of the trained part
(3x the decoder's forward FLOPs of every trained model, counted as `mmrm info` does: per
token 2 L (qkvo + 3 H I) + 2 H, causal attention 2 L NH hd S (S + 1) per sequence; the frozen
ViT's forward is reported but not counted), peak memory (torch.cuda.max_memory_allocated; on
the CPU the process's max RSS) and the time per phase (frozen ViT forward, the rest of the
forward with the loss, backward, clipping + AdamW), each phase closed by a synchronisation.

Pinned (tested with): torch 2.4.1, transformers 4.44.2 (/tmp/hfvenv). Without a GPU:
    python bench/torch_baseline.py --device cpu --tiny
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PINNED = {"torch": "2.4.1", "transformers": "4.44.2"}
HERE = os.path.dirname(os.path.abspath(__file__))


class VisionLayer(nn.Module):
    def __init__(self, C, NH, I, eps):
        super().__init__()
        self.NH = NH
        self.norm1 = nn.LayerNorm(C, eps=eps)
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)
        self.ls1 = nn.Parameter(torch.full((C,), 0.1))
        self.norm2 = nn.LayerNorm(C, eps=eps)
        self.fc1 = nn.Linear(C, I)
        self.fc2 = nn.Linear(I, C)
        self.ls2 = nn.Parameter(torch.full((C,), 0.1))

    def forward(self, x):
        n, N, C = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(n, N, 3, self.NH, C // self.NH).permute(2, 0, 3, 1, 4).unbind(0)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, N, C)
        x = x + self.proj(a) * self.ls1
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x)))) * self.ls2


class InternViT(nn.Module):
    """InternVisionModel + pixel shuffle (v2, 0.5): (n, 3, S, S) -> (n, tokens_per_tile, 4C)"""

    def __init__(self, v):
        super().__init__()
        C, p, G = v["hidden_size"], v["patch_size"], v["image_size"] // v["patch_size"]
        self.patch = nn.Conv2d(3, C, p, stride=p)
        self.cls = nn.Parameter(torch.randn(1, 1, C) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, G * G + 1, C) * 0.02)
        self.layers = nn.ModuleList(VisionLayer(C, v["num_attention_heads"], v["intermediate_size"],
                                                v.get("layer_norm_eps", 1e-6)) for _ in range(v["num_hidden_layers"]))

    def forward(self, pixels):
        x = self.patch(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], 1, -1), x], dim=1) + self.pos
        for layer in self.layers:
            x = layer(x)
        x = x[:, 1:]
        n, N, C = x.shape
        hw = int(math.isqrt(N))
        x = x.reshape(n, hw, hw // 2, C * 2).permute(0, 2, 1, 3).reshape(n, hw // 2, hw // 2, C * 4)
        return x.permute(0, 2, 1, 3).reshape(n, -1, C * 4)


class RewardModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        from transformers import Qwen2Config, Qwen2Model
        v, l = cfg["vision_config"], cfg["llm_config"]
        H, C4 = l["hidden_size"], 4 * v["hidden_size"]
        self.vit = InternViT(v)
        self.mlp1 = nn.Sequential(nn.LayerNorm(C4, eps=1e-5), nn.Linear(C4, H), nn.GELU(), nn.Linear(H, H))
        qc = Qwen2Config(vocab_size=l["vocab_size"], hidden_size=H, intermediate_size=l["intermediate_size"],
                         num_hidden_layers=l["num_hidden_layers"], num_attention_heads=l["num_attention_heads"],
                         num_key_value_heads=l["num_key_value_heads"], rope_theta=l["rope_theta"],
                         rms_norm_eps=l["rms_norm_eps"], max_position_embeddings=l["max_position_embeddings"],
                         attn_implementation="sdpa", use_cache=False)
        self.llm = Qwen2Model(qc)
        self.score = nn.Linear(H, 1, bias=False)
        self.vit.requires_grad_(False)  # frozen, as in the reference recipe

    def vision(self, pixels):
        with torch.no_grad():
            return self.vit(pixels)

    def forward(self, ids, img_mask, features, image_of):
        """ids (B, S); img_mask (B, S) bool, tokens_per_tile x tiles True per row; features
        (n_images, tiles x tokens_per_tile, 4C) of the frozen ViT; image_of (B)"""
        emb = self.llm.embed_tokens(ids)
        img = self.mlp1(features)[image_of].reshape(-1, emb.shape[-1]).to(emb.dtype)
        emb = emb.masked_scatter(img_mask.unsqueeze(-1), img)
        h = self.llm(inputs_embeds=emb, use_cache=False).last_hidden_state
        return self.score(h[:, -1]).squeeze(-1).float()  # every row full length: the last token


def flops(cfg, S):
    l, v = cfg["llm_config"], cfg["vision_config"]
    H, L, NH, KV, I = l["hidden_size"], l["num_hidden_layers"], l["num_attention_heads"], l["num_key_value_heads"], l["intermediate_size"]
    hd = H // NH
    per_token = 2.0 * L * (H * hd * (2.0 * NH + 2.0 * KV) + 3.0 * H * I) + 2.0 * H
    llm_seq = S * per_token + 2.0 * L * NH * hd * S * (S + 1.0)
    C, G = v["hidden_size"], v["image_size"] // v["patch_size"]
    T = G * G + 1.0
    vit_tile = (v["num_hidden_layers"] * (2.0 * T * (4.0 * C * C + 2.0 * C * v["intermediate_size"]) + 4.0 * T * T * C)
                + 2.0 * (T - 1) * C * 3 * v["patch_size"] ** 2 + 2.0 * (G * G // 4) * (4.0 * C * H + H * H))
    return llm_seq, vit_tile


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=os.path.join(HERE, "..", "configs", "model", "internvl2_1b.json"))
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--pairs", type=int, default=8, help="pairs per step")
    ap.add_argument("--text", type=int, default=512, help="text tokens per sequence")
    ap.add_argument("--tiles", type=int, default=1, help="448px tiles per image")
    ap.add_argument("--steps", type=int, default=5, help="timed steps (median)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--objective", default="both", choices=("standard", "shortcut_aware", "both"))
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak for MFU (H100/H200 SXM: 989)")
    ap.add_argument("--tiny", action="store_true", help="configs/model/tiny.json, 2 pairs, 16 text tokens, 1 step")
    a = ap.parse_args()
    import transformers
    for name, mod in (("torch", torch), ("transformers", transformers)):
        if mod.__version__.split("+")[0] != PINNED[name]:
            print("warning: %s %s, tested with %s" % (name, mod.__version__, PINNED[name]), file=sys.stderr)
    if a.tiny:
        a.config = os.path.join(HERE, "..", "configs", "model", "tiny.json")
        a.pairs, a.text, a.steps, a.warmup = 2, 16, 1, 1
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_baseline: no CUDA device visible to torch (--device cpu runs on the CPU)")
    with open(a.config) as f:
        cfg = json.load(f)
    dev = torch.device(a.device)
    v = cfg["vision_config"]
    tpt = (v["image_size"] // v["patch_size"]) ** 2 // 4
    P, B, S = a.pairs, 2 * a.pairs, a.tiles * tpt + a.text
    gen = torch.Generator().manual_seed(17)
    ids = torch.randint(32, 232, (B, S), generator=gen)
    img_mask = torch.zeros(B, S, dtype=torch.bool)
    img_mask[:, :a.tiles * tpt] = True
    ids[img_mask] = cfg["img_context_token_id"] % cfg["llm_config"]["vocab_size"]
    ids, img_mask = ids.to(dev), img_mask.to(dev)
    image_of = torch.arange(B, device=dev) // 2
    pixels = torch.randn(P * a.tiles, 3, v["image_size"], v["image_size"], generator=gen).to(dev)
    blank = torch.ones(a.tiles, 3, v["image_size"], v["image_size"], device=dev)  # one white image
    blank_of = torch.zeros(B, dtype=torch.long, device=dev)
    llm_seq, vit_tile = flops(cfg, S)
    amp = torch.autocast(a.device, dtype=torch.bfloat16)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    print("torch_baseline: %s on %s, torch %s, transformers %s, bf16 autocast"
          % (os.path.basename(a.config), torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
             torch.__version__, transformers.__version__))
    print("shape: %d pairs/step, 2 sequences per pair x (%d image + %d text tokens), %d tile(s) per pair, ViT frozen; "
          "median of %d steps after %d warm-up" % (P, a.tiles * tpt, a.text, a.tiles, a.steps, a.warmup))
    print("%-15s %9s %9s %10s %8s %9s %10s %10s %10s %10s"
          % ("objective", "step ms", "pairs/s", "tokens/s", "MFU", "vision", "dec fwd", "backward", "optimizer", "memory"))
    objectives = ["standard", "shortcut_aware"] if a.objective == "both" else [a.objective]
    for obj in objectives:
        torch.manual_seed(1)
        models = [RewardModel(cfg).to(dev)]
        if obj == "shortcut_aware":
            models.append(RewardModel(cfg).to(dev))
        params = [p for m in models for p in m.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.05,
                                fused=dev.type == "cuda")
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for s in range(a.warmup + a.steps):
            sync()
            t0 = time.perf_counter()
            with amp:
                feats = models[0].vision(pixels.reshape(P, a.tiles, 3, *pixels.shape[-2:]).flatten(0, 1))
                feats = feats.reshape(P, -1, feats.shape[-1])
                if obj == "shortcut_aware":
                    bfeats = models[1].vision(blank).reshape(1, -1, feats.shape[-1])
            sync()
            t1 = time.perf_counter()
            with amp:
                r = models[0](ids, img_mask, feats, image_of)
                lm = F.softplus(-(r[0::2] - r[1::2]))
                if obj == "standard":
                    loss = lm.mean()
                else:
                    rb = models[1](ids, img_mask, bfeats, blank_of)
                    lb = F.softplus(-(rb[0::2] - rb[1::2]))
                    eps = 1e-7
                    w = (eps / 2 + lb / (eps + lb + lm)).detach()
                    loss = (w * lm + lb).mean()
            sync()
            t2 = time.perf_counter()
            loss.backward()
            sync()
            t3 = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            sync()
            t4 = time.perf_counter()
            if not math.isfinite(loss.item()):
                sys.exit("torch_baseline: non-finite loss at step %d" % s)
            if s >= a.warmup:
                times.append((t4 - t0, t1 - t0, t2 - t1, t3 - t2, t4 - t3))
        med = [statistics.median(t[i] for t in times) for i in range(5)]
        trained = 3.0 * B * llm_seq * len(models)
        mfu = "%.1f%%" % (100.0 * trained / med[0] / (a.peak_tflops * 1e12)) if dev.type == "cuda" else "-"
        if dev.type == "cuda":
            mem = torch.cuda.max_memory_allocated() / 2 ** 20
        else:
            mem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
        print("%-15s %9.1f %9.2f %10.0f %8s %9.1f %10.1f %10.1f %10.1f %6.0f MiB"
              % (obj, 1e3 * med[0], P / med[0], B * S / med[0], mfu, 1e3 * med[1], 1e3 * med[2], 1e3 * med[3],
                 1e3 * med[4], mem))
        print("  model FLOPs per step: trained part %.3g TFLOP (%.3g TFLOP/s), frozen ViT forward %.3g TFLOP%s; "
              "memory: %s" % (trained / 1e12, trained / med[0] / 1e12, len(models) * P * a.tiles * vit_tile / 1e12,
                              " (x2: the bias model's ViT on the blank image)" if len(models) > 1 else "",
                              "torch.cuda.max_memory_allocated" if dev.type == "cuda" else "process max RSS"))
        sys.stdout.flush()
        del models, params, opt
        if dev.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
