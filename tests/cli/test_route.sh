#!/usr/bin/env bash
# moelab route: on tests/fixtures/route_mpmoe.safetensors (logits and co-occurrence counts
# with real structure, written by tests/mirror/make_fixtures.py) the masks equal, token for
# token, the PyTorch mirror's: the published selector (otep_batched) for reference=1,
# moelab's default conditioning, and top-k; gates within 1e-6. Ties go to the lowest
# index. Missing and mis-shaped tensors are refused naming the tensor, with no output.
# Needs only bash and coreutils: tensors are cut out of the files by their offsets.
. "$(dirname "$0")/../cli_common.sh"
require_binary route_binary
FX=tests/fixtures/route_mpmoe.safetensors
IO="$T/io"
mkdir -p "$IO"

run() {
    "$M" "$@" >"$IO/out" 2>"$IO/err"
    RC=$?
}

# st_tensor FILE NAME: the raw bytes of tensor NAME.
st_tensor() {
    local n hdr offs a b
    n=$(od -An -t u8 -N 8 "$1" | tr -d ' ')
    hdr=$(head -c $((8 + n)) "$1" | tail -c "$n")
    offs=$(printf '%s' "$hdr" | grep -o "\"$2\":{[^}]*}" | grep -o '"data_offsets":\[[0-9]*,[0-9]*\]' | grep -o '[0-9]*,[0-9]*')
    [ -n "$offs" ] || return 1
    a=${offs%,*} b=${offs#*,}
    tail -c +$((8 + n + a + 1)) "$1" | head -c $((b - a))
}

# same_tensor NAME FILE_A TENSOR_A FILE_B TENSOR_B
same_tensor() {
    st_tensor "$2" "$3" >"$IO/a" && st_tensor "$4" "$5" >"$IO/b" && [ -s "$IO/a" ] && cmp -s "$IO/a" "$IO/b"
}

# mkst FILE HEADER_JSON DATA_BYTES: a safetensors file with zeroed data.
mkst() {
    local n=${#2}
    printf "$(printf '\\%03o' $((n & 255)) $((n >> 8 & 255)) 0 0 0 0 0 0)" >"$1"
    printf '%s' "$2" >>"$1"
    head -c "$3" /dev/zero >>"$1"
}

if [ ! -s "$FX" ]; then
    fail route_fixture "$FX is missing (make fixtures)"
    exit 1
fi

for c in "mpmoe reference=1 ref_mask" "mpmoe , default_mask" "topk , topk_mask"; do
    set -- $c
    name="route_${1}_$3"
    opts=$2
    [ "$opts" = , ] && opts=""
    run route --router "$1" --topk 4 --in "$FX" --out "$T/$name.st" --router-opts "$opts"
    if [ $RC -ne 0 ]; then
        fail "$name" "exit $RC: $(head -c 300 "$IO/err")"
    elif same_tensor "$name" "$T/$name.st" mask "$FX" "$3"; then
        pass "$name"
    else
        fail "$name" "mask differs from the mirror's $3 ($(cmp "$IO/a" "$IO/b" | head -1))"
    fi
done

# gates of the default run against the mirror's, as text through od
if st_tensor "$T/route_mpmoe_default_mask.st" gates >"$IO/g1" && st_tensor "$FX" default_gates >"$IO/g2"; then
    worst=$(paste <(od -An -v -t f4 -w4 "$IO/g1") <(od -An -v -t f4 -w4 "$IO/g2") |
        awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d } END { printf "%.3g", m + 0 }')
    if awk -v w="$worst" 'BEGIN { exit !(w <= 1e-6) }'; then pass route_mpmoe_gates; else fail route_mpmoe_gates "max |diff| $worst"; fi
else
    fail route_mpmoe_gates "no gates tensor"
fi

# sigma = I (with ridge=0): exactly top-k
E=16
eye=""
for ((i = 0; i < E * E; i++)); do
    if ((i % (E + 1) == 0)); then eye+='\x00\x00\x80\x3f'; else eye+='\x00\x00\x00\x00'; fi
done
tl=$(st_tensor "$FX" logits | wc -c)
mkst "$T/eye.st" "{\"logits\":{\"dtype\":\"F32\",\"shape\":[256,16],\"data_offsets\":[0,$tl]},\"sigma\":{\"dtype\":\"F32\",\"shape\":[16,16],\"data_offsets\":[$tl,$((tl + 4 * E * E))]}}" 0
st_tensor "$FX" logits >>"$T/eye.st"
printf "$eye" >>"$T/eye.st"
run route --router mpmoe --topk 4 --in "$T/eye.st" --out "$T/eye_out.st" --router-opts ridge=0
if [ $RC -eq 0 ] && same_tensor route_identity "$T/eye_out.st" mask "$FX" topk_mask; then
    pass route_mpmoe_identity_is_topk
else
    fail route_mpmoe_identity_is_topk "exit $RC $(head -c 200 "$IO/err")"
fi

# ties: all-zero logits, k=2 -> the two lowest experts of every row
mkst "$T/zero.st" '{"logits":{"dtype":"F32","shape":[3,4],"data_offsets":[0,48]}}' 48
run route --router topk --topk 2 --in "$T/zero.st" --out "$T/zero_out.st"
if [ $RC -eq 0 ] && [ "$(st_tensor "$T/zero_out.st" mask | od -An -v -t u1 | tr -s ' \n' ' ')" = " 1 1 0 0 1 1 0 0 1 1 0 0 " ]; then
    pass route_ties_lowest_index
else
    fail route_ties_lowest_index "exit $RC mask: $(st_tensor "$T/zero_out.st" mask | od -An -t u1) $(head -c 200 "$IO/err")"
fi

# probabilities instead of logits: rows (0.1 0.4 0.2 0.3) and (0.3 0.2 0.4 0.1), k=2
mkst "$T/probs.st" '{"probs":{"dtype":"F32","shape":[2,4],"data_offsets":[0,32]}}' 0
printf '\xcd\xcc\xcc\x3d\xcd\xcc\xcc\x3e\xcd\xcc\x4c\x3e\x9a\x99\x99\x3e\x9a\x99\x99\x3e\xcd\xcc\x4c\x3e\xcd\xcc\xcc\x3e\xcd\xcc\xcc\x3d' >>"$T/probs.st"
run route --router topk --topk 2 --in "$T/probs.st" --out "$T/probs_out.st"
if [ $RC -eq 0 ] && [ "$(st_tensor "$T/probs_out.st" mask | od -An -v -t u1 | tr -s ' \n' ' ')" = " 0 1 0 1 1 0 1 0 " ]; then
    pass route_from_probs
else
    fail route_from_probs "exit $RC mask: $(st_tensor "$T/probs_out.st" mask | od -An -t u1) $(head -c 200 "$IO/err")"
fi
mkst "$T/badprobs.st" '{"probs":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}}' 0
printf '\x00\x00\x00\x40\x00\x00\x00\x00' >>"$T/badprobs.st" # 2.0, 0.0

# refusals: the message names the tensor, nothing is written
L='"logits":{"dtype":"F32","shape":[2,4],"data_offsets":[0,32]}'
mkst "$T/nolog.st" '{"x":{"dtype":"F32","shape":[2,4],"data_offsets":[0,32]}}' 32
mkst "$T/flat.st" '{"logits":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}}' 32
mkst "$T/int.st" '{"logits":{"dtype":"I32","shape":[2,4],"data_offsets":[0,32]}}' 32
mkst "$T/only.st" "{$L}" 32
mkst "$T/badcooc.st" "{$L,\"cooc\":{\"dtype\":\"F64\",\"shape\":[3,3],\"data_offsets\":[32,104]},\"usage\":{\"dtype\":\"F64\",\"shape\":[4],\"data_offsets\":[104,136]},\"count\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[136,144]}}" 144
mkst "$T/nocount.st" "{$L,\"cooc\":{\"dtype\":\"F64\",\"shape\":[4,4],\"data_offsets\":[32,160]},\"usage\":{\"dtype\":\"F64\",\"shape\":[4],\"data_offsets\":[160,192]}}" 192
mkst "$T/badsigma.st" "{$L,\"sigma\":{\"dtype\":\"F32\",\"shape\":[4,5],\"data_offsets\":[32,112]}}" 112
refuse() { # NAME PATTERN ARGS...
    local name=$1 pat=$2
    shift 2
    rm -f "$T/refused.st"
    run route "$@" --out "$T/refused.st"
    if [ $RC -ne 0 ] && [ $RC -lt 128 ] && [ ! -e "$T/refused.st" ] && grep -qiE "$pat" "$IO/err"; then
        pass "$name"
    else
        fail "$name" "exit $RC, stderr: $(head -c 200 "$IO/err")"
    fi
}
refuse route_refuses_no_logits "'logits'" --router topk --topk 2 --in "$T/nolog.st"
refuse route_refuses_flat_logits "'logits'.*shape" --router topk --topk 2 --in "$T/flat.st"
refuse route_refuses_int_logits "'logits'.*float" --router topk --topk 2 --in "$T/int.st"
refuse route_refuses_no_state "'sigma'" --router mpmoe --topk 2 --in "$T/only.st"
refuse route_refuses_bad_cooc "'cooc'.*shape" --router mpmoe --topk 2 --in "$T/badcooc.st"
refuse route_refuses_missing_count "'count'" --router mpmoe --topk 2 --in "$T/nocount.st"
refuse route_refuses_bad_sigma "'sigma'.*shape" --router mpmoe --topk 2 --in "$T/badsigma.st"
refuse route_refuses_topk_above_e "topk" --router topk --topk 5 --in "$T/only.st"
refuse route_refuses_unknown_router "unknown router" --router nope --topk 2 --in "$T/only.st"
refuse route_refuses_bad_option "mpmoe.*nope" --router mpmoe --topk 2 --in "$T/only.st" --router-opts nope=1
refuse route_refuses_missing_file "missing.st|no such" --router topk --topk 2 --in "$T/missing.st"
refuse route_refuses_no_topk "topk" --router topk --in "$T/only.st"
refuse route_refuses_bad_probs "'probs'" --router topk --topk 1 --in "$T/badprobs.st"

[ $fails -eq 0 ]
