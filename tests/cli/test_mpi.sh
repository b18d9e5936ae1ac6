# Training over several processes with mpirun: 2 processes train the same model as one
# process with twice the gradient accumulation (data parallel and expert parallel), their
# checkpoints resume on one process, a killed rank ends the job promptly with the
# checkpoint intact, and ranks given different configs or data refuse to start.
source "$(dirname "$0")/../cli_common.sh"
require_binary mpi
PYTHON=${PYTHON:-/usr/bin/python3}

# Without mpirun there is one process: expert parallelism is refused with a hint, before
# anything is written (this part runs whether or not MPI is installed).
make_prose "$T/corpus.txt" 2400
D="$T/data"
"$M" prepare --out "$D" --val-frac 0.2 "$T/corpus.txt" >/dev/null 2>"$T/err" || {
    fail mpi_setup "prepare: $(cat "$T/err")"
    exit 1
}
for bad in "2:run under mpirun" "0:needs a number of processes" "x:needs a number of processes"; do
    if "$M" train --data "$D" --out "$T/ep_alone" --quiet --steps 2 --expert-parallel "${bad%%:*}" 2>"$T/err"; then
        fail "mpi_ep_alone_${bad%%:*}" "exit 0"
    elif grep -q "${bad#*:}" "$T/err" && [ ! -e "$T/ep_alone" ]; then
        pass "mpi_ep_alone_${bad%%:*}"
    else
        fail "mpi_ep_alone_${bad%%:*}" "$(cat "$T/err")"
    fi
done

if ! command -v mpirun >/dev/null; then
    skip mpi "mpirun is not installed (scripts/setup.sh installs openmpi-bin)"
    exit 0
fi
if ! ldd "$M" 2>/dev/null | grep -q libmpi; then
    skip mpi "$M was built without MPI (install libopenmpi-dev and rebuild)"
    exit 0
fi
# Containers often forbid the cross-process memory copy Open MPI's shared-memory transport
# tries first; plain copies work everywhere.
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
MPI=(mpirun --oversubscribe)
[ "$(id -u)" = 0 ] && MPI+=(--allow-run-as-root)
# Open MPI's own allocations are still live at exit: leak reports would be about MPI, not us.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
MPI+=(-x ASAN_OPTIONS -x OMP_WAIT_POLICY)
MPIRUN=("${MPI[@]}" -np 2)

TINY=(--layers 2 --d-model 32 --heads 2 --seq-len 32 --batch 4 --experts 4 --topk 2 --d-expert 32 --threads 1
    --quiet --steps 20 --log-every 1 --eval-every 10 --eval-batches 4 --seed 3 --lr 3e-3)

# Step losses, grad norms and validation losses of a log, one per line.
curve() { grep -o '"\(loss\|grad_norm\|val_loss\)":[-0-9.e]*' "$1/log.jsonl"; }
# Same keys, values within a relative tolerance.
same_curve() {
    paste -d' ' <(curve "$1") <(curve "$2") | awk -F'[: ]' -v tol="${3:-1e-4}" '
        { n++; if ($1 != $3) bad = 1; d = $2 - $4; if (d < 0) d = -d; s = $2 < 0 ? -$2 : $2;
          if (d > tol * (s + 1e-6)) { bad = 1; print "  " $1 " " $2 " vs " $4 } }
        END { exit !(n >= 40 && !bad) }'
}
# Largest relative difference between the tensors of two safetensors files.
max_diff() {
    "$PYTHON" - "$1" "$2" <<'EOF'
import json, struct, sys
import numpy as np
def load(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: np.frombuffer(b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]], dtype=np.float32)
            for k, v in h.items() if k != '__metadata__' and v['dtype'] == 'F32'}
a, b = load(sys.argv[1]), load(sys.argv[2])
if a.keys() != b.keys() or not a: print('tensor names differ'); sys.exit(0)
print(max(float(np.max(np.abs(a[k] - b[k]))) / (float(np.max(np.abs(a[k]))) + 1e-12) for k in a))
EOF
}
small() { awk -v x="$1" -v t="$2" 'BEGIN { exit !(x != "" && x + 0 == x && x < t) }'; }

