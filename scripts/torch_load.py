#!/usr/bin/python3
"""Load a moelab checkpoint into a plain PyTorch module and compute its loss on a data folder.

Usage: /usr/bin/python3 scripts/torch_load.py RUN_OR_MODEL.safetensors... --data DIR [--split val] [--batch 8]

Needs only PyTorch (Debian's python3-torch): the safetensors file and the token shard are
read here directly. The module follows docs/model.md; its parameter names are the
checkpoint's tensor names (docs/formats.md), so `model.load_state_dict` takes the file as
it is and the module is a starting point for continuing in PyTorch. Prints one JSON line per checkpoint:
{"loss": mean nats per predicted token, "tokens": predicted tokens, "router": ...}, the
number `moelab eval CHECKPOINT --data DIR --json` reports.

Routing is the per-token inference rule: softmax over all experts, the k largest, gates
renormalised over them when `renorm` (topk), always renormalised for mpmoe with
eval_select=topk. Other routers need their router state and are refused.
"""
import argparse
import json
import math
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I32": torch.int32, "I64": torch.int64, "U8": torch.uint8}


def read_safetensors(path):
    """Tensors and metadata of a safetensors file: an 8-byte header length, a JSON header, the data."""
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data = memoryview(buf)[8 + n:]
    tensors = {}
    for name, t in header.items():
        if t["dtype"] not in DTYPES:
            raise SystemExit(f"{path}: tensor {name} has dtype {t['dtype']}, which this loader does not read")
        a, b = t["data_offsets"]
        flat = torch.frombuffer(bytearray(data[a:b]), dtype=DTYPES[t["dtype"]])
        tensors[name] = flat.reshape(t["shape"])
    return tensors, meta


def read_shard(path):
    """Token ids of a moelab shard (src/data/shard.h): header, domain names, document table, u32 ids."""
    with open(path, "rb") as f:
        buf = f.read()
    if buf[:8] != b"MLSHARD1":
        raise SystemExit(f"{path} is not a moelab shard")
    version, vocab, n_domains, _ = struct.unpack("<4I", buf[8:24])
    n_tokens, n_docs = struct.unpack("<2Q", buf[24:40])
    start = 40 + 64 * n_domains + 16 * n_docs
    ids = torch.frombuffer(bytearray(buf[start:start + 4 * n_tokens]), dtype=torch.int32).long()
    return ids, vocab


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class SwiGLU(nn.Module):
    """gate_up [2F, D] (gate rows first), down [D, F]: y = (silu(x Wg^T) * x Wu^T) Wd^T."""

    def __init__(self, d, f):
        super().__init__()
        self.gate_up = nn.Linear(d, 2 * f, bias=False)
        self.down = nn.Linear(f, d, bias=False)

    def forward(self, x):
        g, u = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(g) * u)


class Experts(nn.Module):
    def __init__(self, e, d, f):
        super().__init__()
        self.gate_up = nn.Module()
        self.gate_up.weight = nn.Parameter(torch.zeros(e, 2 * f, d))
        self.down = nn.Module()
        self.down.weight = nn.Parameter(torch.zeros(e, d, f))

    def forward(self, x, e):
        g, u = (x @ self.gate_up.weight[e].T).chunk(2, dim=-1)
        return (F.silu(g) * u) @ self.down.weight[e].T


