#!/usr/bin/env bash
# Faults around run and data folders: prepare killed at every point of its save sequence
# leaves the old data set or the new one (never a mix); one trainer per run folder (the
# second is refused naming the first's pid; the lock goes with a crash); a full disk or a
# file size limit stops the command with a message and leaves the last checkpoint whole;
# stdout that cannot be written is an error; a failed start leaves nothing that blocks the
# next try; eval refuses a data folder whose meta.json disagrees with its shards; a
# manifest glob that would walk the file system is refused in bounded time.
. "$(dirname "$0")/../cli_common.sh"
require_binary run_binary

make_prose "$T/a.txt" 400
awk 'BEGIN { for (i = 1; i <= 400; i++) { printf "x[%d] = %d;\n", i, i * 7; if (i % 20 == 0) print "" } }' >"$T/b.txt"
printf '{"name":"t","domains":[{"name":"a","files":["a.txt"],"split":"paragraphs","min_doc_bytes":256},{"name":"b","files":["b.txt"],"split":"paragraphs","min_doc_bytes":256}]}\n' >"$T/m.json"
TINY=(--layers 2 --d-model 16 --heads 2 --seq-len 16 --batch 2 --experts 4 --topk 2 --d-expert 8 --eval-batches 2 --threads 1)
prep() { "$M" prepare --manifest "$T/m.json" --val-frac 0.3 --quiet --out "$@" >/dev/null; }
if ! prep "$T/bpe" --vocab 300 2>"$T/err" || ! prep "$T/bytes" 2>"$T/err"; then
    echo "FAIL run_setup: $(tail -c 300 "$T/err")"
    exit 1
fi

# The file a reader opens for DIR/NAME while a commit record is pending (core/commit.h).
resolved() { if [ -e "$1/.commit" ] && [ -e "$1/$2.new" ]; then echo "$1/$2.new"; else echo "$1/$2"; fi; }
same_as() {
    local f
    for f in train.bin val.bin meta.json; do cmp -s "$(resolved "$1" $f)" "$2/$f" || return 1; done
}

test_prepare_kill_every_point() {
    local n killed=0 ok=1 D="$T/walk"
    for n in $(seq 1 40); do
        rm -rf "$D"
        cp -r "$T/bpe" "$D"
        { MOELAB_COMMIT_FAULT=$n "$M" prepare --manifest "$T/m.json" --val-frac 0.3 --quiet --out "$D" >/dev/null 2>&1; } 2>/dev/null
        local rc=$?
        [ $rc -eq 137 ] || break
        killed=$((killed + 1))
        if ! same_as "$D" "$T/bpe" && ! same_as "$D" "$T/bytes"; then
            fail prepare_kill_every_point "killed at point $n: the folder mixes two runs"
            ok=0
            break
        fi
        # the next prepare into the folder finishes or drops the interrupted set first
        if ! prep "$D" 2>"$T/err" || ! same_as "$D" "$T/bytes" || ls -A "$D" | grep -qE '\.new|\.tmp\.|^\.commit$' ||
            [ -e "$D/tokenizer.json" ]; then
            fail prepare_kill_every_point "after a kill at point $n the next run left: $(ls -A "$D" | tr '\n' ' ') $(head -c 200 "$T/err")"
            ok=0
            break
        fi
    done
    [ $ok -eq 1 ] && { [ $killed -ge 5 ] && pass prepare_kill_every_point || fail prepare_kill_every_point "only $killed kill points"; }
}

test_one_writer() {
    local R="$T/locked"
    "$M" train --data "$T/bytes" --out "$R" --steps 100000 --ckpt-every 5 --eval-every 0 --quiet "${TINY[@]}" >/dev/null 2>&1 &
    local first=$! i
    for i in $(seq 1 100); do [ -s "$R/model.safetensors" ] && break; sleep 0.2; done
    timeout 20 "$M" train --data "$T/bytes" --out "$R" --resume --steps 100000 --quiet >"$T/out" 2>"$T/err"
    local rc=$?
    if [ $rc -eq 1 ] && grep -q "in use by another moelab process (pid $first)" "$T/err"; then
        pass run_lock_refuses_second
    else
        fail run_lock_refuses_second "exit $rc: $(head -c 300 "$T/err")"
    fi
    kill -9 "$first"
    wait "$first" 2>/dev/null
    # the crash released the lock; the pair it left is whole and resumes
    local step
    step=$("$M" info "$R" --json 2>/dev/null | tr ',' '\n' | sed -n 's/.*"step":\([0-9]*\).*/\1/p' | head -n 1)
    if timeout 60 "$M" train --data "$T/bytes" --out "$R" --resume --steps $((step + 2)) --quiet >"$T/out" 2>"$T/err" &&
        ! ls -A "$R" | grep -qE '\.new|\.tmp\.|^\.commit$'; then
        pass run_lock_released_by_crash
    else
        fail run_lock_released_by_crash "step '$step': $(tail -c 300 "$T/err")"
    fi
}

