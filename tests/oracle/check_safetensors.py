#!/usr/bin/env python3
"""check_safetensors.py - checks runtime/safetensors_*.c against the real Python `safetensors`
package, in both directions.

    pip install safetensors numpy

    python3 tests/oracle/check_safetensors.py fixture
        (re)writes tests/fixtures/safetensors/python_written.safetensors, which
        tests/unit/test_safetensors.c loads without Python. Every tensor stored in a dtype
        that mmrm converts on load has a companion "NAME.expected" tensor (F32 for float
        dtypes, I32 for integer ones) holding the values numpy computes for it; F32 tensors
        hold seeded() values (below) the C test recomputes.

    python3 tests/oracle/check_safetensors.py check TOOL WORKDIR
        TOOL is a small C program built from runtime/safetensors_*.c (the integration script
        tests/integration/safetensors_python.sh builds it) with three commands:
          TOOL write FILE               writes the tensors of WRITTEN (below) with st_save
          TOOL write-sharded DIR BYTES  the same with st_save_sharded
          TOOL dump PATH                one line per tensor, for a file or a model directory:
                                        NAME<TAB>DTYPE<TAB>D0,D1,..<TAB>VALUES, the values as
                                        f32 bit patterns in hex (float dtypes) or decimal i32
        and this script checks: (1) what mmrm writes loads in Python with the expected
        values and is byte-identical to what Python writes for the same tensors; (2) what
        Python writes (F32, F16, BF16, I64, I32, U8, BOOL, scalars, empty tensors, a sharded
        directory with its index) mmrm reads with identical values; (3) files that Python
        rejects mmrm rejects too.

Values come from seeded(seed, n): a 32-bit integer hash of (seed, k) turned into an int32
and scaled by 2^-27 in float32 (an exact, rounding-mode-free formula the C side repeats),
so no reference data needs to travel between the two sides.
"""
import json
import os
import struct
import subprocess
import sys

import numpy as np
from safetensors import SafetensorError, TensorSpec, deserialize, safe_open, serialize
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "fixtures", "safetensors", "python_written.safetensors")
M32 = 0xFFFFFFFF


def hash32(seed, n):
    """The per-element hash; the same lines appear in the C test and the C tool."""
    k = np.arange(n, dtype=np.uint64)
    x = (k * 0x9E3779B1 + seed * 0x85EBCA77 + 0x165667B1) & M32
    x ^= x >> 15
    x = (x * 0x2C1B3C6D) & M32
    x ^= x >> 12
    x = (x * 0x297A2D39) & M32
    x ^= x >> 15
    return x.astype(np.uint32)


def seeded(seed, n):
    """float32 values in [-16, 16): (float)(int32)hash * 2^-27."""
    return hash32(seed, n).view(np.int32).astype(np.float32) * np.float32(2.0**-27)


def seeded_i32(seed, n):
    return hash32(seed, n).view(np.int32) >> 8


def bf16_nearest_even(x):
    """float32 -> bf16 bits, by comparing the two neighbouring bf16 values in float64 (a
    different route from the bit trick in runtime/tensor.c). Finite inputs only."""
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32).ravel()
    out = np.empty(bits.shape, np.uint16)
    for i, u in enumerate(bits.tolist()):
        lo = u & 0xFFFF0000
        hi = lo + 0x10000
        v = float(np.uint32(u).view(np.float32))
        vlo = float(np.uint32(lo).view(np.float32))
        vhi = float(np.uint32(hi).view(np.float32))
        dlo, dhi = abs(v - vlo), abs(vhi - v)
        pick = lo if dlo < dhi else hi if dhi < dlo else (lo if (lo >> 16) % 2 == 0 else hi)
        out[i] = pick >> 16
    return out.reshape(np.shape(x))


