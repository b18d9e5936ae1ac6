"""PyTorch mirror of the moelab routers on one MoE layer (docs/routers.md is the contract).

Writes tests/fixtures/routers.safetensors: for each case, a layer (router weight, experts,
a shared expert), its input x, an upstream gradient rw and the router state, and the
float64 reference of what the C layer must produce: the (token, expert, gate) pairs, the
unscaled router losses, the layer output and the gradients of
    <out, rw> + sum over losses of coef * value
with respect to x, the router weight and the expert weights. Selections are detached.

Usage: /usr/bin/python3 tests/mirror/routers_mirror.py --out tests/fixtures
The random router is not mirrored: its draw is a hash of the input bits, checked in C.
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import save_safetensors  # noqa: E402
import numpy as np  # noqa: E402

T, D, E, K, FE, SEQ = 8, 8, 4, 2, 5, 4
ORTHO_EPS = 1e-6
GAP = 1e-6  # the next candidate's score must be this far below a cut, so fp32 agrees


def f32(v):
    return float(np.float32(v))


AUX, ZC = f32(0.3), f32(0.05)  # the C side's float coefficients


def swiglu(x, gu, d):
    g, u = (x @ gu.T).chunk(2, dim=-1)
    return (F.silu(g) * u) @ d.T


def stable_desc(v):
    """Indices of v (1-D) by descending value, ties to the lower index."""
    return torch.sort(v, descending=True, stable=True)[1]


def check_gap(sorted_vals, cut):
    if 0 < cut < len(sorted_vals) and float(sorted_vals[cut - 1] - sorted_vals[cut]) < GAP:
        raise ValueError("near tie at a selection cut")


def topk_rows(scores, k):
    s, i = torch.sort(scores, dim=-1, descending=True, stable=True)
    for t in range(scores.shape[0]):
        check_gap(s[t], k)
    return i[:, :k]


def capacity(cf, pairs, e):
    return max(1, math.ceil(cf * pairs / e - 1e-9))


def capacity_keep(tok, exp, prio, cap, by_position):
    """Per expert, keep the cap candidates of highest prio (ties: earlier) or the earliest."""
    keep = [True] * len(tok)
    for e in range(E):
        idx = [p for p in range(len(tok)) if exp[p] == e]
        if len(idx) <= cap:
            continue
        if not by_position:
            vals = torch.tensor([float(prio[p]) for p in idx], dtype=torch.float64)
            order = stable_desc(vals)
            check_gap(vals[order], cap)
            idx = [idx[j] for j in order.tolist()]
        for p in idx[cap:]:
            keep[p] = False
    return keep


def switch_aux(probs, counts, k):
    return E * sum(counts[e] / (probs.shape[0] * k) * probs[:, e].mean() for e in range(E))


def layer_out(x, pairs, gates, w):
    """Output and the raw expert output of each pair (pair order)."""
    ys = [swiglu(x[t:t + 1], w["gate_up"][e], w["down"][e])[0] for t, e in pairs]
    out = swiglu(x, w["sh_gate_up"], w["sh_down"])
    contrib = torch.zeros_like(out)
    for (t, _), g, y in zip(pairs, gates, ys):
        contrib = contrib.index_add(0, torch.tensor([t]), (g * y)[None, :])
    return out + contrib, ys


def ortho_loss(pairs, ys, group, norm="raw"):
    if group == "token":
        groups = [[p for p, (t, _) in enumerate(pairs) if t == tt] for tt in range(T)]
    else:  # the released code: k consecutive rows of the expert-sorted buffer
        order = sorted(range(len(pairs)), key=lambda p: (pairs[p][1], p))
        groups = [order[i:i + K] for i in range(0, len(order) - len(order) % K, K)]
    total, n = 0.0, 0
    for g in groups:
        for a in g:
            for b in g:
                if a == b:
                    continue
                p = ys[a] @ ys[b]
                q = ys[b] @ ys[b]
                if norm == "raw":
                    total = total + p * p * q / (q + ORTHO_EPS) ** 2
                else:
                    total = total + p * p / ((ys[a] @ ys[a] + ORTHO_EPS) * (q + ORTHO_EPS))
                n += 1
    return total / n if n else torch.zeros((), dtype=torch.float64)


def variance_loss(scores, pairs, gates, kind):
    if kind == "row":
        return -scores.var(dim=-1, unbiased=True).mean()
    dense = torch.zeros(T, E, dtype=torch.float64)
    for (t, e), g in zip(pairs, gates):
        dense = dense.index_put((torch.tensor([t]), torch.tensor([e])), g[None], accumulate=True)
    return -((dense - dense.mean(dim=0)) ** 2).sum() / (E * T)


def route_topk(x, w, c):
    logits = x @ w["router"].T
    scores = torch.softmax(logits, -1) if c.get("score", "softmax") == "softmax" else torch.sigmoid(logits)
    bias = torch.tensor(c.get("bias", [0.0] * E), dtype=torch.float64)
    idx = topk_rows((scores + bias).detach(), K)
    g = scores.gather(1, idx)
    if c["renorm"]:
        g = g / g.sum(-1, keepdim=True)
    tok = [t for t in range(T) for _ in range(K)]
    exp = idx.reshape(-1).tolist()
    gl = list(g.reshape(-1))
    keep = [True] * len(tok)
    if c.get("cf", 0) > 0:
        keep = capacity_keep(tok, exp, [v.detach() for v in gl], capacity(c["cf"], T * K, E), c.get("drop") == "position")
    pairs = [(tok[p], exp[p]) for p in range(len(tok)) if keep[p]]
    gates = [gl[p] for p in range(len(tok)) if keep[p]]
    losses = {}
    if c.get("score", "softmax") == "softmax" and c["router"] != "auxfree":
        counts = torch.bincount(idx.reshape(-1), minlength=E).tolist()
        losses["aux"] = (switch_aux(scores, counts, K), AUX)
        losses["z"] = (torch.logsumexp(logits, -1).pow(2).mean(), ZC)
    if c.get("w_var", 0):
        losses["var"] = (variance_loss(scores, pairs, gates, c.get("var_kind", "row")), c["w_var"])
    return pairs, gates, losses


def route_expert_choice(x, w, c):
    p = torch.softmax(x @ w["router"].T, -1)
    cap = capacity(c["cf"], K * T, E)
    tok = [t for t in range(T) for _ in range(E)]
    exp = [e for _ in range(T) for e in range(E)]
    keep = capacity_keep(tok, exp, p.detach().reshape(-1).tolist(), cap, False)
    pairs = [(tok[i], exp[i]) for i in range(T * E) if keep[i]]
    return pairs, [p[t, e] for t, e in pairs], {}


def route_usmoe(x, w, c):
    logits = x @ w["router"].T
    sm = torch.softmax(logits, -1)
    r = c["rate"]
    g = (1 - r) * sm + r * torch.sigmoid(logits) * 2.0 / E
    tg = SEQ if c.get("group") == "sequence" else T
    keep = torch.zeros(T * E, dtype=torch.bool)
    flat = g.detach().reshape(-1)
    for t0 in range(0, T, tg):
        n = tg * E
        cnt = min(n, math.floor(c["k"] * tg + 0.5))
        seg = flat[t0 * E:t0 * E + n]
        order = stable_desc(seg)
        check_gap(seg[order], cnt)
        keep[t0 * E + order[:cnt]] = True
    pairs = [(i // E, i % E) for i in range(T * E) if keep[i]]
    counts = [sum(1 for _, e in pairs if e == ee) for ee in range(E)]
    kk = max(1, math.floor(c["k"] + 0.5))
    return pairs, [g[t, e] for t, e in pairs], {"aux": (switch_aux(sm, counts, kk), f32(c["aux"]))}


def route_etr(x, w, c):
    G = D // E
    s = x.reshape(T, E, G).sum(-1)
    nx = x.norm(dim=-1, keepdim=True) + 1e-6
    delta = (s / (nx * math.sqrt(G))).detach()
    gp = torch.softmax(s / G / c["tau"], -1)
    idx = topk_rows(delta, K)
    tok = [t for t in range(T) for _ in range(K)]
    exp = idx.reshape(-1).tolist()
    prio = [delta[t, e] for t, e in zip(tok, exp)]
    keep = capacity_keep(tok, exp, prio, capacity(c["cf_hi"], T * K, E), False)
    pairs = [(tok[p], exp[p]) for p in range(len(tok)) if keep[p]]
    counts = torch.bincount(idx.reshape(-1), minlength=E).tolist()
    losses = {"aux": (switch_aux(gp, counts, K), AUX), "cf": (torch.tensor(capacity(c["cf_hi"], T * K, E) * E / (T * K), dtype=torch.float64), 0.0)}
    return pairs, [gp[t, e] for t, e in pairs], losses


ROUTE = {"topk": route_topk, "orthvar": route_topk, "auxfree": route_topk, "expert_choice": route_expert_choice,
         "usmoe": route_usmoe, "etr": route_etr}

# Each case: router, its --router-opts, what the mirror needs, and the C router state.
CASES = [
    dict(router="topk", opts="", renorm=1),
    dict(router="topk", opts="cf=0.6", renorm=1, cf=0.6),
    dict(router="topk", opts="cf=0.6,drop=position", renorm=0, cf=0.6, drop="position"),
    dict(router="orthvar", opts="var=1e-3,ortho_norm=raw", renorm=1, w_var=10.0, w_ortho=0.01, state=[10.0, 0.01, 1.0] + [0.0] * E),
    dict(router="orthvar", opts="var_kind=column,ortho_group=expert,ortho_norm=raw", renorm=1, w_var=10.0, w_ortho=0.01,
         var_kind="column", ortho_group="expert", state=[10.0, 0.01, 1.0] + [0.0] * E),
    dict(router="orthvar", opts="", renorm=0, w_var=10.0, w_ortho=0.1, ortho_norm="unit",
         state=[10.0, 0.1, 1.0] + [0.0] * E),
    dict(router="auxfree", opts="", renorm=1, score="sigmoid", bias=[0.03, -0.02, 0.0, 0.01],
         state=[0.0, 0.0, 1.0, 0.03, -0.02, 0.0, 0.01]),
    dict(router="expert_choice", opts="", renorm=1, cf=1.0, state=[0.0] * (1 + E)),
    dict(router="expert_choice", opts="cf=0.5", renorm=1, cf=0.5, state=[0.0] * (1 + E)),
    dict(router="usmoe", opts="", renorm=1, rate=0.5, k=2.0, aux=0.01, state=[0.0, 0.0]),
    dict(router="usmoe", opts="group=sequence,k=1.5,rate=0.3", renorm=1, rate=0.3, k=1.5, aux=0.01, group="sequence",
         state=[0.0, 0.0]),
    dict(router="etr", opts="", renorm=1, cf_hi=1.1, tau=1.0, state=[0.0, 0.0, 0.0]),
    dict(router="etr", opts="cf_hi=0.5,tau=0.5", renorm=1, cf_hi=0.5, tau=0.5, state=[0.0, 0.0, 0.0]),
]


def build(c, gen):
    w = {"router": torch.randn(E, D, dtype=torch.float64, generator=gen),
         "gate_up": 0.5 * torch.randn(E, 2 * FE, D, dtype=torch.float64, generator=gen),
         "down": 0.5 * torch.randn(E, D, FE, dtype=torch.float64, generator=gen),
         "sh_gate_up": 0.5 * torch.randn(2 * FE, D, dtype=torch.float64, generator=gen),
         "sh_down": 0.5 * torch.randn(D, FE, dtype=torch.float64, generator=gen)}
    x = torch.randn(T, D, dtype=torch.float64, generator=gen)
    rw = torch.randn(T, D, dtype=torch.float64, generator=gen)
    for v in list(w.values()) + [x, rw]:
        v.copy_(v.to(torch.float32).to(torch.float64))  # the values the C side holds
        v.requires_grad_(True)
    rw.requires_grad_(False)
    pairs, gates, losses = ROUTE[c["router"]](x, w, c)
    out, ys = layer_out(x, pairs, gates, w)
    if c.get("w_ortho"):
        losses["ortho"] = (ortho_loss(pairs, ys, c.get("ortho_group", "token"), c.get("ortho_norm", "raw")), c["w_ortho"])
    total = (out * rw).sum() + sum(coef * v for v, coef in losses.values())
    total.backward()
    return w, x, rw, pairs, gates, losses, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tensors, meta = [], []
    for i, c in enumerate(CASES):
        for attempt in range(100):
            try:
                gen = torch.Generator().manual_seed(1000 * i + attempt)
                w, x, rw, pairs, gates, losses, out = build(c, gen)
                break
            except ValueError:
                continue
        else:
            raise SystemExit(f"case {i}: no seed without near ties")
        order = sorted(range(len(pairs)), key=lambda p: pairs[p])
        p = f"c{i}."
        a = lambda v: v.detach().numpy().astype(np.float32)  # noqa: E731
        tensors += [(p + "x", a(x)), (p + "rw", a(rw)), (p + "out", a(out))]
        for n in ("router", "gate_up", "down", "sh_gate_up", "sh_down"):
            tensors.append((p + n, a(w[n])))
        tensors += [(p + "grad.x", a(x.grad)), (p + "grad.router", a(w["router"].grad if w["router"].grad is not None else torch.zeros(E, D))),
                    (p + "grad.gate_up", a(w["gate_up"].grad)), (p + "grad.down", a(w["down"].grad))]
        tensors.append((p + "pairs.token", np.array([pairs[j][0] for j in order], dtype=np.int32)))
        tensors.append((p + "pairs.expert", np.array([pairs[j][1] for j in order], dtype=np.int32)))
        tensors.append((p + "pairs.gate", np.array([float(gates[j]) for j in order], dtype=np.float32)))
        tensors.append((p + "state", np.array(c.get("state", [0.0]), dtype=np.float64)))
        meta.append({"router": c["router"], "opts": c["opts"], "renorm": c["renorm"],
                     "losses": {k: float(v) for k, (v, _) in losses.items()}})
        print(f"case {i}: {c['router']} {c['opts'] or '(defaults)'}: {len(pairs)} pairs, losses "
              + ", ".join(f"{k}={float(v):.4g}" for k, (v, _) in losses.items()))
    path = os.path.join(args.out, "routers.safetensors")
    size = save_safetensors(path, tensors, {
        "format": "moelab-router-parity-1", "cases": json.dumps(meta),
        "shape": json.dumps({"T": T, "D": D, "E": E, "k": K, "d_expert": FE, "seq_len": SEQ, "aux_coef": AUX,
                             "z_coef": ZC}),
        "generator": "tests/mirror/routers_mirror.py (float64 reference, torch " + torch.__version__ + ")"})
    print(f"{path}: {size} bytes")


if __name__ == "__main__":
    main()
