"""PyTorch mirror of the moelab model (docs/model.md is the contract).

Parameters are a plain dict name -> tensor (leaf tensors with requires_grad), with the
names, shapes and order of docs/model.md / src/model/params.c. The same code runs in
float64 (parity fixtures) and float32 (benchmark).

bf16 mode (forward(..., bf16=True)) mirrors moelab's --precision bf16: every matrix product
except the router's rounds both inputs to bfloat16 and accumulates in the working dtype; its
backward rounds the incoming gradient and the saved inputs the same way. Everything else
(norms, softmax, RoPE, router, losses) stays in the working dtype.
"""
import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F


@dataclass
class ModelCfg:
    layers: int = 4
    d_model: int = 128
    heads: int = 4
    seq_len: int = 128
    vocab: int = 256
    experts: int = 8
    topk: int = 2
    d_expert: int = 256
    shared: int = 0
    dense_layers: int = 0
    d_dense: int = 0
    tie_embeddings: int = 0
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    router: str = "topk"
    aux_coef: float = 0.01
    z_coef: float = 0.001
    renorm: int = 1
    router_opts: str = ""

    def to_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def head_dim(self):
        return self.d_model // self.heads

    @property
    def dense_width(self):
        return self.d_dense if self.d_dense > 0 else (self.topk + self.shared) * self.d_expert

    def is_moe(self, layer):
        return layer >= self.dense_layers

    @property
    def moe_layers(self):
        return [l for l in range(self.layers) if self.is_moe(l)]


@dataclass
class TrainCfg:
    batch: int = 8
    grad_accum: int = 1
    steps: int = 200
    warmup: int = 20
    lr: float = 3e-3
    min_lr_frac: float = 0.1
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    grad_clip: float = 1.0
    seed: int = 1337

    def to_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}


# ---------------------------------------------------------------------------------------
# parameters


def param_specs(cfg):
    """[(name, shape, init)] in buffer order; init is 'normal', 'normal_out' or 'ones'."""
    D, V, E, Fe = cfg.d_model, cfg.vocab, cfg.experts, cfg.d_expert
    Fs, Fd = cfg.shared * Fe, cfg.dense_width
    s = [("embed.weight", (V, D), "normal")]
    for l in range(cfg.layers):
        p = f"layers.{l}."
        s.append((p + "attn_norm.weight", (D,), "ones"))
        s.append((p + "attn.wqkv.weight", (3 * D, D), "normal"))
        s.append((p + "attn.wo.weight", (D, D), "normal_out"))
        s.append((p + "ffn_norm.weight", (D,), "ones"))
        if cfg.is_moe(l):
            s.append((p + "moe.router.weight", (E, D), "normal"))
            s.append((p + "moe.experts.gate_up.weight", (E, 2 * Fe, D), "normal"))
            s.append((p + "moe.experts.down.weight", (E, D, Fe), "normal_out"))
            if Fs > 0:
                s.append((p + "moe.shared.gate_up.weight", (2 * Fs, D), "normal"))
                s.append((p + "moe.shared.down.weight", (D, Fs), "normal_out"))
        else:
            s.append((p + "ffn.gate_up.weight", (2 * Fd, D), "normal"))
            s.append((p + "ffn.down.weight", (D, Fd), "normal_out"))
    s.append(("norm.weight", (D,), "ones"))
    if not cfg.tie_embeddings:
        s.append(("lm_head.weight", (V, D), "normal"))
    return s


def init_params(cfg, dtype=torch.float32, generator=None, std=0.02, norm_noise=0.0):
    """N(0, std) matrices, N(0, std/sqrt(2L)) output projections, norms 1 (+ optional noise)."""
    std_out = std / math.sqrt(2.0 * cfg.layers)
    params = {}
    for name, shape, init in param_specs(cfg):
        if init == "ones":
            t = torch.ones(shape, dtype=torch.float64)
            if norm_noise > 0:
                t = t + norm_noise * torch.randn(shape, dtype=torch.float64, generator=generator)
        else:
            sd = std if init == "normal" else std_out
            t = sd * torch.randn(shape, dtype=torch.float64, generator=generator)
        params[name] = t.to(dtype).requires_grad_(True)
    return params


# ---------------------------------------------------------------------------------------
# building blocks


def bf16_round(x):
    return x.to(torch.bfloat16).to(x.dtype)


