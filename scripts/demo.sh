#!/usr/bin/env bash
# The built-in default job: prepare a corpus, train a small MoE, evaluate it, sample from it.
# Corpus: the license texts every Debian system ships in /usr/share/common-licenses
# (package base-files), or the files/folders given as arguments.
#   scripts/demo.sh [TEXT_FILE_OR_DIR...]      (env: STEPS=600 THREADS=0 OUT=runs/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/moelab
STEPS=${STEPS:-600}
THREADS=${THREADS:-0}
OUT=${OUT:-runs/demo}
DATA=${DATA:-runs/demo-data}
inputs=("$@")
if [ ${#inputs[@]} -eq 0 ]; then
    if [ ! -d /usr/share/common-licenses ]; then
        echo "demo: /usr/share/common-licenses is missing; pass text files or folders: scripts/demo.sh FILE..." >&2
        exit 1
    fi
    inputs=(/usr/share/common-licenses)
fi
scripts/setup.sh --check
make --no-print-directory
rm -rf "$DATA" "$OUT"
"$BIN" prepare --out "$DATA" "${inputs[@]}"
"$BIN" train --data "$DATA" --out "$OUT" --steps "$STEPS" --warmup 30 --threads "$THREADS" \
    --layers 4 --d-model 128 --heads 4 --seq-len 128 --batch 8 \
    --experts 8 --topk 2 --d-expert 128 --shared 1 --router topk \
    --lr 3e-3 --eval-every 200 --ckpt-every 200
"$BIN" info "$OUT" | tail -n 2
"$BIN" eval "$OUT" --data "$DATA"
echo "--- sample ---"
"$BIN" sample "$OUT" --prompt "The " --tokens 200 --temperature 0.7 --seed 1
echo "--- the run is in $OUT: log.jsonl, model.safetensors, optim.safetensors ---"