# The reference: one process, grad-accum 2.
"$M" train --data "$D" --out "$T/one" "${TINY[@]}" --grad-accum 2 2>"$T/err" || fail mpi_reference "$(cat "$T/err")"

# Routers with global statistics (pending counts) must match too: mpmoe when it is built in.
routers=(topk)
"$M" train --help | grep -q '^  mpmoe ' && routers+=(mpmoe)
for router in "${routers[@]}"; do
    ref="$T/one_$router" out="$T/dp_$router"
    [ "$router" = topk ] && ref="$T/one" # the default router: the reference above
    if { [ -e "$ref" ] || "$M" train --data "$D" --out "$ref" "${TINY[@]}" --router "$router" --grad-accum 2 >"$T/out" 2>&1; } &&
        "${MPIRUN[@]}" "$M" train --data "$D" --out "$out" "${TINY[@]}" --router "$router" >"$T/out" 2>&1 &&
        grep -q '"ranks":2' "$out/log.jsonl" && same_curve "$ref" "$out" >"$T/diff"; then
        pass "mpi_dp_equals_grad_accum_$router"
    else
        fail "mpi_dp_equals_grad_accum_$router" "$(tail -5 "$T/out") $(cat "$T/diff" 2>/dev/null)"
    fi
done

# Expert parallel: the 4 experts split over the 2 ranks. The same losses and gradient norms,
# and the gathered checkpoint (weights and AdamW moments) matches the one-process one.
ep="$T/ep"
if "${MPIRUN[@]}" "$M" train --data "$D" --out "$ep" "${TINY[@]}" --expert-parallel 2 >"$T/out" 2>&1 &&
    same_curve "$T/one" "$ep" >"$T/diff"; then
    pass mpi_ep_equals_one_process
else
    fail mpi_ep_equals_one_process "$(tail -5 "$T/out") $(cat "$T/diff" 2>/dev/null)"
fi
dm=$(max_diff "$T/one/model.safetensors" "$ep/model.safetensors" 2>&1)
do=$(max_diff "$T/one/optim.safetensors" "$ep/optim.safetensors" 2>&1)
if small "$dm" 1e-5 && small "$do" 1e-5; then pass mpi_ep_checkpoint_gathered
else fail mpi_ep_checkpoint_gathered "weights $dm, moments $do"; fi

# Data x expert parallel: 4 processes, 2 replicas of 2 expert shards, against one process
# accumulating 4 micro-batches.
if "$M" train --data "$D" --out "$T/one4" "${TINY[@]}" --grad-accum 4 2>"$T/out" &&
    "${MPI[@]}" -np 4 "$M" train --data "$D" --out "$T/dpep" "${TINY[@]}" --expert-parallel 2 >"$T/out" 2>&1 &&
    grep -q '"ranks":4' "$T/dpep/log.jsonl" && same_curve "$T/one4" "$T/dpep" >"$T/diff" &&
    small "$(max_diff "$T/one4/model.safetensors" "$T/dpep/model.safetensors" 2>&1)" 1e-5; then
    pass mpi_dp_x_ep_equals_one_process
else
    fail mpi_dp_x_ep_equals_one_process "$(tail -5 "$T/out") $(cat "$T/diff" 2>/dev/null)"
fi

# A checkpoint written by 2 processes (data parallel, then expert parallel) continues on
# one process with the same global batch and follows the one-process run.
for kind in dp ep; do
    r="$T/resume_$kind"
    extra=()
    [ $kind = ep ] && extra=(--expert-parallel 2)
    if "${MPIRUN[@]}" "$M" train --data "$D" --out "$r" "${TINY[@]}" "${extra[@]}" --stop-at 10 >"$T/out" 2>&1 &&
        "$M" train --data "$D" --out "$r" --resume --quiet --grad-accum 2 --threads 1 2>>"$T/out" &&
        same_curve "$T/one" "$r" >"$T/diff"; then
        pass "mpi_${kind}_checkpoint_resumes_on_one_process"
    else
        fail "mpi_${kind}_checkpoint_resumes_on_one_process" "$(tail -5 "$T/out") $(cat "$T/diff" 2>/dev/null)"
    fi
