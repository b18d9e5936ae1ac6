#!/usr/bin/env bash
# moelab export --format gguf, checked against llama.cpp itself (node-llama-cpp, whose
# prebuilt binary runs offline): tiny models trained here in seconds are exported and
# run in llama.cpp on the same token ids, comparing every next-token logit (f32: float
# rounding; f16: what f16 activations allow), greedy continuations against
# `moelab sample --temperature 0` (identical text), and llama.cpp's tokenisation of real
# text against ours. Without node or the package, those checks SKIP loudly; the usage and
# refusal checks still run.
source "$(dirname "$0")/../cli_common.sh"
require_binary export_setup
H="$BUILD/tests/test_export"
LLAMA_DIR=${MOELAB_LLAMA_DIR:-build/llama/node_modules}
have_llama=0
if command -v node >/dev/null && [ -f "$LLAMA_DIR/node-llama-cpp/dist/index.js" ]; then
    have_llama=1
    export MOELAB_LLAMA_DIR="$PWD/$LLAMA_DIR"
    [ "${LLAMA_DIR#/}" != "$LLAMA_DIR" ] && export MOELAB_LLAMA_DIR="$LLAMA_DIR"
else
    skip export_llama_cpp "node-llama-cpp not found in $LLAMA_DIR (install: npm install --omit=optional --prefix build/llama node-llama-cpp@3.22.1 @node-llama-cpp/linux-x64@3.22.1, as .ci/run does): llama.cpp comparisons"
fi

# ------------------------------------------------------------------ data and models

make_prose "$T/prose.txt" 1200
cp /usr/share/common-licenses/GPL-3 "$T/gpl.txt" 2>/dev/null || cp "$T/prose.txt" "$T/gpl.txt"
"$M" prepare --out "$T/bpe" --vocab 400 --val-frac 0.2 "$T/prose.txt" "$T/gpl.txt" >/dev/null 2>"$T/err" &&
    "$M" prepare --out "$T/byte" --val-frac 0.2 "$T/prose.txt" "$T/gpl.txt" >/dev/null 2>>"$T/err" ||
    { echo "FAIL export_setup: prepare: $(cat "$T/err")"; exit 1; }
TINY=(--layers 2 --d-model 32 --heads 2 --seq-len 64 --experts 4 --topk 2 --d-expert 32 --batch 4
    --steps 25 --lr 1e-2 --warmup 2 --eval-every 0 --quiet --threads 2)
train() { # NAME DATA FLAGS...
    local name=$1 data=$2
    shift 2
    "$M" train --data "$T/$data" --out "$T/$name" "${TINY[@]}" "$@" >/dev/null 2>"$T/err" ||
        { echo "FAIL export_setup: train $name: $(cat "$T/err")"; exit 1; }
}
# renormalised top-k, BPE: llama.cpp's ernie4_5-moe
train topk bpe --renorm 1
# unnormalised gates, dense first block, a shared expert, tied embeddings, byte-level: deepseek
train dense_shared byte --renorm 0 --dense-layers 1 --shared 1 --tie-embeddings 1
# renormalised with the same extras, other RoPE base and norm epsilon: ernie4_5-moe
train dense_shared_rn bpe --renorm 1 --dense-layers 1 --shared 1 --tie-embeddings 1 --rope-theta 500 --norm-eps 1e-6
# unnormalised without a shared expert: deepseek with an all-zero shared expert
train plain bpe --renorm 0
# mpmoe routed by top-k at inference: renormalised gates whatever --renorm says, ernie4_5-moe
train mpmoe bpe --router mpmoe --router-opts eval_select=topk --renorm 0
# mpmoe's greedy selection at inference has no llama.cpp form: refused
train mpmoe_greedy bpe --router mpmoe --steps 2
MODELS=(topk dense_shared dense_shared_rn plain mpmoe)

tokdata() { [ -f "$T/$1/tokenizer.json" ] && echo "--data $T/$1"; }
model_data() { case $1 in dense_shared) echo byte ;; *) echo bpe ;; esac; }

# ------------------------------------------------------------------ usage and refusals

