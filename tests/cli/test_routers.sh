#!/usr/bin/env bash
# The router zoo from the command line: every router trains a few steps and writes its
# losses; batch-level routers log the validation loss under their per-token inference
# rule too; eval runs a topk checkpoint under usmoe (training-free); bad router options
# are refused before any run folder is made; --help lists every router.
. "$(dirname "$0")/../cli_common.sh"
require_binary routers_binary
TINY=(--layers 2 --d-model 32 --heads 2 --seq-len 32 --batch 4 --experts 4 --topk 2 --d-expert 32 --threads 1 --quiet
      --steps 6 --eval-every 0 --eval-batches 2)
make_prose "$T/prose.txt" 600
"$M" prepare --out "$T/data" "$T/prose.txt" >/dev/null 2>&1 || { fail routers_prepare "prepare failed"; exit 1; }

routers=$("$M" train --help | sed -n '/^routers:/,$p' | awk '/^  [a-z_]+ /{print $1}')
[ -n "$routers" ] || fail routers_help "train --help lists no routers"
for r in $routers; do
    out="$T/run_$r"
    if ! "$M" train --data "$T/data" --out "$out" --router "$r" "${TINY[@]}" >"$T/err" 2>&1; then
        fail "routers_train_$r" "$(tail -1 "$T/err")"
        continue
    fi
    last=$(grep '"val_loss"' "$out/log.jsonl" | tail -1)
    case "$r" in
    expert_choice | usmoe | etr) want_infer=1 ;;
    *) want_infer=0 ;;
    esac
    has_infer=0
    case "$last" in *'"val_loss_infer"'*) has_infer=1 ;; esac
    if [ -z "$last" ]; then fail "routers_train_$r" "no evaluation line"
    elif [ $has_infer -ne $want_infer ]; then fail "routers_train_$r" "val_loss_infer present=$has_infer, want $want_infer"
    else pass "routers_train_$r"; fi
done

if "$M" eval "$T/run_topk" --data "$T/data" --batches 2 --router usmoe --json >"$T/out" 2>"$T/err" &&
    grep -q '"loss"' "$T/out" &&
    "$M" eval "$T/run_topk" --data "$T/data" --batches 2 --router usmoe --router-opts rate=0,budget=token --mode infer >/dev/null 2>&1; then
    pass routers_eval_training_free
else
    fail routers_eval_training_free "$(cat "$T/err")"
fi

for bad in "usmoe:rate=2" "etr:floor=sometimes" "expert_choice:nonesuch=1" "random:x=1" "topk:cf=-1"; do
    r=${bad%%:*} o=${bad#*:}
    if "$M" train --data "$T/data" --out "$T/bad" --router "$r" --router-opts "$o" "${TINY[@]}" 2>"$T/err"; then
        fail "routers_refuse_$r" "accepted --router-opts $o"
    elif ! grep -q "router $r" "$T/err" || [ -e "$T/bad" ]; then
        fail "routers_refuse_$r" "message or leftover folder: $(cat "$T/err")"
    else
        pass "routers_refuse_$r"
    fi
done
if "$M" eval "$T/run_topk" --data "$T/data" --router-opts rate=1 >/dev/null 2>&1; then
    fail routers_eval_opts_alone "--router-opts without --router accepted"
else
    pass routers_eval_opts_alone
fi
[ $fails -eq 0 ]
