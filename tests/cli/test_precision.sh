#!/usr/bin/env bash
# --precision bf16 end to end: training in bf16 lowers the loss about as fp32 does, the
# checkpoints are fp32 and interchangeable (eval and sample take either precision on either
# checkpoint), a bad precision is refused, and on a CPU without a bf16 matmul (forced with
# oneDNN's ONEDNN_MAX_CPU_ISA=AVX2) bf16 is refused with a clear message, while on AVX-512
# without native bf16 (ONEDNN_MAX_CPU_ISA=AVX512_CORE) oneDNN emulates it and it works.
. "$(dirname "$0")/../cli_common.sh"
require_binary precision_binary
TINY=(--layers 2 --d-model 32 --heads 2 --seq-len 32 --batch 4 --experts 4 --topk 2 --d-expert 32 --threads 2 --quiet)

make_prose "$T/corpus.txt" 1400
if ! "$M" prepare --out "$T/data" --val-frac 0.2 "$T/corpus.txt" >/dev/null 2>"$T/err"; then
    echo "FAIL precision_setup: $(cat "$T/err")"
    exit 1
fi
if ! grep -qw avx512f /proc/cpuinfo || ! grep -qw avx512bw /proc/cpuinfo; then
    skip precision_bf16 "this CPU has no AVX-512: only the refusal is tested"
    if "$M" train --data "$T/data" --out "$T/r" "${TINY[@]}" --steps 2 --precision bf16 2>"$T/err"; then
        fail precision_refused "bf16 trained without AVX-512"
    elif grep -qi "precision bf16 needs" "$T/err"; then pass precision_refused
    else fail precision_refused "$(cat "$T/err")"; fi
    exit $((fails > 0))
fi

train() { # NAME PRECISION [ENV...]
    local name=$1 prec=$2
    shift 2
    env "$@" "$M" train --data "$T/data" --out "$T/$name" "${TINY[@]}" --steps 40 --lr 3e-3 --seed 3 \
        --eval-every 0 --precision "$prec" >"$T/$name.out" 2>"$T/$name.err"
}
field() { grep -o "\"$1\":[-0-9.e]*" "$2" | cut -d: -f2; }
val_loss() { field val_loss "$T/$1/log.jsonl" | tail -n 1; }

train fp32 fp32 || fail precision_train_fp32 "$(cat "$T/fp32.err")"
if train bf16 bf16; then
    first=$(field loss "$T/bf16/log.jsonl" | head -n 3 | awk '{s += $1} END {print s / NR}')
    a=$(val_loss fp32) b=$(val_loss bf16)
    # Same seed and data: bf16 differs only by rounding, so it must learn as fp32 does.
    if awk -v f="$first" -v a="$a" -v b="$b" 'BEGIN {d = a - b; exit !(b < f - 0.3 && d < 0.05 && d > -0.05)}'; then
        pass precision_train_bf16
    else
        fail precision_train_bf16 "first loss $first, final val loss fp32 $a, bf16 $b"
    fi
    grep -qE '"precision":[[:space:]]*"bf16"' "$T/bf16/config.json" && pass precision_in_run_config ||
        fail precision_in_run_config "config.json does not record the precision"
else
    fail precision_train_bf16 "$(cat "$T/bf16.err")"
fi

# Checkpoints are fp32 whatever the training precision; eval reads either in either precision.
if [ -s "$T/bf16/model.safetensors" ] && [ -s "$T/fp32/model.safetensors" ]; then
    ok=1 msg=""
    for run in fp32 bf16; do
        for prec in fp32 bf16; do
            if ! "$M" eval "$T/$run" --data "$T/data" --precision "$prec" --json >"$T/e.$run.$prec" 2>"$T/err"; then
                ok=0 msg="$msg eval $run in $prec: $(cat "$T/err");"
            fi
        done
        x=$(field loss "$T/e.$run.fp32") y=$(field loss "$T/e.$run.bf16")
        awk -v x="$x" -v y="$y" 'BEGIN {d = x - y; exit !(x > 0 && d < 0.02 && d > -0.02 && d != 0)}' ||
            { ok=0 msg="$msg $run: eval loss fp32 $x vs bf16 $y;"; }
    done
    grep -q '"dtype":"BF16"' "$T/bf16/model.safetensors" && { ok=0 msg="$msg checkpoint holds BF16 tensors;"; }
    [ $ok = 1 ] && pass precision_checkpoints_interchangeable || fail precision_checkpoints_interchangeable "$msg"
    if "$M" sample "$T/bf16" --tokens 20 --seed 1 --precision bf16 >"$T/s.out" 2>"$T/err" && [ -s "$T/s.out" ]; then
        pass precision_sample_bf16
    else
        fail precision_sample_bf16 "$(cat "$T/err")"
    fi
fi

if "$M" train --data "$T/data" --out "$T/bad" "${TINY[@]}" --steps 2 --precision fp16 2>"$T/err"; then
    fail precision_bad_name "fp16 was accepted"
