#!/usr/bin/env bash
# Short smoke sweeps of the router zoo (1 seed; minutes to an hour on a busy 2-core
# machine): does every router train, and how does each compare with the random control?
# Not the experiment (scripts/zoo_experiment.sh is): too few steps and seeds to rank routers.
#   scripts/zoo_smoke.sh shape   the zoo preset's fine-grained shape (E=32, k=4), 250 steps
#   scripts/zoo_smoke.sh small   a smaller fine-grained model (E=16, k=2, d_model 64), 400 steps,
#                                with mpmoe and its compositions
# env: DATA=data/mix (debian-mix, --vocab 2048 --val-frac 0.025) OUT=runs/zoo-smoke-<kind>
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-small}
DATA=${DATA:-data/mix}
OUT=${OUT:-runs/zoo-smoke-$kind}
make --no-print-directory build/moelab
case "$kind" in
shape)
    SHAPE="--layers 4 --dense-layers 1 --d-model 128 --heads 4 --seq-len 128 --batch 8 --experts 32 --topk 4 --d-expert 32 --shared 1 --eval-every 125"
    STEPS=250
    RUNS="topk:topk:--renorm 1;topk-cap:topk:--renorm 1 --router-opts cf=1.25;random:random:--renorm 1;auxfree:auxfree:--renorm 1;orthvar:orthvar:--renorm 1 --router-opts var=1e-3,ortho_norm=raw;expert_choice:expert_choice:;usmoe:usmoe:;etr:etr:"
    ;;
small)
    SHAPE="--layers 3 --dense-layers 1 --d-model 64 --heads 2 --seq-len 64 --batch 8 --experts 16 --topk 2 --d-expert 32 --shared 1 --eval-every 200 --log-every 10"
    STEPS=400
    RUNS="topk:topk:--renorm 1;random:random:--renorm 1;auxfree:auxfree:--renorm 1;orthvar:orthvar:--renorm 1 --router-opts var=1e-3,ortho_norm=raw;orthvar-unit:orthvar:--renorm 1 --router-opts var=1e-3,ortho_norm=unit;orthvar-calib:orthvar:--renorm 1 --router-opts var=1e-3,ortho_norm=raw,calib=0.25;orthvar-var1e-4:orthvar:--renorm 1 --router-opts var=1e-4,ortho_norm=unit;expert_choice:expert_choice:;usmoe:usmoe:;etr:etr:;mpmoe:mpmoe:;mpmoe-orthvar:mpmoe:--router-opts ortho=1e-3,var=1e-3,ortho_norm=unit;mpmoe-auxfree:mpmoe:--router-opts bias_rate=1e-3"
    ;;
*) echo "usage: scripts/zoo_smoke.sh shape|small" >&2; exit 2 ;;
esac
# shellcheck disable=SC2086
nice -n 10 build/moelab compare --data "$DATA" --out "$OUT" --runs "$RUNS" --seeds 1 --steps "$STEPS" --jobs 2 --threads 2 \
    --no-analyze --aux-coef 0.01 --z-coef 0.001 --lr 0.003 --warmup 30 --eval-batches 16 $SHAPE
