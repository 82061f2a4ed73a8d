#!/usr/bin/env python3
"""model_oracle.py - an independent float64 PyTorch reference of the InternVL2-style reward model
(spec/model.md) and the generator of the fixtures in tests/fixtures/model/ that the C model is
tested against. Python is the tests' oracle only, never part of the product.

Run from the repository root with Debian's python3-torch (1.13; no transformers needed):

    /usr/bin/python3 tests/oracle/model_oracle.py --out tests/fixtures/model

Every module is written here in plain torch, following HF transformers' Qwen2 / Llama,
InternLM2's remote code and InternVL's InternViT / InternVLChatModel code line by line where
it matters (the pixel shuffle's view/permute sequence, the packed wqkv rearrange, the
`input_embeds[selected] * 0.0 + vit_embeds` splice). The float32 weights are converted to
float64 before the forward, so the stored rewards and gradients are exact references (stored
as float32). Before writing, the script checks itself: autograd against central finite
differences and torch.autograd.gradcheck, the packed wqkv and pixel shuffle against the
spec's formulas, padding invariance, and a safetensors write/read round trip.
tests/oracle/README.md describes the files and conventions.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

# byte-level tokenizer vocabulary (models/tokenizer.h): ids 0..255 are bytes
BOS, EOS, IM_START, IM_END, IMG_START, IMG_END, IMG_CONTEXT, PAD = 256, 257, 258, 259, 260, 261, 262, 269
VOCAB = 270
MLP1_LN_EPS = 1e-5  # nn.LayerNorm default in InternVL's mlp1
SEED = 20240611

CASES = [
    dict(name="qwen2_gqa", seed=SEED + 1,
         vision=dict(hidden=16, heads=2, intermediate=32, layers=2, image_size=28, patch=7,
                     qkv_bias=True, qk_norm=False, norm_type="layer_norm", eps=1e-6),
         force_image_size=28, select_layer=-1, template="Hermes-2",
         llm=dict(arch="Qwen2ForCausalLM", hidden=24, heads=4, kv_heads=2, intermediate=40,
                  layers=2, rope_theta=1e6, rms_eps=1e-6, max_pos=32768),
         tiles=[1, 1, 2, 2], lengths=[20, 17, 19, 16]),
    dict(name="internlm2_qknorm", seed=SEED + 2,
         vision=dict(hidden=16, heads=2, intermediate=32, layers=2, image_size=28, patch=7,
                     qkv_bias=False, qk_norm=True, norm_type="rms_norm", eps=1e-6),
         force_image_size=28, select_layer=-2, template="internlm2-chat",
         llm=dict(arch="InternLM2ForCausalLM", hidden=32, heads=4, kv_heads=2, intermediate=40,
                  layers=2, rope_theta=1e6, rms_eps=1e-5, max_pos=32768),
         tiles=[2, 2, 1, 1], lengths=[22, 19, 14, 18]),
    dict(name="llama_resized_pos", seed=SEED + 3,
         vision=dict(hidden=16, heads=2, intermediate=32, layers=2, image_size=28, patch=7,
                     qkv_bias=True, qk_norm=False, norm_type="layer_norm", eps=1e-6),
         force_image_size=42, select_layer=-1, template="Hermes-2",
         llm=dict(arch="LlamaForCausalLM", hidden=24, heads=3, kv_heads=3, intermediate=36,
                  layers=2, rope_theta=5e5, rms_eps=1e-5, max_pos=8192),
         tiles=[1, 1, 1, 1], lengths=[24, 21, 19, 23]),
]


# ---- safetensors: 8-byte LE header length, JSON header padded with spaces to 8, raw LE data
DTYPES = {"F32": np.dtype("<f4"), "I32": np.dtype("<i4")}


def safetensors_bytes(tensors):
    """tensors: {name: np.ndarray of float32 or int32}; data laid out in sorted-name order"""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = tensors[name]
        dt = "F32" if a.dtype == np.float32 else "I32" if a.dtype == np.int32 else None
        if dt is None:
            raise ValueError("%s: dtype %s is neither float32 nor int32" % (name, a.dtype))
        raw = np.ascontiguousarray(a, dtype=DTYPES[dt]).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def safetensors_read(data):
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode())
    base, out = 8 + n, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[base + b:base + e], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


# ---- parameters: exact HF names (spec/model.md), shapes and the init family of each
def param_specs(case):
    """[(name, shape, kind)] in a fixed order; kind picks the random init"""
    v, l = case["vision"], case["llm"]
    C, p, I = v["hidden"], v["patch"], v["intermediate"]
    Gc = v["image_size"] // p
    H, hd = l["hidden"], l["hidden"] // l["heads"]
    nh, kv, IL = l["heads"], l["kv_heads"], l["intermediate"]
    s = [("vision_model.embeddings.class_embedding", [1, 1, C], "mat"),
         ("vision_model.embeddings.patch_embedding.weight", [C, 3, p, p], "conv"),
         ("vision_model.embeddings.patch_embedding.bias", [C], "bias"),
         ("vision_model.embeddings.position_embedding", [1, Gc * Gc + 1, C], "mat")]
    for i in range(v["layers"]):
        pre = "vision_model.encoder.layers.%d." % i
        s += [(pre + "attn.qkv.weight", [3 * C, C], "mat")]
        if v["qkv_bias"]:
            s += [(pre + "attn.qkv.bias", [3 * C], "bias")]
        if v["qk_norm"]:
            s += [(pre + "attn.q_norm.weight", [C], "norm"), (pre + "attn.k_norm.weight", [C], "norm")]
        s += [(pre + "attn.proj.weight", [C, C], "mat"), (pre + "attn.proj.bias", [C], "bias"),
              (pre + "mlp.fc1.weight", [I, C], "mat"), (pre + "mlp.fc1.bias", [I], "bias"),
              (pre + "mlp.fc2.weight", [C, I], "mat"), (pre + "mlp.fc2.bias", [C], "bias")]
        for n in ("norm1", "norm2"):
            s += [(pre + n + ".weight", [C], "norm")]
            if v["norm_type"] == "layer_norm":
                s += [(pre + n + ".bias", [C], "bias")]
        s += [(pre + "ls1", [C], "ls"), (pre + "ls2", [C], "ls")]
    s += [("mlp1.0.weight", [4 * C], "norm"), ("mlp1.0.bias", [4 * C], "bias"),
          ("mlp1.1.weight", [H, 4 * C], "mat"), ("mlp1.1.bias", [H], "bias"),
          ("mlp1.3.weight", [H, H], "mat"), ("mlp1.3.bias", [H], "bias")]
    m = "language_model.model."
    if l["arch"] == "InternLM2ForCausalLM":
        s += [(m + "tok_embeddings.weight", [VOCAB, H], "mat")]
        for i in range(l["layers"]):
            pre = m + "layers.%d." % i
            s += [(pre + "attention_norm.weight", [H], "norm"),
                  (pre + "attention.wqkv.weight", [(nh + 2 * kv) * hd, H], "mat"),
                  (pre + "attention.wo.weight", [H, nh * hd], "mat"),
                  (pre + "ffn_norm.weight", [H], "norm"),
                  (pre + "feed_forward.w1.weight", [IL, H], "mat"),
                  (pre + "feed_forward.w3.weight", [IL, H], "mat"),
                  (pre + "feed_forward.w2.weight", [H, IL], "mat")]
        s += [(m + "norm.weight", [H], "norm"), ("language_model.output.weight", [VOCAB, H], "extra")]
    else:
        bias = l["arch"] == "Qwen2ForCausalLM"
        s += [(m + "embed_tokens.weight", [VOCAB, H], "mat")]
        for i in range(l["layers"]):
            pre = m + "layers.%d." % i
            s += [(pre + "input_layernorm.weight", [H], "norm")]
            for n, rows in (("q", nh * hd), ("k", kv * hd), ("v", kv * hd)):
                s += [(pre + "self_attn.%s_proj.weight" % n, [rows, H], "mat")]
                if bias:
                    s += [(pre + "self_attn.%s_proj.bias" % n, [rows], "bias")]
            s += [(pre + "self_attn.o_proj.weight", [H, nh * hd], "mat"),
                  (pre + "post_attention_layernorm.weight", [H], "norm"),
                  (pre + "mlp.gate_proj.weight", [IL, H], "mat"),
                  (pre + "mlp.up_proj.weight", [IL, H], "mat"),
                  (pre + "mlp.down_proj.weight", [H, IL], "mat")]
        s += [(m + "norm.weight", [H], "norm"), ("language_model.lm_head.weight", [VOCAB, H], "extra")]
    s += [("score.weight", [1, H], "score")]
    return s


def init_params(case, gen):
    """float32 weights; activations stay O(1) at these tiny sizes"""
    out = {}
    for name, shape, kind in param_specs(case):
        z = torch.randn(shape, generator=gen, dtype=torch.float32)
        if kind in ("mat", "extra"):
            w = 0.2 * z
        elif kind == "conv":  # fan-in 3*p*p = 147: smaller, so patch features are O(1)
            w = 0.05 * z
        elif kind == "norm":
            w = 1 + 0.1 * z
        elif kind == "bias":
            w = 0.1 * z
        elif kind == "ls":
            w = 0.5 + 0.1 * z
        else:
            w = 0.5 * z
        out[name] = w.contiguous()
    return out


def resize_pos_embed(pos, old_size, new_size, patch):
    """InternViT.resize_pos_embeddings: bicubic (A = -0.75, align_corners False) in fp32; CLS kept"""
    _, _, C = pos.shape
    cls = pos[:, :1, :]
    g_old, g_new = old_size // patch, new_size // patch
    grid = pos[:, 1:, :].reshape(1, g_old, g_old, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=g_new, mode="bicubic", align_corners=False)
    grid = grid.to(cls.dtype).reshape(1, C, -1).permute(0, 2, 1)
    return torch.cat([cls, grid], dim=1).contiguous()


# ---- the network
def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def linear(x, w, b=None):
    y = x @ w.t()
    return y if b is None else y + b


def vit_norm(x, P, pre, v):
    if v["norm_type"] == "layer_norm":
        return F.layer_norm(x, (x.shape[-1],), P[pre + ".weight"], P[pre + ".bias"], v["eps"])
    return rms_norm(x, P[pre + ".weight"], v["eps"])


def vit_attention(x, P, pre, v):
    """InternAttention._naive_attn"""
    n, N, C = x.shape
    nh = v["heads"]
    d = C // nh
    qkv = linear(x, P[pre + "qkv.weight"], P.get(pre + "qkv.bias"))
    qkv = qkv.reshape(n, N, 3, nh, d).permute(2, 0, 3, 1, 4)
    q, k, vv = qkv.unbind(0)
    if v["qk_norm"]:  # RMSNorm over the full C before the head split
        q = rms_norm(q.transpose(1, 2).flatten(-2, -1), P[pre + "q_norm.weight"], v["eps"])
        q = q.view(n, N, nh, d).transpose(1, 2)
        k = rms_norm(k.transpose(1, 2).flatten(-2, -1), P[pre + "k_norm.weight"], v["eps"])
        k = k.view(n, N, nh, d).transpose(1, 2)
    attn = ((q * d ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
    out = (attn @ vv).transpose(1, 2).reshape(n, N, C)
    return linear(out, P[pre + "proj.weight"], P[pre + "proj.bias"])


def vit_forward(P, v, pixels):
    """all L+1 hidden states of InternVisionModel (embedding output first), CLS included.
    P's position embedding already has the run's grid (resized at load time); InternViT's
    per-forward _get_pos_embed is then a bicubic resize to the same size, the identity."""
    pre = "vision_model.embeddings."
    x = F.conv2d(pixels, P[pre + "patch_embedding.weight"], P[pre + "patch_embedding.bias"],
                 stride=v["patch"])
    n = x.shape[0]
    x = x.flatten(2).transpose(1, 2)  # patch index y*G + x
    cls = P[pre + "class_embedding"].expand(n, 1, -1)
    x = torch.cat([cls, x], dim=1) + P[pre + "position_embedding"]
    states = [x]
    for i in range(v["layers"]):
        lp = "vision_model.encoder.layers.%d." % i
        x = x + vit_attention(vit_norm(x, P, lp + "norm1", v), P, lp + "attn.", v) * P[lp + "ls1"]
        h = linear(vit_norm(x, P, lp + "norm2", v), P[lp + "mlp.fc1.weight"], P[lp + "mlp.fc1.bias"])
        h = linear(F.gelu(h), P[lp + "mlp.fc2.weight"], P[lp + "mlp.fc2.bias"])
        x = x + h * P[lp + "ls2"]
        states.append(x)
    return states


def pixel_shuffle(x, scale_factor=0.5):
    """InternVLChatModel.pixel_shuffle, ps_version v2"""
    n, w, h, c = x.size()
    x = x.view(n, w, int(h * scale_factor), int(c / scale_factor))
    x = x.permute(0, 2, 1, 3).contiguous()
    x = x.view(n, int(h * scale_factor), int(w * scale_factor), int(c / (scale_factor * scale_factor)))
    return x.permute(0, 2, 1, 3).contiguous()


def extract_feature(P, case, pixels):
    """InternVLChatModel.extract_feature: (vision features [n, G*G, C], image embeds [n, k, H])"""
    states = vit_forward(P, case["vision"], pixels)
    vit = states[case["select_layer"]][:, 1:, :]
    feats = vit
    hw = int(vit.shape[1] ** 0.5)
    vit = vit.reshape(vit.shape[0], hw, hw, -1)
    vit = pixel_shuffle(vit, 0.5)
    vit = vit.reshape(vit.shape[0], -1, vit.shape[-1])
    vit = F.layer_norm(vit, (vit.shape[-1],), P["mlp1.0.weight"], P["mlp1.0.bias"], MLP1_LN_EPS)
    vit = F.gelu(linear(vit, P["mlp1.1.weight"], P["mlp1.1.bias"]))
    vit = linear(vit, P["mlp1.3.weight"], P["mlp1.3.bias"])
    return feats, vit


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def llm_layer_qkv(x, P, pre, l):
    """q [B,nh,T,hd], k and v [B,kv,T,hd]"""
    B, T, H = x.shape
    nh, kv = l["heads"], l["kv_heads"]
    hd = H // nh
    if l["arch"] == "InternLM2ForCausalLM":
        # rearrange 'b q (h gs d) -> b q h gs d', gs = 2 + groups: packed by kv group
        g = nh // kv
        qkv = linear(x, P[pre + "attention.wqkv.weight"]).view(B, T, kv, g + 2, hd)
        q = qkv[..., :g, :].reshape(B, T, nh, hd)
        k, v = qkv[..., -2, :], qkv[..., -1, :]
    else:
        a = pre + "self_attn."
        q = linear(x, P[a + "q_proj.weight"], P.get(a + "q_proj.bias")).view(B, T, nh, hd)
        k = linear(x, P[a + "k_proj.weight"], P.get(a + "k_proj.bias")).view(B, T, kv, hd)
        v = linear(x, P[a + "v_proj.weight"], P.get(a + "v_proj.bias")).view(B, T, kv, hd)
    return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)


def llm_forward(P, l, embeds, lengths):
    """decoder over [B,T,H] embeddings; returns the final hidden states after the final norm"""
    B, T, H = embeds.shape
    nh, kv = l["heads"], l["kv_heads"]
    hd = H // nh
    il = l["arch"] == "InternLM2ForCausalLM"
    names = (("attention_norm", "ffn_norm", "attention.wo", "feed_forward.w1", "feed_forward.w3",
              "feed_forward.w2") if il else
             ("input_layernorm", "post_attention_layernorm", "self_attn.o_proj", "mlp.gate_proj",
              "mlp.up_proj", "mlp.down_proj"))
    inv_freq = 1.0 / (l["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(embeds.dtype), emb.sin().to(embeds.dtype)
    pos = torch.arange(T)
    # causal + key padding (HF's 4D mask): query t sees keys s <= t with s < lengths[b]
    allowed = (pos[None, :] <= pos[:, None])[None] & (pos[None, None, :] < lengths[:, None, None])
    bias = torch.zeros(B, 1, T, T, dtype=embeds.dtype).masked_fill(~allowed[:, None], float("-inf"))
    x = embeds
    for i in range(l["layers"]):
        pre = "language_model.model.layers.%d." % i
        h = rms_norm(x, P[pre + names[0] + ".weight"], l["rms_eps"])
        q, k, v = llm_layer_qkv(h, P, pre, l)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(nh // kv, dim=1)  # repeat_kv: query head j uses kv head j // g
        v = v.repeat_interleave(nh // kv, dim=1)
        att = ((q @ k.transpose(-2, -1)) / hd ** 0.5 + bias).softmax(dim=-1)
        o = (att @ v).transpose(1, 2).reshape(B, T, nh * hd)
        x = x + linear(o, P[pre + names[2] + ".weight"])
        h = rms_norm(x, P[pre + names[1] + ".weight"], l["rms_eps"])
        gate = linear(h, P[pre + names[3] + ".weight"])
        up = linear(h, P[pre + names[4] + ".weight"])
        x = x + linear(F.silu(gate) * up, P[pre + names[5] + ".weight"])
    return rms_norm(x, P["language_model.model.norm.weight"], l["rms_eps"])


def reward_forward(P, case, batch):
    """(rewards [B], activations) of InternVLChatModel + score head"""
    l = case["llm"]
    ids, lengths = batch["input_ids"], batch["lengths"]
    B, T = ids.shape
    table = P["language_model.model.tok_embeddings.weight" if l["arch"] == "InternLM2ForCausalLM"
              else "language_model.model.embed_tokens.weight"]
    embeds = table[ids]
    feats, vit = extract_feature(P, case, batch["pixel_values"])
    H = embeds.shape[-1]
    flat = embeds.reshape(B * T, H)
    selected = ids.reshape(B * T) == IMG_CONTEXT
    if int(selected.sum()) != vit.shape[0] * vit.shape[1]:
        raise ValueError("%d IMG_CONTEXT tokens for %d image embeddings" % (int(selected.sum()), vit.shape[0] * vit.shape[1]))
    flat = flat.clone()
    flat[selected] = flat[selected] * 0.0 + vit.reshape(-1, H)
    hidden = llm_forward(P, l, flat.reshape(B, T, H), lengths)
    scores = linear(hidden, P["score.weight"]).squeeze(-1)  # [B, T]
    rewards = scores[torch.arange(B), lengths - 1]
    return rewards, dict(vision_features=feats, image_embeds=vit, final_hidden=hidden)


def bt_loss(rewards):
    """Bradley-Terry: rows 2i chosen, 2i+1 rejected"""
    return F.softplus(-(rewards[0::2] - rewards[1::2])).mean()


# ---- batches
def make_batch(case, gen):
    v = case["vision"]
    S = case["force_image_size"]
    G = S // v["patch"]
    k = (G // 2) ** 2  # image tokens per tile at downsample ratio 0.5
    tiles, lengths = case["tiles"], case["lengths"]
    B, T = len(tiles), max(lengths)
    assert B % 2 == 0 and all(tiles[2 * i] == tiles[2 * i + 1] for i in range(B // 2))
    head = [BOS, IM_START] if case["template"] == "internlm2-chat" else [IM_START]
    ids = torch.full((B, T), PAD, dtype=torch.int64)
    pixels = []
    for i in range(B // 2):
        img = torch.randn(tiles[2 * i], 3, S, S, generator=gen, dtype=torch.float32)
        n1 = int(torch.randint(2, 5, (1,), generator=gen))
        prompt = torch.randint(0, 256, (n1,), generator=gen).tolist()
        for b in (2 * i, 2 * i + 1):  # chosen and rejected share the prompt and the image
            pixels.append(img)
            seq = head + prompt + [IMG_START] + [IMG_CONTEXT] * (k * tiles[b]) + [IMG_END]
            n2 = lengths[b] - len(seq) - 1
            assert n2 >= 1, "%s: sequence %d is too short for its image" % (case["name"], b)
            seq += torch.randint(0, 256, (n2,), generator=gen).tolist() + [IM_END]
            ids[b, :len(seq)] = torch.tensor(seq)
    return dict(pixel_values=torch.cat(pixels), tiles_per_sample=torch.tensor(tiles),
                input_ids=ids, lengths=torch.tensor(lengths))


# ---- self-checks
def objectives(P, case, batch):
    r, _ = reward_forward(P, case, batch)
    return r.sum(), bt_loss(r)


def check_finite_differences(P, case, batch, grads, bt_grads, gen):
    """central differences in float64 on the largest-gradient entry and a random entry of
    a spread of parameters, for both sum(rewards) and the BT loss"""
    eps, worst = 1e-6, 0.0
    names = [n for n in P if n.startswith(("vision_model.embeddings.", "vision_model.encoder.layers.0.",
                                           "mlp1.", "language_model.model.layers.1.", "score."))
             or n.endswith(("embed_tokens.weight", "tok_embeddings.weight", "model.norm.weight"))]
    with torch.no_grad():
        for n in names:
            g = grads[n].reshape(-1)
            picks = {int(g.abs().argmax()), int(torch.randint(0, g.numel(), (1,), generator=gen))}
            for j in picks:
                flat = P[n].view(-1)
                old = float(flat[j])
                flat[j] = old + eps
                sp, bp = objectives(P, case, batch)
                flat[j] = old - eps
                sm, bm = objectives(P, case, batch)
                flat[j] = old
                for fd, ad in (((sp - sm) / (2 * eps), g[j]), ((bp - bm) / (2 * eps), bt_grads[n].reshape(-1)[j])):
                    err = abs(float(fd) - float(ad)) / max(1.0, abs(float(ad)))
                    worst = max(worst, err)
                    if err > 1e-6:
                        raise AssertionError("%s: %s[%d]: autograd %.10g vs finite difference %.10g"
                                             % (case["name"], n, j, float(ad), float(fd)))
    return len(names), worst


def check_gradcheck(P, case, batch):
    """torch.autograd.gradcheck over a few small tensors at once (full Jacobian of rewards)"""
    v = case["vision"]
    names = ["vision_model.encoder.layers.0.ls1", "mlp1.3.bias", "language_model.model.norm.weight",
             "score.weight"]
    if v["qk_norm"]:
        names.append("vision_model.encoder.layers.0.attn.k_norm.weight")
    base = {n: t.detach() for n, t in P.items()}

    def f(*xs):
        Q = dict(base)
        Q.update(zip(names, xs))
        r, _ = reward_forward(Q, case, batch)
        return r, bt_loss(r)

    xs = tuple(base[n].clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(f, xs, eps=1e-6, atol=1e-7, rtol=1e-6)


def check_layouts(P, case, gen):
    """the code's reshapes against the spec's formulas"""
    l = case["llm"]
    # pixel shuffle v2: token a*(G/2)+b = [P(2a,2b), P(2a,2b+1), P(2a+1,2b), P(2a+1,2b+1)]
    G, C = 6, 5
    x = torch.randn(2, G, G, C, generator=gen, dtype=torch.float64)
    y = pixel_shuffle(x).reshape(2, -1, 4 * C)
    for a in range(G // 2):
        for b in range(G // 2):
            want = torch.cat([x[:, 2 * a, 2 * b], x[:, 2 * a, 2 * b + 1], x[:, 2 * a + 1, 2 * b], x[:, 2 * a + 1, 2 * b + 1]], -1)
            assert torch.equal(y[:, a * (G // 2) + b], want)
    # the bicubic resize at the native grid is the identity (cubic weights 0, 1, 0, 0)
    v = case["vision"]
    pos = P["vision_model.embeddings.position_embedding"].float()
    g = int((pos.shape[1] - 1) ** 0.5) * v["patch"]
    assert torch.equal(resize_pos_embed(pos, g, g, v["patch"]), pos)
    if l["arch"] == "InternLM2ForCausalLM":
        # wqkv packed by kv group: block k holds q heads k*g..k*g+g-1, then k_k, then v_k
        nh, kv = l["heads"], l["kv_heads"]
        hd, g = l["hidden"] // nh, nh // kv
        W = P["language_model.model.layers.0.attention.wqkv.weight"]
        rows = lambda blk, j: W[(blk * (g + 2) + j) * hd:(blk * (g + 2) + j + 1) * hd]
        Wq = torch.cat([rows(h // g, h % g) for h in range(nh)])
        Wk = torch.cat([rows(blk, g) for blk in range(kv)])
        Wv = torch.cat([rows(blk, g + 1) for blk in range(kv)])
        x = torch.randn(1, 3, l["hidden"], generator=gen, dtype=torch.float64)
        q, k, v = llm_layer_qkv(x, P, "language_model.model.layers.0.", l)
        assert torch.allclose(q.transpose(1, 2).reshape(1, 3, -1), x @ Wq.t(), rtol=0, atol=1e-12)
        assert torch.allclose(k.transpose(1, 2).reshape(1, 3, -1), x @ Wk.t(), rtol=0, atol=1e-12)
        assert torch.allclose(v.transpose(1, 2).reshape(1, 3, -1), x @ Wv.t(), rtol=0, atol=1e-12)


def check_padding_invariance(P, case, batch, rewards):
    """what stands after lengths[b] (pad ids, or any other id) cannot move a reward"""
    ids = batch["input_ids"].clone()
    pads = torch.arange(ids.shape[1])[None, :] >= batch["lengths"][:, None]
    ids[pads] = 65
    with torch.no_grad():
        r, _ = reward_forward(P, case, dict(batch, input_ids=ids))
    assert torch.allclose(r, rewards, rtol=0, atol=1e-12), "padding changed a reward"


def check_safetensors_roundtrip(tensors):
    data = safetensors_bytes(tensors)
    back = safetensors_read(data)
    assert sorted(back) == sorted(tensors)
    for n, a in tensors.items():
        assert back[n].dtype == a.dtype and back[n].shape == a.shape and np.array_equal(back[n], a), n
    (hlen,) = struct.unpack("<Q", data[:8])
    assert hlen % 8 == 0
    return data


def float32_drift(P32, case, batch32, rewards, grads, bt_grads):
    """how far the same network run in float32 lands from the float64 references: a guide for
    the C tests' tolerances (max |reward error|; max over tensors of max |gradient error|
    relative to that tensor's largest gradient)"""
    P = {n: t.clone().requires_grad_(True) for n, t in P32.items()}
    r, _ = reward_forward(P, case, batch32)
    gs = torch.autograd.grad(r.sum(), list(P.values()), retain_graph=True, allow_unused=True)
    bs = torch.autograd.grad(bt_loss(r), list(P.values()), allow_unused=True)
    worst = 0.0
    for n, g, b in zip(P, gs, bs):
        for got, want in ((g, grads[n]), (b, bt_grads[n])):
            if got is not None and float(want.abs().max()) > 0:
                worst = max(worst, float((got.double() - want).abs().max() / want.abs().max()))
    return float((r.detach().double() - rewards).abs().max()), worst


