#!/usr/bin/env bash
# End-to-end tests of `moelab compare`: a tiny sweep (2 variants x 2 seeds, a few steps of
# a tiny model on a generated two-domain text), stopped half-way with --stop-at and then
# continued (each run resumed, every step logged once, the result equal to a straight
# training), results.csv / runs.csv / results.md, a finished sweep skipped, the thread
# split, presets and variants (--dry-run), and bad input: it must fail with
# "moelab compare: ..." on stderr, exit 1 (not a signal) and change no files.
#
# Needs bash, coreutils, grep, awk. Prints PASS/FAIL lines. Run: BUILD=build bash tests/cli/test_compare.sh
. "$(dirname "$0")/../cli_common.sh"
require_binary compare_binary
TINY=(--layers 2 --d-model 32 --heads 2 --seq-len 32 --batch 4 --experts 4 --topk 2 --d-expert 32)
RUNS="base:topk:--renorm 1 --aux-coef 0.01;norenorm:topk:--renorm 0"

# ------------------------------------------------------------------ data: two domains

# Prose and arithmetic in blank-line separated paragraphs: each domain several documents.
make_prose "$T/prose.txt"
awk 'BEGIN { for (i = 1; i <= 1400; i++) { printf "%d + %d = %d; x[%d] = {%d};\n", (i*7919)%10000, (i*31)%977,
    (i*i)%10007, i%64, i*3; if (i % 40 == 0) print "" } }' >"$T/code.txt"
printf '{"name":"t","domains":[{"name":"prose","files":["prose.txt"],"split":"paragraphs","min_doc_bytes":2048},{"name":"code","files":["code.txt"],"split":"paragraphs","min_doc_bytes":2048}]}\n' >"$T/corpus.json"
D="$T/data"
if ! "$M" prepare --out "$D" --manifest "$T/corpus.json" --val-frac 0.25 --quiet >"$T/out" 2>"$T/err"; then
    cat "$T/prose.txt" "$T/code.txt" >"$T/all.txt" # a build without manifests: one domain
    if ! "$M" prepare --out "$D" --val-frac 0.25 "$T/all.txt" >"$T/out" 2>"$T/err"; then
        echo "FAIL compare_setup_prepare: $(cat "$T/err")"
        exit 1
    fi
fi

# ------------------------------------------------------------------ helpers

run() {
    "$M" "$@" >"$T/out" 2>"$T/err"
    RC=$?
}

snap() { [ -d "$1" ] && (cd "$1" && find . -type f -printf '%p %s %T@\n' | LC_ALL=C sort); }

# check_fail NAME PATTERN ARGS...: `moelab compare ARGS` fails cleanly, says PATTERN, and
# leaves the sweep folder $S as it was (or absent).
check_fail() {
    local name=$1 pat=$2
    shift 2
    local before
    before=$(snap "$S")
    run compare "$@"
    if [ $RC -ne 1 ]; then
        fail "$name" "exit status $RC, want 1 (moelab compare $*): $(head -c 300 "$T/err")"
    elif ! grep -q '^moelab compare: ' "$T/err"; then
        fail "$name" "stderr lacks 'moelab compare: ': $(head -c 300 "$T/err")"
    elif ! grep -qiE -- "$pat" "$T/err"; then
        fail "$name" "stderr does not mention /$pat/: $(head -c 300 "$T/err")"
    elif [ "$(snap "$S")" != "$before" ]; then
        fail "$name" "the sweep folder changed"
    else
        pass "$name"
    fi
}

# Last training step logged in a run's log.jsonl (lines with "loss").
last_step() { grep '"loss"' "$1/log.jsonl" | tail -n 1 | sed 's/^{"step":\([0-9]*\).*/\1/'; }
# The final evaluation line's val_loss.
final_val() { grep '"val_loss"' "$1/log.jsonl" | tail -n 1 | sed 's/.*"val_loss":\([0-9.]*\).*/\1/'; }

# ------------------------------------------------------------------ tests

test_help() {
    run compare --help
    if [ $RC -eq 0 ] && grep -q -- '--preset' "$T/out" && grep -q -- '--runs' "$T/out" && grep -q -- '--jobs' "$T/out"; then
        pass compare_help
    else
        fail compare_help "exit $RC or flags missing from the help"
    fi
}

