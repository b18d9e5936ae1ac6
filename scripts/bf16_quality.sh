#!/usr/bin/env bash
# Does bf16 training reach fp32's quality? The demo's model and schedule (scripts/demo.sh:
# 600 steps on debian-mix, BPE 2048), trained with --precision fp32 and --precision bf16 on
# the same seeds, side by side; `moelab compare` prints val bpb mean +- sd per precision and
# the bf16 - fp32 difference paired by seed. About 5 minutes on a quiet 2-core machine.
#   scripts/bf16_quality.sh            3 seeds
# env: SEEDS=3 STEPS=600 DATA=data/mix OUT=runs/bf16-quality
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/moelab
DATA=${DATA:-data/mix}
OUT=${OUT:-runs/bf16-quality}
make --no-print-directory "$BIN"
scripts/mix_data.sh "$DATA"
rm -rf "$OUT"
"$BIN" compare --data "$DATA" --out "$OUT" --runs "fp32:topk:--precision fp32;bf16:topk:--precision bf16" \
    --seeds "${SEEDS:-3}" --steps "${STEPS:-600}" --jobs 2 --no-analyze --warmup 30 \
    --layers 4 --d-model 128 --heads 4 --seq-len 128 --batch 8 --experts 8 --topk 2 --d-expert 128 --shared 1 \
    --lr 3e-3 --eval-every 200 --eval-batches 64
