#!/usr/bin/env bash
# Prepares debian-mix the way the experiments use it (BPE vocabulary 2048, 2.5% validation)
# into DIR, unless DIR already holds a prepared corpus. Installs the corpus packages first
# when run as root (scripts/corpus.sh).
#   scripts/mix_data.sh DIR
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: scripts/mix_data.sh DIR" >&2; exit 2; }
dir=$(realpath -m "$1")
cd "$(dirname "$0")/.."
[ -f "$dir/train.bin" ] && exit 0
make --no-print-directory build/moelab
scripts/corpus.sh
build/moelab prepare --manifest corpus/debian-mix.json --out "$dir" --vocab 2048 --val-frac 0.025
