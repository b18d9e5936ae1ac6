#!/usr/bin/env bash
# Runs every libFuzzer harness (make fuzzers) for SECONDS each, starting from its seed
# corpus in fuzz/corpus/<name> (read only) plus what earlier runs found, kept in
# $FUZZ_BUILD/corpus/<name>. Prints executions, time and crashes per harness and exits 1
# when any harness crashed (the input is saved as $FUZZ_BUILD/crash-<name>-*).
#   scripts/fuzz.sh [SECONDS] [HARNESS...]     (default 60 s, every harness)
set -uo pipefail
cd "$(dirname "$0")/.."
B=${FUZZ_BUILD:-build-fuzz}
S=${1:-60}
shift || true
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for f in "$B"/fuzz_*; do [ -x "$f" ] && names+=("$(basename "$f" | sed 's/^fuzz_//')"); done
fi
[ ${#names[@]} -gt 0 ] || { echo "no fuzzers in $B: run make fuzzers" >&2; exit 1; }
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
bad=0 total=0
printf '%-12s %12s %8s %8s\n' harness executions seconds crashes
for n in "${names[@]}"; do
    mkdir -p "$B/corpus/$n"
    log="$B/fuzz-$n.log"
    t0=$(date +%s)
    "$B/fuzz_$n" -max_total_time="$S" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
        -report_slow_units=120 -artifact_prefix="$B/crash-$n-" "$B/corpus/$n" "fuzz/corpus/$n" >"$log" 2>&1
    rc=$?
    secs=$(($(date +%s) - t0))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    crashes=0
    [ $rc -ne 0 ] && crashes=1 && bad=1
    printf '%-12s %12s %8s %8s\n' "$n" "${execs:-?}" "$secs" "$crashes"
    [ $rc -ne 0 ] && grep -m 5 -E 'ERROR|SUMMARY|deadly|Test unit written' "$log"
    total=$((total + ${execs:-0}))
done
echo "total executions: $total"
exit $bad