done

# Refused at start-up: ranks with different data, with a different config, and an
# expert-parallel width that does not divide the processes.
"$M" prepare --out "$T/data2" --val-frac 0.3 "$T/corpus.txt" >/dev/null 2>&1
check_refused() { # name, expected message, then the two ranks' extra flags separated by ':'
    local name=$1 want=$2 r="$T/refused_$1"
    shift 2
    local a=() b=() side=a
    for x in "$@"; do
        if [ "$x" = : ]; then side=b; elif [ $side = a ]; then a+=("$x"); else b+=("$x"); fi
    done
    if timeout 60 "${MPI[@]}" -np 1 "$M" train --out "$r" "${TINY[@]}" "${a[@]}" : -np 1 "$M" train \
        --out "$r" "${TINY[@]}" "${b[@]}" >"$T/out" 2>&1; then
        fail "mpi_refuses_$name" "exit 0"
    elif ! grep -q "$want" "$T/out"; then
        fail "mpi_refuses_$name" "no '$want' in: $(head -c 600 "$T/out")"
    elif [ -e "$r/model.safetensors" ]; then
        fail "mpi_refuses_$name" "a checkpoint was written"
    else
        pass "mpi_refuses_$name"
    fi
}
check_refused data "disagree on the data" --data "$D" : --data "$T/data2"
check_refused config "disagree on the config" --data "$D" --seed 3 : --data "$D" --seed 4
if "${MPIRUN[@]}" "$M" train --data "$D" --out "$T/ep3" "${TINY[@]}" --expert-parallel 3 >"$T/out" 2>&1; then
    fail mpi_refuses_ep_width "exit 0"
elif grep -q "must divide the number of processes" "$T/out"; then pass mpi_refuses_ep_width
else fail mpi_refuses_ep_width "$(head -c 600 "$T/out")"; fi

# Killing one rank ends the job within seconds with a message naming it; the last
# checkpoint stays whole and resumes on one process.
k="$T/killed"
"${MPIRUN[@]}" "$M" train --data "$D" --out "$k" "${TINY[@]}" --steps 100000 --eval-every 0 --ckpt-every 5 \
    >"$T/kout" 2>&1 &
job=$!
for _ in $(seq 1 300); do
    [ -s "$k/model.safetensors" ] && break
    sleep 0.1
done
victim=""
for pid in $(pgrep -P "$job" 2>/dev/null; pgrep -f "moelab train --data $D --out $k" 2>/dev/null); do
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1; then victim=$pid; fi
done
if [ -z "$victim" ] || [ ! -s "$k/model.safetensors" ]; then
    kill "$job" 2>/dev/null
    wait "$job" 2>/dev/null
    fail mpi_killed_rank "no checkpoint or no rank 1 to kill: $(tail -3 "$T/kout")"
else
    t0=$(date +%s.%N)
    kill -9 "$victim"
    for _ in $(seq 1 200); do
        kill -0 "$job" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$job" 2>/dev/null; then
        kill "$job"
        fail mpi_killed_rank "the job still ran 20 s after rank 1 was killed"
    fi
    wait "$job"
    rc=$?
    secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    at=$(grep -ao '"step":"[0-9]*"' "$k/model.safetensors" | head -1 | tr -dc 0-9)
    if [ $rc -ne 0 ] && grep -qi "rank 1" "$T/kout" && grep -qi "signal 9\|killed" "$T/kout" && [ -n "$at" ] &&
        "$M" train --data "$D" --out "$k" --resume --quiet --grad-accum 2 --threads 1 --stop-at $((at + 2)) 2>"$T/err" &&
        grep -q "\"step\":$((at + 2))," "$k/log.jsonl"; then
        pass "mpi_killed_rank (job ended ${secs}s after the kill; checkpoint resumed)"
    else
        fail mpi_killed_rank "exit $rc after ${secs}s: $(tail -4 "$T/kout") $(cat "$T/err" 2>/dev/null)"
    fi
fi
exit $((fails > 0))