out=$("$M" export --help 2>&1) && grep -q -- "--format gguf" <<<"$out" && pass export_help || fail export_help "$out"
refuses() { # NAME EXPECTED-MESSAGE ARGS...
    local name=$1 want=$2
    shift 2
    rm -f "$T/x.gguf"
    if "$M" export "$@" >"$T/out" 2>"$T/err"; then fail "$name" "exit 0"
    elif ! grep -q -- "$want" "$T/err"; then fail "$name" "message: $(cat "$T/err")"
    elif [ -e "$T/x.gguf" ]; then fail "$name" "left an output file"
    else pass "$name"; fi
}
refuses export_no_format "--format is required" "$T/topk" --out "$T/x.gguf" --data "$T/bpe"
refuses export_bad_format "unknown --format" "$T/topk" --format onnx --out "$T/x.gguf" --data "$T/bpe"
refuses export_bad_type "--type must be" "$T/topk" --format gguf --type q4 --out "$T/x.gguf" --data "$T/bpe"
refuses export_no_out "--out FILE is required" "$T/topk" --format gguf --data "$T/bpe"
refuses export_no_tokenizer "tokenizer is needed" "$T/topk" --format gguf --out "$T/x.gguf"
refuses export_wrong_tokenizer "has vocab" "$T/dense_shared" --format gguf --out "$T/x.gguf" --data "$T/bpe"
refuses export_no_checkpoint "" "$T/nothing" --format gguf --out "$T/x.gguf"
refuses export_bad_dir "" "$T/topk" --format gguf --out "$T/no/such/dir/x.gguf" --data "$T/bpe"
refuses export_mpmoe_greedy "eval_select=topk" "$T/mpmoe_greedy" --format gguf --out "$T/x.gguf" --data "$T/bpe"

# --approximate: top-k routing over the same weights, labelled, with both losses measured;
# the own-rule loss must be what `moelab eval --mode infer` says.
if "$M" export "$T/mpmoe_greedy" --format gguf --out "$T/approx.gguf" --data "$T/bpe" --approximate >/dev/null 2>"$T/err" &&
    grep -q "APPROXIMATE: router mpmoe exported as per-token top-k" "$T/err" && grep -aq "moelab.approximate" "$T/approx.gguf"; then
    own=$(sed -n 's/.* \([0-9.]*\) with its own rule.*/\1/p' "$T/err")
    ev=$("$M" eval "$T/mpmoe_greedy" --data "$T/bpe" --mode infer --json | sed 's/.*"loss":\([^,]*\).*/\1/')
    [ -n "$own" ] && awk -v a="$own" -v b="$ev" 'BEGIN { d = a - b; exit !((d < 0 ? -d : d) <= 2e-6) }' && pass "export_approximate ($(sed -n 's/.*APPROXIMATE: //p' "$T/err" | sed 's/.*: loss/loss/'))" ||
        fail export_approximate "own-rule loss '$own' but moelab eval --mode infer says '$ev'"
else
    fail export_approximate "$(cat "$T/err")"
fi
refuses export_approximate_needs_data "needs --data" "$T/mpmoe_greedy" --format gguf --out "$T/x.gguf" --approximate

for ty in f32 f16 bf16 q8_0; do
    for name in "${MODELS[@]}"; do
        # shellcheck disable=SC2046
        "$M" export "$T/$name" --format gguf --type $ty --out "$T/$name.$ty.gguf" $(tokdata $(model_data $name)) \
            >/dev/null 2>"$T/err" || fail "export_$ty" "$name: $(cat "$T/err")"
    done
done
[ -s "$T/topk.q8_0.gguf" ] && [ "$(head -c 4 "$T/topk.f32.gguf")" = GGUF ] && pass export_writes_all_types ||
    fail export_writes_all_types "missing files"
grep -q "architecture deepseek" <("$M" export "$T/plain" --format gguf --out "$T/p.gguf" --data "$T/bpe" 2>&1) &&
    pass export_arch_unnormalised || fail export_arch_unnormalised "plain top-k without renorm should map to deepseek"
grep -q "architecture ernie4_5-moe" <("$M" export "$T/mpmoe" --format gguf --out "$T/p.gguf" --data "$T/bpe" 2>&1) &&
    pass export_arch_mpmoe || fail export_arch_mpmoe "mpmoe with top-k inference renormalises: ernie4_5-moe"

