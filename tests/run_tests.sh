#!/usr/bin/env bash
# Runs every C test binary given as arguments, then the CLI tests, and prints the
# closing line "N passed, N failed". Exit status is non-zero when anything failed.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
for t in "$@"; do
    echo "== $(basename "$t")"
    if ! "$t" 2>&1 | tee -a "$log"; then status=1; fi
done
for s in tests/cli/*.sh; do
    [ -e "$s" ] || continue
    echo "== $(basename "$s")"
    if ! BUILD="$BUILD" bash "$s" 2>&1 | tee -a "$log"; then status=1; fi
done
passed=$(grep -c '^PASS ' "$log")
failed=$(grep -c '^FAIL ' "$log")
echo
if [ "$failed" -gt 0 ]; then
    echo "failed tests:"
    grep '^FAIL ' "$log"
    status=1
fi
[ "$passed" -gt 0 ] || status=1
echo "$passed passed, $failed failed"
exit $status