# ---- one case
def hf_config(case):
    v, l = case["vision"], case["llm"]
    model_type = {"Qwen2ForCausalLM": "qwen2", "InternLM2ForCausalLM": "internlm2",
                  "LlamaForCausalLM": "llama"}[l["arch"]]
    llm = {"architectures": [l["arch"]], "model_type": model_type, "hidden_size": l["hidden"],
           "num_attention_heads": l["heads"], "num_key_value_heads": l["kv_heads"],
           "intermediate_size": l["intermediate"], "num_hidden_layers": l["layers"],
           "vocab_size": VOCAB, "rope_theta": l["rope_theta"], "rms_norm_eps": l["rms_eps"],
           "max_position_embeddings": l["max_pos"], "hidden_act": "silu", "tie_word_embeddings": False}
    if l["arch"] == "InternLM2ForCausalLM":
        llm.update({"bias": False, "rope_scaling": {"type": "dynamic", "factor": 2.0}})
    if l["arch"] == "LlamaForCausalLM":
        llm["attention_bias"] = False
    return {"architectures": ["InternVLChatModel"], "model_type": "internvl_chat",
            "downsample_ratio": 0.5, "ps_version": "v2", "select_layer": case["select_layer"],
            "force_image_size": case["force_image_size"], "template": case["template"],
            "img_context_token_id": IMG_CONTEXT, "dynamic_image_size": True, "use_thumbnail": True,
            "min_dynamic_patch": 1, "max_dynamic_patch": 6, "torch_dtype": "float32",
            "vision_config": {"architectures": ["InternVisionModel"], "model_type": "intern_vit_6b",
                              "hidden_size": v["hidden"], "num_attention_heads": v["heads"],
                              "intermediate_size": v["intermediate"], "num_hidden_layers": v["layers"],
                              "image_size": v["image_size"], "patch_size": v["patch"],
                              "qkv_bias": v["qkv_bias"], "qk_normalization": v["qk_norm"],
                              "norm_type": v["norm_type"], "layer_norm_eps": v["eps"],
                              "hidden_act": "gelu", "drop_path_rate": 0.0, "num_channels": 3},
            "llm_config": llm}


