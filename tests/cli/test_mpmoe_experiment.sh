#!/usr/bin/env bash
# The MP-MoE experiment's tooling: the presets plan the four arms on the fine-grained
# shape (compare --dry-run), `moelab bench --router` measures a router against topk and
# writes its JSON, bad input fails cleanly, and scripts/mpmoe_table.py pairs seeds
# correctly on a hand-made runs.csv.
# Prints PASS/FAIL (and SKIP) lines. Run as: BUILD=build bash tests/cli/test_mpmoe_experiment.sh
. "$(dirname "$0")/../cli_common.sh"
require_binary mpmoe_experiment_binary
PY=${PYTHON:-/usr/bin/python3}
have_py() { [ -x "$PY" ] && "$PY" -c 'import csv, json' 2>/dev/null; }
has_mpmoe() { "$M" train --help 2>/dev/null | grep -q '^  mpmoe '; }

make_prose "$T/prose.txt" 600
D="$T/data"
if ! "$M" prepare --out "$D" "$T/prose.txt" >"$T/out" 2>"$T/err"; then
    echo "FAIL mpmoe_experiment_setup: $(cat "$T/err")"
    exit 1
fi

# Both presets: 4 arms x 3 seeds, the fine-grained shape. Without the mpmoe router the
# mpmoe arms are checked as topk arms (the shared config and the topk arms still count).
test_presets() {
    for p in mpmoe mpmoe-full; do
        local preset=presets/$p.json
        if ! has_mpmoe; then
            sed -e 's/"router": "mpmoe", "flags": {"router_opts": "reference=1"}/"router": "topk"/' \
                -e 's/"router": "mpmoe"/"router": "topk"/' presets/$p.json >"$T/$p.json"
            preset=$T/$p.json
            [ $p = mpmoe ] && skip mpmoe_preset_router_arms "the mpmoe router is not in this build: its arms were planned as topk"
        fi
        "$M" compare --preset "$preset" --data "$D" --out "$T/dry" --dry-run >"$T/out" 2>"$T/err"
        local rc=$? e=$T/err
        if [ $rc -ne 0 ]; then
            fail preset_$p "exit $rc: $(head -c 400 "$e")"
        elif [ -e "$T/dry" ]; then
            fail preset_$p "--dry-run created the sweep folder"
        elif ! grep -q '12 runs (4 variants x 3 seeds)' "$e"; then
            fail preset_$p "not 4 variants x 3 seeds: $(head -c 300 "$e")"
        elif ! grep 'mpmoe-ref-s3 ' "$e" | grep -q -- '--dense-layers 1 .*--shared 1' ||
            ! grep -q 'topk-norenorm-s1 .*--renorm 0' "$e"; then
            fail preset_$p "arms or fine-grained shape missing: $(grep -- '-s1 ' "$e" | head -c 600)"
        elif has_mpmoe && ! grep -q 'mpmoe-ref-s1 .*--router mpmoe --router-opts reference=1' "$e"; then
            fail preset_$p "mpmoe-ref is not mpmoe with reference=1: $(grep 'mpmoe-ref-s1' "$e")"
        else
            pass preset_$p
        fi
    done
    # The experiment's size: E >= 32, k >= 4.
    if grep -q '"experts": 32, "topk": 4' presets/mpmoe.json && grep -q '"experts": 64, "topk": 8' presets/mpmoe-full.json; then
        pass preset_fine_grained
    else
        fail preset_fine_grained "the presets lost their fine-grained shape"
    fi
}

# topk against itself: the numbers exist and are sane (no speed target: that is a benchmark).
test_bench_router() {
    local j=$T/bench.json
    if ! "$M" bench --router topk --experiment --repeats 2 --steps 1 --warmup-steps 0 --gen-passes 2 \
        --threads 1 --json "$j" >"$T/out" 2>"$T/err"; then
        fail bench_router "exit non-zero: $(tail -c 400 "$T/err")"
        return
    fi
    if ! grep -q '^ratio ' "$T/out" || ! grep -q '^router share ' "$T/out" || [ "$(grep -c '^generation ' "$T/out")" != 2 ]; then
        fail bench_router "report lines missing: $(head -c 600 "$T/out")"
        return
    fi
    if have_py; then
        if "$PY" - "$j" <<'EOF' 2>"$T/err"; then
import json, sys
d = json.load(open(sys.argv[1]))
assert d["router"] == "topk" and d["config"] == "fine" and d["repeats"] == 2 and len(d["ratios"]) == 2, d
assert d["topk_step_s"] > 0 and d["router_step_s"] > 0 and d["ratio"] > 0, d
assert 0 <= d["router_share"] < 1 and 0 <= d["topk_router_share"] < 1, d
g = d["generation"]
assert [x["model"] for x in g] == ["topk", "topk"], g
assert all(x["tok_per_s"] > 0 for x in g) and g[0]["ratio"] == 1, g
EOF
            pass bench_router
        else
            fail bench_router "JSON: $(tail -c 400 "$T/err")"
        fi
    else
        grep -q '"ratio":' "$j" && pass bench_router || fail bench_router "no ratio in $j"
        skip bench_router_json "no python3 to parse the JSON"
    fi
}

