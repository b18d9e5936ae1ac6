#!/usr/bin/env bash
# End-to-end tests of the routing metrics: a tiny two-domain model trained for 20 steps
# must log the cheap metrics on every step line and the expensive ones on every
# evaluation line of log.jsonl, and `moelab analyze` must write every metric of
# docs/metrics.md; bad input must fail cleanly (non-zero exit that is not a signal,
# a message on stderr, no stray files).
#
# JSON is checked with Debian's python3 when it is there (PYTHON), else by grep only.
# Prints PASS/FAIL (and SKIP) lines. Run as: BUILD=build bash tests/cli/test_analyze.sh
. "$(dirname "$0")/../cli_common.sh"
require_binary analyze_binary
PY=${PYTHON:-/usr/bin/python3}
have_py() { [ -x "$PY" ] && "$PY" -c 'import json' 2>/dev/null; }
TINY=(--layers 2 --d-model 32 --heads 2 --seq-len 32 --batch 4 --experts 4 --topk 2 --d-expert 32 --threads 1 --quiet)
CHEAP="load_cv maxvio dead_frac route_entropy usage_entropy drop_frac"
EXPENSIVE="overlap expert_sim domain_mi sel_differ sel_mass sel_mass_abs sel_outside"

# ------------------------------------------------------------------ data: two domains

words=(the router sends each token to its top experts while the load stays balanced across every layer)
for i in $(seq 1 900); do
    printf 'The %s %s %s, and %s the %s in line %d.\n' "${words[i % 15]}" "${words[(i * 7) % 15]}" "${words[(i * 3) % 15]}" \
        "${words[(i * 11) % 15]}" "${words[(i * 13) % 15]}" "$i"
    if ((i % 40 == 0)); then printf '\n'; fi
done >"$T/prose.txt"
for i in $(seq 1 900); do
    printf '%d + %d = %d; x[%d] = {%d};\n' $((i * 7919 % 10000)) $((i * 31 % 977)) $((i * i % 10007)) $((i % 64)) $((i * 3))
    if ((i % 40 == 0)); then printf '\n'; fi
done >"$T/code.txt"
printf '{"name":"t","domains":[{"name":"prose","files":["prose.txt"],"split":"paragraphs","min_doc_bytes":2048},{"name":"code","files":["code.txt"],"split":"paragraphs","min_doc_bytes":2048}]}\n' >"$T/corpus.json"
D="$T/data"
DOMAINS=2
if ! "$M" prepare --out "$D" --manifest "$T/corpus.json" --val-frac 0.15 --quiet >"$T/out" 2>"$T/err"; then
    # Without manifest support, one domain: domain_mi is then null by definition.
    DOMAINS=1
    cat "$T/prose.txt" "$T/code.txt" >"$T/all.txt"
    if ! "$M" prepare --out "$D" --val-frac 0.15 "$T/all.txt" >"$T/out" 2>"$T/err"; then
        echo "FAIL analyze_setup_prepare: $(cat "$T/err")"
        exit 1
    fi
fi
R="$T/run"
if ! "$M" train --data "$D" --out "$R" "${TINY[@]}" --steps 20 --lr 3e-3 --seed 1 --eval-every 10 --eval-batches 1000 \
    >"$T/out" 2>"$T/err"; then
    echo "FAIL analyze_setup_train: $(head -c 600 "$T/err")"
    exit 1
fi
LOG="$R/log.jsonl"

# ------------------------------------------------------------------ log.jsonl

