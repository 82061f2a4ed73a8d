#!/usr/bin/env python3
"""tensorboard_read.py - reads an `mmrm train` output_dir's TensorBoard events (OUT/runs) with
TensorBoard's own EventAccumulator and checks them against the run's metrics.jsonl:

  - runs/ holds exactly one event file, and TensorBoard reads it;
  - every tag has each step once (read with purge_orphaned_data=False, so that a step written
    twice would show);
  - train/loss, train/accuracy, train/margin, train/learning_rate, train/grad_norm (and
    train/loss_bias, train/accuracy_bias, train/w_mean for shortcut_aware) equal
    metrics.jsonl's loss, accuracy, margin, lr, grad_norm (loss_bias, accuracy_bias, w_mean)
    at exactly the steps metrics.jsonl has, rounded to float32 (as_logged); eval/accuracy and eval/mean_margin
    equal its eval lines, at exactly their steps;
  - train/pairs_per_second is positive at every step;
  - shortcut_aware (--algorithm): the histogram train/w at every step, with num = the sum of
    its buckets = --pairs-per-step, and min, max and sum / num equal to metrics.jsonl's
    w_min, w_max and w_mean;
  - with --replayed-steps N (a first run without TensorBoard output, resumed with it): steps
    up to N have neither throughput nor histogram (the history keeps neither), later ones both;
  - with --same-as REF_OUT (an uninterrupted run of the same configuration): every tag has the
    steps REF's has, and every value but the throughput equals REF's (histograms whole).
Exit status 0 when all hold; else 1 with the failures listed.

Needs tensorboard (pinned: tensorboard==2.18.0, protobuf==7.36.2, numpy==2.4.6 in a venv,
see tests/oracle/tfevents_fixture.py); tests/integration/tensorboard_read.sh runs it.
"""
import argparse
import glob
import json
import math
import os
import sys

import numpy as np
from tensorboard.backend.event_processing import event_accumulator as ea

TRAIN = {"loss": "train/loss", "accuracy": "train/accuracy", "margin": "train/margin",
         "lr": "train/learning_rate", "grad_norm": "train/grad_norm"}
BIAS = {"loss_bias": "train/loss_bias", "accuracy_bias": "train/accuracy_bias", "w_mean": "train/w_mean"}
EVAL = {"eval_accuracy": "eval/accuracy", "eval_mean_margin": "eval/mean_margin"}
THROUGHPUT = "train/pairs_per_second"

failures = []


def fail(msg):
    failures.append(msg)


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def as_logged(got, v):
    """got (TensorBoard's float32) is v (metrics.jsonl's double) rounded to float32: within
    half a float32 ulp, up to the last digits that cJSON's 15-digit printing may drop (a
    mean over float32 values can lie on a float32 midpoint, which the print then moves)"""
    if math.isnan(v) or math.isnan(got):
        return math.isnan(v) and math.isnan(got)
    return abs(got - v) <= 0.5 * float(np.spacing(np.float32(abs(v)))) * (1 + 1e-6) + 1e-15 * abs(v)