def f32(t):
    return t.detach().to(torch.float32).contiguous().numpy()


def run_case(case, out_dir):
    gen = torch.Generator().manual_seed(case["seed"])
    w32 = init_params(case, gen)
    batch32 = make_batch(case, gen)
    v = case["vision"]
    extra = [n for n, _, kind in param_specs(case) if kind == "extra"]

    resized = None
    live32 = {n: t for n, t in w32.items() if n not in extra}
    if case["force_image_size"] != v["image_size"]:
        name = "vision_model.embeddings.position_embedding"
        resized = resize_pos_embed(w32[name], v["image_size"], case["force_image_size"], v["patch"])
        live32[name] = resized

    P = {n: t.to(torch.float64).requires_grad_(True) for n, t in live32.items()}
    batch = dict(batch32, pixel_values=batch32["pixel_values"].to(torch.float64))
    rewards, acts = reward_forward(P, case, batch)
    loss = bt_loss(rewards)

    def grad_of(y, retain):  # a ViT layer past select_layer is unused: its gradient is zero
        gs = torch.autograd.grad(y, list(P.values()), retain_graph=retain, allow_unused=True)
        return {n: torch.zeros_like(t) if g is None else g for (n, t), g in zip(P.items(), gs)}

    grads = grad_of(rewards.sum(), True)
    bt_grads = grad_of(loss, False)

    # properties the C tests lean on
    table = [n for n in P if n.endswith(("embed_tokens.weight", "tok_embeddings.weight"))][0]
    assert torch.all(grads[table][IMG_CONTEXT] == 0) and torch.all(grads[table][PAD] == 0)
    sel = case["select_layer"]
    if sel != -1:
        for i in range(v["layers"] + 1 + sel, v["layers"]):
            for n in P:
                if n.startswith("vision_model.encoder.layers.%d." % i):
                    assert torch.all(grads[n] == 0), "%s: unused layer %d has a gradient" % (n, i)
    with torch.no_grad():
        Pd = {n: t.detach().clone() for n, t in P.items()}
    n_fd, worst = check_finite_differences(Pd, case, batch, grads, bt_grads, gen)
    check_gradcheck(Pd, case, batch)
    check_layouts(Pd, case, gen)
    check_padding_invariance(Pd, case, batch, rewards.detach())

    fp32 = float32_drift(live32, case, batch32, rewards.detach(), grads, bt_grads)

    model = {n: t.numpy() for n, t in w32.items()}
    out = {"pixel_values": batch32["pixel_values"].numpy(),
           "tiles_per_sample": batch32["tiles_per_sample"].to(torch.int32).numpy(),
           "input_ids": batch32["input_ids"].to(torch.int32).numpy(),
           "lengths": batch32["lengths"].to(torch.int32).numpy(),
           "rewards": f32(rewards), "bt_loss": f32(loss.reshape(1))}
    for n in P:
        out["grad." + n] = f32(grads[n])
        out["bt_grad." + n] = f32(bt_grads[n])
    for n, a in acts.items():
        out["act." + n] = f32(a)
    if resized is not None:
        out["resized.vision_model.embeddings.position_embedding"] = resized.numpy()

    d = os.path.join(out_dir, case["name"])
    os.makedirs(d, exist_ok=True)
    files = {"config.json": (json.dumps(hf_config(case), indent=2) + "\n").encode(),
             "model.safetensors": check_safetensors_roundtrip(model),
             "batch.safetensors": check_safetensors_roundtrip(out)}
    for fname, data in files.items():
        with open(os.path.join(d, fname), "wb") as fh:
            fh.write(data)
    r = ", ".join("%.5f" % x for x in rewards.tolist())
    print("%-18s rewards [%s] | bt_loss %.5f | finite differences on %d tensors, worst rel err %.1e | "
          "float32 drift: rewards %.1e, gradients %.1e | %s"
          % (case["name"], r, float(loss), n_fd, worst, fp32[0], fp32[1],
             " ".join("%s %.0f KB" % (f, len(b) / 1024) for f, b in files.items())))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join("tests", "fixtures", "model"),
                    help="directory that receives one folder per case")
    ap.add_argument("--case", action="append", help="only this case (repeatable)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # one reduction order, so reruns give identical bytes
    wanted = [c for c in CASES if not args.case or c["name"] in args.case]
    if not wanted:
        sys.exit("model_oracle: no case named %s; valid: %s" % (args.case, ", ".join(c["name"] for c in CASES)))
    for case in wanted:
        run_case(case, args.out)


if __name__ == "__main__":
    main()
