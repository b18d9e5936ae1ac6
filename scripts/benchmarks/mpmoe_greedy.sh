#!/usr/bin/env bash
# Per-token cost of the MP-MoE greedy selection against top-k (one thread, medians).
# The training-step ratio is `moelab bench`'s business; this isolates the selection.
set -euo pipefail
cd "$(dirname "$0")/../.."
make --no-print-directory build/libmoelab.a >/dev/null
out=build/bench_mpmoe_greedy
cc -std=c11 -D_POSIX_C_SOURCE=200809L -O3 -march=native -fno-math-errno -fopenmp -Isrc \
    -o "$out" scripts/benchmarks/mpmoe_greedy.c build/libmoelab.a -lopenblas -lm
OMP_NUM_THREADS=1 "$out"
