#!/usr/bin/env bash
# The mpmoe router end to end: a run stopped and resumed equals the straight run (losses,
# evaluations, checkpoint files: the counts and Sigma are part of the checkpoint), a
# standalone eval of the checkpoint reproduces the in-training evaluation (it routes with
# the saved Sigma, and top-k routing gives another loss), and sample and analyze load it;
# --router-opts at evaluation re-makes the router with its state. Bad options are refused.
. "$(dirname "$0")/../cli_common.sh"
require_binary mpmoe_binary
IO="$T/io"
mkdir -p "$IO"
TINY=(--layers 2 --d-model 32 --heads 2 --seq-len 32 --batch 4 --experts 8 --topk 2 --d-expert 16 --threads 2 --quiet
    --router mpmoe --router-opts warmup=0.2,decay=4)

run() {
    "$M" "$@" >"$IO/out" 2>"$IO/err"
    RC=$?
}
field() { grep -v val_loss "$2" | grep -o "\"$1\":[^,}]*" | cut -d: -f2; }

make_prose "$T/corpus.txt" 2400
D="$T/data"
if ! "$M" prepare --out "$D" --val-frac 0.2 "$T/corpus.txt" >"$IO/out" 2>"$IO/err"; then
    echo "FAIL mpmoe_setup_prepare: $(cat "$IO/err")"
    exit 1
fi

a="$T/a" b="$T/b"
run train --data "$D" --out "$a" "${TINY[@]}" --steps 20 --seed 3 --eval-every 5 --grad-accum 2
if [ $RC -ne 0 ]; then
    echo "FAIL mpmoe_setup_train: $(head -c 400 "$IO/err")"
    exit 1
fi
run train --data "$D" --out "$b" "${TINY[@]}" --steps 20 --seed 3 --eval-every 5 --grad-accum 2 --stop-at 10
rc1=$RC
run train --data "$D" --out "$b" --resume --quiet
if [ $rc1 -ne 0 ] || [ $RC -ne 0 ]; then
    fail mpmoe_resume_exact "stopped or resumed run failed: $(head -c 300 "$IO/err")"
else
    bad=""
    for k in loss grad_norm aux z; do
        [ "$(field "$k" "$a/log.jsonl")" = "$(field "$k" "$b/log.jsonl")" ] || bad="$bad $k"
    done
    [ "$(grep val_loss "$a/log.jsonl" | cut -d, -f1-3)" = "$(grep val_loss "$b/log.jsonl" | cut -d, -f1-3)" ] || bad="$bad val_loss"
    cmp -s "$a/model.safetensors" "$b/model.safetensors" || bad="$bad model.safetensors"
    cmp -s "$a/optim.safetensors" "$b/optim.safetensors" || bad="$bad optim.safetensors"
    if [ -z "$bad" ]; then pass mpmoe_resume_exact; else fail mpmoe_resume_exact "differ:$bad"; fi
fi

# The last in-training evaluation used the live Sigma; eval of the checkpoint must agree.
want=$(grep '"step":20,"val_loss"' "$a/log.jsonl" | grep -o '"val_loss":[^,]*' | cut -d: -f2)
run eval "$a" --data "$D" --json --batch 4 --batches 8
got=$(grep -o '"loss":[^,]*' "$IO/out" | head -1 | cut -d: -f2)
if [ $RC -eq 0 ] && [ -n "$want" ] && [ "$got" = "$want" ]; then
    pass mpmoe_eval_uses_saved_sigma
else
    fail mpmoe_eval_uses_saved_sigma "eval loss '$got' vs in-training '$want' (exit $RC) $(head -c 200 "$IO/err")"
fi

# Under Sigma = I the greedy is top-k: a different loss with eval_select=topk shows the
# saved Sigma is the one in use. --router-opts re-makes the router, keeping its state.
run eval "$a" --data "$D" --json --batch 4 --batches 8 --router-opts eval_select=topk
topk_loss=$(grep -o '"loss":[^,]*' "$IO/out" | head -1 | cut -d: -f2)
run eval "$a" --data "$D" --json --batch 4 --batches 8 --router-opts eval_select=greedy
again=$(grep -o '"loss":[^,]*' "$IO/out" | head -1 | cut -d: -f2)
if [ -n "$topk_loss" ] && [ "$topk_loss" != "$want" ] && [ "$again" = "$want" ]; then
    pass mpmoe_eval_select_override
else
    fail mpmoe_eval_select_override "greedy '$want', topk '$topk_loss', greedy again '$again' $(head -c 200 "$IO/err")"
fi
run eval "$a" --data "$D" --router-opts bogus=1
if [ $RC -ne 0 ] && grep -q "bogus" "$IO/err"; then pass mpmoe_eval_bad_override; else fail mpmoe_eval_bad_override "exit $RC"; fi

run info "$a"
if [ $RC -eq 0 ] && grep -q "router state: $((2 * (2 * 8 * 8 + 8 + 2))) values" "$IO/out"; then
    pass mpmoe_info_state
else
    fail mpmoe_info_state "$(cat "$IO/out" "$IO/err" | head -c 300)"
fi

run sample "$a" --data "$D" --prompt "The router" --tokens 12 --seed 1
if [ $RC -eq 0 ] && [ -s "$IO/out" ]; then pass mpmoe_sample; else fail mpmoe_sample "exit $RC $(head -c 300 "$IO/err")"; fi
run sample "$a" --data "$D" --prompt "The router" --tokens 12 --seed 1 --router-opts eval_select=topk
if [ $RC -eq 0 ] && [ -s "$IO/out" ]; then pass mpmoe_sample_topk; else fail mpmoe_sample_topk "exit $RC $(head -c 300 "$IO/err")"; fi

run analyze "$a" --data "$D" --batches 2 --out "$T/an.json"
if [ $RC -eq 0 ] && [ -s "$T/an.json" ]; then pass mpmoe_analyze; else fail mpmoe_analyze "exit $RC $(head -c 300 "$IO/err")"; fi

bad_opts=0
for o in warmup=2 sigma_every=0 decay=-1 eval_select=best reference=2 nope=1; do
    run train --data "$D" --out "$T/bad" "${TINY[@]}" --steps 2 --router-opts "$o"
    if [ $RC -eq 0 ] || [ -e "$T/bad" ] || ! grep -q "mpmoe" "$IO/err"; then
        bad_opts=$((bad_opts + 1))
        echo "  --router-opts $o: exit $RC: $(head -c 200 "$IO/err")"
    fi
done
if [ $bad_opts -eq 0 ]; then pass mpmoe_bad_options; else fail mpmoe_bad_options "$bad_opts bad options accepted"; fi

[ $fails -eq 0 ]
