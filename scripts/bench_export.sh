#!/usr/bin/env bash
# Generation speed of an exported model in llama.cpp next to `moelab sample`, same model,
# same prompt, greedy, one thread each (moelab sample decodes on one thread).
#   scripts/bench_export.sh [REPEATS]       (default 5; medians over the repeats)
# Needs node-llama-cpp under build/llama (see .ci/run) or $MOELAB_LLAMA_DIR.
# For each model size: a byte-level model is trained for a few steps on the license texts
# (speed does not depend on how well it is trained), exported as f32 and f16, then
#   llama.cpp: tokens/s of N greedy tokens after the prompt, timed inside one process;
#   moelab:    (wall time of sample --tokens N  -  of --tokens 1) / (N - 1) per token,
#              so loading and the prompt are left out as in the llama.cpp timing.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-5}
make --no-print-directory build/moelab >/dev/null
export MOELAB_LLAMA_DIR=${MOELAB_LLAMA_DIR:-$PWD/build/llama/node_modules}
[ -f "$MOELAB_LLAMA_DIR/node-llama-cpp/dist/index.js" ] || { echo "node-llama-cpp not found in $MOELAB_LLAMA_DIR" >&2; exit 1; }
export LLAMA_THREADS=1 OMP_NUM_THREADS=1
M=build/moelab
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
$M prepare --out "$w/data" /usr/share/common-licenses >/dev/null 2>&1
median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
now() { date +%s.%N; }
PROMPT="The license"
echo "model | params | tokens | llama.cpp f32 tok/s | llama.cpp f16 tok/s | moelab sample tok/s | llama.cpp f32 / moelab"
for size in small large; do
    if [ $size = small ]; then flags=(--layers 4 --d-model 128 --heads 4 --seq-len 128 --experts 8 --topk 2 --d-expert 256)
    else flags=(--layers 8 --d-model 512 --heads 8 --seq-len 512 --experts 16 --topk 2 --d-expert 512); fi
    $M train --data "$w/data" --out "$w/$size" "${flags[@]}" --batch 2 --steps 3 --eval-every 0 --quiet >/dev/null
    for ty in f32 f16; do $M export "$w/$size" --format gguf --type $ty --out "$w/$size.$ty.gguf" 2>/dev/null; done
    seq=$($M info "$w/$size" --json | tr -d ' \t\n' | grep -o '"seq_len":[0-9]*' | cut -d: -f2)
    params=$($M info "$w/$size" --json | tr -d ' \t\n' | grep -o '"params_total":[0-9]*' | cut -d: -f2)
    n=$((seq - ${#PROMPT} - 2))
    echo "256 $(printf '%s' "$PROMPT" | od -An -v -tu1 | tr -s ' \n' '  ')" >"$w/prompt.ids"
    for ty in f32 f16; do echo "bench $w/$size.$ty.gguf $w/prompt.ids $n $reps $w/$size.$ty.rates"; done >"$w/jobs"
    node tests/llama_check.mjs --jobs "$w/jobs"
    for r in $(seq 1 "$reps"); do
        t0=$(now)
        $M sample "$w/$size" --prompt "$PROMPT" --temperature 0 --tokens 1 >/dev/null
        t1=$(now)
        # the text may end early at end-of-text: count what was generated
        got=$($M sample "$w/$size" --prompt "$PROMPT" --temperature 0 --tokens $n | head -c -1 | wc -c)
        t2=$(now)
        awk -v a="$t0" -v b="$t1" -v c="$t2" -v g="$got" -v p="${#PROMPT}" \
            'BEGIN { k = g - p; if (k > 1) printf "%.1f\n", (k - 1) / ((c - b) - (b - a)) }'
    done >"$w/$size.moelab"
    lf32=$(median <"$w/$size.f32.rates") lf16=$(median <"$w/$size.f16.rates") ours=$(median <"$w/$size.moelab")
    echo "$size ($(IFS=' '; echo "${flags[*]}" | sed 's/--//g')) | $params | $n | $lf32 | $lf16 | $ours | $(awk -v a="$lf32" -v b="$ours" 'BEGIN { printf "%.2f", a / b }')"
done