test_full_disk() {
    local R="$T/disk"
    "$M" train --data "$T/bytes" --out "$R" --steps 2 --quiet "${TINY[@]}" >/dev/null 2>&1 || { fail full_disk_setup "train"; return; }
    cp "$R/model.safetensors" "$T/model_before"
    # checkpoints are ~100 KB: a 40 KB file size limit fails the save (log.jsonl is smaller)
    (ulimit -f 40; "$M" train --data "$T/bytes" --out "$R" --resume --steps 4 --quiet >"$T/out" 2>"$T/err")
    local rc=$?
    if [ $rc -eq 1 ] && grep -qiE 'cannot write|short write|File too large' "$T/err" && cmp -s "$R/model.safetensors" "$T/model_before" &&
        ! ls -A "$R" | grep -qE '\.new|\.tmp\.|^\.commit$'; then
        pass full_disk_checkpoint
    else
        fail full_disk_checkpoint "exit $rc: $(tail -c 300 "$T/err") / $(ls -A "$R" | tr '\n' ' ')"
    fi
    # a log past the limit: its first write fails, and the run stops at once
    (ulimit -f 1; "$M" train --data "$T/bytes" --out "$R" --resume --steps 6 --quiet >"$T/out" 2>"$T/err")
    rc=$?
    if [ $rc -eq 1 ] && grep -qE "log.jsonl(: write failed|.tmp.[0-9]+': File too large)" "$T/err" &&
        cmp -s "$R/model.safetensors" "$T/model_before"; then
        pass full_disk_log
    else
        fail full_disk_log "exit $rc: $(tail -c 300 "$T/err")"
    fi
    # a disk that fills while training: the log's next line fails and the run stops there
    (ulimit -f 8; "$M" train --data "$T/bytes" --out "$T/disk2" --steps 500 --quiet "${TINY[@]}" >"$T/out" 2>"$T/err")
    rc=$?
    if [ $rc -eq 1 ] && grep -q 'log.jsonl: write failed' "$T/err"; then
        pass full_disk_log_append
    else
        fail full_disk_log_append "exit $rc: $(tail -c 300 "$T/err")"
    fi
    "$M" info "$R" >/dev/full 2>"$T/err"
    rc=$?
    [ $rc -ne 0 ] && grep -q 'cannot write standard output' "$T/err" && pass full_disk_stdout || fail full_disk_stdout "exit $rc"
    "$M" eval "$R" --data "$T/bytes" --json --threads 1 >/dev/full 2>"$T/err"
    rc=$?
    [ $rc -ne 0 ] && grep -q 'cannot write standard output' "$T/err" && pass full_disk_stdout_json || fail full_disk_stdout_json "exit $rc"
}

test_failed_start_leaves_nothing() {
    local R="$T/fresh"
    "$M" train --data "$T/bytes" --out "$R" --steps 2 --quiet "${TINY[@]}" --router no-such-router >/dev/null 2>"$T/err"
    local rc1=$?
    "$M" train --data "$T/bpe" --out "$R" --steps 2 --quiet "${TINY[@]}" --vocab 257 >/dev/null 2>"$T/err2"
    local rc2=$?
    if [ $rc1 -eq 1 ] && [ $rc2 -eq 1 ] && [ ! -e "$R" ] &&
        "$M" train --data "$T/bytes" --out "$R" --steps 2 --quiet "${TINY[@]}" >/dev/null 2>"$T/err"; then
        pass failed_start_leaves_nothing
    else
        fail failed_start_leaves_nothing "exits $rc1 $rc2, left: $(ls -A "$R" 2>&1 | tr '\n' ' ') $(head -c 200 "$T/err")"
    fi
}

test_eval_mixed_folder() {
    local D="$T/mixed"
    cp -r "$T/bytes" "$D"
    cp "$T/bpe/meta.json" "$T/bpe/tokenizer.json" "$D/"
    "$M" eval "$T/disk" --data "$D" --threads 1 >"$T/out" 2>"$T/err"
    local rc=$?
    [ $rc -eq 1 ] && grep -q 'mixes two prepared data sets' "$T/err" && pass eval_refuses_mixed_folder ||
        fail eval_refuses_mixed_folder "exit $rc: $(head -c 300 "$T/err")"
}

test_pathological_glob() {
    printf '{"name":"g","domains":[{"name":"d","files":["/*/*/*/*/*/*/*/*/*/*/*/*"]}]}\n' >"$T/g.json"
    timeout 60 "$M" prepare --manifest "$T/g.json" --out "$T/gout" --quiet >"$T/out" 2>"$T/err"
    local rc=$?
    [ $rc -eq 1 ] && grep -q 'folder entries' "$T/err" && [ ! -e "$T/gout" ] && pass manifest_glob_bounded ||
        fail manifest_glob_bounded "exit $rc (124: still walking): $(head -c 300 "$T/err")"
}

# --threads is checked before it reaches OpenMP or the BLAS, in every command that takes it.
test_threads_checked() {
    local ok=1 c
    for c in "train --data $T/bytes --out $T/thr" "eval $T/disk --data $T/bytes" "analyze $T/disk --data $T/bytes" \
        "bench --steps 1"; do
        timeout 30 "$M" $c --threads 100000 >"$T/out" 2>"$T/err"
        local rc=$?
        if [ $rc -ne 1 ] || ! grep -q -- 'threads' "$T/err"; then
            fail threads_checked "$c: exit $rc: $(head -c 200 "$T/err")"
            ok=0
        fi
    done
    [ $ok -eq 1 ] && [ ! -e "$T/thr" ] && pass threads_checked
}

test_prepare_kill_every_point
test_one_writer
test_full_disk
test_failed_start_leaves_nothing
test_eval_mixed_folder
test_pathological_glob
test_threads_checked
[ $fails -eq 0 ]