# ------------------------------------------------------------------ PyTorch loader

# scripts/torch_load.py rebuilds the model from docs/model.md in plain PyTorch and must give
# the loss `moelab eval` gives, on configs that between them use every option.
PY=${PYTHON:-/usr/bin/python3}
if "$PY" -c 'import torch' 2>/dev/null; then
    for d in byte bpe; do
        names=$([ $d = byte ] && echo dense_shared || echo "topk dense_shared_rn mpmoe")
        out=$("$PY" scripts/torch_load.py $(for n in $names; do echo "$T/$n"; done) --data "$T/$d" --threads 2 2>&1)
        for n in $names; do
            ours=$("$M" eval "$T/$n" --data "$T/$d" --json 2>&1 | sed 's/.*"loss":\([^,]*\).*/\1/')
            theirs=$(grep "\"$T/$n\"" <<<"$out" | sed 's/.*"loss": \([^,]*\).*/\1/')
            if awk -v a="$ours" -v b="$theirs" 'BEGIN { d = a - b; exit !(b != "" && (d < 0 ? -d : d) <= 2e-5 * a) }'; then
                pass "torch_load_$n (loss $theirs, moelab eval $ours)"
            else
                fail "torch_load_$n" "PyTorch loss '$theirs', moelab eval '$ours': $(tail -3 <<<"$out")"
            fi
        done
    done
else
    skip torch_load "$PY has no torch (python3-torch): the PyTorch loader check"
fi

[ $have_llama = 1 ] || exit $((fails > 0))

# ------------------------------------------------------------------ llama.cpp runs

# Four windows of 64 ids (256 positions) of real text, as each model's tokenizer cuts it.
tail -c 6000 "$T/gpl.txt" >"$T/win.txt"
"$M" tokenizer encode --tokenizer "$T/bpe/tokenizer.json" "$T/win.txt" | tr ' ' '\n' >"$T/bpe.all"
od -An -v -tu1 "$T/win.txt" | tr -s ' ' '\n' | grep . >"$T/byte.all"
for d in bpe byte; do
    head -256 "$T/$d.all" | paste -d' ' - - - - - - - - - - - - - - - - | paste -d' ' - - - - >"$T/$d.ids"
    awk 'NF != 64 { bad = 1 } END { exit bad || NR != 4 }' "$T/$d.ids" || { echo "FAIL export_setup: ids of $d"; exit 1; }
done
# Greedy prompts: end-of-text (id 256 in our tokenizers), then the prompt's ids, as
# `moelab sample` starts its context.
PROMPTS=("The router" "This License" "the load stays")
for i in 0 1 2; do
    printf '%s' "${PROMPTS[i]}" >"$T/prompt$i.txt"
    echo "256 $("$M" tokenizer encode --tokenizer "$T/bpe/tokenizer.json" "$T/prompt$i.txt")" >"$T/bpe.prompt$i"
    echo "256 $(od -An -v -tu1 "$T/prompt$i.txt" | tr -s ' \n' '  ')" >"$T/byte.prompt$i"
done
# Real text: the GPL (ASCII), our prose, and words with non-ASCII letters, which both
# pre-tokenisers keep inside words (docs/export.md says where they part).
{ head -c 20000 "$T/gpl.txt"; head -c 3000 "$T/prose.txt"
  printf 'caf\xc3\xa9 na\xc3\xafve \xc3\x9cbung  tabs\t\tand  spaces   \n\n\nend'; } >"$T/real.txt"
head -c 3000 "$T/real.txt" >"$T/real_short.txt"
NGEN=40
{
    for name in "${MODELS[@]}"; do
        d=$(model_data $name)
        for ty in f32 f16 bf16 q8_0; do echo "logits $T/$name.$ty.gguf $T/$d.ids $T/$name.$ty.f32"; done
        for i in 0 1 2; do echo "greedy $T/$name.f32.gguf $T/$d.prompt$i $NGEN $T/$name.gen$i"; done
    done
    echo "tokenize $T/topk.f32.gguf $T/real.txt $T/theirs.ids"
    echo "tokenize $T/dense_shared.f32.gguf $T/real_short.txt $T/theirs_b.ids"
} >"$T/jobs"
if ! node tests/llama_check.mjs --jobs "$T/jobs" 2>"$T/llama_err"; then
    fail llama_runs "llama.cpp could not run every job: $(tail -5 "$T/llama_err")"
