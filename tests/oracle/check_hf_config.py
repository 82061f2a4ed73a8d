#!/usr/bin/env python3
"""What mmrm writes as config.json, read by transformers (tests/integration/hf_config.sh runs it).

For each published InternVL2 config (tests/fixtures/hf_configs/), with sizes reduced so the
model is small (every other key kept, as gen_hf_decoder_fixtures.py does), `mmrm init` writes a
model directory in BF16. Checks:
  - every key of the input, at every level, is in mmrm's config.json with the same value and
    the same JSON type (2.0 stays a float, 0 stays an int);
  - transformers' config class for the LLM reads mmrm's llm_config with the values it reads
    from the input's: Qwen2Config for Qwen2, LlamaConfig for InternLM2 (InternLM2Config is
    remote code that cannot be fetched here; its fields are Llama's under the same names) -
    the whole to_dict() compared, so every attribute counts;
  - PretrainedConfig reads the top level with architectures, model_type, torch_dtype and the
    InternVL keys (AutoConfig needs trust_remote_code for model_type "internvl_chat").

Pinned: transformers==4.44.2 (the venv of tests/oracle/README.md).
usage: check_hf_config.py MMRM_BINARY WORK_DIR
"""
import copy
import json
import os
import subprocess
import sys

import transformers
from transformers import LlamaConfig, PretrainedConfig, Qwen2Config

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
CONFIGS = os.path.join(ROOT, "tests", "fixtures", "hf_configs")
LLM = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=2, vocab_size=320)
VISION = dict(hidden_size=8, num_attention_heads=2, intermediate_size=16, num_hidden_layers=1,
              image_size=28)
HF_CLASS = {"Qwen2ForCausalLM": Qwen2Config, "InternLM2ForCausalLM": LlamaConfig}


def missing_or_changed(want, got, where=""):
    bad = []
    for k, v in want.items():
        if k not in got:
            bad.append(f"{where}{k}: dropped")
        elif isinstance(v, dict) and isinstance(got[k], dict):
            bad += missing_or_changed(v, got[k], f"{where}{k}.")
        elif got[k] != v or type(got[k]) is not type(v):  # 2.0 -> 2 reads back as an int
            bad.append(f"{where}{k}: {v!r} -> {got[k]!r}")
    return bad


def main(mmrm, work):
    if transformers.__version__ != "4.44.2":
        sys.exit(f"check_hf_config.py: need transformers 4.44.2, have {transformers.__version__}")
    failures = 0
    for name in ("InternVL2-1B", "InternVL2-8B"):
        with open(os.path.join(CONFIGS, name, "config.json")) as f:
            cfg = json.load(f)
        cfg["llm_config"].update(LLM)
        cfg["vision_config"].update(VISION)
        cfg["force_image_size"] = VISION["image_size"]
        src = os.path.join(work, name + ".json")
        out = os.path.join(work, name)
        with open(src, "w") as f:
            json.dump(cfg, f, indent=2)
        subprocess.run([mmrm, "init", "--config", src, "--out", out, "--dtype", "BF16"],
                       check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(out, "config.json")) as f:
            saved = json.load(f)
        bad = missing_or_changed(cfg, saved)

        arch = cfg["llm_config"]["architectures"][0]
        cls = HF_CLASS[arch]
        want = cls(**copy.deepcopy(cfg["llm_config"])).to_dict()
        got = cls(**copy.deepcopy(saved["llm_config"])).to_dict()
        bad += [f"{cls.__name__}.{k}: {want.get(k)!r} -> {got.get(k)!r}"
                for k in sorted(set(want) | set(got)) if want.get(k) != got.get(k)]

        top = PretrainedConfig.from_json_file(os.path.join(out, "config.json"))
        for k in ("architectures", "model_type", "torch_dtype", "template", "downsample_ratio",
                  "ps_version", "select_layer", "force_image_size", "auto_map"):
            w, g = cfg.get(k), getattr(top, k, None)
            if k == "torch_dtype":  # PretrainedConfig turns the name into a torch dtype
                g = str(g).replace("torch.", "") if g is not None else None
            if g != w:
                bad.append(f"PretrainedConfig.{k}: {w!r} -> {g!r}")

        for b in bad:
            print(f"FAIL {name}: {b}")
        failures += len(bad)
        print(f"{name} ({arch} via {cls.__name__}): {len(bad)} differences in "
              f"{len(want)} {cls.__name__} attributes and every key of the input")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    sys.exit(main(sys.argv[1], sys.argv[2]))
