#!/usr/bin/env python3
"""Export a public multimodal reward benchmark to the JSONL + image folder that
`mmrm eval --format NAME --data OUT/NAME.jsonl --image-root OUT` reads (infer/bench_formats.h
describes the layouts). Optional tooling, not run in CI; needs network access and

    pip install datasets==2.21.0 huggingface_hub==0.24.6 Pillow==10.4.0

Usage:
  export_benchmark.py vlrewardbench OUT
      MMInstruction/VL-RewardBench (test split, images as parquet bytes) -> OUT/vlrewardbench.jsonl
      with one PNG per record under OUT/images/<query_source>/<id>.png and an explicit "category"
      (general / hallucination / reasoning, from query_source: WildVision and VLFeedback are
      general, POVID, RLAIF-V and RLHF-V hallucination, MMMU-Pro and MathVerse reasoning, the
      grouping of the repository's cal.py). An unknown query_source stops the export.
  export_benchmark.py mmrewardbench OUT --all-data DATA/all_data.json
      facebookresearch/multimodal_rewardbench after its scripts/0_download_data.py: the JSON
      array becomes OUT/mmrewardbench.jsonl (one element a line); images stay where the
      download put them: pass --image-root DATA to mmrm eval.
  export_benchmark.py mmrlhf OUT
      yifanzhang114/MM-RLHF-RewardBench (mm_reward_bench.jsonl and its images folder) downloaded
      into OUT; OUT/mmrlhf.jsonl is mm_reward_bench.jsonl, and the script reports how many image
      paths do not resolve against OUT.
"""
import argparse
import json
import os
import sys

GROUPS = {"wildvision": "general", "wildvision-battle": "general", "vlfeedback": "general",
          "povid": "hallucination", "rlaif-v": "hallucination", "rlhf-v": "hallucination",
          "mmmu-pro": "reasoning", "mathverse": "reasoning", "reasoning_tasks": "reasoning"}


def export_vlrewardbench(out):
    from datasets import load_dataset
    ds = load_dataset("MMInstruction/VL-RewardBench", split="test")
    unknown = sorted({r["query_source"] for r in ds if r["query_source"].lower() not in GROUPS})
    if unknown:
        sys.exit(f"unknown query_source values {unknown}: extend GROUPS (cal.py's grouping)")
    n = 0
    with open(os.path.join(out, "vlrewardbench.jsonl"), "w") as f:
        for r in ds:
            src = r["query_source"].lower()
            rel = f"images/{src}/{r['id']}.png"
            os.makedirs(os.path.join(out, os.path.dirname(rel)), exist_ok=True)
            r["image"].convert("RGB").save(os.path.join(out, rel))
            rec = {k: v for k, v in r.items() if k != "image"}
            rec["image_path"] = rel
            rec["category"] = GROUPS[src]
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    print(f"{n} records -> {out}/vlrewardbench.jsonl (--image-root {out})")


def export_mmrewardbench(out, all_data):
    data = json.load(open(all_data))
    with open(os.path.join(out, "mmrewardbench.jsonl"), "w") as f:
        for ex in data:
            f.write(json.dumps(ex, ensure_ascii=False) + "\n")
    print(f"{len(data)} records -> {out}/mmrewardbench.jsonl "
          f"(--image-root {os.path.dirname(os.path.abspath(all_data))})")


def export_mmrlhf(out):
    from huggingface_hub import snapshot_download
    snapshot_download("yifanzhang114/MM-RLHF-RewardBench", repo_type="dataset", local_dir=out)
    src = os.path.join(out, "mm_reward_bench.jsonl")
    recs = [json.loads(l) for l in open(src) if l.strip()]
    with open(os.path.join(out, "mmrlhf.jsonl"), "w") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    missing = [r["image"] for r in recs if "image" in r and not os.path.exists(os.path.join(out, r["image"]))]
    print(f"{len(recs)} records -> {out}/mmrlhf.jsonl (--image-root {out}); "
          f"{len(missing)} image paths do not resolve there" + (f", e.g. {missing[0]}" if missing else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=["vlrewardbench", "mmrewardbench", "mmrlhf"])
    ap.add_argument("out")
    ap.add_argument("--all-data", help="mmrewardbench: the all_data.json its download script wrote")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.name == "vlrewardbench":
        export_vlrewardbench(a.out)
    elif a.name == "mmrewardbench":
        if not a.all_data:
            ap.error("mmrewardbench needs --all-data DATA/all_data.json")
        export_mmrewardbench(a.out, a.all_data)
    else:
        export_mmrlhf(a.out)


if __name__ == "__main__":
    main()
