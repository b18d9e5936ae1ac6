#!/usr/bin/env bash
# CLI tests for corpus manifests: `moelab prepare --manifest` on a hand-made manifest of
# three domains (plain files, a gzip'd fortune file, one document per file), the BPE
# tokenizer path, per-domain evaluation in `moelab eval` and in the training log, and
# bad input (missing package or file, empty domain, corrupt tokenizer or shard, vocab
# too small): a clear message, a non-zero exit that is not a signal, nothing written.
# The real debian-mix corpus is built only when its packages are installed (else a
# SKIP line). Prints PASS/FAIL/SKIP lines; run as: BUILD=build bash tests/cli/test_corpus.sh
. "$(dirname "$0")/../cli_common.sh"
require_binary corpus_binary
mkdir -p "$T/bin" && cp "$M" "$T/bin/moelab" && M="$T/bin/moelab"

run() {
    "$M" "$@" >"$T/out" 2>"$T/err"
    RC=$?
}

# Expects a failure: exit 1..127, the pattern on stderr, and no output folder left.
check_fail() {
    local name=$1 pat=$2 out=$3
    shift 3
    run "$@"
    if [ $RC -eq 0 ]; then
        fail "$name" "exit status 0"
    elif [ $RC -ge 128 ]; then
        fail "$name" "killed by a signal (exit $RC): $(head -c 300 "$T/err")"
    elif ! grep -qiE "$pat" "$T/err"; then
        fail "$name" "message does not match '$pat': $(head -c 300 "$T/err")"
    elif [ -n "$out" ] && [ -e "$out" ]; then
        fail "$name" "output left behind: $(ls -A "$out" | tr '\n' ' ')"
    else
        pass "$name"
    fi
}

# ------------------------------------------------------------------ a 3-domain corpus

C="$T/corpus"
mkdir -p "$C/prose" "$C/quotes" "$C/code"
for f in 1 2; do
    for i in $(seq 1 80); do
        printf 'Prose file %d, paragraph %d: the router weighs every expert and picks the best.\n' "$f" "$i"
        printf 'Its load stays balanced across the %d layers of the model.\n\n' $((i % 5 + 2))
    done >"$C/prose/p$f.txt"
done
for i in $(seq 1 150); do
    printf 'Quote %d: a penny saved is %d pennies earned.\n%%\n' "$i" $((i * 3))
done | gzip -9 >"$C/quotes/all.gz"
for i in $(seq 1 40); do
    printf '#include <stdio.h>\n/* file %d */\nint f%d(int x) { return x * %d + 1; }\n' "$i" "$i" "$i" >"$C/code/f$i.c"
done
cat >"$C/mix.json" <<'EOF'
{
  "name": "three",
  "domains": [
    {"name": "prose", "files": ["prose"], "split": "paragraphs", "min_doc_bytes": 300},
    {"name": "quotes", "files": ["quotes/all.gz"], "split": "fortunes"},
    {"name": "code", "files": ["code/*.c"], "split": "file"}
  ]
}
EOF

D="$T/data"
run prepare --manifest "$C/mix.json" --out "$D" --val-frac 0.2 --quiet
if [ $RC -ne 0 ]; then
    fail corpus_prepare_bytes "exit $RC: $(cat "$T/err")"
elif [ -s "$D/train.bin" ] && [ -s "$D/val.bin" ] && grep -qE '"tokenizer":[[:space:]]*"bytes"' "$D/meta.json" &&
    [ ! -e "$D/tokenizer.json" ] && grep -qE '^prose .*\|' "$T/out" && grep -qE '^quotes ' "$T/out" &&
    grep -qE '^code +40 ' "$T/out" && grep -qE '^total ' "$T/out"; then
    pass corpus_prepare_bytes
else
    fail corpus_prepare_bytes "outputs or table wrong: $(cat "$T/out")"
fi

# The gzip'd quotes were decompressed and cut one fortune per document.
quote_docs=$(grep -E '^quotes ' "$T/out" | awk '{print $4}')
if [ "$quote_docs" = 150 ]; then pass corpus_gzip_fortunes; else fail corpus_gzip_fortunes "quotes found $quote_docs documents, want 150"; fi