class MoE(nn.Module):
    def __init__(self, c, renorm):
        super().__init__()
        self.k, self.renorm = c["topk"], renorm
        self.router = nn.Linear(c["d_model"], c["experts"], bias=False)
        self.experts = Experts(c["experts"], c["d_model"], c["d_expert"])
        self.shared = SwiGLU(c["d_model"], c["shared"] * c["d_expert"]) if c["shared"] > 0 else None

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        p = torch.softmax(self.router(x), dim=-1)
        g, idx = torch.topk(p, self.k, dim=-1)  # ties: lower index first, as moelab
        if self.renorm:
            g = g / g.sum(-1, keepdim=True)
        y = torch.zeros_like(x)
        for e in range(self.experts.gate_up.weight.shape[0]):
            tok, slot = (idx == e).nonzero(as_tuple=True)
            if tok.numel():
                y.index_add_(0, tok, g[tok, slot, None] * self.experts(x[tok], e))
        if self.shared is not None:
            y = y + self.shared(x)
        return y.reshape(shape)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["d_model"]
        self.nh, self.theta = c["heads"], c["rope_theta"]
        self.wqkv = nn.Linear(d, 3 * d, bias=False)
        self.wo = nn.Linear(d, d, bias=False)

    def rope(self, x):  # x [B, NH, T, hd], rotate-half
        hd, T = x.shape[-1], x.shape[-2]
        f = self.theta ** (-torch.arange(0, hd // 2, dtype=torch.float64) * 2 / hd)
        ang = torch.arange(T, dtype=torch.float64)[:, None] * f[None, :]
        c, s = torch.cos(ang).float(), torch.sin(ang).float()
        a, b = x[..., :hd // 2], x[..., hd // 2:]
        return torch.cat([a * c - b * s, b * c + a * s], dim=-1)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = (t.reshape(B, T, self.nh, D // self.nh).transpose(1, 2) for t in self.wqkv(x).split(D, dim=-1))
        att = (self.rope(q) @ self.rope(k).transpose(-1, -2)) / math.sqrt(D // self.nh)
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        y = torch.softmax(att, dim=-1) @ v
        return self.wo(y.transpose(1, 2).reshape(B, T, D))


class Block(nn.Module):
    def __init__(self, c, moe, renorm):
        super().__init__()
        d, eps = c["d_model"], c["norm_eps"]
        self.attn_norm, self.attn, self.ffn_norm = RMSNorm(d, eps), Attention(c), RMSNorm(d, eps)
        if moe:
            self.moe = MoE(c, renorm)
        else:
            fd = c["d_dense"] or (c["topk"] + c["shared"]) * c["d_expert"]
            self.ffn = SwiGLU(d, fd)

    def forward(self, x):
        x = x + self.attn(self.attn_norm(x))
        h = self.ffn_norm(x)
        return x + (self.moe(h) if hasattr(self, "moe") else self.ffn(h))


class MoELM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.cfg = c
        renorm = routing_renorm(c)
        d, v = c["d_model"], c["vocab"]
        self.embed = nn.Embedding(v, d)
        self.layers = nn.ModuleList(Block(c, l >= c["dense_layers"], renorm) for l in range(c["layers"]))
        self.norm = RMSNorm(d, c["norm_eps"])
        self.lm_head = None if c["tie_embeddings"] else nn.Linear(d, v, bias=False)

    def forward(self, ids):
        x = self.embed(ids)
        for blk in self.layers:
            x = blk(x)
        x = self.norm(x)
        return x @ (self.embed.weight if self.lm_head is None else self.lm_head.weight).T


def routing_renorm(c):
    opts = dict(kv.split("=", 1) for kv in c.get("router_opts", "").split(",") if "=" in kv)
    if c["router"] == "topk":
        return bool(c["renorm"])
    if c["router"] == "mpmoe" and opts.get("eval_select") == "topk":
        return True
    raise SystemExit(f"router {c['router']} ({c.get('router_opts', '')}): its inference rule is not per-token "
                     "top-k, which this loader implements")


def load(path):
    """The module with the checkpoint's weights (path: a run folder or a model.safetensors)."""
    if os.path.isdir(path):
        path = os.path.join(path, "model.safetensors")
    tensors, meta = read_safetensors(path)
    cfg = json.loads(meta["config"])
    model = MoELM(cfg)
    params = {k: v for k, v in tensors.items() if not k.endswith(".router.state")}
    model.load_state_dict(params, strict=True)
    return model.eval()


def evaluate(model, ids, B):
    """Mean loss over the split cut into windows of seq_len, as `moelab eval` does: window w
    predicts ids[wT+1 .. wT+T]; the last window is padded and its padding not counted."""
    T = model.cfg["seq_len"]
    n_win = (len(ids) - 1 + T - 1) // T
    nats, count = 0.0, 0
    with torch.no_grad():
        for w0 in range(0, n_win, B):
            inp, tgt = [], []
            for w in range(w0, min(w0 + B, n_win)):
                x = torch.zeros(T, dtype=torch.long)
                y = torch.full((T,), -1, dtype=torch.long)
                seg = ids[w * T:w * T + T + 1]
                x[:min(T, len(seg))] = seg[:T]
                y[:len(seg) - 1] = seg[1:]
                inp.append(x)
                tgt.append(y)
            logits = model(torch.stack(inp))
            tgt = torch.stack(tgt)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).double(), tgt.reshape(-1), ignore_index=-1,
                                   reduction="sum")
            nats += loss.item()
            count += int((tgt >= 0).sum())
    return nats / count, count


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="run folders or model.safetensors files")
    ap.add_argument("--data", required=True, help="data folder (moelab prepare)")
    ap.add_argument("--split", default="val", choices=["val", "train"])
    ap.add_argument("--batch", type=int, default=8, help="windows per forward")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    for path in a.checkpoints:
        model = load(path)
        ids, vocab = read_shard(os.path.join(a.data, a.split + ".bin"))
        if vocab != model.cfg["vocab"]:
            raise SystemExit(f"{a.data} has vocab {vocab} but the model has {model.cfg['vocab']}")
        loss, n = evaluate(model, ids, a.batch)
        print(json.dumps({"checkpoint": path, "loss": loss, "tokens": n, "router": model.cfg["router"],
                          "split": a.split}))


if __name__ == "__main__":
    sys.exit(main())
