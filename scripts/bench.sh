#!/usr/bin/env bash
# Repeats `moelab bench` and reports medians: the numbers quoted in notes come from here.
#   scripts/bench.sh [REPEATS] [moelab bench flags...]     (default 3 repeats, --threads 0)
# Each repeat measures the sgemm peak, moelab and the PyTorch mirror back to back, so
# every ratio is taken within one run; the medians are over repeats.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
[ $# -gt 0 ] && shift
make --no-print-directory build/moelab >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for i in $(seq 1 "$reps"); do
    build/moelab bench --json "$out/$i.json" "$@" >"$out/$i.txt" 2>"$out/$i.err" || { cat "$out/$i.err" >&2; exit 1; }
    echo "run $i: $(tr -d '{}"' <"$out/$i.json")"
done
median() { # field name -> median over the runs
    for f in "$out"/*.json; do grep -o "\"$1\":[-0-9.e]*" "$f" | cut -d: -f2; done | sort -g |
        awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'
}
echo "medians over $reps runs:"
for k in sgemm_peak_gflops moelab_tok_per_s mirror_tok_per_s ratio mfu mirror_mfu router_share; do
    printf '  %-20s %s\n' "$k" "$(median "$k")"
done
