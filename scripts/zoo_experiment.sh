#!/usr/bin/env bash
# The router-zoo experiment: every router on the fine-grained shape (presets/zoo.json),
# equal tokens, on debian-mix; then USMoE training-free on each topk checkpoint (its
# router weights reused, `moelab eval --router usmoe`), under the training (batch) rule
# and the per-token inference rule. Prints the compare table, the training-free one, then
# the zoo tables of docs/routers.md (scripts/zoo_table.py).
#   scripts/zoo_experiment.sh                   the full preset: 3 seeds, about 40 minutes on a quiet 2-core machine
#   SEEDS=1 STEPS=250 scripts/zoo_experiment.sh a short smoke run
# env: DATA=data/mix OUT=runs/zoo SEEDS STEPS JOBS=2 (runs side by side), THREADS=0 (all cores, split between the jobs)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/moelab
DATA=${DATA:-data/mix}
OUT=${OUT:-runs/zoo}
make --no-print-directory "$BIN"
scripts/mix_data.sh "$DATA"
args=(--preset zoo --data "$DATA" --out "$OUT" --jobs "${JOBS:-2}" --threads "${THREADS:-0}")
[ -n "${SEEDS:-}" ] && args+=(--seeds "$SEEDS")
[ -n "${STEPS:-}" ] && args+=(--steps "$STEPS")
"$BIN" compare "${args[@]}"
# The overall loss: the first "loss" of eval --json (domains follow it).
first_loss() { sed -E 's/^\{"split":"[^"]*","mode":"[^"]*","loss":([0-9.]+).*/\1/'; }
echo
echo "USMoE training-free on the topk checkpoints (val loss; eval = batch rule, infer = per-token rule)"
printf "%-12s %10s %12s %13s\n" run topk usmoe-eval usmoe-infer
for run in "$OUT"/topk-s*/; do
    [ -f "$run/model.safetensors" ] || continue
    base=$("$BIN" eval "$run" --data "$DATA" --batches 40 --json | first_loss)
    ev=$("$BIN" eval "$run" --data "$DATA" --batches 40 --json --router usmoe | first_loss)
    inf=$("$BIN" eval "$run" --data "$DATA" --batches 40 --json --router usmoe --mode infer | first_loss)
    printf "%-12s %10s %12s %13s\n" "$(basename "$run")" "$base" "$ev" "$inf"
done
echo
echo "The zoo tables (scripts/zoo_table.py $OUT):"
/usr/bin/python3 scripts/zoo_table.py "$OUT"