class BF16MatMul(torch.autograd.Function):
    """a @ b with bf16-rounded inputs; da = bf(g) bf(b)^T, db = bf(a)^T bf(g), as moelab's gemm."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return bf16_round(a) @ bf16_round(b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        g = bf16_round(g)
        return g @ bf16_round(b).transpose(-1, -2), bf16_round(a).transpose(-1, -2) @ g


def matmul(a, b, bf16):
    return BF16MatMul.apply(a, b) if bf16 else torch.matmul(a, b)


def linear(x, w, bf16):
    return BF16MatMul.apply(x, w.t()) if bf16 else F.linear(x, w)


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_tables(T, hd, theta, dtype):
    # f_i = theta^(-2i/hd), angle = p * f_i, computed in float64 then cast
    i = torch.arange(hd // 2, dtype=torch.float64)
    f = theta ** (-2.0 * i / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * f[None, :]
    return torch.cos(ang).to(dtype), torch.sin(ang).to(dtype)


def rope(x, cos, sin):
    """x [B, NH, T, hd], rotate-half: x'[i] = x[i]c - x[i+h]s, x'[i+h] = x[i+h]c + x[i]s."""
    x1, x2 = x.chunk(2, dim=-1)  # chunk: its backward is a cat, not zero-filled slices
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def attention(xn, wqkv, wo, B, T, NH, cos, sin, mask, bf16=False):
    BT, D = xn.shape
    hd = D // NH
    q, k, v = linear(xn, wqkv, bf16).view(B, T, 3, NH, hd).unbind(dim=2)
    q = q.transpose(1, 2)  # [B, NH, T, hd]
    k = k.transpose(1, 2)
    v = v.transpose(1, 2)
    k = rope(k, cos, sin)
    if bf16:  # moelab scales the fp32 product of the rounded q and k
        s = matmul(rope(q, cos, sin), k.transpose(-1, -2), bf16) * (1.0 / math.sqrt(hd))
    else:
        q = rope(q, cos, sin) * (1.0 / math.sqrt(hd))  # scale the [T, hd] queries, not the [T, T] scores
        s = torch.matmul(q, k.transpose(-1, -2))
    s = s.masked_fill(mask, float("-inf"))
    att = torch.softmax(s, dim=-1)
    y = matmul(att, v, bf16).transpose(1, 2).reshape(BT, D)
    return linear(y, wo, bf16)


def swiglu(x, w_gu, w_d, bf16=False):
    hg, hu = linear(x, w_gu, bf16).chunk(2, dim=-1)  # rows 0..F-1 gate, F..2F-1 up
    a = F.silu(hg) * hu
    return linear(a, w_d, bf16)


def topk_router(xn, w_router, cfg):
    """Returns (sel [BT,k] long, gates [BT,k], losses {aux, z}, probs [BT,E]).

    Selection is non-differentiable; gates are differentiable in the probabilities.
    Ties in p go to the lower expert index (stable descending sort)."""
    BT = xn.shape[0]
    E, k = cfg.experts, cfg.topk
    logits = F.linear(xn, w_router)
    probs = torch.softmax(logits, dim=-1)
    with torch.no_grad():
        if "force_balance=1" in cfg.router_opts.split(","):  # benchmarking: k random experts per token
            sel = torch.rand(BT, E).argsort(dim=-1)[:, :k]
        elif k == 1:
            sel = probs.argmax(dim=-1, keepdim=True)  # first maximum: lowest index
        else:
            sel = torch.sort(probs, dim=-1, descending=True, stable=True)[1][:, :k]
    g = probs.gather(1, sel)
    if cfg.renorm:
        g = g / g.sum(dim=-1, keepdim=True)
    with torch.no_grad():
        counts = torch.bincount(sel.reshape(-1), minlength=E).to(probs.dtype)
        f = counts / (BT * k)  # constants in the backward
    aux = E * (f * probs.mean(dim=0)).sum()
    z = torch.logsumexp(logits, dim=-1).pow(2).mean()
    return sel, g, {"aux": aux, "z": z}, probs


# ---------------------------------------------------------------------------------------
# MP-MoE (docs/mpmoe.md): options, Sigma from counts, the greedy in two independent forms


MPMOE_DEFAULTS = {"warmup": 0.01, "sigma_every": 1, "decay": 100.0, "ridge": 0.01, "eval_select": "greedy",
                  "reference": 0}
EPS_REF = 1e-12


def mpmoe_opts(text):
    o = dict(MPMOE_DEFAULTS)
    for kv in filter(None, text.split(",")):
        k, v = kv.split("=")
        o[k] = v if k == "eval_select" else type(MPMOE_DEFAULTS[k])(float(v))
    if o["reference"]:
        o["decay"], o["ridge"] = 0.0, 0.0
    return o


def sigma_build(C, u, N, ridge):
    """(Sigma, eps) as the router conditions it; float64. N <= 0 gives the identity."""
    E = u.shape[0]
    if N <= 0:
        return torch.eye(E, dtype=torch.float64), EPS_REF
    S = C / N - torch.outer(u, u) / (N * N)
    d = S.diagonal().clamp_min(0.0)
    add = ridge * float(d.mean())
    eps = max(add, EPS_REF)
    S = S.clone()
    S.diagonal().copy_((d + add).clamp_min(EPS_REF))
    return S, eps


@torch.no_grad()
def greedy_pivoted(p, Sigma, k, eps):
    """moelab's recursion, batched: returns (sel [T,k] in pick order, min relative margin
    between the best and second-best gain of any round)."""
    T, E = p.shape
    d = Sigma.diagonal().expand(T, E).clone()   # conditional variances, clamped where used
    a = torch.zeros_like(p)                      # p_j predicted from the chosen set
    C = p.new_zeros(T, k, E)
    mask = torch.zeros(T, E, dtype=torch.bool)
    rows = torch.arange(T)
    sel = torch.zeros(T, k, dtype=torch.long)
    margin = float("inf")
    for t in range(k):
        gain = ((p - a) ** 2 / d.clamp_min(eps)).masked_fill(mask, float("-inf"))
        top2 = torch.topk(gain, min(2, E - t), dim=1).values
        if top2.shape[1] > 1:
            margin = min(margin, float(((top2[:, 0] - top2[:, 1]) / top2[:, 0].abs()).min()))
        j = gain.argmax(1)  # first maximum: lowest index
        sel[:, t] = j
        mask[rows, j] = True
        rj = d[rows, j].clamp_min(eps).rsqrt()
        zt = (p[rows, j] - a[rows, j]) * rj
        num = Sigma[j]
        if t > 0:
            num = num - torch.einsum("tm,tme->te", C[rows, :t, j], C[:, :t, :])
        ct = num * rj[:, None]
        C[:, t, :] = ct
        d = d - ct ** 2
        a = a + ct * zt[:, None]
    return sel, margin


@torch.no_grad()
def otep_batched(p, Sigma, k, eps=EPS_REF):
    """The published selector as its code runs it (per token: R = L_S^-1, z = R p_S; each
    round alpha = R Sigma[S, j], s = max(Sigma_jj - |alpha|^2, eps), delta = p_j - alpha.z,
    score = |z|^2 + delta^2/s; append [-r alpha^T R, r] to R). Returns a [T, E] bool mask."""
    T, E = p.shape
    diag = Sigma.diagonal().clamp_min(eps)
    rows = torch.arange(T)
    j0 = (p ** 2 / diag).argmax(1)
    S = j0[:, None]
    R = (1.0 / diag[j0].sqrt())[:, None, None]          # [T, 1, 1]
    z = (p[rows, j0] / diag[j0].sqrt())[:, None]         # [T, 1]
    mask = torch.zeros(T, E, dtype=torch.bool)
    mask[rows, j0] = True
    for t in range(1, k):
        beta = Sigma[S]                                  # [T, t, E]
        alpha = torch.bmm(R, beta)                       # [T, t, E]
        s = (Sigma.diagonal()[None, :] - (alpha ** 2).sum(1)).clamp_min(eps)
        delta = p - (alpha * z[:, :, None]).sum(1)
        score = (z ** 2).sum(1, keepdim=True) + delta ** 2 / s
        score = score.masked_fill(mask, float("-inf"))
        j = score.argmax(1)
        r = s[rows, j].rsqrt()
        zt = r * delta[rows, j]
        aj = alpha[rows, :, j]                           # [T, t]
        new_row = -r[:, None] * torch.bmm(aj[:, None, :], R)[:, 0, :]
        Rn = p.new_zeros(T, t + 1, t + 1)
        Rn[:, :t, :t] = R
        Rn[:, t, :t] = new_row
        Rn[:, t, t] = r
        R = Rn
        z = torch.cat([z, zt[:, None]], 1)
        S = torch.cat([S, j[:, None]], 1)
        mask[rows, j] = True
    return mask


class MpmoeState:
    """Per MoE layer: counts C, u, N, the conditioned Sigma and eps; pending counts of the
    training forwards since the last step; the optimizer step for the warm-up."""

    def __init__(self, cfg):
        self.o = mpmoe_opts(cfg.router_opts)
        E = cfg.experts
        self.step, self.total = 0, 0
        self.layers = {}
        for l in cfg.moe_layers:
            z = torch.zeros(E, E, dtype=torch.float64)
            self.layers[l] = {"C": z.clone(), "u": torch.zeros(E, dtype=torch.float64), "N": 0.0,
                              "Sigma": torch.eye(E, dtype=torch.float64), "eps": EPS_REF,
                              "pC": z.clone(), "pu": torch.zeros(E, dtype=torch.float64), "pN": 0.0}
        self.min_margin = float("inf")

    def in_warmup(self):
        return self.step < math.floor(self.o["warmup"] * self.total)

    def set_counts(self, l, C, u, N):
        st = self.layers[l]
        st["C"], st["u"], st["N"] = C.clone(), u.clone(), float(N)
        st["Sigma"], st["eps"] = sigma_build(st["C"], st["u"], st["N"], self.o["ridge"])

    def after_step(self, step):
        self.step = step
        keep = 0.5 ** (1.0 / self.o["decay"]) if self.o["decay"] > 0 else 1.0
        for st in self.layers.values():
            st["C"] = keep * st["C"] + st["pC"]
            st["u"] = keep * st["u"] + st["pu"]
            st["N"] = keep * st["N"] + st["pN"]
            st["pC"].zero_(), st["pu"].zero_()
            st["pN"] = 0.0
            if step % self.o["sigma_every"] == 0:
                st["Sigma"], st["eps"] = sigma_build(st["C"], st["u"], st["N"], self.o["ridge"])

    def flat(self, l):
        """The C router's state layout: C, u, N, Sigma, eps."""
        st = self.layers[l]
        return torch.cat([st["C"].reshape(-1), st["u"], torch.tensor([st["N"]], dtype=torch.float64),
                          st["Sigma"].reshape(-1), torch.tensor([st["eps"]], dtype=torch.float64)])


