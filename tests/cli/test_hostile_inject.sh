#!/usr/bin/env bash
# No string from a run folder or a flag reaches an interpreter: run folder names (the
# report's labels), log keys (domain names), analyze.json domain names and `bench --python`
# carry newlines, quotes, $(...), backquotes and ';' that would run a command if they
# were pasted into a gnuplot script or a shell line. Each try must leave no marker file.
. "$(dirname "$0")/../cli_common.sh"
require_binary inject_binary
M=$(cd "$(dirname "$M")" && pwd)/$(basename "$M")

# Hostile text (short: report keeps 80 bytes of a domain name): each line tries another way
# out of a quoted string or a data block.
EVIL=$'x\'\nEOD\nprint system(\'touch pwn_gp1\')\n`touch pwn_gp2`$(touch pwn_sh1);"\n#'
# A run folder by hand: a config, train lines with loads, evaluation lines with a
# per-domain bits-per-byte for domains "prose" and $2, an analyze.json naming both.
make_run() {
    local dir=$1
    mkdir -p "$dir"
    DOMAIN="$2" /usr/bin/python3 - "$dir" <<'PY'
import json, os, sys
d, evil = sys.argv[1], os.environ["DOMAIN"]
with open(os.path.join(d, "log.jsonl"), "w") as f:
    f.write(json.dumps({"config": {"router": "topk", "experts": 4, "steps": 8}}) + "\n")
    for s in range(1, 9):
        f.write(json.dumps({"step": s, "loss": 5.0 - 0.1 * s, "lr": 1e-3, "tok_per_s": 100.0,
                            "layers": [{"layer": 0, "load": [s, 2, 3, 4]}, {"layer": 1, "load": [1, s, 3, 4]}]}) + "\n")
        if s % 4 == 0:
            f.write(json.dumps({"step": s, "val_loss": 4.0 - 0.1 * s, "val_bpb": 1.5,
                                "val_bpb_" + evil: 1.4, "val_bpb_prose": 1.6, "val_loss_" + evil: 3.0,
                                "layers": [{"layer": 0, "cooc": [[1, 0.5], [0.5, 1]]}]}) + "\n")
json.dump({"config": {"router": "topk"}}, open(os.path.join(d, "config.json"), "w"))
json.dump({"domains": [evil, "prose"], "layers": [{"layer": 0, "domain_load": [[1, 2, 3, 4], [4, 3, 2, 1]],
           "cooc": [[1, 0.5], [0.5, 1]]}]}, open(os.path.join(d, "analyze.json"), "w"))
PY
}

no_markers() { ! ls "$1" | grep -q '^pwn_'; }

# Each chart type on its own: a name that only one chart would paste must not hide
# behind an earlier chart failing to parse.
report_case() {
    local name=$1 folder=$2 domain=$3
    local W="$T/$name"
    mkdir -p "$W/sweep"
    make_run "$W/sweep/$folder" "$domain"
    make_run "$W/sweep/plain-s1" "$domain"
    (cd "$W" && "$M" report sweep --out out.html >out 2>err)
    local rc=$?
    if ! no_markers "$W"; then
        fail "$name" "a command ran: $(ls "$W" | grep '^pwn_' | tr '\n' ' ')"
    elif [ $rc -ne 0 ] || [ "$(grep -o '<svg' "$W/out.html" | wc -l)" -lt 5 ]; then
        fail "$name" "exit $rc, charts missing: $(head -c 300 "$W/err")"
    else
        pass "$name"
    fi
}

test_report_strings() {
    if ! command -v gnuplot >/dev/null; then
        skip inject_report "gnuplot is not installed"
        return
    fi
    report_case inject_report_domain other-s1 "$EVIL"
    report_case inject_report_label "$EVIL-s1" code
}

# --python is a program path handed to exec as one argument, never a shell line.
test_bench_python() {
    local W="$T/bench"
    mkdir -p "$W"
    (cd "$W" && "$M" bench --steps 1 --warmup-steps 0 --threads 1 \
        --python "/bin/true' ; touch pwn_py1 ; '\$(touch pwn_py2)" >out 2>err)
    if no_markers "$W" && grep -q 'MIRROR FAILED' "$W/err"; then
        pass inject_bench_python
    else
        fail inject_bench_python "$(ls "$W" | tr '\n' ' '): $(tail -c 300 "$W/err")"
    fi
}

# A Debian package name in a manifest goes to dpkg-query as an argument, and a name
# outside Debian's rules is refused before that.
test_manifest_package() {
    local W="$T/man"
    mkdir -p "$W"
    printf '{"name":"t","domains":[{"name":"d","packages":["base-files'"'"' ; touch pwn_pkg1 ; echo '"'"'"]}]}\n' >"$W/m.json"
    (cd "$W" && "$M" prepare --out data --manifest m.json >out 2>err)
    local rc=$?
    if no_markers "$W" && [ $rc -ne 0 ] && grep -q 'not a Debian package name' "$W/err"; then
        pass inject_manifest_package
    else
        fail inject_manifest_package "exit $rc: $(ls "$W" | tr '\n' ' '): $(head -c 300 "$W/err")"
    fi
}

test_report_strings
test_bench_python
test_manifest_package
[ $fails -eq 0 ]
