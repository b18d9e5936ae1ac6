#!/usr/bin/env bash
# End-to-end tests of `moelab report` on a tiny sweep (moelab compare: 2 variants x 2
# seeds of a tiny model on a generated two-domain text) and on a single run: the page is
# self-contained (inline SVG, no scripts, no external URLs) and has every chart, and
# Debian's chromium loads it headless with no console errors, every chart in its DOM.
# A missing gnuplot must fail with a message naming gnuplot-nox; bad input must fail
# with "moelab report: ..." and write nothing.
#
# gnuplot (gnuplot-nox) and chromium are optional: without them the tests that need
# them print a loud SKIP line, not PASS. Run: BUILD=build bash tests/cli/test_report.sh
. "$(dirname "$0")/../cli_common.sh"
require_binary report_binary
TINY=(--layers 2 --d-model 32 --heads 2 --seq-len 32 --batch 4 --experts 4 --topk 2 --d-expert 32)

# ------------------------------------------------------------------ a tiny sweep

make_prose "$T/prose.txt"
awk 'BEGIN { for (i = 1; i <= 1400; i++) { printf "%d + %d = %d; x[%d] = {%d};\n", (i*7919)%10000, (i*31)%977,
    (i*i)%10007, i%64, i*3; if (i % 40 == 0) print "" } }' >"$T/code.txt"
printf '{"name":"t","domains":[{"name":"prose","files":["prose.txt"],"split":"paragraphs","min_doc_bytes":2048},{"name":"code","files":["code.txt"],"split":"paragraphs","min_doc_bytes":2048}]}\n' >"$T/corpus.json"
D="$T/data"
if ! "$M" prepare --out "$D" --manifest "$T/corpus.json" --val-frac 0.25 --quiet >"$T/out" 2>"$T/err"; then
    cat "$T/prose.txt" "$T/code.txt" >"$T/all.txt"
    "$M" prepare --out "$D" --val-frac 0.25 "$T/all.txt" >"$T/out" 2>"$T/err" ||
        { echo "FAIL report_setup_prepare: $(cat "$T/err")"; exit 1; }
fi
S="$T/sweep"
if ! "$M" compare --data "$D" --out "$S" --runs "base:topk;noaux:topk:--aux-coef 0" --seeds 2 --steps 16 "${TINY[@]}" \
    --eval-every 8 --eval-batches 1000 --jobs 2 --threads 2 >"$T/out" 2>"$T/err"; then
    echo "FAIL report_setup_compare: $(tail -n 5 "$T/err")"
    exit 1
fi

run() {
    "$M" "$@" >"$T/out" 2>"$T/err"
    RC=$?
}

# ------------------------------------------------------------------ tests

test_help() {
    run report --help
    [ $RC -eq 0 ] && grep -q -- '--out' "$T/out" && grep -q 'gnuplot-nox' "$T/out" && pass report_help ||
        fail report_help "exit $RC"
}

# Without gnuplot the command says which package to install (testable everywhere).
test_no_gnuplot() {
    if command -v gnuplot >/dev/null; then
        PATH=/nonexistent "$M" report "$S" --out "$T/nognuplot.html" >"$T/out" 2>"$T/err"
    else
        "$M" report "$S" --out "$T/nognuplot.html" >"$T/out" 2>"$T/err"
    fi
    RC=$?
    if [ $RC -eq 1 ] && grep -q '^moelab report: .*gnuplot-nox' "$T/err" && [ ! -e "$T/nognuplot.html" ]; then
        pass report_no_gnuplot
    else
        fail report_no_gnuplot "exit $RC: $(head -c 300 "$T/err")"
    fi
}

# Counts of a fixed string in a file.
count() { grep -o -- "$1" "$2" | wc -l; }

test_page() {
    H="$T/report.html"
    run report "$S" --out "$H"
    if [ $RC -ne 0 ] || [ ! -s "$H" ]; then
        fail report_page "exit $RC: $(head -c 400 "$T/err")"
        return 1
    fi
    pass report_page
    local ok=1 n
    # Charts: train + val loss, routing curves, 1 load heatmap and 1 co-occurrence per variant.
    n=$(count '<svg' "$H")
    [ "$n" -ge 8 ] || { fail report_charts "$n <svg> elements, want at least 8"; ok=0; }
    for cap in 'Training loss' 'Validation loss' 'aux loss' 'Expert load over training' 'Expert co-occurrence' \
        'data-chart="load"' 'data-chart="cooc"' 'Quality (validation)' '<td class="t"><span class="sw" style="background:#4e79a7"></span>base</td>'; do
        grep -qF -- "$cap" "$H" || { fail report_charts "no '$cap' in the page"; ok=0; }
    done
    [ "$(count 'data-chart="load"' "$H")" = 2 ] || { fail report_charts "want one load heatmap per variant"; ok=0; }
    if grep -q '"domain_load"' "$S/base-s1/analyze.json" 2>/dev/null && grep -q '"code"' "$S/base-s1/analyze.json"; then
        grep -qF 'data-chart="domains"' "$H" || { fail report_domain_map "analyze.json has domain_load but no map"; ok=0; }
    fi
    [ $ok = 1 ] && pass report_charts
    # Self-contained: no scripts, nothing fetched (xmlns namespace names are not fetched).
    if grep -qiE '<script|<link|<img|<iframe|@import|(src|href)=["'"'"'](https?:)?//|url\((["'"'"'])?(https?:)?//' "$H"; then
        fail report_self_contained "$(grep -oiE '<script|<link|<img|(src|href)=.{0,40}|url\(.{0,40}' "$H" | head -3)"
    else
        pass report_self_contained
    fi
    # ids are unique in the page (gnuplot names its symbols the same in every chart).
    local dups
    dups=$(grep -oE " id=['\"][^'\"]+['\"]" "$H" | sort | uniq -d | head -3)
    [ -z "$dups" ] && pass report_unique_ids || fail report_unique_ids "$dups"
}

