#!/usr/bin/env bash
# The MP-MoE experiment (docs/mpmoe-experiment.md): presets/mpmoe.json on the debian-mix
# corpus, one seed at a time (all four arms of seed 1, then seed 2, ...), so that a run cut
# short still leaves complete seeds; then the tables (moelab compare), the seed-paired
# table of the doc (scripts/mpmoe_table.py) and the HTML report.
#   scripts/mpmoe_experiment.sh            everything; run it again to resume
# env: PRESET=mpmoe (or mpmoe-full, or a .json path)  OUT=runs/mpmoe  DATA=runs/mpmoe-data
#      SEEDS=3  VOCAB=2048  VAL_FRAC=0.025  EXTRA="..." (more moelab compare flags, e.g. --steps 100)
#      BIN=build/moelab (a copy keeps a long run safe from rebuilds)
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=${PRESET:-mpmoe}
OUT=${OUT:-runs/mpmoe}
DATA=${DATA:-runs/mpmoe-data}
SEEDS=${SEEDS:-3}
read -r -a extra <<<"${EXTRA:-}"
BIN=${BIN:-build/moelab}
[ "$BIN" = build/moelab ] && make --no-print-directory build/moelab >/dev/null
if [ ! -f "$DATA/meta.json" ]; then
    scripts/corpus.sh --check >/dev/null 2>&1 || scripts/corpus.sh
    "$BIN" prepare --out "$DATA" --manifest corpus/debian-mix.json --vocab "${VOCAB:-2048}" \
        --val-frac "${VAL_FRAC:-0.025}"
fi
mkdir -p "$OUT"
echo "== $(date -u +%FT%TZ) start: preset $PRESET, $SEEDS seeds, data $DATA, out $OUT"
for s in $(seq 1 "$SEEDS"); do
    echo "== $(date -u +%FT%TZ) seed $s"
    "$BIN" compare --preset "$PRESET" --data "$DATA" --out "$OUT" --seed "$s" --seeds 1 "${extra[@]}" ||
        echo "== seed $s: some run failed (see the messages above); going on"
done
echo "== $(date -u +%FT%TZ) tables over all seeds"
"$BIN" compare --preset "$PRESET" --data "$DATA" --out "$OUT" --seeds "$SEEDS" "${extra[@]}" || true
/usr/bin/python3 scripts/mpmoe_table.py "$OUT" >"$OUT/mpmoe-table.md" && cat "$OUT/mpmoe-table.md"
"$BIN" report "$OUT" --title "MP-MoE against top-k ($PRESET)"
echo "== $(date -u +%FT%TZ) done: $OUT/mpmoe-table.md, $OUT/report.html"