test_log_step_metrics() {
    local steps k bad=""
    steps=$(grep -c '"grad_norm"' "$LOG")
    [ "$steps" -eq 20 ] || bad="$bad (expected 20 step lines, got $steps)"
    for k in $CHEAP; do
        [ "$(grep '"grad_norm"' "$LOG" | grep -cE "\"$k\":-?[0-9]")" -eq "$steps" ] || bad="$bad $k"
    done
    [ "$(grep '"grad_norm"' "$LOG" | grep -c '"layers":\[{"layer":0,"load":\[')" -eq "$steps" ] || bad="$bad layers/load"
    if grep -qiE 'nan|inf' "$LOG"; then bad="$bad (nan/inf in the log)"; fi
    if [ -n "$bad" ]; then fail log_step_metrics "step lines lack:$bad"; return; fi
    if ! have_py; then
        skip log_step_metrics_json "no python3 to parse the lines"
        pass log_step_metrics
        return
    fi
    if "$PY" - "$LOG" "$CHEAP" >"$T/py" 2>&1 <<'EOF'; then pass log_step_metrics; else fail log_step_metrics "$(head -c 600 "$T/py")"; fi
import json, math, sys
cheap = sys.argv[2].split()
for n, line in enumerate(open(sys.argv[1])):
    d = json.loads(line)
    if "grad_norm" not in d:
        continue
    assert len(d["layers"]) == 2, "line %d: %d layers" % (n, len(d["layers"]))
    for l in d["layers"]:
        assert len(l["load"]) == 4 and sum(l["load"]) == 4 * 32 * 2, "line %d: load %s" % (n, l["load"])
        for k in cheap:
            assert isinstance(l[k], (int, float)), "line %d layer %d: %s=%r" % (n, l["layer"], k, l.get(k))
    for k in cheap:
        mean = sum(l[k] for l in d["layers"]) / 2
        assert abs(d[k] - mean) < 1e-5, "line %d: %s %r is not the mean over layers %r" % (n, k, d[k], mean)
    assert 0 <= d["route_entropy"] <= 1.0001 and 0 <= d["usage_entropy"] <= 1.0001 and d["drop_frac"] == 0
EOF
}

test_log_eval_metrics() {
    local evals k bad=""
    evals=$(grep -c '"val_loss"' "$LOG")
    [ "$evals" -eq 2 ] || bad="$bad (expected 2 evaluation lines, got $evals)"
    for k in $EXPENSIVE; do
        [ "$(grep '"val_loss"' "$LOG" | grep -cE "\"$k\":(-?[0-9]|null)")" -eq "$evals" ] || bad="$bad $k"
    done
    [ "$(grep '"val_loss"' "$LOG" | grep -c '"cooc":\[\[')" -eq "$evals" ] || bad="$bad cooc"
    if [ "$DOMAINS" -eq 2 ] && [ "$(grep '"val_loss"' "$LOG" | grep -cE '"domain_mi":[0-9]')" -ne "$evals" ]; then
        bad="$bad domain_mi-number(two domains)"
    fi
    if [ -n "$bad" ]; then fail log_eval_metrics "evaluation lines lack:$bad"; else pass log_eval_metrics; fi
}

# ------------------------------------------------------------------ analyze

test_analyze_json() {
    local k bad=""
    if ! "$M" analyze "$R" --data "$D" --out "$T/a.json" --threads 1 >"$T/out" 2>"$T/err"; then
        fail analyze_json "exit non-zero: $(head -c 400 "$T/err")"
        return
    fi
    grep -q '^ mean' "$T/out" || bad="$bad (no table on stdout)"
    for k in $CHEAP $EXPENSIVE zero_expert_frac experts_per_token router_share load cooc experts_per_token_hist; do
        grep -q "\"$k\":" "$T/a.json" || bad="$bad $k"
    done
    if [ -n "$bad" ]; then fail analyze_json "missing:$bad"; return; fi
    if ! have_py; then
        skip analyze_json_parse "no python3 to parse the JSON"
        pass analyze_json
        return
    fi
    if "$PY" - "$T/a.json" "$CHEAP $EXPENSIVE" "$DOMAINS" >"$T/py" 2>&1 <<'EOF'; then pass analyze_json; else fail analyze_json "$(head -c 600 "$T/py")"; fi
import json, sys
d = json.load(open(sys.argv[1]))
names, nd = sys.argv[2].split(), int(sys.argv[3])
assert d["split"] == "val" and d["n_experts"] == 4 and d["top_k"] == 2 and len(d["layers"]) == 2
assert len(d["domains"]) == nd, d["domains"]
assert 0 <= d["router_share"] <= 1, d["router_share"]
for l in d["layers"]:
    for k in names:
        ok = isinstance(l[k], (int, float)) or (k == "domain_mi" and nd == 1 and l[k] is None)
        assert ok, "layer %d: %s=%r" % (l["layer"], k, l[k])
    assert sum(l["load"]) == 2 * l["tokens"], (l["load"], l["tokens"])
    assert l["experts_per_token_hist"] == [0, 0, l["tokens"], 0, 0], l["experts_per_token_hist"]
    assert len(l["cooc"]) == 4 and all(len(r) == 4 for r in l["cooc"])
    assert all(abs(l["cooc"][i][i] - l["load"][i] / l["tokens"]) < 1e-5 for i in range(4)), "cooc diagonal"
    assert len(l["domain_load"]) == nd and sum(map(sum, l["domain_load"])) == sum(l["load"])
    assert sum(l["domain_tokens"]) == l["tokens"]
    assert -1 <= l["expert_sim"] <= 1 and l["overlap"] > 0
    # topk picks its own top-k: no difference, all of the top-k mass
    assert l["sel_differ"] == 0 and l["sel_outside"] == 0 and abs(l["sel_mass"] - 1) < 1e-5, l
    assert 0.5 <= l["sel_mass_abs"] <= 1 + 1e-5, l["sel_mass_abs"]
assert d["tokens"] == d["layers"][0]["tokens"] > 0
EOF
}

