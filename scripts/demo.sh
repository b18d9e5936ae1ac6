#!/usr/bin/env bash
# The built-in default job: prepare a corpus, train a small MoE, evaluate it overall and
# per domain, sample from it.
#   scripts/demo.sh                       the debian-mix corpus (corpus/debian-mix.json: a
#                                         dictionary, quotes in 4 languages, C, Python, man
#                                         pages) with a BPE tokenizer trained on it
#   scripts/demo.sh TEXT_FILE_OR_DIR...   your own files instead: one domain, byte-level
#                                         tokens (VOCAB=N trains a BPE tokenizer on them)
# env: STEPS=600 THREADS=0 OUT=runs/demo DATA=runs/demo-data VOCAB (2048 for debian-mix)
#      ROUTER=topk (or mpmoe, ...: moelab train --help lists them) ROUTER_OPTS (its --router-opts)
# The debian-mix packages are installed when run as root (scripts/corpus.sh); otherwise the
# script says which to install, or pass files: scripts/demo.sh /usr/share/common-licenses
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/moelab
STEPS=${STEPS:-600}
THREADS=${THREADS:-0}
OUT=${OUT:-runs/demo}
DATA=${DATA:-runs/demo-data}
ROUTER=${ROUTER:-topk}
ROUTER_OPTS=${ROUTER_OPTS:-}
scripts/setup.sh --check
make --no-print-directory
if [ $# -eq 0 ]; then
    if ! scripts/corpus.sh --check 2>/dev/null; then
        if [ "$(id -u)" = 0 ]; then
            scripts/corpus.sh
        else
            scripts/corpus.sh --check || true
            echo "demo: or train on files you have: scripts/demo.sh /usr/share/common-licenses" >&2
            exit 1
        fi
    fi
    prep=(--manifest corpus/debian-mix.json --vocab "${VOCAB:-2048}")
else
    prep=("$@")
    [ -n "${VOCAB:-}" ] && prep=(--vocab "$VOCAB" "$@")
fi
rm -rf "$DATA" "$OUT"
"$BIN" prepare --out "$DATA" "${prep[@]}"
"$BIN" train --data "$DATA" --out "$OUT" --steps "$STEPS" --warmup 30 --threads "$THREADS" \
    --layers 4 --d-model 128 --heads 4 --seq-len 128 --batch 8 \
    --experts 8 --topk 2 --d-expert 128 --shared 1 --router "$ROUTER" --router-opts "$ROUTER_OPTS" \
    --lr 3e-3 --eval-every 200 --ckpt-every 200
"$BIN" info "$OUT" | tail -n 2
# 64 batches of 8 x 128 tokens: a fixed, interleaved share of every domain's validation text.
"$BIN" eval "$OUT" --data "$DATA" --batches 64 --threads "$THREADS"
echo "--- sample ---"
"$BIN" sample "$OUT" --data "$DATA" --prompt "The " --tokens 200 --temperature 0.7 --seed 1
echo "--- the run is in $OUT: log.jsonl, model.safetensors, optim.safetensors; the data in $DATA ---"
