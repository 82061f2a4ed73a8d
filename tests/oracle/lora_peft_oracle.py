#!/usr/bin/env python3
"""LoRA oracle: the real peft package against mmrm's adapters (models/lora.h).

The base is the committed transformers fixture tests/fixtures/hf_decoder/qwen2_1b (a Qwen2
decoder under language_model.model.*, a score head, a tiny unused ViT). The reference model is
transformers' Qwen2ForCausalLM under an attribute named language_model plus a bias-free score
linear on the last token's final hidden state, so that get_peft_model names every module as it
names InternVLChatModel's: base_model.model.language_model.model.layers.N.self_attn.q_proj...
and base_model.model.score (modules_to_save). fp32 on the CPU, eager attention; each sequence
runs unpadded (mmrm pools at its last real token).

  --gen          writes tests/fixtures/lora/peft_qwen2/: adapter_config.json and
                 adapter_model.safetensors as peft's save_pretrained writes them (r 4,
                 lora_alpha 8, the 7 Qwen2 linears, random A and B: init_lora_weights=False,
                 and a trained score head), and expected.safetensors: input_ids (B, T) I32,
                 lengths (B) I32 (hf_decoder's), rewards (B) F32 computed by the peft model.
                 tests/unit/test_lora.c loads the adapter in mmrm and compares the rewards.
  --check DIR    loads an adapter mmrm wrote (lora_save; e.g. MMRM_LORA_SAVE_TO=DIR
                 build/test_unit test_lora_peft keeps the one the unit test writes) with
                 PeftModel.from_pretrained onto the same base and checks that it reproduces
                 expected.safetensors' rewards within 1e-5 relative.

Pinned: torch==2.4.1 transformers==4.44.2 peft==0.12.0 (accelerate==0.33.0, numpy<2 with it).
Run from the repository root: python tests/oracle/lora_peft_oracle.py --gen
"""
import argparse
import copy
import json
import os
import sys

import peft
import torch
import transformers
from peft import LoraConfig, PeftConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import Qwen2Config, Qwen2ForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
BASE = os.path.join(ROOT, "tests", "fixtures", "hf_decoder", "qwen2_1b")
OUT = os.path.join(ROOT, "tests", "fixtures", "lora", "peft_qwen2")
PINNED = {"torch": "2.4.1", "transformers": "4.44.2", "peft": "0.12.0"}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SEED = 1717


def check_versions():
    got = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
           "peft": peft.__version__}
    if got != PINNED:
        sys.exit("lora_peft_oracle.py: pinned %s, found %s" % (PINNED, got))


class TextRM(torch.nn.Module):
    """the InternVL reward model's text path: language_model + score on the last token"""

    def __init__(self, cfg):
        super().__init__()
        self.language_model = Qwen2ForCausalLM(cfg)
        self.score = torch.nn.Linear(cfg.hidden_size, 1, bias=False)

    def forward(self, input_ids):
        h = self.language_model.model(input_ids=input_ids).last_hidden_state
        return self.score(h[:, -1])


def base_model():
    with open(os.path.join(BASE, "config.json")) as f:
        llm = copy.deepcopy(json.load(f)["llm_config"])
    cfg = Qwen2Config(**llm)
    cfg._attn_implementation = "eager"  # published configs name flash_attention_2
    m = TextRM(cfg).float().eval()
    w = load_file(os.path.join(BASE, "model.safetensors"))
    sd = {k: v for k, v in w.items() if k.startswith("language_model.") or k == "score.weight"}
    missing, unexpected = m.load_state_dict(sd, strict=False)
    # the causal LM's head is the one module mmrm does not have (its weight may be absent)
    if [k for k in missing if k != "language_model.lm_head.weight"] or unexpected:
        sys.exit("base weights do not fit: missing %s, unexpected %s" % (missing, unexpected))
    return m


def inputs():
    e = load_file(os.path.join(BASE, "expected.safetensors"))
    return e["input_ids"].to(torch.int32), e["lengths"].to(torch.int32)


@torch.no_grad()
def rewards(model, ids, lengths):
    return torch.stack([model(ids[b:b + 1, :int(lengths[b])].long())[0, 0]
                        for b in range(ids.shape[0])]).float()


def gen():
    torch.manual_seed(SEED)
    m = base_model()
    ids, lengths = inputs()
    base_r = rewards(m, ids, lengths)
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS,
                     modules_to_save=["score"], init_lora_weights=False)
    pm = get_peft_model(m, cfg).eval()
    with torch.no_grad():  # a trained head: the adapter's copy differs from the base's
        head = pm.base_model.model.score.modules_to_save["default"].weight
        head.copy_(torch.randn_like(head) * 0.2)
    r = rewards(pm, ids, lengths)
    if torch.allclose(r, base_r, atol=1e-3):
        sys.exit("the adapter does not change the rewards")
    os.makedirs(OUT, exist_ok=True)
    pm.save_pretrained(OUT)
    os.remove(os.path.join(OUT, "README.md"))  # save_pretrained's model card template
    # peft writes the head under the wrapper's name without the adapter name; check the layout
    names = sorted(load_file(os.path.join(OUT, "adapter_model.safetensors")))
    assert "base_model.model.score.weight" in names, names
    assert "base_model.model.language_model.model.layers.0.self_attn.q_proj.lora_A.weight" in names, names
    save_file({"input_ids": ids, "lengths": lengths, "rewards": r.contiguous()},
              os.path.join(OUT, "expected.safetensors"))
    print("wrote %s: %d tensors, rewards %s (base %s)" % (OUT, len(names), r.tolist(), base_r.tolist()))


def check(adapter):
    e = load_file(os.path.join(OUT, "expected.safetensors"))
    conf = PeftConfig.from_pretrained(adapter)
    if conf.peft_type != "LORA" or conf.task_type != "SEQ_CLS":
        sys.exit("%s: peft_type %s, task_type %s" % (adapter, conf.peft_type, conf.task_type))
    # SEQ_CLS would wrap the model in PeftModelForSequenceClassification, whose forward passes
    # HF's keyword arguments; the text reward model is a plain module
    conf.task_type = None
    pm = PeftModel.from_pretrained(base_model(), adapter, config=conf).eval()
    r = rewards(pm, e["input_ids"], e["lengths"])
    err = float((r - e["rewards"]).norm() / e["rewards"].norm())
    print("peft on %s: rewards %s, relative error %.3g" % (adapter, r.tolist(), err))
    if err > 1e-5:
        sys.exit("FAIL: peft's rewards differ from expected.safetensors")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--gen", action="store_true")
    g.add_argument("--check", metavar="DIR")
    a = ap.parse_args()
    check_versions()
    torch.set_num_threads(1)
    gen() if a.gen else check(a.check)


if __name__ == "__main__":
    main()
