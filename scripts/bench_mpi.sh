#!/usr/bin/env bash
# One process against two on this machine: the numbers in docs/scaling.md come from here.
#   scripts/bench_mpi.sh [REPEATS] [STEPS] [extra train flags...]   (default 3 repeats, 6 steps)
# Each repeat trains, back to back and on the same data (the Debian license texts, bytes):
#   one    1 process  x 2 threads, batch 16
#   dp     2 processes x 1 thread, batch 8 each, gradient reductions overlapped with the backward
#   dp_seq the same with the reductions after the backward (--no-overlap): their full cost
#   ep     2 processes x 1 thread, batch 8 each, experts split over both (--expert-parallel 2)
# The model is the benchmark config (moelab bench --help). Per run the first 2 steps are
# dropped and the median step is kept; printed are medians over repeats of tokens/s, of
# ratios taken within a repeat, and of the share of step time spent in communication.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
steps=${2:-6}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] && shift
make --no-print-directory build/moelab >/dev/null
command -v mpirun >/dev/null || { echo "bench_mpi.sh: mpirun is not installed (scripts/setup.sh)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cat /usr/share/common-licenses/* >"$out/text.txt"
build/moelab prepare --out "$out/data" --val-frac 0.1 "$out/text.txt" >/dev/null
MPI=(mpirun --oversubscribe -np 2 -x OMP_WAIT_POLICY)
[ "$(id -u)" = 0 ] && MPI+=(--allow-run-as-root)
export OMP_WAIT_POLICY=passive
CFG=(--layers 4 --d-model 256 --heads 4 --experts 8 --topk 2 --d-expert 512 --seq-len 256 --quiet
    --steps "$steps" --log-every 1 --eval-every 0 --eval-batches 1 --seed 1 "$@")

run() { # name, then the command's prefix and flags
    local name=$1
    shift
    rm -rf "$out/$name"
    "$@" --data "$out/data" --out "$out/$name" "${CFG[@]}" >"$out/$name.err" 2>&1 || { cat "$out/$name.err" >&2; exit 1; }
}
# median over the steps after the first two of a log field
field() { grep -o "\"$2\":[-0-9.e]*" "$out/$1/log.jsonl" | cut -d: -f2 | tail -n +3 | sort -g |
    awk '{v[NR]=$1} END {print NR ? ((NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2) : "nan"}'; }
median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

: >"$out/rows"
for i in $(seq 1 "$reps"); do
    run one build/moelab train --batch 16 --threads 2
    run dp "${MPI[@]}" build/moelab train --batch 8 --threads 1
    run dp_seq "${MPI[@]}" build/moelab train --batch 8 --threads 1 --no-overlap
    run ep "${MPI[@]}" build/moelab train --batch 8 --threads 1 --expert-parallel 2
    tok=$((16 * $(grep -o '"seq_len":[^0-9]*[0-9]*' "$out/one/config.json" | tr -dc 0-9)))
    row=""
    for v in one dp dp_seq ep; do row="$row $v=$(field $v tok_per_s)"; done
    for v in dp dp_seq ep; do
        comm=$(field $v comm) wait=$(field $v comm_wait) tps=$(field $v tok_per_s)
        row="$row ${v}_comm=$(awk -v c="$comm" -v t="$tps" -v n=$tok 'BEGIN{print c * t / n}')"
        row="$row ${v}_wait=$(awk -v c="$wait" -v t="$tps" -v n=$tok 'BEGIN{print c * t / n}')"
        row="$row ${v}_wait_s=$wait"
    done
    echo "run $i:$row"
    echo "$row" >>"$out/rows"
done
get() { tr ' ' '\n' <"$out/rows" | grep "^$1=" | cut -d= -f2 | median; }
ratio() { awk '{print}' "$out/rows" | while read -r r; do
    a=$(tr ' ' '\n' <<<"$r" | grep "^$1=" | cut -d= -f2) b=$(tr ' ' '\n' <<<"$r" | grep "^$2=" | cut -d= -f2)
    awk -v a="$a" -v b="$b" 'BEGIN{print a / b}'
done | median; }
hidden() { while read -r r; do
    a=$(tr ' ' '\n' <<<"$r" | grep "^dp_wait_s=" | cut -d= -f2) b=$(tr ' ' '\n' <<<"$r" | grep "^dp_seq_wait_s=" | cut -d= -f2)
    awk -v a="$a" -v b="$b" 'BEGIN{print (b > 0 ? 1 - a / b : 0)}'
done <"$out/rows" | median; }
echo "medians over $reps runs ($steps steps each; global batch $tok tokens):"
printf '  %-34s %s\n' "tok/s 1 process x 2 threads" "$(get one)" "tok/s 2 x 1 data parallel" "$(get dp)" \
    "tok/s 2 x 1 data parallel, no overlap" "$(get dp_seq)" "tok/s 2 x 1 expert parallel" "$(get ep)" \
    "ratio dp / one" "$(ratio dp one)" "ratio ep / one" "$(ratio ep one)" \
    "dp: step share in communication" "$(get dp_comm)" "dp: step share waiting after backward" "$(get dp_wait)" \
    "dp_seq: step share in communication" "$(get dp_seq_comm)" "ep: step share in communication" "$(get ep_comm)" \
    "dp: reduction time hidden by overlap" "$(hidden)" "dp_seq: seconds of the reduction" "$(get dp_seq_wait_s)"