test_browser() {
    local H="$T/report.html"
    if ! command -v chromium >/dev/null; then
        skip report_browser "chromium is not installed (apt-get install chromium)"
        return
    fi
    local prof
    prof=$(mktemp -d)
    local CH=(chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
        --disable-component-update --disable-sync --user-data-dir="$prof" --enable-logging=stderr --v=0)
    timeout 90 "${CH[@]}" --dump-dom "file://$H" >"$T/dom.html" 2>"$T/chrome.err"
    local rc=$? want got
    want=$(count '<svg' "$H")
    got=$(count '<svg' "$T/dom.html")
    if [ $rc -ne 0 ]; then
        fail report_browser "chromium exit $rc: $(grep -v dbus "$T/chrome.err" | tail -n 3)"
    elif grep -q ':CONSOLE' "$T/chrome.err"; then
        fail report_browser "console messages: $(grep ':CONSOLE' "$T/chrome.err" | head -3)"
    elif [ "$got" != "$want" ] || [ "$got" -lt 8 ]; then
        fail report_browser "the DOM has $got <svg> elements, the page $want"
    elif ! grep -q '<figcaption>Training loss</figcaption>' "$T/dom.html" || ! grep -q '<title>Validation loss</title>' "$T/dom.html"; then
        fail report_browser "chart titles missing from the DOM"
    else
        pass report_browser
    fi
    timeout 90 "${CH[@]}" --hide-scrollbars --window-size=1280,2400 --screenshot="$T/shot.png" "file://$H" >/dev/null 2>&1
    # A PNG of a rendered page, not a blank one (a white 1280x2400 PNG compresses far below 30 KB).
    if [ -s "$T/shot.png" ] && [ "$(head -c 8 "$T/shot.png" | od -An -c | tr -d ' ')" = '211PNG\r\n032\n' ] &&
        [ "$(stat -c %s "$T/shot.png")" -gt 30000 ]; then
        pass report_screenshot
    else
        fail report_screenshot "no usable screenshot ($(stat -c %s "$T/shot.png" 2>/dev/null) bytes)"
    fi
    rm -rf "$prof"
}

test_single_run_and_mix() {
    run report "$S/base-s1" --out "$T/one.html" --title 'one run'
    if [ $RC -eq 0 ] && grep -q '<title>one run</title>' "$T/one.html" && [ "$(count '<svg' "$T/one.html")" -ge 4 ]; then
        pass report_single_run
    else
        fail report_single_run "exit $RC: $(head -c 300 "$T/err")"
    fi
    run report "$S" "$S/base-s1" --out "$T/mix.html"
    [ $RC -eq 0 ] && [ -s "$T/mix.html" ] && pass report_two_folders || fail report_two_folders "exit $RC: $(head -c 300 "$T/err")"
    # the default output goes into the one folder given
    run report "$S"
    [ $RC -eq 0 ] && [ -s "$S/report.html" ] && pass report_default_out || fail report_default_out "exit $RC"
}

check_fail() {
    local name=$1 pat=$2
    shift 2
    local before
    before=$(ls -R "$T" | md5sum)
    run report "$@"
    if [ $RC -ne 1 ]; then
        fail "$name" "exit $RC, want 1: $(head -c 300 "$T/err")"
    elif ! grep -qiE "^moelab report: .*($pat)" "$T/err"; then
        fail "$name" "stderr does not say /$pat/: $(head -c 300 "$T/err")"
    elif [ "$(ls -R "$T" | md5sum)" != "$before" ]; then
        fail "$name" "files changed"
    else
        pass "$name"
    fi
}

test_bad_input() {
    check_fail report_no_args 'folder'
    check_fail report_missing 'not a folder' "$T/nosuch" --out "$T/x.html"
    mkdir -p "$T/empty"
    check_fail report_empty 'no run' "$T/empty" --out "$T/x.html"
    check_fail report_unknown_flag 'unknown flag' "$S" --bogus --out "$T/x.html"
    check_fail report_out_missing_value 'needs a value' "$S" --out
    if command -v gnuplot >/dev/null; then
        check_fail report_bad_out_dir 'cannot|no such' "$S" --out "$T/nosuchdir/x.html"
    fi
}

test_help
test_no_gnuplot
if command -v gnuplot >/dev/null; then
    test_page && test_browser
    test_single_run_and_mix
else
    skip report_page "gnuplot is not installed (apt-get install gnuplot-nox): no page, no browser check"
    skip report_browser "gnuplot is not installed (apt-get install gnuplot-nox)"
fi
test_bad_input
[ $fails -eq 0 ]