check_fail() { # name, pattern the message must match, bench arguments...
    local name=$1 pat=$2
    shift 2
    "$M" bench "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    if [ $rc -ge 1 ] && [ $rc -lt 128 ] && grep -Eq "$pat" "$T/err"; then
        pass "$name"
    else
        fail "$name" "exit $rc, stderr: $(head -c 300 "$T/err")"
    fi
}

test_bench_bad_input() {
    check_fail bench_router_unknown 'unknown router' --router nosuch
    check_fail bench_router_bad_repeats 'repeats' --router topk --repeats 0
    check_fail bench_router_unknown_flag 'unknown or incomplete flag' --router topk --bogus
    check_fail bench_router_bad_opts 'option|opts' --router topk --router-opts nosuch=1 --repeats 1 --steps 1 --gen-passes 0
    check_fail bench_router_bad_gen_opts 'option|opts' --router topk --experiment --repeats 1 --steps 1 --warmup-steps 0 \
        --gen-opts nosuch=1 --threads 1
    rm -f "$T/nope.json"
    check_fail bench_router_unwritable 'nosuchdir|No such' --router topk --experiment --repeats 1 --steps 1 \
        --warmup-steps 0 --gen-passes 0 --threads 1 --json "$T/nosuchdir/x.json"
    if "$M" bench --router topk --help >"$T/out" 2>&1 && grep -q -- '--experiment' "$T/out" && grep -q -- '--gen-opts' "$T/out"; then
        pass bench_router_help
    else
        fail bench_router_help "$(head -c 300 "$T/out")"
    fi
}

# Hand-made runs.csv: known means, sds and seed-paired differences; an unfinished run is left out.
test_table() {
    if ! have_py; then
        skip mpmoe_table "no python3 ($PY)"
        return
    fi
    local s=$T/sweep
    mkdir -p "$s"
    cat >"$s/runs.csv" <<'EOF'
run,variant,seed,finished,step,val_loss,val_bpb,val_bpb_code,analyze_sel_differ
topk-s1,topk,1,1,10,2.0,1.0,1.5,0
topk-s2,topk,2,1,10,3.0,2.0,2.5,0
topk-norenorm-s1,topk-norenorm,1,1,10,2.5,1.5,1.5,0
topk-norenorm-s2,topk-norenorm,2,1,10,3.5,2.5,2.5,0
mpmoe-s1,mpmoe,1,1,10,1.8,0.9,1.0,0.5
mpmoe-s2,mpmoe,2,1,10,2.6,1.7,2.0,0.7
mpmoe-s3,mpmoe,3,0,4,9.0,9.0,9.0,0.9
EOF
    if ! "$PY" scripts/mpmoe_table.py "$s" >"$T/table.md" 2>"$T/err"; then
        fail mpmoe_table "exit non-zero: $(head -c 300 "$T/err")"
        return
    fi
    local row
    row=$(grep '^| val bpb |' "$T/table.md")
    # mpmoe: mean 1.3, sd 0.5657; minus topk: -0.1, -0.3 -> -0.2 ± 0.1414; minus norenorm: -0.6, -0.8 -> -0.7 ± 0.1414
    if [[ "$row" == *"| 1.5000 ± 0.7071 | 2.0000 ± 0.7071 | 1.3000 ± 0.5657 | -0.2000 ± 0.1414 | -0.7000 ± 0.1414 |" ]] &&
        grep -q '^| code | .* | -0.5000 ± 0.0000 | -0.5000 ± 0.0000 |$' "$T/table.md" &&
        grep -q '^| sel_differ | 0.000 ± 0.000 | 0.000 ± 0.000 | 0.600 ± 0.141 |' "$T/table.md" &&
        grep -q 'mpmoe 1,2\.' "$T/table.md"; then
        pass mpmoe_table
    else
        fail mpmoe_table "unexpected table: $(head -c 1500 "$T/table.md")"
    fi
    "$PY" scripts/mpmoe_table.py "$T/nosuch" >/dev/null 2>"$T/err"
    [ $? -eq 1 ] && grep -q 'runs.csv' "$T/err" && pass mpmoe_table_missing || fail mpmoe_table_missing "$(cat "$T/err")"
}

test_presets
test_bench_router
test_bench_bad_input
test_table
[ $fails -eq 0 ]