# JSON on stdout without --out; other splits and limits; same result when run again.
test_analyze_stdout() {
    if ! "$M" analyze "$R" --data "$D" --split train --batches 3 --threads 1 >"$T/s1.json" 2>"$T/err"; then
        fail analyze_stdout "exit non-zero: $(head -c 400 "$T/err")"
        return
    fi
    "$M" analyze "$R" --data "$D" --split train --batches 3 --threads 1 >"$T/s2.json" 2>/dev/null
    if ! grep -q '"split":"train"' "$T/s1.json" || ! grep -q '"batches":3,"tokens":768,' "$T/s1.json"; then
        fail analyze_stdout "train split, 3 batches of 8 x 32 not reported: $(head -c 300 "$T/s1.json")"
    elif [ "$(sed 's/"router_share":[^,]*//' "$T/s1.json")" != "$(sed 's/"router_share":[^,]*//' "$T/s2.json")" ]; then
        fail analyze_stdout "two identical runs differ"
    elif have_py && ! "$PY" -c 'import json,sys; json.load(open(sys.argv[1]))' "$T/s1.json" 2>"$T/py"; then
        fail analyze_stdout "stdout is not one JSON document: $(head -c 300 "$T/py")"
    else
        pass analyze_stdout
    fi
}

# check_fail NAME PATTERN ARGS...: must exit non-zero (no signal), say PATTERN on stderr,
# and leave no file in the work folder's out/ directory.
check_fail() {
    local name=$1 pat=$2
    shift 2
    mkdir -p "$T/outdir"
    "$M" "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    if [ $rc -eq 0 ] || [ $rc -ge 128 ]; then
        fail "$name" "exit status $rc (moelab $*)"
    elif ! grep -qiE -- "$pat" "$T/err"; then
        fail "$name" "stderr does not mention /$pat/: $(head -c 300 "$T/err")"
    elif [ -n "$(ls -A "$T/outdir")" ]; then
        fail "$name" "left files: $(ls -A "$T/outdir" | tr '\n' ' ')"
    else
        pass "$name"
    fi
    rm -rf "$T/outdir"
}

test_analyze_bad_input() {
    check_fail analyze_missing_checkpoint "nope|no such|cannot" analyze "$T/nope" --data "$D" --out "$T/outdir/a.json"
    check_fail analyze_bad_split "split" analyze "$R" --data "$D" --split test --out "$T/outdir/a.json"
    check_fail analyze_no_data "--data" analyze "$R" --out "$T/outdir/a.json"
    check_fail analyze_missing_data "missing|no such|cannot" analyze "$R" --data "$T/missing" --out "$T/outdir/a.json"
    check_fail analyze_bad_batches "batches" analyze "$R" --data "$D" --batches -2 --out "$T/outdir/a.json"
    check_fail analyze_bad_mode "mode" analyze "$R" --data "$D" --mode fast --out "$T/outdir/a.json"
    check_fail analyze_unknown_flag "frob" analyze "$R" --data "$D" --frob --out "$T/outdir/a.json"
    check_fail analyze_unwritable_out "cannot|no such" analyze "$R" --data "$D" --batches 1 --out "$T/outdir/no/such/a.json"
    if "$M" analyze --help >"$T/out" 2>&1 && grep -qi usage "$T/out"; then pass analyze_help; else fail analyze_help "no usage"; fi
}

test_log_step_metrics
test_log_eval_metrics
test_analyze_json
test_analyze_stdout
test_analyze_bad_input
[ "$fails" -eq 0 ]
