#!/usr/bin/env bash
# NaN and Inf: a run resumed from a checkpoint whose weights hold NaN skips its steps and
# stops after --bad-steps of them with a message and exit 1, never overwriting the
# checkpoint; log.jsonl and eval --json stay valid JSON (non-finite -> null); eval,
# sample and report say plainly that the model or log holds non-finite values; an
# optimizer state with a negative second moment is refused.
. "$(dirname "$0")/../cli_common.sh"
require_binary nan_binary
PY=${PYTHON:-/usr/bin/python3}

printf '{"name":"t","domains":[{"name":"a","files":["a.txt"],"split":"paragraphs","min_doc_bytes":256},{"name":"b","files":["b.txt"],"split":"paragraphs","min_doc_bytes":256}]}\n' >"$T/m.json"
make_prose "$T/a.txt" 300
awk 'BEGIN { for (i = 1; i <= 300; i++) { printf "x[%d] = %d;\n", i, i * 7; if (i % 20 == 0) print "" } }' >"$T/b.txt"
TINY=(--layers 2 --d-model 16 --heads 2 --seq-len 16 --batch 2 --experts 4 --topk 2 --d-expert 8 --eval-batches 2 --threads 1)
if ! "$M" prepare --out "$T/data" --manifest "$T/m.json" --val-frac 0.3 --quiet >"$T/out" 2>"$T/err" ||
    ! "$M" train --data "$T/data" --out "$T/run" --steps 2 --quiet "${TINY[@]}" >"$T/out" 2>"$T/err"; then
    echo "FAIL nan_setup: $(tail -c 300 "$T/err")"
    exit 1
fi

# poison FILE TENSOR VALUE: sets every element of an F32 tensor (all when VALUE is nan)
# or only its first element (VALUE a number) in a safetensors file, in place.
poison() {
    "$PY" - "$@" <<'PY'
import json, struct, sys
path, name, value = sys.argv[1], sys.argv[2], sys.argv[3]
b = bytearray(open(path, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
t = json.loads(b[8:8 + n])[name]
s, e = t["data_offsets"]
base = 8 + n
if value == "nan":
    b[base + s:base + e] = struct.pack("<f", float("nan")) * ((e - s) // 4)
else:
    b[base + s:base + s + 4] = struct.pack("<f", float(value))
open(path, "wb").write(b)
PY
}

# Every line is strict JSON (Python's json accepts NaN unless told not to).
strict_json_lines() {
    "$PY" -c '
import json, sys
def bad(c): raise ValueError("non-JSON constant " + c)
for i, line in enumerate(open(sys.argv[1])):
    json.loads(line, parse_constant=bad)
' "$1"
}

test_resume_nan_stops() {
    cp -r "$T/run" "$T/nan"
    poison "$T/nan/model.safetensors" embed.weight nan
    cp "$T/nan/model.safetensors" "$T/poisoned"
    cp "$T/nan/optim.safetensors" "$T/optim_before"
    "$M" train --data "$T/data" --out "$T/nan" --resume --steps 10 --bad-steps 3 --quiet >"$T/out" 2>"$T/err"
    local rc=$?
    if [ $rc -ne 1 ] || ! grep -q 'NaN or infinite in 3 steps in a row' "$T/err"; then
        fail nan_resume_stops "exit $rc: $(tail -c 300 "$T/err")"
    elif ! cmp -s "$T/nan/model.safetensors" "$T/poisoned" || ! cmp -s "$T/nan/optim.safetensors" "$T/optim_before"; then
        fail nan_resume_stops "the checkpoint was overwritten"
    elif ! strict_json_lines "$T/nan/log.jsonl" 2>"$T/perr"; then
        fail nan_resume_stops "log.jsonl is not valid JSON: $(tail -n 1 "$T/perr")"
    elif [ "$(grep -c '"loss":null' "$T/nan/log.jsonl")" -ne 3 ]; then
        fail nan_resume_stops "want 3 lines with loss null: $(tail -n 3 "$T/nan/log.jsonl" | cut -c1-120)"
    else
        pass nan_resume_stops
    fi
}

test_eval_says_nonfinite() {
    "$M" eval "$T/nan" --data "$T/data" --json --threads 1 >"$T/out" 2>"$T/err"
    local rc=$?
    if [ $rc -eq 0 ] && grep -q 'non-finite parameter values' "$T/err" && strict_json_lines "$T/out" 2>/dev/null &&
        grep -q '"loss":null' "$T/out"; then
        pass nan_eval_json
    else
        fail nan_eval_json "exit $rc: $(head -c 200 "$T/out") $(head -c 300 "$T/err")"
    fi
    "$M" sample "$T/nan" --tokens 4 >"$T/out" 2>"$T/err"
    grep -q 'non-finite parameter values' "$T/err" && pass nan_sample_warns || fail nan_sample_warns "$(head -c 300 "$T/err")"
}

test_report_says_nonfinite() {
    if ! command -v gnuplot >/dev/null; then
        skip nan_report_warns "gnuplot is not installed"
        return
    fi
    "$M" report "$T/nan" --out "$T/r.html" >"$T/out" 2>"$T/err"
    local rc=$?
    if [ $rc -eq 0 ] && grep -q 'non-finite values' "$T/err" && grep -q 'non-finite values (NaN or Inf)' "$T/r.html"; then
        pass nan_report_warns
    else
        fail nan_report_warns "exit $rc: $(head -c 300 "$T/err")"
    fi
}

test_negative_second_moment_refused() {
    cp -r "$T/run" "$T/negv"
    poison "$T/negv/optim.safetensors" adam.v -1.0
    "$M" train --data "$T/data" --out "$T/negv" --resume --steps 4 --quiet >"$T/out" 2>"$T/err"
    local rc=$?
    if [ $rc -eq 1 ] && grep -q 'impossible optimizer state at index 0' "$T/err"; then
        pass nan_negative_moment_refused
    else
        fail nan_negative_moment_refused "exit $rc: $(tail -c 300 "$T/err")"
    fi
}

test_resume_nan_stops
test_eval_says_nonfinite
test_report_says_nonfinite
test_negative_second_moment_refused
[ $fails -eq 0 ]
