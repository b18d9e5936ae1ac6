#!/usr/bin/env python3
"""Cost model of one training step over N nodes (docs/scaling.md): data parallel (DP),
expert parallel (EP) and both (DP x EP), for the benchmark config and a model 100x larger.

    scripts/scaling_model.py --tok-per-s 300 --hidden 0.5 [--latency-us 5]

--tok-per-s is one node's measured tokens/s on the benchmark config (scripts/bench_mpi.sh,
"one"), which calibrates the node's sustained FLOP/s; --hidden is the measured share of the
gradient all-reduce hidden behind the backward. The network bandwidth per node is the
parameter of the tables (GB/s). Prints markdown tables.
"""
import argparse
import math

BYTES = 4  # fp32 everywhere: parameters, gradients and exchanged activations


def model(name, V, D, L, E, k, F, T, batch):
    """Parameter counts, FLOPs per token and tokens per node per step of a config."""
    block_dense = 2 * D + 4 * D * D + E * D  # norms, wqkv, wo, router
    experts = L * E * 3 * D * F
    total = 2 * V * D + D + L * block_dense + experts
    active = total - V * D - L * (E - k) * 3 * D * F
    flops = 6 * active + 6 * L * D * T  # the bench command's count (causal attention)
    return dict(name=name, D=D, L=L, E=E, k=k, total=total, experts=experts, dense=total - experts,
                flops=flops, tokens=batch * T)


CONFIGS = [
    model("benchmark config (13.8M params)", V=257, D=256, L=4, E=8, k=2, F=512, T=256, batch=16),
    model("100x larger (1.3B params)", V=32768, D=1024, L=12, E=32, k=2, F=1024, T=1024, batch=8),
]


def ring_allreduce(n, params, bw, lat):
    """Bytes sent per rank and seconds of a ring all-reduce of `params` floats over n ranks."""
    if n <= 1 or params == 0:
        return 0.0, 0.0
    b = 2 * (n - 1) / n * BYTES * params
    return b, b / bw + 2 * math.ceil(math.log2(n)) * lat


def step(c, N, P, node_flops, bw, lat, hidden):
    """One step on N nodes with the experts split over groups of P (P = 1: pure DP)."""
    dp = N // P
    compute = c["tokens"] * c["flops"] / node_flops
    # Replicated weights are reduced over all N; each expert shard over its DP group.
    b1, t1 = ring_allreduce(N, c["dense"], bw, lat)
    b2, t2 = ring_allreduce(dp, c["experts"] / P, bw, lat)
    # Dispatch and combine, forward and backward: 4 exchanges of k rows of D per token and layer.
    a2a_bytes = 4 * c["k"] * c["D"] * BYTES * c["L"] * c["tokens"] * (P - 1) / P
    a2a = a2a_bytes / bw + 4 * c["L"] * (P - 1) * lat if P > 1 else 0.0
    # Overlap hides at most the backward (2/3 of the compute); the all-to-all is on the critical path.
    t = compute + (t1 + t2) - min(hidden * (t1 + t2), 2 / 3 * compute) + a2a
    return dict(bytes=b1 + b2 + a2a_bytes, t=t, eff=compute / t, tps=N * c["tokens"] / t)


def layouts(c, N):
    out = [("DP", 1)]
    if N <= c["E"]:
        out.append(("EP", N))
    P = min(c["E"], N)
    if P < N:
        out.append((f"DP{N // P} x EP{P}", P))
    return out


def rate(x):
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def table(c, node_flops, bws, lat, hidden):
    print(f"\n**{c['name']}**, {c['tokens']} tokens per node per step, node at "
          f"{node_flops / 1e9:.0f} GFLOP/s ({c['tokens'] * c['flops'] / node_flops:.2f} s of compute per step)\n")
    head = "| nodes | layout | MB sent per node per step |" + "".join(f" eff. @ {b:g} GB/s |" for b in bws)
    print(head)
    print("|" + "---|" * (3 + len(bws)))
    for N in (8, 64, 512):
        for name, P in layouts(c, N):
            cells = [step(c, N, P, node_flops, b * 1e9, lat, hidden) for b in bws]
            print(f"| {N} | {name} | {cells[0]['bytes'] / 1e6:.1f} |" +
                  "".join(f" {x['eff']:.2f} ({rate(x['tps'])} tok/s) |" for x in cells))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tok-per-s", type=float, required=True, help="one node, benchmark config (measured)")
    ap.add_argument("--hidden", type=float, required=True, help="share of the all-reduce hidden (measured)")
    ap.add_argument("--latency-us", type=float, default=5.0, help="per-message network latency")
    ap.add_argument("--fast-node-gflops", type=float, default=1000.0, help="a second, faster node")
    a = ap.parse_args()
    node = a.tok_per_s * CONFIGS[0]["flops"]
    bws = (1.25, 12.5, 50.0)
    print(f"calibration: {a.tok_per_s:g} tok/s x {CONFIGS[0]['flops'] / 1e6:.1f} MFLOP/token = "
          f"{node / 1e9:.1f} GFLOP/s per node; all-reduce hidden {a.hidden:.2f}; latency {a.latency_us:g} us")
    # The large model on this machine's node is compute-bound at every size (efficiency 1.00): left out.
    for c, f in ((CONFIGS[0], node), (CONFIGS[0], a.fast_node_gflops * 1e9), (CONFIGS[1], a.fast_node_gflops * 1e9)):
        table(c, f, bws, a.latency_us * 1e-6, a.hidden)


if __name__ == "__main__":
    main()