# BPE: trained on the training split, tokenizer.json written, meta says bpe.
B="$T/data_bpe"
run prepare --manifest "$C/mix.json" --out "$B" --val-frac 0.2 --vocab 320 --quiet
if [ $RC -eq 0 ] && [ -s "$B/tokenizer.json" ] && grep -qE '"tokenizer":[[:space:]]*"bpe"' "$B/meta.json" &&
    grep -qE '"vocab_size":[[:space:]]*320' "$B/meta.json" && grep -q 'tokenizer: bpe, vocab 320' "$T/out"; then
    pass corpus_prepare_bpe
else
    fail corpus_prepare_bpe "exit $RC: $(cat "$T/out" "$T/err" | head -c 600)"
fi

# Same inputs, same seed: the same bytes.
run prepare --manifest "$C/mix.json" --out "$T/data_bpe2" --val-frac 0.2 --vocab 320 --quiet
if [ $RC -eq 0 ] && cmp -s "$B/train.bin" "$T/data_bpe2/train.bin" && cmp -s "$B/tokenizer.json" "$T/data_bpe2/tokenizer.json"; then
    pass corpus_prepare_deterministic
else
    fail corpus_prepare_deterministic "second run differs"
fi

# ------------------------------------------------------------------ per-domain evaluation

R="$T/run"
run train --data "$B" --out "$R" --layers 1 --d-model 32 --heads 2 --seq-len 32 --batch 4 --experts 4 --topk 2 \
    --d-expert 32 --threads 2 --quiet --steps 12 --eval-every 6 --lr 3e-3
if [ $RC -ne 0 ]; then
    fail corpus_train "exit $RC: $(head -c 400 "$T/err")"
else
    last=$(grep '"val_loss"' "$R/log.jsonl" | tail -n 1)
    ok=1
    for d in prose quotes code; do
        grep -qE "\"val_loss_$d\":[0-9.]+,\"val_bpb_$d\":[0-9.]+" <<<"$last" || ok=0
    done
    if [ $ok = 1 ] && grep -qE '"val_bpb":[0-9.]+' <<<"$last"; then
        pass corpus_train_log_domains
    else
        fail corpus_train_log_domains "eval line lacks per-domain keys: $last"
    fi
fi

run eval "$R" --data "$B"
if [ $RC -eq 0 ] && grep -qE '^val .*bits per byte' "$T/out" && grep -qE '^  prose +loss [0-9.]+ \| bits per byte [0-9.]+' "$T/out" &&
    grep -qE '^  quotes ' "$T/out" && grep -qE '^  code ' "$T/out"; then
    pass corpus_eval_text
else
    fail corpus_eval_text "exit $RC: $(cat "$T/out" "$T/err" | head -c 600)"
fi
run eval "$R" --data "$B" --json
if [ $RC -eq 0 ] && grep -qE '"domains":\{"prose":\{"loss":[0-9.]+,"bpb":[0-9.]+,"tokens":[0-9]+\},"quotes":\{.*\},"code":\{.*\}\}\}$' "$T/out"; then
    # The per-domain token counts add up to the overall count.
    total=$(sed -nE 's/^\{[^{]*"tokens":([0-9]+),.*/\1/p' "$T/out")
    sum=$(grep -oE '"tokens":[0-9]+\}' "$T/out" | grep -oE '[0-9]+' | paste -sd+ | bc 2>/dev/null || echo x)
    if [ -n "$total" ] && [ "$sum" = "$total" ]; then pass corpus_eval_json; else fail corpus_eval_json "domain tokens $sum vs total $total"; fi
else
    fail corpus_eval_json "exit $RC: $(cat "$T/out" "$T/err" | head -c 600)"
fi

# ------------------------------------------------------------------ bad input

