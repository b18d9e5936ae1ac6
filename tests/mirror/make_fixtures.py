"""Writes the parity fixtures that tests/test_parity.c checks the C trainer against.

Usage: /usr/bin/python3 tests/mirror/make_fixtures.py --out tests/fixtures

Each fixture holds a config (metadata "config"), initial parameters, one batch, and the
float64 reference (stored as F32): logits, losses, routing, gradients and a 10-step
AdamW trajectory on that batch. Routing is checked to have no near-ties so the top-k
choices are the same in fp32 and fp64.

The parity_bf16_* fixtures hold the same for moelab's --precision bf16 (config key
"precision": "bf16"): the mirror's bf16 mode, still accumulated in float64. bf16 rounding
moves router inputs by ~1e-3, so their routing must clear a wider gap.
"""
import argparse
import copy
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mirror  # noqa: E402

GAP_INIT = 1e-4   # min gap between the k-th and (k+1)-th probability at the initial params
GAP_TRAJ = 2e-5   # same, at every step of the trajectory
GAP_BF16 = 5e-4   # the bf16 fixtures: initial gap
GAP_BF16_TRAJ = 1e-4
TRAJ_STEPS = 10
ROUTER_SCALE = 15.0  # mpmoe fixtures: router weights times this
STAT_BATCHES = 4     # mpmoe fixtures: batches whose routing makes the initial counts
MARGIN_INIT = 1e-4   # mpmoe: min relative gap between the best and second-best greedy gain
MARGIN_TRAJ = 2e-5


def f32(v):
    """The value the C side holds after parsing the config (floats are fp32 there)."""
    return float(np.float32(v))


# ---------------------------------------------------------------------------------------
# minimal safetensors writer


_DTYPES = {np.dtype("<f4"): "F32", np.dtype("<i4"): "I32", np.dtype("<f8"): "F64", np.dtype("<i8"): "I64",
           np.dtype("u1"): "U8"}


def save_safetensors(path, tensors, metadata):
    """tensors: list of (name, numpy array) in file order; metadata: {str: str}."""
    header = {"__metadata__": {str(k): str(v) for k, v in metadata.items()}}
    blobs, off = [], 0
    for name, arr in tensors:
        arr = np.ascontiguousarray(arr)
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        dt = _DTYPES[arr.dtype]
        b = arr.tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)  # keep the data 8-byte aligned
    tmp = path + ".tmp." + str(os.getpid())
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(hb)))
        fh.write(hb)
        for b in blobs:
            fh.write(b)
    os.replace(tmp, path)
    return 8 + len(hb) + off


# ---------------------------------------------------------------------------------------


def min_gap(routes, k, E):
    if k >= E:
        return float("inf")
    g = float("inf")
    for _, _, probs in routes.values():
        s = torch.sort(probs, dim=-1, descending=True)[0]
        g = min(g, float((s[:, k - 1] - s[:, k]).min()))
    return g


def f32_round_(params):
    with torch.no_grad():
        for p in params.values():
            p.copy_(p.to(torch.float32).to(torch.float64))


def mpmoe_state(params, cfg, B, gen):
    """An MpmoeState with real co-occurrence statistics: the routing of the initial model
    (top-k under the first Sigma = I, the greedy after) on STAT_BATCHES random batches,
    folded step by step as training would."""
    ms = mirror.MpmoeState(cfg)
    with torch.no_grad():
        for s in range(STAT_BATCHES):
            x = torch.randint(0, cfg.vocab, (B, cfg.seq_len), generator=gen)
            mirror.forward(params, cfg, x, None, mstate=ms, train=True)
            ms.after_step(s + 1)
    ms.step, ms.min_margin = 0, float("inf")
    return ms


