#!/usr/bin/env bash
# What a router costs against topk: `moelab bench --router` on the benchmark config and on
# the experiment's fine-grained shape, each repeated, with a topk-against-topk control run
# that shows the method's own bias and noise; medians over the repeats. Optionally the
# wall time of `moelab sample` on two trained checkpoints of a sweep.
#   scripts/bench_route.sh [ROUTER] [REPEATS]      (default mpmoe, 3)
# env: GEN_OPTS='eval_select=topk;eval_select=greedy' (the router's generation variants),
#      THREADS=1, SWEEP=runs/mpmoe (also time sample on SWEEP/topk-s1 and SWEEP/<ROUTER>-s1),
#      OUT=folder for the JSON (default: a temporary one), BIN=build/moelab,
#      EXP_FLAGS / BENCH_FLAGS: moelab bench flags for the experiment / benchmark shape
set -euo pipefail
cd "$(dirname "$0")/.."
router=${1:-mpmoe}
reps=${2:-3}
threads=${THREADS:-1}
gen=${GEN_OPTS-eval_select=topk;eval_select=greedy}
[ "$router" = topk ] && gen=""
BIN=${BIN:-build/moelab}
[ "$BIN" = build/moelab ] && make --no-print-directory build/moelab >/dev/null
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
median() { sort -g | awk '{v[NR]=$1} END {if (NR) print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
field() { grep -o "\"$1\":[-0-9.e]*" "$2" | head -n 1 | cut -d: -f2; }
# The experiment's shape first: it is the cheaper one (1k tokens a step against 4k).
for shape in experiment bench; do
    read -r -a flag <<<"${BENCH_FLAGS:---repeats 3 --steps 3 --gen-passes 5}"
    [ $shape = experiment ] && read -r -a flag <<<"--experiment ${EXP_FLAGS:---repeats 5 --steps 4 --gen-passes 10}"
    for who in "$router" topk; do
        [ $who = topk ] && g="" || g=$gen
        for i in $(seq 1 "$reps"); do
            j=$out/$shape-$who-$i.json
            # a result already in OUT is kept: rerun with the same OUT to resume
            [ -s "$j" ] || "$BIN" bench --router "$who" "${flag[@]}" --threads "$threads" --gen-opts "$g" --json "$j" \
                >"$out/$shape-$who-$i.txt" 2>"$out/$shape-$who-$i.err" || { cat "$out/$shape-$who-$i.err" >&2; exit 1; }
            echo "$shape $who run $i: ratio $(field ratio "$j"), router share $(field router_share "$j")"
        done
        echo "== $shape config, $who against topk (medians of $reps runs; each run is itself a median of interleaved repeats):"
        printf '   step-time ratio %s, router share %s (topk in the same runs %s)\n' \
            "$(for f in "$out"/$shape-$who-*.json; do field ratio "$f"; done | median)" \
            "$(for f in "$out"/$shape-$who-*.json; do field router_share "$f"; done | median)" \
            "$(for f in "$out"/$shape-$who-*.json; do field topk_router_share "$f"; done | median)"
        for f in "$out"/$shape-$who-1.json; do
            grep -o '"model":"[^"]*"' "$f" | cut -d'"' -f4 | while read -r model; do
                # the model names hold '[' and '=': fixed-string matching, then the numbers after it
                tps=$(for x in "$out"/$shape-$who-*.json; do
                    grep -oF "\"model\":\"$model\"," "$x" >/dev/null || continue
                    awk -v m="\"model\":\"$model\"," '{ i = index($0, m); if (i) print substr($0, i + length(m)) }' "$x" |
                        sed 's/}.*//'
                done)
                printf '   generation %-36s %8s tok/s  x%s of topk\n' "$model" \
                    "$(echo "$tps" | sed 's/.*tok_per_s":\([0-9.]*\).*/\1/' | median)" \
                    "$(echo "$tps" | sed 's/.*ratio":\([0-9.]*\).*/\1/' | median)"
            done
        done
    done
done
if [ -n "${SWEEP:-}" ] && [ -f "$SWEEP/topk-s1/model.safetensors" ] && [ -f "$SWEEP/$router-s1/model.safetensors" ]; then
    data=$(grep -o '"data": *"[^"]*"' "$SWEEP/sweep.json" | cut -d'"' -f4)
    for i in $(seq 1 $((reps * 3))); do
        for who in topk "$router"; do
            t0=$(date +%s.%N)
            "$BIN" sample "$SWEEP/$who-s1" --data "$data" --prompt "The " --tokens 120 --temperature 0 >/dev/null
            echo "$who $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')"
        done
    done >"$out/sample.txt"
    for who in topk "$router"; do
        printf '== moelab sample, 120 tokens, %s-s1: median wall time %s s over %d runs\n' "$who" \
            "$(grep "^$who " "$out/sample.txt" | cut -d' ' -f2 | median)" $((reps * 3))
    done
fi
echo "JSON and logs: $out"
