#!/usr/bin/env bash
# CLI tests for `moelab prepare`. Prints PASS/FAIL lines; exits non-zero on any failure.
. "$(dirname "$0")/../cli_common.sh"
require_binary prepare_cli_binary

# A text of many blank-line separated paragraphs (about 40 KB, so several documents).
for i in $(seq 1 500); do
    printf 'paragraph %d: the router sends each token to its top experts\nand the load stays balanced across layer %d.\n\n' "$i" $((i % 7))
done > "$T/text.txt"

# --help prints usage on stdout and exits 0.
if out=$("$M" prepare --help 2>&1) && grep -q "usage: moelab prepare" <<<"$out"; then
    pass prepare_help
else
    fail prepare_help "exit or usage text wrong: $out"
fi

# A text file gives the three outputs and a summary.
if "$M" prepare --out "$T/out" "$T/text.txt" >"$T/stdout" 2>"$T/stderr"; then
    if [ -s "$T/out/train.bin" ] && [ -s "$T/out/val.bin" ] && [ -s "$T/out/meta.json" ] &&
        grep -q '"vocab_size":[[:space:]]*257' "$T/out/meta.json" && grep -q '"tokenizer":[[:space:]]*"bytes"' "$T/out/meta.json" &&
        grep -q "prepared" "$T/stdout" && grep -q "train:" "$T/stdout"; then
        pass prepare_text_file
    else
        fail prepare_text_file "missing outputs or summary: $(cat "$T/stdout" "$T/stderr"; ls "$T/out")"
    fi
else
    fail prepare_text_file "non-zero exit: $(cat "$T/stderr")"
fi

# Running again with the same seed reproduces the bytes.
if "$M" prepare --out "$T/out2" "$T/text.txt" >/dev/null 2>&1 &&
    cmp -s "$T/out/train.bin" "$T/out2/train.bin" && cmp -s "$T/out/val.bin" "$T/out2/val.bin"; then
    pass prepare_deterministic
else
    fail prepare_deterministic "second run differs"
fi

# A folder input is walked; --val-frac and --seed are accepted in both spellings.
mkdir -p "$T/corpus/sub" && cp "$T/text.txt" "$T/corpus/a.txt" && cp "$T/text.txt" "$T/corpus/sub/b.txt"
if "$M" prepare --out="$T/out3" --val-frac 0.2 --seed=7 "$T/corpus" >"$T/stdout" 2>"$T/stderr" &&
    grep -q "from 2 files" "$T/stdout"; then
    pass prepare_folder
else
    fail prepare_folder "$(cat "$T/stdout" "$T/stderr")"
fi

# A missing input fails with a message naming it and writes nothing.
if "$M" prepare --out "$T/miss" "$T/text.txt" "$T/nope.txt" >/dev/null 2>"$T/stderr"; then
    fail prepare_missing_file "exit status 0"
elif ! grep -q "^moelab prepare: .*nope.txt" "$T/stderr"; then
    fail prepare_missing_file "no message on stderr: $(cat "$T/stderr")"
elif [ -e "$T/miss" ] && [ -n "$(ls -A "$T/miss")" ]; then
    fail prepare_missing_file "output written: $(ls -A "$T/miss")"
else
    pass prepare_missing_file
fi

# Empty input: a clear failure, nothing written.
: >"$T/empty.txt"
if "$M" prepare --out "$T/empty_out" "$T/empty.txt" >/dev/null 2>"$T/stderr"; then
    fail prepare_empty_input "exit status 0"
elif ! grep -q "^moelab prepare: no text" "$T/stderr"; then
    fail prepare_empty_input "unclear message: $(cat "$T/stderr")"
elif [ -e "$T/empty_out/train.bin" ]; then
    fail prepare_empty_input "output written"
else
    pass prepare_empty_input
fi

# Bad flags are usage errors.
ok=1
"$M" prepare --out "$T/x" --val-frac 1.5 "$T/text.txt" >/dev/null 2>"$T/stderr" && ok=0
grep -q "^moelab prepare: --val-frac" "$T/stderr" || ok=0
"$M" prepare "$T/text.txt" >/dev/null 2>"$T/stderr" && ok=0
grep -q "^moelab prepare: --out" "$T/stderr" || ok=0
"$M" prepare --out "$T/x" --bogus "$T/text.txt" >/dev/null 2>"$T/stderr" && ok=0
grep -q "unknown option" "$T/stderr" || ok=0
if [ $ok = 1 ]; then pass prepare_bad_flags; else fail prepare_bad_flags "$(cat "$T/stderr")"; fi

# Plain files with --vocab: a BPE tokenizer trained on them, written beside the shards.
if "$M" prepare --out "$T/bpe" --vocab 300 --quiet "$T/text.txt" >"$T/stdout" 2>"$T/stderr" &&
    [ -s "$T/bpe/tokenizer.json" ] && grep -q '"tokenizer":[[:space:]]*"bpe"' "$T/bpe/meta.json" &&
    grep -q "tokenizer: bpe, vocab 300" "$T/stdout" && grep -qE '^default ' "$T/stdout"; then
    pass prepare_plain_bpe
else
    fail prepare_plain_bpe "$(cat "$T/stdout" "$T/stderr")"
fi

# Flags that contradict each other are usage errors.
ok=1
"$M" prepare --out "$T/y" --vocab 300 --tokenizer "$T/bpe/tokenizer.json" "$T/text.txt" >/dev/null 2>"$T/stderr" && ok=0
grep -q "either --vocab or --tokenizer" "$T/stderr" || ok=0
"$M" prepare --out "$T/y" --cap-bytes-per-domain -5 "$T/text.txt" >/dev/null 2>"$T/stderr" && ok=0
grep -q "cap-bytes-per-domain" "$T/stderr" || ok=0
[ -e "$T/y" ] && ok=0
if [ $ok = 1 ]; then pass prepare_conflicting_flags; else fail prepare_conflicting_flags "$(cat "$T/stderr")"; fi

[ $fails -eq 0 ]