def build(cfg, tc, B, seed, bf16=False):
    """One attempt: returns the fixture contents or None when routing has near-ties."""
    gen = torch.Generator().manual_seed(seed)
    params = mirror.init_params(cfg, dtype=torch.float64, generator=gen, std=0.02, norm_noise=0.1)
    ms = None
    if cfg.router == "mpmoe":
        with torch.no_grad():  # peaky routers: selections with structure, and clear of ties
            for l in cfg.moe_layers:
                params[f"layers.{l}.moe.router.weight"].mul_(ROUTER_SCALE)
    f32_round_(params)  # the reference uses exactly the F32 values stored in the file
    if cfg.router == "mpmoe":
        ms = mpmoe_state(params, cfg, B, gen)
        init_state = copy.deepcopy(ms)
    T, V = cfg.seq_len, cfg.vocab
    inputs = torch.randint(0, V, (B, T), generator=gen)
    targets = torch.randint(0, V, (B, T), generator=gen)

    init = {n: p.detach().clone() for n, p in params.items()}
    out = mirror.forward(params, cfg, inputs, targets, details=True, mstate=ms, bf16=bf16)
    gap0 = min_gap(out["routes"], cfg.topk, cfg.experts) if ms is None else ms.min_margin
    if gap0 < ((GAP_BF16 if bf16 else GAP_INIT) if ms is None else MARGIN_INIT):
        return None, f"initial gap {gap0:.2e}"
    for p in params.values():
        p.grad = None
    out["total"].backward()
    grads = {n: p.grad.detach().clone() for n, p in params.items()}

    # trajectory: TRAJ_STEPS AdamW steps on the same batch
    opt = mirror.make_optimizer(params, tc, foreach=False)
    traj_loss, traj_norm, gaps = [], [], []
    if ms is not None:
        ms = copy.deepcopy(init_state)
        ms.total = tc.steps
    plist = list(params.values())
    for s in range(TRAJ_STEPS):
        for p in plist:
            p.grad = None
        if ms is not None:
            ms.min_margin = float("inf")
        o = mirror.forward(params, cfg, inputs, targets, details=True, mstate=ms, bf16=bf16)
        gaps.append(min_gap(o["routes"], cfg.topk, cfg.experts) if ms is None else ms.min_margin)
        o["total"].backward()
        norm = torch.nn.utils.clip_grad_norm_(plist, tc.grad_clip) if tc.grad_clip > 0 else None
        lr = mirror.lr_at(s, tc.steps, tc.warmup, tc.lr, tc.min_lr_frac)
        for grp in opt.param_groups:
            grp["lr"] = lr
        opt.step()
        if ms is not None:
            ms.after_step(s + 1)
        traj_loss.append(float(o["ce"]))
        traj_norm.append(float(norm))
    if min(gaps) < ((GAP_BF16_TRAJ if bf16 else GAP_TRAJ) if ms is None else MARGIN_TRAJ):
        return None, f"trajectory gap {min(gaps):.2e} at step {gaps.index(min(gaps))}"

    BT = B * T
    tensors = []
    for n, p in init.items():
        tensors.append(("param." + n, p.numpy().astype(np.float32)))
    if ms is not None:
        for l in cfg.moe_layers:
            tensors.append((f"state.layers.{l}", init_state.flat(l).numpy()))
        for l in cfg.moe_layers:
            tensors.append((f"traj.state.layers.{l}", ms.flat(l).numpy()))
    tensors.append(("inputs", inputs.numpy().astype(np.int32)))
    tensors.append(("targets", targets.numpy().astype(np.int32)))
    tensors.append(("logits", out["logits"].detach().reshape(BT, V).numpy().astype(np.float32)))
    tensors.append(("loss", np.array([float(out["ce"])], dtype=np.float32)))
    tensors.append(("total_loss", np.array([float(out["total"])], dtype=np.float32)))
    tensors.append(("aux", np.array([float(a) for a in out["aux"]], dtype=np.float32)))
    tensors.append(("z", np.array([float(z) for z in out["z"]], dtype=np.float32)))
    for l, (sel, g, _) in out["routes"].items():
        srt, idx = torch.sort(sel, dim=-1)  # ascending expert index per token
        tensors.append((f"route.{l}.expert", srt.numpy().astype(np.int32)))
        tensors.append((f"route.{l}.gate", g.gather(1, idx).numpy().astype(np.float32)))
    for n, g in grads.items():
        tensors.append(("grad." + n, g.numpy().astype(np.float32)))
    tensors.append(("traj.loss", np.array(traj_loss, dtype=np.float32)))
    tensors.append(("traj.grad_norm", np.array(traj_norm, dtype=np.float32)))
    info = {"gap_init": gap0, "gap_traj": min(gaps), "loss": float(out["ce"]), "total": float(out["total"]),
            "traj_first": traj_loss[0], "traj_last": traj_loss[-1]}
    return tensors, info


