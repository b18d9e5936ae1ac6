#!/usr/bin/env bash
# Repeats `moelab bench` and reports medians: the numbers quoted in notes come from here.
#   scripts/bench.sh [REPEATS] [moelab bench flags...]     (default 3 repeats, --threads 0)
#   e.g. scripts/bench.sh 3 --threads 2 --fine [--balanced]
# Each repeat measures the fp32 and bf16 GEMM peaks, moelab in fp32 and bf16 (and with --fine
# the fine-grained config) and the PyTorch mirror in fp32 and under CPU autocast to bf16 back
# to back, so every ratio is taken within one run; the medians are over repeats. The machine's
# load average is printed before and after: on a shared machine the absolute rates drop with it.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
[ $# -gt 0 ] && shift
make --no-print-directory build/moelab >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq 1 "$reps"); do
    build/moelab bench --json "$out/$i.json" "$@" >"$out/$i.txt" 2>"$out/$i.err" || { cat "$out/$i.err" >&2; exit 1; }
    echo "run $i: $(tr -d '{}"' <"$out/$i.json")"
done
median() { # field name -> median over the runs
    for f in "$out"/*.json; do grep -o "\"$1\":[-0-9.e]*" "$f" | cut -d: -f2; done | sort -g |
        awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'
}
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "medians over $reps runs:"
for k in sgemm_peak_gflops openblas_peak_gflops bf16_peak_gflops moelab_tok_per_s mirror_tok_per_s ratio mfu \
    mirror_mfu router_share max_load fp32_tok_per_s bf16_tok_per_s fp32_mfu bf16_mfu mirror_bf16_tok_per_s bf16_over_fp32 \
    bf16_peak_over_fp32_peak bf16_over_best_mirror fine_fp32_tok_per_s fine_bf16_tok_per_s fine_fp32_mfu_over_coarse \
    fine_bf16_mfu_over_coarse fine_router_share fine_max_load; do
    if grep -q "\"$k\"" "$out/1.json"; then printf '  %-26s %s\n' "$k" "$(median "$k")"; fi
done