S="$T/sweep"
SWEEP=(--data "$D" --out "$S" --runs "$RUNS" --seeds 2 --steps 12 "${TINY[@]}" --eval-every 6 --jobs 2 --threads 2)

test_half_finished() {
    run compare "${SWEEP[@]}" --stop-at 6
    local ok=1
    [ $RC -eq 0 ] || { fail compare_stop_at "exit $RC: $(tail -n 5 "$T/err")"; return; }
    for r in base-s1 base-s2 norenorm-s1 norenorm-s2; do
        [ -s "$S/$r/model.safetensors" ] && [ "$(last_step "$S/$r")" = 6 ] || ok=0
    done
    grep -q 'not finished' "$T/err" || ok=0
    [ $ok = 1 ] && pass compare_stop_at || fail compare_stop_at "runs not stopped at step 6 with a checkpoint: $(tail -n 3 "$T/err")"
    # --jobs 2 --threads 2: one thread per run, so cores are not oversubscribed.
    if grep -q '"threads":[[:space:]]*1' "$S/base-s1/config.json"; then pass compare_thread_split; else
        fail compare_thread_split "config.json threads is not 1: $(grep threads "$S/base-s1/config.json")"
    fi
}

test_resume() {
    run compare "${SWEEP[@]}"
    [ $RC -eq 0 ] || { fail compare_resume "exit $RC: $(tail -n 5 "$T/err")"; return; }
    local n ok=1
    n=$(grep -c 'resuming' "$T/err")
    [ "$n" = 4 ] || { fail compare_resume "$n runs resumed, want 4"; ok=0; }
    for r in base-s1 base-s2 norenorm-s1 norenorm-s2; do
        # every step 1..12 logged exactly once across the two invocations
        local steps
        steps=$(grep '"loss"' "$S/$r/log.jsonl" | sed 's/^{"step":\([0-9]*\).*/\1/' | tr '\n' ' ')
        [ "$steps" = "1 2 3 4 5 6 7 8 9 10 11 12 " ] || { fail compare_resume_log "$r logged steps: $steps"; ok=0; }
    done
    [ $ok = 1 ] && pass compare_resume
    # The resumed run is the run a straight `moelab train` with the same flags gives.
    "$M" train --data "$D" --out "$T/direct" "${TINY[@]}" --steps 12 --eval-every 6 --router topk --renorm 0 \
        --seed 2 --threads 1 --quiet >/dev/null 2>&1
    local a b
    a=$(final_val "$T/direct")
    b=$(final_val "$S/norenorm-s2")
    if [ -n "$a" ] && [ "$a" = "$b" ]; then pass compare_same_as_train; else
        fail compare_same_as_train "val_loss $b in the sweep, $a trained directly"
    fi
}

test_tables() {
    local csv="$S/results.csv" ok=1
    [ -s "$csv" ] && [ -s "$S/results.md" ] && [ -s "$S/runs.csv" ] && [ -s "$S/sweep.json" ] || {
        fail compare_tables "results files missing"
        return
    }
    head -n 1 "$csv" | grep -q '^variant,router,flags,seeds,val_loss_mean,val_loss_sd,val_bpb_mean,val_bpb_sd' || {
        fail compare_csv_header "$(head -n 1 "$csv" | cut -c1-200)"
        ok=0
    }
    for col in tok_per_s_mean router_share_mean aux_mean; do
        head -n 1 "$csv" | grep -q "$col" || { fail compare_csv_columns "no $col column"; ok=0; }
    done
    [ "$(wc -l <"$csv")" = 3 ] || { fail compare_csv_rows "$(wc -l <"$csv") lines, want a header and 2 variants"; ok=0; }
    # seeds = 2 and a numeric val_bpb mean and sd for each variant
    awk -F, 'NR > 1 && !($4 == 2 && $7 ~ /^[0-9.]+$/ && $8 ~ /^[0-9.e-]+$/) { bad = 1 } END { exit bad }' "$csv" ||
        { fail compare_csv_values "$(cat "$csv" | cut -c1-300)"; ok=0; }
    grep -q '^base,topk,' "$csv" && grep -q '^norenorm,topk,' "$csv" || { fail compare_csv_labels "labels missing"; ok=0; }
    [ "$(wc -l <"$S/runs.csv")" = 5 ] || { fail compare_runs_csv "$(wc -l <"$S/runs.csv") lines, want 5"; ok=0; }
    grep -q '| base | topk |' "$S/results.md" && grep -q ' ± ' "$S/results.md" || { fail compare_md "$(head -c 600 "$S/results.md")"; ok=0; }
    # per-domain columns, when the data has domains and the log has per-domain losses
    if grep -q '"val_bpb_code"' "$S/base-s1/log.jsonl"; then
        head -n 1 "$csv" | grep -q 'val_bpb_code_mean' || { fail compare_csv_domains "no val_bpb_code_mean column"; ok=0; }
    fi
    [ $ok = 1 ] && pass compare_tables
}

