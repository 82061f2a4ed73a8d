#!/usr/bin/env python3
"""Decoder fixtures from transformers' own modules (tests/fixtures/hf_decoder/<case>/).

model_oracle.py checks mmrm against a PyTorch re-implementation written for this project; this
script checks the decoder against the implementation the published checkpoints run on:
transformers' Qwen2Model and LlamaModel, fp32 on the CPU, eager attention. Each case is a model
directory mmrm loads as it is:

  config.json         a published InternVL2 config (tests/fixtures/hf_configs/) with reduced
                      sizes and every other key kept, so the HF config class reads the same file
  model.safetensors   the decoder's weights under the language_model.model.* names mmrm loads,
                      a score head, and a tiny random ViT + connector (unused by a text batch)
  expected.safetensors input_ids (B, T) I32, lengths (B) I32, hidden (B, T, H) F32: the
                      decoder's last_hidden_state (after the final norm; only rows t < length
                      are defined for mmrm), rewards (B) F32: score . hidden[b, length-1]

Cases:
  qwen2_1b   InternVL2-1B's llm_config shrunk: GQA 4/2, q/k/v biases, rope theta 1e6, eps 1e-6,
             untied lm_head (as the published llm_config has tie_word_embeddings false; mmrm
             ignores it). Oracle: Qwen2Model(Qwen2Config(**llm_config)).
  internlm2_8b InternVL2-8B's llm_config shrunk (InternLM2, eps 1e-5, theta 1e6, rope_scaling
             dynamic 2.0 as published, inactive below max_position_embeddings). The weights are
             stored as InternLM2 stores them (packed attention.wqkv, wo, w1/w3/w2); the oracle
             is LlamaModel(LlamaConfig(**llm_config)) with q/k/v unpacked from wqkv exactly as
             InternLM2's modeling code does (rearrange 'b q (h gs d) -> b q h gs d', gs = 2 +
             groups: the first groups are q heads, then k, then v). InternLM2's remote code is
             not available here; its layer is Llama's with renamed, packed weights.

Pinned: torch==2.4.1 transformers==4.44.2 (pip install into a venv; the CPU-only torch wheel
index is not reachable here, PyPI's torch works on the CPU). Deterministic for the seeds below.
Run from the repository root:  python tests/oracle/gen_hf_decoder_fixtures.py
"""
import copy
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaModel, Qwen2Config, Qwen2Model

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
CONFIGS = os.path.join(ROOT, "tests", "fixtures", "hf_configs")
OUT = os.path.join(ROOT, "tests", "fixtures", "hf_decoder")

PINNED = {"torch": "2.4.1", "transformers": "4.44.2"}

# reduced sizes; every other key of the published config is kept
LLM = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=2, vocab_size=320)
VISION = dict(hidden_size=8, num_attention_heads=2, intermediate_size=16, num_hidden_layers=1,
              image_size=28)
B, T = 3, 9
LENGTHS = [9, 6, 1]  # right padded; the reward is read at length - 1


def check_versions():
    got = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__}
    if got != PINNED:
        sys.exit(f"gen_hf_decoder_fixtures.py: need {PINNED}, have {got}")


def shrunk_config(name):
    with open(os.path.join(CONFIGS, name, "config.json")) as f:
        cfg = json.load(f)
    cfg["llm_config"].update(LLM)
    cfg["vision_config"].update(VISION)
    cfg["force_image_size"] = VISION["image_size"]
    return cfg


def vision_weights(cfg, g):
    """a random ViT + connector under mmrm's names (a text batch never runs them)"""
    v, H = cfg["vision_config"], cfg["llm_config"]["hidden_size"]
    C, I, p = v["hidden_size"], v["intermediate_size"], v["patch_size"]
    G = cfg["force_image_size"] // p
    r = lambda *s: torch.randn(*s, generator=g) * 0.1
    w = {
        "vision_model.embeddings.patch_embedding.weight": r(C, 3, p, p),
        "vision_model.embeddings.patch_embedding.bias": r(C),
        "vision_model.embeddings.class_embedding": r(1, 1, C),
        "vision_model.embeddings.position_embedding": r(1, G * G + 1, C),
        "mlp1.0.weight": 1 + r(4 * C), "mlp1.0.bias": r(4 * C),
        "mlp1.1.weight": r(H, 4 * C), "mlp1.1.bias": r(H),
        "mlp1.3.weight": r(H, H), "mlp1.3.bias": r(H),
    }
    for i in range(v["num_hidden_layers"]):
        pre = f"vision_model.encoder.layers.{i}."
        shapes = {"norm1.weight": (C,), "norm1.bias": (C,), "attn.qkv.weight": (3 * C, C),
                  "attn.qkv.bias": (3 * C,), "attn.proj.weight": (C, C), "attn.proj.bias": (C,),
                  "ls1": (C,), "norm2.weight": (C,), "norm2.bias": (C,),
                  "mlp.fc1.weight": (I, C), "mlp.fc1.bias": (I,), "mlp.fc2.weight": (C, I),
                  "mlp.fc2.bias": (C,), "ls2": (C,)}
        for k, s in shapes.items():
            w[pre + k] = r(*s)
    return w


def randomise(model, g):
    """every parameter random, norms around 1: a zero bias or unit norm would hide a bug"""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))