def bf16_to_f32(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def c_array(a):
    """A C-contiguous copy that keeps 0-d arrays 0-d (np.ascontiguousarray does not)."""
    return np.array(a, order="C", copy=True)


def spec(dtype, arr):
    """arr must be C-contiguous and stay alive until serialize() returns."""
    assert arr.flags.c_contiguous
    return TensorSpec(dtype=dtype, shape=list(arr.shape), data_ptr=arr.ctypes.data,
                      data_len=arr.nbytes)


# What `TOOL write` stores: name -> (on-disk dtype, shape, expected values as numpy). Keep
# in step with the tool in tests/integration/safetensors_python.sh.
def written_tensors():
    def vals(seed, shape):
        return seeded(seed, int(np.prod(shape, dtype=np.int64))).reshape(shape)
    return {
        "layers.0.w": ("F32", vals(1, (3, 5))),
        "layers.0.b": ("BF16", bf16_nearest_even(vals(2, (7,)))),
        "layers.1.w": ("BF16", bf16_nearest_even(vals(3, (2, 3, 1, 5)))),
        "layers.1.wf": ("F32", bf16_to_f32(bf16_nearest_even(vals(4, (4, 1))))),
        "ids": ("I32", seeded_i32(5, 11)),
        "scalar": ("F32", vals(6, ())),
        "empty": ("F32", np.zeros((0, 3), np.float32)),
        "z.last": ("BF16", bf16_nearest_even(vals(7, (1,)))),
    }


WRITTEN_META = {"format": "pt", "mmrm": "oracle"}
NP_DTYPE = {"F32": np.float32, "BF16": np.uint16, "I32": np.int32}
SPEC_DTYPE = {"F32": "float32", "BF16": "bfloat16", "I32": "int32"}


def python_bytes(tensors, metadata):
    keep = {name: c_array(a) for name, (_, a) in tensors.items()}
    specs = {name: spec(SPEC_DTYPE[dt], keep[name]) for name, (dt, _) in tensors.items()}
    return bytes(serialize(specs, metadata=metadata))


def check_loaded(label, raw, tensors):
    """raw: the deserialize() output of a file; tensors: written_tensors()-like."""
    got = {name: info for name, info in raw}
    assert sorted(got) == sorted(tensors), f"{label}: tensor names {sorted(got)}"
    for name, (dt, want) in tensors.items():
        info = got[name]
        assert info["dtype"] == dt, f"{label}: {name} dtype {info['dtype']}, want {dt}"
        assert list(info["shape"]) == list(want.shape), f"{label}: {name} shape {info['shape']}"
        arr = np.frombuffer(bytes(info["data"]), NP_DTYPE[dt]).reshape(want.shape)
        assert arr.tobytes() == c_array(want).tobytes(), \
            f"{label}: {name} values differ\n got {arr.ravel()[:8]}\nwant {want.ravel()[:8]}"


def run(tool, *args, ok=True):
    p = subprocess.run([tool, *args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        sys.exit(f"FAIL: {' '.join([tool, *args])} exited {p.returncode}: {p.stderr.strip()}")
    return p


def dump(tool, path):
    out = {}
    for line in run(tool, "dump", path).stdout.splitlines():
        name, dt, shape, values = line.split("\t")
        out[name] = (dt, [int(s) for s in shape.split(",") if s], values.split(",") if values else [])
    return out


def expect_dump(label, got, name, dtype, arr):
    assert name in got, f"{label}: {name} missing from mmrm's dump"
    dt, shape, values = got[name]
    assert dt == dtype, f"{label}: {name} dtype {dt}, want {dtype}"
    assert shape == list(arr.shape), f"{label}: {name} shape {shape}, want {list(arr.shape)}"
    flat = c_array(arr).ravel()
    if flat.dtype == np.float32:
        want = [f"{v:08x}" for v in flat.view(np.uint32).tolist()]
    else:
        want = [str(v) for v in flat.astype(np.int64).tolist()]
    assert values == want, f"{label}: {name} values differ\n got {values[:8]}\nwant {want[:8]}"


def check_mmrm_writes(tool, work):
    path = os.path.join(work, "mmrm_written.safetensors")
    run(tool, "write", path)
    tensors = written_tensors()
    with open(path, "rb") as f:
        data = f.read()
    check_loaded("mmrm file", deserialize(data), tensors)
    with safe_open(path, framework="numpy") as f:
        assert f.metadata() == WRITTEN_META, f"metadata {f.metadata()}"
        np.testing.assert_array_equal(f.get_tensor("layers.0.w"), tensors["layers.0.w"][1])
    # The Python package orders __metadata__ as a Rust HashMap does, differently from call
    # to call; mmrm writes the keys sorted, which is one of those orders.
    assert any(data == python_bytes(tensors, WRITTEN_META) for _ in range(64)), \
        "mmrm's file is not byte-identical to what the Python package writes"
    print("ok   mmrm-written file: Python loads it and writes the same bytes")

    for limit in ("64", "1000000"):
        d = os.path.join(work, f"sharded_{limit}")
        os.makedirs(d, exist_ok=True)
        run(tool, "write-sharded", d, limit)
        if limit == "1000000":
            assert sorted(os.listdir(d)) == ["model.safetensors"], sorted(os.listdir(d))
            continue
        with open(os.path.join(d, "model.safetensors.index.json")) as f:
            text = f.read()
        index = json.loads(text)
        assert text == json.dumps(index, indent=2, sort_keys=True) + "\n", "index formatting"
        shards = sorted(set(index["weight_map"].values()))
        assert shards[0] == f"model-00001-of-{len(shards):05d}.safetensors", shards
        raw = []
        for s in shards:
            with open(os.path.join(d, s), "rb") as f:
                part = deserialize(f.read())
            assert all(index["weight_map"][n] == s for n, _ in part), f"{s}: index disagrees"
            raw += part
        check_loaded("mmrm shards", raw, tensors)
        size = sum(int(np.asarray(a).nbytes) for _, a in tensors.values())
        assert index["metadata"]["total_size"] == size, index["metadata"]
    print("ok   mmrm-written shards: Python loads them; the index is json.dumps(indent=2, sort_keys=True)")


def python_tensors():
    """What the Python side writes for mmrm to read: name -> (dtype, spec data, expected)."""
    f16 = np.array([0, 1, 0x3ff, 0x400, 0x3c00, 0x7bff, 0x7c00, 0xfc00, 0x8000, 0x8001,
                    0x7e00, 0x3555, 0xc000, 0x0200], np.uint16)
    b = bf16_nearest_even(seeded(11, 24)).reshape(2, 3, 4)
    i64 = np.array([0, -1, 2**31 - 1, -2**31, 92546, -7], np.int64)
    return {
        "f32.odd": ("F32", seeded(10, 15).reshape(3, 5), seeded(10, 15).reshape(3, 5)),
        "f16.mixed": ("F16", f16.view(np.float16).reshape(2, 7),
                      f16.view(np.float16).astype(np.float32).reshape(2, 7)),
        "bf16.w": ("BF16", b, bf16_to_f32(b)),
        "i64.ids": ("I64", i64, i64.astype(np.int32)),
        "i32.ids": ("I32", seeded_i32(12, 9), seeded_i32(12, 9)),
        "u8.bytes": ("U8", np.array([0, 1, 127, 128, 255], np.uint8),
                     np.array([0, 1, 127, 128, 255], np.int32)),
        "bool.mask": ("BOOL", np.array([True, False, False, True]),
                      np.array([1, 0, 0, 1], np.int32)),
        "scalar": ("F32", seeded(13, 1).reshape(()), seeded(13, 1).reshape(())),
        "empty": ("F16", np.zeros((3, 0), np.float16), np.zeros((3, 0), np.float32)),
    }


def python_file_bytes(with_expected):
    tensors = python_tensors()
    keep, specs = [], {}
    for name, (dt, arr, expected) in tensors.items():
        arr = c_array(arr)
        keep.append(arr)
        specs[name] = spec("bfloat16" if dt == "BF16" else arr.dtype.name, arr)
        if with_expected and dt not in ("F32", "I32"):
            exp = c_array(expected)
            keep.append(exp)
            specs[name + ".expected"] = spec(exp.dtype.name, exp)
    return bytes(serialize(specs, metadata={"format": "pt", "writer": "check_safetensors.py"}))


def check_python_writes(tool, work):
    path = os.path.join(work, "python_written.safetensors")
    with open(path, "wb") as f:
        f.write(python_file_bytes(False))
    got = dump(tool, path)
    for name, (dt, _, expected) in python_tensors().items():
        expect_dump("python file", got, name, dt, expected)
    print("ok   python-written file: mmrm reads F32 F16 BF16 I64 I32 U8 BOOL, scalar, empty")

    d = os.path.join(work, "python_sharded")
    os.makedirs(d, exist_ok=True)
    parts = {"model-00001-of-00002.safetensors": ["a.w", "b.w"],
             "model-00002-of-00002.safetensors": ["c.w"]}
    arrays = {"a.w": seeded(20, 6).reshape(2, 3), "b.w": seeded(21, 5),
              "c.w": seeded(22, 8).reshape(2, 2, 2)}
    for shard, names in parts.items():
        save_file({n: arrays[n] for n in names}, os.path.join(d, shard), metadata={"format": "pt"})
    index = {"metadata": {"total_size": sum(a.nbytes for a in arrays.values())},
             "weight_map": {n: s for s, ns in parts.items() for n in ns}}
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    got = dump(tool, d)
    assert sorted(got) == sorted(arrays), sorted(got)
    for name, arr in arrays.items():
        expect_dump("python shards", got, name, "F32", arr)
    print("ok   python-written sharded directory: mmrm finds every tensor across shards")


def hostile_cases():
    def f(header, data=b"", n=None):
        h = header.encode()
        return struct.pack("<Q", len(h) if n is None else n) + h + data
    t = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}'
    return {
        "header length past EOF": f('{}', n=1000),
        "header length huge": f('{}', n=200_000_000),
        "not JSON": f('{"a": nope}'),
        "JSON array": f('[1, 2]'),
        "missing data_offsets": f('{"a":{"dtype":"F32","shape":[2]}}', b"\0" * 8),
        "offsets past the end": f('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', b"\0" * 4),
        "end before begin": f('{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}', b"\0" * 8),
        "size mismatch": f('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', b"\0" * 8),
        "overlap": f(t + ',"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', b"\0" * 12),
        "hole": f(t + ',"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}', b"\0" * 16),
        "trailing bytes": f(t + '}', b"\0" * 12),
        "unknown dtype": f('{"a":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}}', b"\0" * 8),
        "negative dim": f('{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', b"\0" * 8),
        "metadata not strings": f('{"__metadata__":{"k":1}}'),
    }


def check_hostile(tool, work):
    for what, data in hostile_cases().items():
        path = os.path.join(work, "hostile.safetensors")
        with open(path, "wb") as f:
            f.write(data)
        try:
            deserialize(data)
            sys.exit(f"FAIL: the Python package accepts the '{what}' file; the case is wrong")
        except SafetensorError:
            pass
        p = run(tool, "dump", path, ok=False)
        assert p.returncode != 0, f"mmrm accepts the '{what}' file that Python rejects"
        assert path in p.stderr, f"'{what}': message does not name the file: {p.stderr}"
    print(f"ok   {len(hostile_cases())} malformed files: rejected by Python and by mmrm")


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "fixture":
        os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
        with open(FIXTURE, "wb") as f:
            f.write(python_file_bytes(True))
        print(f"wrote {os.path.normpath(FIXTURE)}")
    elif len(sys.argv) == 4 and sys.argv[1] == "check":
        tool, work = sys.argv[2], sys.argv[3]
        check_mmrm_writes(tool, work)
        check_python_writes(tool, work)
        check_hostile(tool, work)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