test_skip_finished() {
    local before
    before=$(snap "$S" | grep safetensors)
    run compare "${SWEEP[@]}"
    if [ $RC -eq 0 ] && grep -q '4 finished, 0 to train' "$T/err" && [ "$(snap "$S" | grep safetensors)" = "$before" ]; then
        pass compare_skip_finished
    else
        fail compare_skip_finished "exit $RC: $(head -n 2 "$T/err")"
    fi
}

# A run whose checkpoint is gone (killed before its first save) starts afresh.
test_restart_without_checkpoint() {
    rm -f "$S/base-s2/model.safetensors" "$S/base-s2/optim.safetensors"
    run compare "${SWEEP[@]}"
    local steps
    steps=$(grep '"loss"' "$S/base-s2/log.jsonl" | sed 's/^{"step":\([0-9]*\).*/\1/' | tr '\n' ' ')
    if [ $RC -eq 0 ] && grep -q '3 finished, 1 to train' "$T/err" && [ "$steps" = "1 2 3 4 5 6 7 8 9 10 11 12 " ]; then
        pass compare_restart_without_checkpoint
    else
        fail compare_restart_without_checkpoint "exit $RC, steps '$steps': $(head -n 3 "$T/err")"
    fi
}

# Killing compare stops its trainings too (no orphans), and the same command then finishes.
test_killed_sweep() {
    local k="$T/killed" args pid left
    args=(--data "$D" --out "$k" --runs "a:topk;b:topk:--renorm 0" --seeds 1 --steps 2500 "${TINY[@]}" --eval-every 0
        --ckpt-every 250 --log-every 50 --jobs 2 --threads 2 --no-analyze)
    "$M" compare "${args[@]}" >/dev/null 2>"$T/kill.err" &
    pid=$!
    for _ in $(seq 1 100); do # until both runs have a checkpoint
        [ -s "$k/a-s1/model.safetensors" ] && [ -s "$k/b-s1/model.safetensors" ] && break
        sleep 0.1
    done
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null
    sleep 0.5
    if command -v pgrep >/dev/null; then
        left=$(pgrep -f -- "--out $k/" | wc -l)
        [ "$left" = 0 ] && pass compare_kill_no_orphans || fail compare_kill_no_orphans "$left trainings still running"
    else
        echo "SKIP compare_kill_no_orphans: pgrep (procps) is not installed -- NOT TESTED"
    fi
    run compare "${args[@]}"
    local n1 n2
    n1=$(grep -c '"loss"' "$k/a-s1/log.jsonl")
    n2=$(grep '"loss"' "$k/a-s1/log.jsonl" | sed 's/^{"step":\([0-9]*\).*/\1/' | sort -un | wc -l)
    if [ $RC -eq 0 ] && grep -q 'resuming' "$T/err" && [ "$n1" = 50 ] && [ "$n2" = 50 ] && grep -q '^a,' "$k/results.csv"; then
        pass compare_resume_after_kill
    else
        fail compare_resume_after_kill "exit $RC, $n1 step lines ($n2 distinct), want 50: $(tail -n 3 "$T/err")"
    fi
}