def batch(vocab, img_context_id, g):
    ids = torch.randint(0, img_context_id, (B, T), generator=g)  # no <IMG_CONTEXT>: text only
    mask = torch.zeros(B, T, dtype=torch.long)
    for b, n in enumerate(LENGTHS):
        mask[b, :n] = 1
        ids[b, n:] = 0  # pad
    return ids, mask


def run(model, ids, mask, score):
    model.eval()
    with torch.no_grad():
        h = model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state  # (B, T, H), final norm
    last = torch.stack([h[b, n - 1] for b, n in enumerate(LENGTHS)])
    return h, (last @ score.T).reshape(B)


def write_case(name, cfg, weights, ids, h, rewards):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    save_file({k: v.contiguous().float() for k, v in weights.items()},
              os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    save_file({"input_ids": ids.to(torch.int32), "lengths": torch.tensor(LENGTHS, dtype=torch.int32),
               "hidden": h.contiguous().float(), "rewards": rewards.contiguous().float()},
              os.path.join(d, "expected.safetensors"))
    print(f"{name}: hidden {tuple(h.shape)}, rewards {rewards.tolist()}")


def eager(config):
    config._attn_implementation = "eager"  # published configs name flash_attention_2
    return config


def qwen2_case():
    g = torch.Generator().manual_seed(20240601)
    cfg = shrunk_config("InternVL2-1B")
    llm = cfg["llm_config"]
    hf = eager(Qwen2Config(**copy.deepcopy(llm)))
    assert hf.tie_word_embeddings is False and hf.rope_theta == 1e6 and hf.num_key_value_heads == 2
    model = Qwen2Model(hf).float()
    randomise(model, g)
    H = llm["hidden_size"]
    score = torch.randn(1, H, generator=g) / (H + 1) ** 0.5 * 4
    w = {"language_model.model." + k: v for k, v in model.state_dict().items()}
    w["language_model.lm_head.weight"] = 0.15 * torch.randn(llm["vocab_size"], H, generator=g)
    w["score.weight"] = score
    w.update(vision_weights(cfg, g))
    ids, mask = batch(llm["vocab_size"], 262, g)
    h, rewards = run(model, ids, mask, score)
    write_case("qwen2_1b", cfg, w, ids, h, rewards)


def internlm2_case():
    g = torch.Generator().manual_seed(20240602)
    cfg = shrunk_config("InternVL2-8B")
    llm = cfg["llm_config"]
    hf = eager(LlamaConfig(**copy.deepcopy(llm)))
    assert hf.rope_theta == 1e6 and hf.rms_norm_eps == 1e-5 and not hf.attention_bias
    model = LlamaModel(hf).float()
    randomise(model, g)
    H, NH, KV = llm["hidden_size"], llm["num_attention_heads"], llm["num_key_value_heads"]
    hd, gs = H // NH, NH // KV
    sd = model.state_dict()
    w = {"language_model.model.tok_embeddings.weight": sd["embed_tokens.weight"],
         "language_model.model.norm.weight": sd["norm.weight"],
         "language_model.output.weight": 0.15 * torch.randn(llm["vocab_size"], H, generator=g)}
    for i in range(llm["num_hidden_layers"]):
        src, dst = f"layers.{i}.", f"language_model.model.layers.{i}."
        wqkv = 0.15 * torch.randn((NH + 2 * KV) * hd, H, generator=g)
        # InternLM2Attention.forward: qkv (b q (h gs d)) -> (b q h gs d), gs = 2 + groups;
        # q = [..., :groups, :] -> (h gs) heads, k = [..., -2, :], v = [..., -1, :]. As a
        # weight: rows (h gs d) viewed (KV, gs + 2, hd, H).
        blocks = wqkv.view(KV, gs + 2, hd, H)
        attn = model.layers[i].self_attn
        with torch.no_grad():
            attn.q_proj.weight.copy_(blocks[:, :gs].reshape(NH * hd, H))
            attn.k_proj.weight.copy_(blocks[:, -2].reshape(KV * hd, H))
            attn.v_proj.weight.copy_(blocks[:, -1].reshape(KV * hd, H))
        w[dst + "attention.wqkv.weight"] = wqkv
        w[dst + "attention.wo.weight"] = sd[src + "self_attn.o_proj.weight"]
        w[dst + "attention_norm.weight"] = sd[src + "input_layernorm.weight"]
        w[dst + "ffn_norm.weight"] = sd[src + "post_attention_layernorm.weight"]
        w[dst + "feed_forward.w1.weight"] = sd[src + "mlp.gate_proj.weight"]
        w[dst + "feed_forward.w3.weight"] = sd[src + "mlp.up_proj.weight"]
        w[dst + "feed_forward.w2.weight"] = sd[src + "mlp.down_proj.weight"]
    score = torch.randn(1, H, generator=g) / (H + 1) ** 0.5 * 4
    w["score.weight"] = score
    w.update(vision_weights(cfg, g))
    ids, mask = batch(llm["vocab_size"], 262, g)
    h, rewards = run(model, ids, mask, score)
    write_case("internlm2_8b", cfg, w, ids, h, rewards)


if __name__ == "__main__":
    check_versions()
    torch.manual_seed(0)
    qwen2_case()
    internlm2_case()
