#!/usr/bin/env bash
# Regenerates the fuzzers' seed corpora in fuzz/corpus/<harness>/ from real, small files:
# a two-domain data folder with a BPE tokenizer, a tiny trained checkpoint, its log, a
# manifest and a config. Run from the repository root after `make`.
set -euo pipefail
cd "$(dirname "$0")/.."
M=${M:-build/moelab}
C=fuzz/corpus
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
for h in safetensors checkpoint shard meta tokenizer manifest config runlog; do mkdir -p "$C/$h"; done

awk 'BEGIN { for (i = 1; i <= 60; i++) { printf "the expert %d routes token %d to layer %d.\n", i % 7, i * 13, i % 3; if (i % 6 == 0) print "" } }' >"$W/a.txt"
awk 'BEGIN { for (i = 1; i <= 60; i++) { printf "x[%d] = %d + %d;\n", i, i * 7, i % 5; if (i % 6 == 0) print "" } }' >"$W/b.txt"
printf '{"name":"seed","domains":[{"name":"prose","files":["a.txt"],"split":"paragraphs","min_doc_bytes":64},{"name":"code","files":["b.txt"],"split":"paragraphs","min_doc_bytes":64}]}\n' >"$W/m.json"
cp "$W/m.json" "$C/manifest/two_domains.json"
printf '{"name":"pk","domains":[{"name":"d","packages":["base-files"],"include":["/usr/share/common-licenses/*"],"cap_bytes":1000,"split":"whole"}]}\n' >"$C/manifest/packages.json"
"$M" prepare --out "$W/data" --manifest "$W/m.json" --vocab 300 --val-frac 0.3 --quiet >/dev/null
"$M" prepare --out "$W/bytes" --manifest "$W/m.json" --val-frac 0.3 --quiet >/dev/null
cp "$W/data/val.bin" "$C/shard/two_domains.bin"
cp "$W/bytes/val.bin" "$C/shard/bytes.bin"
cp "$W/data/tokenizer.json" "$C/tokenizer/bpe300.json"
cp "$W/bytes/meta.json" "$C/meta/bytes.json"
{ cat "$W/data/meta.json"; printf '\n--TOKENIZER--\n'; cat "$W/data/tokenizer.json"; } >"$C/meta/bpe.json"

TINY=(--layers 2 --d-model 8 --heads 2 --seq-len 8 --batch 2 --experts 2 --topk 1 --d-expert 4 --tie-embeddings 1)
"$M" train --data "$W/bytes" --out "$W/run" --steps 4 --eval-every 2 --eval-batches 2 --quiet "${TINY[@]}" >/dev/null
cp "$W/run/model.safetensors" "$C/safetensors/model.safetensors"
cp "$W/run/optim.safetensors" "$C/safetensors/optim.safetensors"
{ cat "$W/run/model.safetensors"; printf '\n--OPTIM--\n'; cat "$W/run/optim.safetensors"; } >"$C/checkpoint/tiny"
cp "$W/run/log.jsonl" "$C/runlog/tiny.jsonl"
cp "$W/run/config.json" "$C/config/tiny.json"
printf '{"layers":4,"d_model":64,"heads":4,"experts":8,"topk":2,"d_expert":32,"router":"topk","lr":0.001}\n' >"$C/config/small.json"
du -sh "$C"