test_dry_runs() {
    local d="$T/dry"
    run compare --data "$D" --out "$d" --variants topk,topk-noaux --seeds 1 "${TINY[@]}" --dry-run
    if [ $RC -eq 0 ] && [ ! -e "$d" ] && grep -q 'topk-noaux-s1' "$T/err" && grep -q -- '--aux-coef 0' "$T/err"; then
        pass compare_variants_dry_run
    else
        fail compare_variants_dry_run "exit $RC: $(head -c 300 "$T/err")"
    fi
    run compare --preset quick --data "$D" --out "$d" --dry-run
    if [ $RC -eq 0 ] && [ ! -e "$d" ] && grep -q '6 runs (3 variants x 2 seeds)' "$T/err" &&
        grep -q 'topk-norenorm-s2 .*--renorm 0' "$T/err" && grep -q 'topk-noaux-s1 .*--aux-coef 0 ' "$T/err"; then
        pass compare_preset_quick
    else
        fail compare_preset_quick "exit $RC: $(head -c 400 "$T/err")"
    fi
    run compare --preset full --data "$D" --out "$d" --dry-run
    [ $RC -eq 0 ] && grep -q 'x 3 seeds' "$T/err" && pass compare_preset_full || fail compare_preset_full "exit $RC: $(head -c 300 "$T/err")"
}

test_bad_input() {
    check_fail compare_config_differs 'different config' "${SWEEP[@]}" --lr 0.001
    check_fail compare_no_data 'data' --out "$S" --runs "$RUNS"
    check_fail compare_no_out 'out' --data "$D" --runs "$RUNS"
    check_fail compare_no_runs 'preset|runs|variants' --data "$D" --out "$T/none"
    check_fail compare_bad_router 'unknown router' --data "$D" --out "$T/none" --runs "a:nosuch"
    check_fail compare_dup_label 'twice' --data "$D" --out "$T/none" --runs "a:topk;a:topk:--renorm 0"
    check_fail compare_bad_label 'label' --data "$D" --out "$T/none" --runs "a/b:topk"
    check_fail compare_spec_seed 'seed' --data "$D" --out "$T/none" --runs "a:topk:--seed 3"
    check_fail compare_spec_budget 'budget' --data "$D" --out "$T/none" --runs "a:topk:--steps 3"
    check_fail compare_spec_unknown 'unknown flag' --data "$D" --out "$T/none" --runs "a:topk:--bogus 1"
    check_fail compare_spec_bad_value 'renorm' --data "$D" --out "$T/none" --runs "a:topk:--renorm x"
    check_fail compare_spec_no_value 'needs a value' --data "$D" --out "$T/none" --runs "a:topk:--renorm"
    check_fail compare_invalid_config 'd-expert' --data "$D" --out "$T/none" --runs "a:topk:--d-expert 0"
    check_fail compare_runs_and_variants 'not both' --data "$D" --out "$T/none" --runs "a:topk" --variants topk
    check_fail compare_bad_variant 'unknown variant' --data "$D" --out "$T/none" --variants nosuch
    check_fail compare_bad_preset 'unknown preset.*quick' --data "$D" --out "$T/none" --preset nosuch
    check_fail compare_bad_seeds 'seeds' --data "$D" --out "$T/none" --runs "a:topk" --seeds 0
    check_fail compare_bad_jobs 'jobs' --data "$D" --out "$T/none" --runs "a:topk" --jobs x
    check_fail compare_unknown_flag 'unknown flag' --data "$D" --out "$T/none" --runs "a:topk" --bogus 1
    check_fail compare_no_meta 'meta.json' --data "$T" --out "$T/none" --runs "a:topk"
    printf '{"runs": [{"label": "a", "router": "topk"}], "sedes": 2}\n' >"$T/typo.json"
    check_fail compare_preset_typo 'sedes' --data "$D" --out "$T/none" --preset "$T/typo.json"
    [ -e "$T/none" ] && fail compare_bad_input_folder "a failed call created its --out folder"
}

test_help
test_half_finished
test_resume
test_tables
test_skip_finished
test_restart_without_checkpoint
test_killed_sweep
test_dry_runs
test_bad_input
[ $fails -eq 0 ]
