"""Training-throughput benchmark of the PyTorch mirror (float32, CPU), the baseline the C
trainer is compared with.

Usage: /usr/bin/python3 tests/mirror/bench_mirror.py --threads N --steps S [--warmup-steps W] [--autocast-bf16]
       [--balanced]
       [--d-model 256 --layers 4 --heads 4 --experts 8 --topk 2 --d-expert 512 --seq-len 256
        --batch 16 --vocab 256 ...]

Each step is a full optimizer step on a fresh batch of random tokens: forward, backward of
CE + router losses, global-norm clipping, AdamW (multi-tensor) with the warmup + cosine LR.
Prints one JSON line: {"tok_per_s", "step_s", "threads", "torch", ...}.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mirror  # noqa: E402

MODEL_DEFAULTS = dict(layers=4, d_model=256, heads=4, seq_len=256, vocab=256, experts=8, topk=2, d_expert=512,
                      shared=0, dense_layers=0, d_dense=0, tie_embeddings=0, rope_theta=10000.0, norm_eps=1e-5,
                      aux_coef=0.01, z_coef=0.001, renorm=1)
TRAIN_DEFAULTS = dict(batch=16, lr=3e-3, min_lr_frac=0.1, weight_decay=0.1, beta1=0.9, beta2=0.95, adam_eps=1e-8,
                      grad_clip=1.0, warmup=20, seed=1337)


def main():
    ap = argparse.ArgumentParser(description="PyTorch mirror training benchmark")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup-steps", "--warmup_steps", dest="warmup_steps", type=int, default=2,
                    help="untimed steps first")
    ap.add_argument("--autocast-bf16", action="store_true", help="forward under torch.autocast('cpu', bfloat16)")
    ap.add_argument("--balanced", action="store_true",
                    help="each token's experts drawn at random, gated by its probabilities there (moelab's "
                         "topk force_balance=1)")
    for k, v in {**MODEL_DEFAULTS, **TRAIN_DEFAULTS}.items():
        ap.add_argument("--" + k.replace("_", "-"), "--" + k, dest=k, type=type(v), default=v)
    args = ap.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = mirror.ModelCfg(**{k: getattr(args, k) for k in MODEL_DEFAULTS},
                          router_opts="force_balance=1" if args.balanced else "")
    total_steps = args.warmup_steps + args.steps
    tc = mirror.TrainCfg(batch=args.batch, steps=total_steps, **{k: getattr(args, k) for k in TRAIN_DEFAULTS
                                                                  if k != "batch"})
    params = mirror.init_params(cfg, dtype=torch.float32)
    opt = mirror.make_optimizer(params, tc, foreach=True)
    B, T, V = args.batch, cfg.seq_len, cfg.vocab

    times, losses = [], []
    for s in range(total_steps):
        data = torch.randint(0, V, (B, T + 1))
        inputs, targets = data[:, :-1], data[:, 1:]
        t0 = time.perf_counter()
        ce, norm, lr = mirror.train_step(params, opt, cfg, tc, s, inputs, targets, args.autocast_bf16)
        ce = float(ce)  # forces completion
        dt = time.perf_counter() - t0
        losses.append(ce)
        if s >= args.warmup_steps:
            times.append(dt)
    med = statistics.median(times) if times else float("nan")
    n_params = sum(p.numel() for p in params.values())
    print(json.dumps({
        "tok_per_s": (B * T / med) if times else 0.0,
        "step_s": [round(t, 6) for t in times],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "autocast_bf16": args.autocast_bf16,
        "balanced": args.balanced,
        "tokens_per_step": B * T,
        "params": n_params,
        "final_loss": losses[-1] if losses else None,
        "config": {**cfg.to_dict(), "batch": B},
    }))


if __name__ == "__main__":
    main()