def mpmoe_router(xn, w_router, cfg, ms, l, train):
    """As topk_router, with the greedy under layer l's Sigma (training forwards add their
    counts to the pending ones)."""
    BT = xn.shape[0]
    E, k = cfg.experts, cfg.topk
    logits = F.linear(xn, w_router)
    probs = torch.softmax(logits, dim=-1)
    st, o = ms.layers[l], ms.o
    renorm = True
    if train:
        greedy = not ms.in_warmup()
        renorm = greedy or not o["reference"]
    else:
        greedy = o["eval_select"] == "greedy" and (o["reference"] or not ms.in_warmup())
    with torch.no_grad():
        if greedy:
            sel, margin = greedy_pivoted(probs.detach(), st["Sigma"].to(probs.dtype), k, st["eps"])
            ms.min_margin = min(ms.min_margin, margin)
        else:
            sel = torch.sort(probs, dim=-1, descending=True, stable=True)[1][:, :k]
    g = probs.gather(1, sel)
    if renorm:
        g = g / g.sum(dim=-1, keepdim=True)
    with torch.no_grad():
        counts = torch.bincount(sel.reshape(-1), minlength=E).to(probs.dtype)
        f = counts / (BT * k)
        if train:
            R = torch.zeros(BT, E, dtype=torch.float64)
            R[torch.arange(BT)[:, None], sel] = 1.0
            st["pC"] += R.t() @ R
            st["pu"] += R.sum(0)
            st["pN"] += BT
    aux = E * (f * probs.mean(dim=0)).sum()
    z = torch.logsumexp(logits, dim=-1).pow(2).mean()
    return sel, g, {"aux": aux, "z": z}, probs


