#!/usr/bin/env python3
"""tfevents_fixture.py - writes the TensorBoard event file that tests/unit/test_tfevents.c
compares runtime/tfevents.c's writer against, byte for byte: the Events are built with
TensorBoard's own protobuf classes (tensorboard.compat.proto) and framed by TensorBoard's own
TFRecord writer (tensorboard.summary.writer.record_writer.RecordWriter, with its masked
CRC32C), and the histogram's buckets are numpy.histogram's.

Run from the repository root in a throwaway venv:

    python3 -m venv /tmp/tbvenv
    /tmp/tbvenv/bin/pip install tensorboard==2.18.0 protobuf==7.36.2 numpy==2.4.6
    /tmp/tbvenv/bin/python tests/oracle/tfevents_fixture.py

It (re)writes tests/fixtures/tfevents/:
  - events.out.tfevents.fixture: the file_version event, then one event per input below, in
    order (one Value per Event, as TensorBoard's SummaryWriter writes them);
  - inputs.json: those inputs: {"wall_time" of the file_version event, "events": [{"kind":
    "scalar", "wall_time", "step", "tag", "value"} | {"kind": "histogram", "wall_time",
    "step", "tag", "values", "buckets", "min", "max", "num", "sum", "sum_squares",
    "bucket_limit", "bucket"}]}: a histogram's values, its bucket count, and what numpy made
    of them (np.histogram(values, buckets): edges[1:] as bucket_limit, counts as bucket; sum
    and sum_squares summed in order in double precision, as the C code sums).
Values are random with a fixed seed (plus the edge cases: step 0, a negative step, a large
one, the value 0.0, equal values, no values), so a rerun gives the same bytes.
"""
import json
import os

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.compat.proto.histogram_pb2 import HistogramProto
from tensorboard.summary.writer.record_writer import RecordWriter

OUT = "tests/fixtures/tfevents"


def histogram_input(wall_time, step, tag, values, buckets):
    values = [float(v) for v in values]
    h = {"kind": "histogram", "wall_time": wall_time, "step": step, "tag": tag,
         "values": values, "buckets": buckets}
    if not values:
        h.update(min=0.0, max=0.0, num=0.0, sum=0.0, sum_squares=0.0, bucket_limit=[], bucket=[])
        return h
    counts, edges = np.histogram(np.array(values, dtype=np.float64), bins=buckets)
    s = s2 = 0.0
    for v in values:
        s += v
        s2 += v * v
    h.update(min=min(values), max=max(values), num=float(len(values)), sum=s, sum_squares=s2,
             bucket_limit=[float(e) for e in edges[1:]], bucket=[float(c) for c in counts])
    return h


def main():
    rng = np.random.default_rng(20261205)
    version_time = 1764900000.25
    events = []
    for i, (step, tag) in enumerate([(0, "train/loss"), (1, "train/loss"), (1, "train/accuracy"),
                                     (300, "train/lr"), (-1, "eval/accuracy"),
                                     (1 << 40, "train/grad_norm"), (7, "train/margin")]):
        events.append({"kind": "scalar", "wall_time": version_time + 0.125 * (i + 1), "step": step,
                       "tag": tag, "value": float(rng.normal() * 10.0 ** int(rng.integers(-8, 8)))})
    events.append({"kind": "scalar", "wall_time": version_time + 2.0, "step": 8, "tag": "train/zero",
                   "value": 0.0})
    events.append(histogram_input(version_time + 3.5, 9, "train/w", rng.gamma(2.0, 0.5, 257), 20))
    events.append(histogram_input(version_time + 4.0, 10, "train/w", [0.75] * 5, 20))
    events.append(histogram_input(version_time + 4.5, 11, "train/w", rng.uniform(-3, 3, 64), 7))
    events.append(histogram_input(version_time + 5.0, 12, "train/w", [], 20))

    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "events.out.tfevents.fixture"), "wb") as f:
        w = RecordWriter(f)
        w.write(event_pb2.Event(wall_time=version_time, file_version="brain.Event:2").SerializeToString())
        for e in events:
            if e["kind"] == "scalar":
                value = summary_pb2.Summary.Value(tag=e["tag"], simple_value=e["value"])
            else:
                value = summary_pb2.Summary.Value(tag=e["tag"], histo=HistogramProto(
                    min=e["min"], max=e["max"], num=e["num"], sum=e["sum"], sum_squares=e["sum_squares"],
                    bucket_limit=e["bucket_limit"], bucket=e["bucket"]))
            ev = event_pb2.Event(wall_time=e["wall_time"], step=e["step"],
                                 summary=summary_pb2.Summary(value=[value]))
            w.write(ev.SerializeToString())
        w.flush()
    with open(os.path.join(OUT, "inputs.json"), "w") as f:
        json.dump({"wall_time": version_time, "events": events}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
