#!/usr/bin/env bash
# The router zoo at twice the tokens, on six routers: does the ranking of
# scripts/zoo_experiment.sh (1.23M tokens per run) hold at 2.46M? The zoo preset's shape and
# hyperparameters, 2400 steps, seeds 1-3: topk, random, usmoe, expert_choice, etr, mpmoe.
# About 30 minutes on a quiet 2-core machine; scripts/zoo_table.py runs/zoo-long prints the tables.
# env: DATA=data/mix (debian-mix, --vocab 2048 --val-frac 0.025) OUT=runs/zoo-long
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/moelab
DATA=${DATA:-data/mix}
OUT=${OUT:-runs/zoo-long}
make --no-print-directory "$BIN"
scripts/mix_data.sh "$DATA"
"$BIN" compare --data "$DATA" --out "$OUT" --seeds 3 --steps 2400 --jobs 2 --threads 0 \
    --runs "topk:topk:--renorm 1;random:random:--renorm 1;usmoe:usmoe:;expert_choice:expert_choice:;etr:etr:;mpmoe:mpmoe:" \
    --layers 4 --dense-layers 1 --d-model 128 --heads 4 --seq-len 128 --batch 8 --experts 32 --topk 4 --d-expert 32 \
    --shared 1 --aux-coef 0.01 --z-coef 0.001 --lr 0.003 --warmup 50 --eval-every 600 --eval-batches 40 \
    --ckpt-every 600 --log-every 5
echo
/usr/bin/python3 scripts/zoo_table.py "$OUT"