def make(out_dir, name, model_kw, train_kw, B, seed, bf16=False):
    cfg = mirror.ModelCfg(**model_kw)
    for key in ("rope_theta", "norm_eps", "aux_coef", "z_coef"):
        setattr(cfg, key, f32(getattr(cfg, key)))
    tc = mirror.TrainCfg(batch=B, grad_accum=1, steps=TRAJ_STEPS, **train_kw)
    for key in ("lr", "min_lr_frac", "weight_decay", "beta1", "beta2", "adam_eps", "grad_clip"):
        setattr(tc, key, f32(getattr(tc, key)))
    conf = {}
    conf.update(mirror.ModelCfg(**model_kw).to_dict())
    conf.update(mirror.TrainCfg(batch=B, grad_accum=1, steps=TRAJ_STEPS, **train_kw).to_dict())
    conf["seed"] = seed
    if bf16:
        conf["precision"] = "bf16"
    for attempt in range(200):
        torch.manual_seed(seed + attempt)
        tensors, info = build(cfg, tc, B, seed + 1000 * attempt, bf16)
        if tensors is not None:
            break
        print(f"{name}: attempt {attempt} rejected ({info}), reseeding", file=sys.stderr)
    else:
        raise SystemExit(f"{name}: no seed without near-ties")
    conf["seed"] = seed + 1000 * attempt
    path = os.path.join(out_dir, name + ".safetensors")
    meta = {"config": json.dumps(conf), "format": "moelab-parity-1",
            "generator": "tests/mirror/make_fixtures.py (float64 reference, torch " + torch.__version__ + ")"}
    size = save_safetensors(path, tensors, meta)
    print(f"{path}: {size} bytes, loss {info['loss']:.6f}, total {info['total']:.6f}, "
          f"traj {info['traj_first']:.4f} -> {info['traj_last']:.4f}, min gap init {info['gap_init']:.2e} "
          f"traj {info['gap_traj']:.2e}")


TRAIN = dict(warmup=2, lr=1e-2, min_lr_frac=0.1, weight_decay=0.1, beta1=0.9, beta2=0.95, adam_eps=1e-8,
             grad_clip=1.0)

FIXTURES = {
    "parity_moe": (dict(layers=2, d_model=32, heads=4, seq_len=8, vocab=64, experts=4, topk=2, d_expert=16,
                        shared=1, dense_layers=0, renorm=1, tie_embeddings=0, aux_coef=0.01, z_coef=0.001), 2, 1),
    "parity_variant": (dict(layers=3, d_model=16, heads=2, seq_len=8, vocab=32, experts=4, topk=2, d_expert=8,
                            shared=0, dense_layers=1, renorm=0, tie_embeddings=1, aux_coef=0.01, z_coef=0.001), 2, 2),
    "parity_top1": (dict(layers=2, d_model=16, heads=2, seq_len=8, vocab=32, experts=4, topk=1, d_expert=8,
                         shared=1, dense_layers=0, renorm=0, tie_embeddings=0, aux_coef=0.01, z_coef=0.001), 2, 3),
    "parity_bf16_moe": (dict(layers=2, d_model=32, heads=4, seq_len=8, vocab=64, experts=4, topk=2, d_expert=16,
                             shared=1, dense_layers=0, renorm=1, tie_embeddings=0, aux_coef=0.01, z_coef=0.001), 2, 5),
    "parity_bf16_variant": (dict(layers=3, d_model=16, heads=2, seq_len=8, vocab=32, experts=4, topk=2, d_expert=8,
                                 shared=0, dense_layers=1, renorm=0, tie_embeddings=1, aux_coef=0.01, z_coef=0.001),
                            2, 6),
    "parity_dense": (dict(layers=2, d_model=16, heads=2, seq_len=8, vocab=32, experts=1, topk=1, d_expert=16,
                          shared=0, dense_layers=1, d_dense=24, renorm=1, tie_embeddings=0, aux_coef=0.01,
                          z_coef=0.001), 2, 4),
    # MP-MoE with real co-occurrence statistics: the default options with a short half-life,
    # and the published behaviour with a warm-up that ends inside the 10-step trajectory.
    "parity_mpmoe": (dict(layers=2, d_model=32, heads=4, seq_len=8, vocab=64, experts=8, topk=3, d_expert=8,
                          shared=1, dense_layers=0, renorm=1, tie_embeddings=0, aux_coef=0.01, z_coef=0.001,
                          router="mpmoe", router_opts="warmup=0,decay=3"), 4, 5),
    "parity_mpmoe_ref": (dict(layers=3, d_model=16, heads=2, seq_len=8, vocab=32, experts=6, topk=2, d_expert=8,
                              shared=0, dense_layers=1, renorm=1, tie_embeddings=1, aux_coef=0.01, z_coef=0.001,
                              router="mpmoe", router_opts="reference=1,warmup=0.3"), 4, 6),
}


