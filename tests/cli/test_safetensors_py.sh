#!/usr/bin/env bash
# Cross-checks our safetensors files against an independent reader and writer in
# Python (numpy, plus torch for BF16 when present): the file test_safetensors writes
# must parse and hold the expected values, and a file written by Python (unpadded
# header, other key order, \u escapes) must load in C. Prints PASS/FAIL lines, or a
# SKIP line when the Python side is missing.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
PY=${PYTHON:-/usr/bin/python3}
bin=$BUILD/tests/test_safetensors
if [ ! -x "$bin" ]; then
    echo "FAIL safetensors_py_setup: $bin is not built"
    exit 1
fi
if ! "$PY" -c 'import numpy' 2>/dev/null; then
    echo "SKIP safetensors_py: $PY has no numpy -- Python cross-check NOT RUN"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0

# The sample, as test_safetensors.c builds it (sample_fill / sample_add).
expect='
import numpy as np
NOTE = "h\u00e9llo \"quoted\" \\ back"
def expected():
    return {
        "u8": ("U8", [7], np.array([i * 37 for i in range(7)], "u1")),
        "f32": ("F32", [3, 4], (np.arange(12, dtype="f4") * np.float32(0.5) - np.float32(1)).reshape(3, 4)),
        "f64": ("F64", [2, 2, 2], (np.arange(8) / 3.0).reshape(2, 2, 2)),
        "i64": ("I64", [5], np.array([i * 1000000000000 - 7 for i in range(5)], "<i8")),
        "i32": ("I32", [2, 2], np.array([[-2, -1], [0, 1]], "<i4")),
        "bool": ("BOOL", [3], np.array([True, False, True])),
        "f16": ("F16", [3], np.array([1.0, -2.0, 0.5], "<f2")),
        "bf16": ("BF16", [2], np.array([1.0, -3.0], "f4")),
        "scalar": ("F32", [], np.array(42.0, "f4")),
        "empty": ("F32", [0, 3], np.zeros((0, 3), "f4")),
    }
NP = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "U8": "u1", "BOOL": "?"}
SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1, "BOOL": 1}
'

# 1. Python reads the file C wrote, checking the layout as the reference reader does.
"$bin" --write-sample "$tmp/c.safetensors"
if "$PY" - "$tmp/c.safetensors" <<EOF
$expect
import json, struct, sys
buf = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", buf[:8])[0]
assert 8 + n <= len(buf), "header length past the end"
assert (8 + n) % 8 == 0, "data area not 8-byte aligned"
raw = buf[8:8 + n]
assert raw.startswith(b"{") and raw[len(raw.rstrip(b" ")):].strip(b" ") == b"", "header padding is not spaces"
hdr = json.loads(raw.decode("utf-8"))
meta = hdr.pop("__metadata__")
assert meta == {"format": "moelab", "note": NOTE}, meta
data = buf[8 + n:]
pos = 0
for name, info in sorted(hdr.items(), key=lambda kv: kv[1]["data_offsets"]):
    b, e = info["data_offsets"]
    assert b == pos, f"{name}: begins at {b}, expected {pos} (holes or overlap)"
    count = 1
    for d in info["shape"]:
        count *= d
    assert e - b == count * SIZE[info["dtype"]], f"{name}: size"
    pos = e
assert pos == len(data), "data area not fully used"
want = expected()
assert sorted(hdr) == sorted(want), sorted(hdr)
try:
    import torch
except ImportError:
    torch = None
for name, (dt, shape, val) in want.items():
    info = hdr[name]
    assert info["dtype"] == dt and info["shape"] == shape, f"{name}: {info}"
    b, e = info["data_offsets"]
    chunk = data[b:e]
    if dt == "BF16":
        bits = np.frombuffer(chunk, "<u2").astype("<u4") << 16
        got = bits.view("<f4")
        if torch is not None:
            t = torch.frombuffer(bytearray(chunk), dtype=torch.bfloat16).float().numpy()
            assert np.array_equal(t, got), f"torch bf16 {t}"
    else:
        got = np.frombuffer(chunk, NP[dt]).reshape(shape)
        if torch is not None and dt == "F32" and len(chunk):
            t = torch.frombuffer(bytearray(chunk), dtype=torch.float32).reshape(shape).numpy()
            assert np.array_equal(t, val), f"torch {name}"
    assert got.shape == tuple(shape) or dt == "BF16", f"{name}: shape {got.shape}"
    assert np.array_equal(got.reshape(val.shape), val), f"{name}: {got} != {val}"
print("torch checked" if torch is not None else "torch not installed: numpy only")
EOF
then echo "PASS safetensors_py_reads_c_file"; else echo "FAIL safetensors_py_reads_c_file"; status=1; fi

# 2. C reads a file Python wrote: header unpadded (data unaligned), keys sorted, metadata last, ASCII escapes.
if "$PY" - "$tmp/py.safetensors" <<EOF
$expect
import json, struct, sys
hdr, blobs, pos = {}, [], 0
for name, (dt, shape, val) in sorted(expected().items()):
    if dt == "BF16":
        blob = (val.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
    else:
        blob = np.ascontiguousarray(val, NP[dt]).tobytes()
    hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [pos, pos + len(blob)]}
    blobs.append(blob)
    pos += len(blob)
hdr["__metadata__"] = {"format": "moelab", "note": NOTE}
text = json.dumps(hdr, ensure_ascii=True).encode()
if (8 + len(text)) % 8 == 0:
    text += b" "  # keep the data area unaligned on purpose
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
EOF
then
    if "$bin" --check-sample "$tmp/py.safetensors"; then
        echo "PASS safetensors_c_reads_py_file"
    else
        echo "FAIL safetensors_c_reads_py_file"
        status=1
    fi
else
    echo "FAIL safetensors_c_reads_py_file (python writer failed)"
    status=1
fi
exit $status