bad_manifest() {
    printf '%s\n' "$1" >"$C/bad.json"
}
bad_manifest '{"domains": [{"name": "p", "files": ["prose"]}, {"name": "deb", "packages": ["moelab-no-such-package"]}]}'
check_fail corpus_missing_package "moelab-no-such-package.*(not installed|dpkg)" "$T/o1" prepare --manifest "$C/bad.json" --out "$T/o1"
bad_manifest '{"domains": [{"name": "p", "files": ["prose", "nope.txt"]}]}'
check_fail corpus_missing_file "nope.txt" "$T/o2" prepare --manifest "$C/bad.json" --out "$T/o2"
: >"$C/empty.txt"
bad_manifest '{"domains": [{"name": "p", "files": ["prose"]}, {"name": "hollow", "files": ["empty.txt"]}]}'
check_fail corpus_empty_domain "hollow.*no text" "$T/o3" prepare --manifest "$C/bad.json" --out "$T/o3"
bad_manifest '{"domains": [{"name": "p", "files": ["prose"], "spilt": "file"}]}'
check_fail corpus_manifest_typo 'unknown key "spilt"' "$T/o4" prepare --manifest "$C/bad.json" --out "$T/o4"
printf '{"domains": [' >"$C/bad.json"
check_fail corpus_manifest_json "JSON" "$T/o5" prepare --manifest "$C/bad.json" --out "$T/o5"
check_fail corpus_manifest_missing "manifest.*nothere.json" "$T/o6" prepare --manifest "$C/nothere.json" --out "$T/o6"
check_fail corpus_vocab_too_small "vocab.*too small" "$T/o7" prepare --manifest "$C/mix.json" --out "$T/o7" --vocab 100
head -c 200 "$B/tokenizer.json" >"$T/cut_tokenizer.json"
check_fail corpus_bad_tokenizer "cut_tokenizer.json" "$T/o8" prepare --manifest "$C/mix.json" --out "$T/o8" --tokenizer "$T/cut_tokenizer.json"
printf '\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03not deflate data' >"$C/quotes/broken.gz"
bad_manifest '{"domains": [{"name": "q", "files": ["quotes/broken.gz"], "split": "fortunes"}]}'
check_fail corpus_corrupt_gzip "broken.gz" "$T/o9" prepare --manifest "$C/bad.json" --out "$T/o9"
check_fail corpus_both_inputs "either" "$T/o10" prepare --manifest "$C/mix.json" --out "$T/o10" "$C/prose"

# A data folder whose tokenizer.json or shard is damaged: eval fails cleanly.
cp -r "$B" "$T/dmg_tok" && head -c 100 "$B/tokenizer.json" >"$T/dmg_tok/tokenizer.json"
check_fail corpus_eval_bad_tokenizer "tokenizer.json" "" eval "$R" --data "$T/dmg_tok"
cp -r "$B" "$T/dmg_shard" && head -c 1000 "$B/val.bin" >"$T/dmg_shard/val.bin"
check_fail corpus_eval_bad_shard "val.bin.*truncated" "" eval "$R" --data "$T/dmg_shard"
# A BPE data folder with a byte-level model: a vocabulary mismatch, not a crash.
check_fail corpus_eval_vocab_mismatch "vocab" "" eval "$R" --data "$D"

# ------------------------------------------------------------------ the real debian-mix

pkgs=(dict-gcide fortunes fortunes-min fortunes-de fortunes-es fortunes-it libc6-dev linux-libc-dev
    libpython3.11-minimal libpython3.11-stdlib manpages manpages-dev)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "SKIP corpus_debian_mix: packages not installed (${missing[*]}); run scripts/corpus.sh as root -- NOT TESTED"
else
    start=$(date +%s)
    run prepare --manifest corpus/debian-mix.json --out "$T/mix" --vocab 2048 --quiet
    secs=$(($(date +%s) - start))
    n=$(grep -cE '^(dictionary|quotes-en|quotes-de|quotes-es|quotes-it|c-code|python-code|manpages) ' "$T/out")
    # The time is printed, not asserted: speed belongs in benchmarks, not in tests.
    if [ $RC -eq 0 ] && [ "$n" = 8 ]; then
        pass corpus_debian_mix
        echo "    prepared in ${secs}s"
        sed -n '/^domain/,$p' "$T/out" | sed 's/^/    /'
    else
        fail corpus_debian_mix "exit $RC, $n domains, ${secs}s: $(cat "$T/out" "$T/err" | head -c 800)"
    fi
fi

[ $fails -eq 0 ]