def moe_experts(xn, sel, g, w_gu, w_d, bf16=False):
    """sum over pairs (t, e, g) of g * SwiGLU_e(x_t): gather per expert, run, index_add back."""
    BT, D = xn.shape
    E = w_gu.shape[0]
    k = sel.shape[1]
    flat_e = sel.reshape(-1)
    with torch.no_grad():
        sorted_e, order = torch.sort(flat_e, stable=True)
        tok = torch.div(order, k, rounding_mode="floor")
        counts = torch.bincount(sorted_e, minlength=E).tolist()
    gates = g.reshape(-1).index_select(0, order)
    xs = xn.index_select(0, tok)
    outs = []
    for e, xe in enumerate(xs.split(counts, dim=0)):
        if xe.shape[0] > 0:
            outs.append(swiglu(xe, w_gu[e], w_d[e], bf16))
    ys = torch.cat(outs, dim=0) * gates[:, None]
    return torch.zeros_like(xn).index_add(0, tok, ys.to(xn.dtype))  # autocast: ys may be bf16


def forward(params, cfg, inputs, targets=None, details=False, mstate=None, train=True, bf16=False):
    """inputs/targets [B, T] long. Returns dict: logits [BT,V], ce, total, router losses per
    MoE block (unscaled) and, with details, routing per MoE block (sel, gates).
    mstate: the MpmoeState of an mpmoe model; train: a training forward (counts kept); bf16: see above."""
    B, T = inputs.shape
    D, NH = cfg.d_model, cfg.heads
    emb = params["embed.weight"]
    dtype = emb.dtype
    x = emb.index_select(0, inputs.reshape(-1))
    cos, sin = rope_tables(T, D // NH, cfg.rope_theta, dtype)
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    aux_l, z_l, routes = [], [], {}
    for l in range(cfg.layers):
        p = f"layers.{l}."
        xn = rmsnorm(x, params[p + "attn_norm.weight"], cfg.norm_eps)
        x = x + attention(xn, params[p + "attn.wqkv.weight"], params[p + "attn.wo.weight"], B, T, NH, cos, sin, mask,
                          bf16)
        xn = rmsnorm(x, params[p + "ffn_norm.weight"], cfg.norm_eps)
        if cfg.is_moe(l):
            if cfg.router == "mpmoe":
                sel, g, losses, probs = mpmoe_router(xn, params[p + "moe.router.weight"], cfg, mstate, l, train)
            else:
                sel, g, losses, probs = topk_router(xn, params[p + "moe.router.weight"], cfg)
            y = moe_experts(xn, sel, g, params[p + "moe.experts.gate_up.weight"], params[p + "moe.experts.down.weight"],
                            bf16)
            if cfg.shared > 0:
                y = y + swiglu(xn, params[p + "moe.shared.gate_up.weight"], params[p + "moe.shared.down.weight"], bf16)
            aux_l.append(losses["aux"])
            z_l.append(losses["z"])
            if details:
                routes[l] = (sel.detach(), g.detach(), probs.detach())
        else:
            y = swiglu(xn, params[p + "ffn.gate_up.weight"], params[p + "ffn.down.weight"], bf16)
        x = x + y
    x = rmsnorm(x, params["norm.weight"], cfg.norm_eps)
    head = params["embed.weight"] if cfg.tie_embeddings else params["lm_head.weight"]
    logits = linear(x, head, bf16)
    out = {"logits": logits, "aux": aux_l, "z": z_l, "routes": routes}
    if targets is not None:
        ce = F.cross_entropy(logits, targets.reshape(-1))
        total = ce
        for a, z in zip(aux_l, z_l):
            total = total + cfg.aux_coef * a + cfg.z_coef * z
        out["ce"] = ce
        out["total"] = total
    return out


# ---------------------------------------------------------------------------------------
# optimisation


def lr_at(step, steps, warmup, lr, min_frac):
    if step < warmup:
        return lr * (step + 1) / warmup
    lr_min = lr * min_frac
    prog = (step - warmup) / max(1, steps - warmup)
    return lr_min + (lr - lr_min) * (1.0 + math.cos(math.pi * prog)) / 2.0


def make_optimizer(params, tc, foreach=None):
    decay = [p for p in params.values() if p.ndim >= 2]
    no_decay = [p for p in params.values() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": tc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=tc.lr, betas=(tc.beta1, tc.beta2), eps=tc.adam_eps, foreach=foreach)


def train_step(params, opt, cfg, tc, step, inputs, targets, autocast_bf16=False):
    """One optimizer step (grad_accum 1). Returns (ce, pre-clip grad norm, lr). autocast_bf16 runs
    the forward under torch.autocast("cpu", torch.bfloat16), PyTorch's own CPU mixed precision."""
    for p in params.values():
        p.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast_bf16):
        out = forward(params, cfg, inputs, targets)
    out["total"].backward()
    plist = list(params.values())
    if tc.grad_clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(plist, tc.grad_clip)
    else:
        norm = torch.sqrt(sum((p.grad.detach() ** 2).sum() for p in plist if p.grad is not None))
    lr = lr_at(step, tc.steps, tc.warmup, tc.lr, tc.min_lr_frac)
    for grp in opt.param_groups:
        grp["lr"] = lr
    opt.step()
    return out["ce"].detach(), norm.detach(), lr