def make_route(out_dir, seed=7, T=256, E=16, k=4, G=5):
    """route_mpmoe.safetensors: logits of clustered tokens and the co-occurrence counts of
    top-k routing of 5000 more, with the masks `moelab route` must reproduce: the published
    selector (otep_batched, reference conditioning), moelab's default, and top-k."""
    for attempt in range(100):
        gen = torch.Generator().manual_seed(seed + attempt)
        centre = 1.5 * torch.randn(G, E, dtype=torch.float64, generator=gen)

        def draw(n):
            g = torch.randint(0, G, (n,), generator=gen)
            return (centre[g] + torch.randn(n, E, dtype=torch.float64, generator=gen)).float()

        stats = torch.softmax(draw(5000).double(), -1)
        sel = torch.sort(stats, dim=-1, descending=True, stable=True)[1][:, :k]
        R = torch.zeros(5000, E, dtype=torch.float64)
        R[torch.arange(5000)[:, None], sel] = 1.0
        C, u, N = R.t() @ R, R.sum(0), 5000.0
        logits = draw(T)
        p = torch.softmax(logits.double(), -1)  # from the F32 logits, as the file holds them
        S_ref, eps_ref = mirror.sigma_build(C, u, N, 0.0)
        S_def, eps_def = mirror.sigma_build(C, u, N, mirror.MPMOE_DEFAULTS["ridge"])
        ref = mirror.otep_batched(p, S_ref, k, eps_ref)
        piv, m1 = mirror.greedy_pivoted(p, S_ref, k, eps_ref)
        piv_mask = torch.zeros(T, E, dtype=torch.bool)
        piv_mask[torch.arange(T)[:, None], piv] = True
        if not torch.equal(piv_mask, ref):
            raise SystemExit("route fixture: the pivoted greedy and otep_batched disagree")
        dsel, m2 = mirror.greedy_pivoted(p, S_def, k, eps_def)
        if min(m1, m2) < MARGIN_INIT:
            print(f"route fixture: attempt {attempt} has a near tie ({min(m1, m2):.2e}), reseeding", file=sys.stderr)
            continue
        dmask = torch.zeros(T, E, dtype=torch.bool)
        dmask[torch.arange(T)[:, None], dsel] = True
        tsel = torch.sort(p, dim=-1, descending=True, stable=True)[1][:, :k]
        tmask = torch.zeros(T, E, dtype=torch.bool)
        tmask[torch.arange(T)[:, None], tsel] = True
        gates = torch.where(dmask, p, torch.zeros_like(p))
        gates = gates / gates.sum(-1, keepdim=True)
        break
    else:
        raise SystemExit("route fixture: no seed without near ties")
    tensors = [("logits", logits.numpy().astype(np.float32)), ("cooc", C.numpy()), ("usage", u.numpy()),
               ("count", np.array([N])), ("ref_mask", ref.numpy().astype(np.uint8)),
               ("default_mask", dmask.numpy().astype(np.uint8)), ("default_gates", gates.numpy().astype(np.float32)),
               ("topk_mask", tmask.numpy().astype(np.uint8))]
    path = os.path.join(out_dir, "route_mpmoe.safetensors")
    meta = {"format": "moelab-route-1", "topk": str(k),
            "generator": "tests/mirror/make_fixtures.py (float64 reference, torch " + torch.__version__ + ")"}
    size = save_safetensors(path, tensors, meta)
    off_ref = int((ref != tmask).any(1).sum())
    off_def = int((dmask != tmask).any(1).sum())
    print(f"{path}: {size} bytes, T={T} E={E} k={k}; tokens off top-k: reference {off_ref}, default {off_def}; "
          f"min margin {min(m1, m2):.2e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default="", help="comma-separated fixture names")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)  # bit-stable reference
    only = [s for s in args.only.split(",") if s]
    for name, (model_kw, B, seed) in FIXTURES.items():
        if only and name not in only:
            continue
        make(args.out, name, model_kw, TRAIN, B, seed, bf16=name.startswith("parity_bf16_"))
    if not only or "route_mpmoe" in only:
        make_route(args.out)


if __name__ == "__main__":
    main()