elif grep -qi "precision must be fp32 or bf16" "$T/err" && [ ! -e "$T/bad/model.safetensors" ]; then
    pass precision_bad_name
else
    fail precision_bad_name "$(cat "$T/err")"
fi
if "$M" eval "$T/fp32" --data "$T/data" --precision fp8 >/dev/null 2>"$T/err"; then
    fail precision_bad_name_eval "fp8 was accepted"
else
    grep -qi "fp8" "$T/err" && pass precision_bad_name_eval || fail precision_bad_name_eval "$(cat "$T/err")"
fi

# Below AVX-512 oneDNN has no bf16 matmul: refused up front, nothing written.
if train avx2 bf16 ONEDNN_MAX_CPU_ISA=AVX2; then
    fail precision_refused_avx2 "bf16 trained with ONEDNN_MAX_CPU_ISA=AVX2"
elif grep -qi "precision bf16 needs a CPU with AVX-512" "$T/avx2.err" && [ ! -e "$T/avx2/model.safetensors" ]; then
    pass precision_refused_avx2
else
    fail precision_refused_avx2 "$(cat "$T/avx2.err")"
fi
if env ONEDNN_MAX_CPU_ISA=AVX2 "$M" eval "$T/fp32" --data "$T/data" --precision bf16 >/dev/null 2>"$T/err"; then
    fail precision_refused_avx2_eval "eval ran bf16 with ONEDNN_MAX_CPU_ISA=AVX2"
else
    grep -qi "needs a CPU with AVX-512" "$T/err" && pass precision_refused_avx2_eval ||
        fail precision_refused_avx2_eval "$(cat "$T/err")"
fi
# AVX-512 without bf16 instructions: oneDNN emulates the bf16 products; same results.
if train emul bf16 ONEDNN_MAX_CPU_ISA=AVX512_CORE; then
    a=$(val_loss bf16) b=$(val_loss emul)
    awk -v a="$a" -v b="$b" 'BEGIN {d = a - b; exit !(d < 0.01 && d > -0.01)}' && pass precision_emulated_avx512 ||
        fail precision_emulated_avx512 "val loss native bf16 $a, emulated $b"
else
    fail precision_emulated_avx512 "$(cat "$T/emul.err")"
fi
# The benchmark's JSON has every key scripts/bench.sh takes medians of (one step of each config,
# no mirror), the peaks' ratio is the two peaks it reports, and --balanced spreads the load.
if "$M" bench --steps 1 --warmup-steps 0 --threads 2 --no-mirror --fine --balanced --json "$T/bench.json" \
    >"$T/bench.out" 2>"$T/bench.err"; then
    keys=$(sed -n '/^for k in/,/; do/p' scripts/bench.sh | sed 's/for k in//; s/; do//; s/\\//g')
    missing=$(for k in $keys; do case $k in mirror*|ratio|bf16_over_best_mirror) ;; *) grep -q "\"$k\":" "$T/bench.json" || echo "$k" ;; esac; done)
    num() { grep -o "\"$1\":[-0-9.e]*" "$T/bench.json" | cut -d: -f2; }
    if [ -z "$keys" ] || [ -n "$missing" ]; then
        fail precision_bench_json "keys missing: ${missing:-(no key list read from scripts/bench.sh)}"
    elif awk -v r="$(num bf16_peak_over_fp32_peak)" -v b="$(num bf16_peak_gflops)" -v f="$(num sgemm_peak_gflops)" \
        'BEGIN { exit !(f > 0 && (r - b / f) ^ 2 < 1e-4) }'; then
        pass precision_bench_json
        if grep -q '"balanced":1' "$T/bench.json" && awk -v a="$(num max_load)" -v b="$(num fine_max_load)" \
            'BEGIN { exit !(a >= 1 && a < 1.3 && b >= 1 && b < 1.3) }'; then
            pass precision_bench_balanced
        else
            fail precision_bench_balanced "max expert load $(num max_load) (fine $(num fine_max_load)), want < 1.3"
        fi
    else
        fail precision_bench_json "peak ratio $(num bf16_peak_over_fp32_peak) is not $(num bf16_peak_gflops) / $(num sgemm_peak_gflops)"
    fi
else
    fail precision_bench_json "$(tail -c 300 "$T/bench.err")"
fi
# The benchmark's PyTorch baseline under CPU autocast to bf16 runs (a tiny config, one step).
PY=${PYTHON:-/usr/bin/python3}
if "$PY" -c 'import torch' 2>/dev/null; then
    if "$PY" tests/mirror/bench_mirror.py --threads 1 --steps 1 --warmup-steps 0 --autocast-bf16 --d-model 32 \
        --layers 1 --heads 2 --seq-len 16 --batch 2 --experts 4 --d-expert 32 >"$T/ac.out" 2>"$T/ac.err" &&
        grep -q '"autocast_bf16": true' "$T/ac.out"; then
        pass precision_mirror_autocast
    else
        fail precision_mirror_autocast "$(tail -n 3 "$T/ac.err")"
    fi
else
    skip precision_mirror_autocast "no PyTorch for $PY"
fi
exit $((fails > 0))