def load(out):
    runs = os.path.join(out, "runs")
    files = sorted(glob.glob(os.path.join(runs, "events.out.tfevents.*")))
    if len(files) != 1:
        fail(f"{runs}: {len(files)} event files, want 1: {files}")
    acc = ea.EventAccumulator(runs, size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0},
                              purge_orphaned_data=False)
    acc.Reload()
    tags = acc.Tags()
    scalars = {t: acc.Scalars(t) for t in tags["scalars"]}
    histos = {t: acc.Histograms(t) for t in tags["histograms"]}
    for t, evs in list(scalars.items()) + list(histos.items()):
        steps = [e.step for e in evs]
        if len(steps) != len(set(steps)):
            dup = sorted({s for s in steps if steps.count(s) > 1})
            fail(f"{out}: tag {t}: steps written more than once: {dup}")
    return ({t: {e.step: e.value for e in evs} for t, evs in scalars.items()},
            {t: {e.step: e.histogram_value for e in evs} for t, evs in histos.items()})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", help="the run's output_dir")
    ap.add_argument("--algorithm", default="standard")
    ap.add_argument("--pairs-per-step", type=int, default=0)
    ap.add_argument("--same-as", help="an uninterrupted run's output_dir")
    ap.add_argument("--replayed-steps", type=int, default=0,
                    help="steps up to this one were replayed from the checkpoint's history: "
                         "no throughput, no histogram")
    a = ap.parse_args()

    scalars, histos = load(a.out)
    lines = [json.loads(l) for l in open(os.path.join(a.out, "metrics.jsonl"))]
    train = {l["step"]: l for l in lines if "loss" in l}
    evals = {l["step"]: l for l in lines if "eval_accuracy" in l}
    if not train:
        fail("metrics.jsonl has no steps")
    keys = dict(TRAIN, **(BIAS if a.algorithm == "shortcut_aware" else {}))
    checked = 0
    for key, tag in keys.items():
        got = scalars.get(tag, {})
        want = {s: l[key] for s, l in train.items() if l.get(key) is not None}
        if sorted(got) != sorted(want):
            fail(f"{tag}: steps {sorted(got)}, metrics.jsonl has {sorted(want)}")
        for s, v in want.items():
            if s in got and not as_logged(got[s], v):
                fail(f"{tag} step {s}: {got[s]!r}, metrics.jsonl {v!r} (float32 {float(np.float32(v))!r})")
            checked += 1
    for key, tag in EVAL.items():
        got = scalars.get(tag, {})
        if sorted(got) != sorted(evals):
            fail(f"{tag}: steps {sorted(got)}, metrics.jsonl has {sorted(evals)}")
        for s, l in evals.items():
            if s in got and not as_logged(got[s], l[key]):
                fail(f"{tag} step {s}: {got[s]!r}, metrics.jsonl {l[key]!r}")
            checked += 1
    live = sorted(s for s in train if s > a.replayed_steps)
    tp = scalars.get(THROUGHPUT, {})
    if sorted(tp) != live or not all(v > 0 for v in tp.values()):
        fail(f"{THROUGHPUT}: steps {sorted(tp)} values {sorted(tp.values())[:3]}..., want > 0 at {live}")
    if a.algorithm == "shortcut_aware":
        h = histos.get("train/w", {})
        if sorted(h) != live:
            fail(f"train/w histogram at steps {sorted(h)}, want {live}")
        for s, hv in h.items():
            l = train.get(s)
            if l is None:
                continue
            n = sum(hv.bucket)
            if hv.num != n or (a.pairs_per_step and n != a.pairs_per_step):
                fail(f"train/w step {s}: num {hv.num}, buckets sum {n}, want {a.pairs_per_step}")
            # w is float32; metrics.jsonl prints 15 significant digits where cJSON deems them
            # enough, which is not always the exact double
            if (np.float32(hv.min) != np.float32(l["w_min"]) or np.float32(hv.max) != np.float32(l["w_max"])
                    or abs(hv.sum / hv.num - l["w_mean"]) > 1e-6):
                fail(f"train/w step {s}: min {hv.min} max {hv.max} mean {hv.sum / hv.num}, metrics.jsonl "
                     f"{l['w_min']} {l['w_max']} {l['w_mean']}")
            checked += 1
    if a.same_as:
        rs, rh = load(a.same_as)
        if sorted(rs) != sorted(scalars) or sorted(rh) != sorted(histos):
            fail(f"tags {sorted(scalars)} {sorted(histos)}, the uninterrupted run's {sorted(rs)} {sorted(rh)}")
        for t in rs:
            got = scalars.get(t, {})
            if sorted(got) != sorted(rs[t]):
                fail(f"{t}: steps {sorted(got)}, the uninterrupted run's {sorted(rs[t])}")
            elif t != THROUGHPUT:
                for s, v in rs[t].items():
                    if not same(got[s], v):
                        fail(f"{t} step {s}: {got[s]!r}, the uninterrupted run's {v!r}")
                    checked += 1
        for t in rh:
            got = histos.get(t, {})
            if sorted(got) != sorted(rh[t]):
                fail(f"{t}: histogram steps {sorted(got)}, the uninterrupted run's {sorted(rh[t])}")
            else:
                for s, v in rh[t].items():
                    if got[s] != v:
                        fail(f"{t} step {s}: histogram differs from the uninterrupted run's")
                    checked += 1
    if failures:
        print(f"tensorboard_read: {a.out}: {len(failures)} failure(s):")
        for f in failures[:30]:
            print("  " + f)
        return 1
    print(f"tensorboard_read: {a.out}: {len(scalars)} scalar tags, {len(histos)} histogram tags, "
          f"{len(train)} steps, {len(evals)} evaluations, {checked} values checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