fi

# ------------------------------------------------------------------ logits

check_logits() { # NAME TYPE MAXABS-LIMIT(relative to the logit scale) MIN-ARGMAX-AGREEMENT
    local name=$1 ty=$2 lim=$3 agree=$4 r
    [ -s "$T/$name.$ty.f32" ] || { fail "llama_logits_${ty}_$name" "no logits from llama.cpp"; return; }
    r=$("$H" --logits "$T/$name" "$T/$(model_data "$name").ids" "$T/$name.$ty.f32" $([ "$ty" != f32 ] && echo $ty) 2>&1)
    if awk -v lim="$lim" -v ag="$agree" '{ exit !($2 == 256 && $4 <= lim * $6 && $8 >= ag * $2) }' <<<"$r"; then
        pass "llama_logits_${ty}_$name ($r)"
    else
        fail "llama_logits_${ty}_$name" "$r (allowed: maxabs <= $lim x scale, argmax agreement >= $agree)"
    fi
}
for name in "${MODELS[@]}"; do
    # f32: float rounding (a few ulps of the largest logit)
    check_logits $name f32 1e-5 1
    # f16 weights and, in ggml, f16 activations in every matmul: against our forward with the
    # same f16 weights, differences stay at f16's activation rounding
    check_logits $name f16 1e-2 0.98
    # bf16 and q8_0: ggml rounds activations to bf16 / quantises them to q8_0 too; a
    # coarser bound, but the file must run and follow our forward with the same weights
    check_logits $name bf16 8e-2 0.9
    check_logits $name q8_0 8e-2 0.9
done

# ------------------------------------------------------------------ greedy text

for name in "${MODELS[@]}"; do
    d=$(model_data "$name") bad=""
    for i in 0 1 2; do
        "$M" sample "$T/$name" --prompt "${PROMPTS[i]}" --temperature 0 --tokens $NGEN $(tokdata "$d") \
            >"$T/ours.txt" 2>"$T/err" || { bad="sample: $(cat "$T/err")"; break; }
        { cat "$T/prompt$i.txt"
          if [ "$d" = byte ]; then
              for b in $(cat "$T/$name.gen$i" 2>/dev/null); do printf "\\$(printf '%03o' "$b")"; done
          else
              "$M" tokenizer decode --tokenizer "$T/$d/tokenizer.json" "$T/$name.gen$i" 2>/dev/null
          fi
          echo; } >"$T/theirs.txt"
        if ! cmp -s "$T/ours.txt" "$T/theirs.txt" || [ "$(wc -w <"$T/$name.gen$i")" -eq 0 ]; then
            bad="prompt '${PROMPTS[i]}': moelab '$(head -c 150 "$T/ours.txt")' llama.cpp '$(head -c 150 "$T/theirs.txt")'"
            break
        fi
    done
    [ -z "$bad" ] && pass "llama_greedy_$name (3 prompts x $NGEN tokens, identical text)" || fail "llama_greedy_$name" "$bad"
done

# ------------------------------------------------------------------ tokenizer

"$M" tokenizer encode --tokenizer "$T/bpe/tokenizer.json" "$T/real.txt" >"$T/ours.ids"
if [ -s "$T/ours.ids" ] && cmp -s "$T/ours.ids" "$T/theirs.ids"; then
    pass "llama_tokenize_bpe ($(wc -w <"$T/ours.ids") tokens identical)"
else
    fail llama_tokenize_bpe "ids differ: $(cmp "$T/ours.ids" "$T/theirs.ids" 2>&1 | head -2)"
fi
od -An -v -tu1 "$T/real_short.txt" | tr -s ' \n' '  ' | sed 's/^ //; s/ $//' >"$T/ours_b.ids"
if [ -s "$T/theirs_b.ids" ] && [ "$(sed 's/ $//' "$T/theirs_b.ids")" = "$(cat "$T/ours_b.ids")" ]; then
    pass llama_tokenize_bytes
else
    fail llama_tokenize_bytes "byte-level ids differ: $(head -c 200 "$T/theirs_b.ids")"
fi
exit $((fails > 0))
