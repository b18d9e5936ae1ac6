#!/usr/bin/env bash
# Whatever a loader reads is bounded: a FIFO nobody writes to, a character device that
# never ends, or a folder, given where a checkpoint, shard, meta.json, config, manifest,
# tokenizer.json or log.jsonl is expected, is refused at once with a message. Every
# command runs under `timeout`: a loader that blocks on a FIFO or reads /dev/zero for ever
# fails the test instead of hanging it.
. "$(dirname "$0")/../cli_common.sh"
require_binary files_binary

# expect NAME CMD...: exit 1 within 20 s, a "moelab ...: " message naming a regular file.
expect_refused() {
    local name=$1
    shift
    timeout 20 "$M" "$@" >"$T/out" 2>"$T/err" </dev/null
    local rc=$?
    if [ $rc -eq 1 ] && grep -qE 'not a regular file|no readable log' "$T/err"; then
        pass "$name"
    else
        fail "$name" "exit $rc (124: hung): $(head -c 300 "$T/err")"
    fi
}

mkfifo "$T/fifo"
mkdir -p "$T/run" "$T/data" "$T/sweep/r-s1"
mkfifo "$T/run/model.safetensors" "$T/data/meta.json" "$T/data/train.bin" "$T/data/val.bin" "$T/sweep/r-s1/log.jsonl"

expect_refused files_checkpoint_fifo info "$T/fifo"
expect_refused files_checkpoint_dev info /dev/zero
expect_refused files_run_folder_fifo info "$T/run"
expect_refused files_config_fifo train --config "$T/fifo" --data "$T/data" --out "$T/o1"
expect_refused files_meta_fifo train --data "$T/data" --out "$T/o2" --steps 1
expect_refused files_manifest_fifo prepare --manifest "$T/fifo" --out "$T/o3"
expect_refused files_manifest_dev prepare --manifest /dev/zero --out "$T/o4"
expect_refused files_tokenizer_fifo tokenizer info --tokenizer "$T/fifo"
expect_refused files_tokenizer_dev tokenizer info --tokenizer /dev/urandom
expect_refused files_input_fifo prepare --out "$T/o5" "$T/fifo"
expect_refused files_log_fifo report "$T/sweep" --out "$T/r.html"
[ $fails -eq 0 ]
