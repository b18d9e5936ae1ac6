#!/usr/bin/python3
"""The router-zoo tables, from a `moelab compare` sweep's runs.csv and results.csv.

    scripts/zoo_table.py SWEEPDIR [--control random] [--baseline topk]

Table 1: per variant, val bpb (mean ± sd over seeds), the per-token generation rule's val
bpb where the router has one, the difference to the control and to the baseline paired
by seed, the routing of the final checkpoint on the validation split (`moelab analyze`:
maxvio, overlap, expert_sim, domain_mi, drop_frac) and speed (median tokens/s of the
logged steps, router share of the step). Table 2: val bpb per domain. Markdown on stdout.
"""
import csv
import math
import os
import sys


def num(s):
    try:
        v = float(s)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def mean_sd(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return m, sd


def fmt(m, sd, digits):
    if m is None:
        return "–"
    return f"{m:.{digits}f} ± {sd:.{digits}f}"


def paired(runs, a, b, key):
    """mean ± sd over seeds of run(a) - run(b), on the seeds both have."""
    va = {r["seed"]: num(r[key]) for r in runs if r["variant"] == a}
    vb = {r["seed"]: num(r[key]) for r in runs if r["variant"] == b}
    return mean_sd([va[s] - vb[s] for s in va if s in vb and va[s] is not None and vb[s] is not None])


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args else 2
    sweep, control, baseline = args[0], "random", "topk"
    for i, a in enumerate(args[1:], 1):
        if a == "--control":
            control = args[i + 1]
        elif a == "--baseline":
            baseline = args[i + 1]
    try:
        with open(os.path.join(sweep, "runs.csv")) as f:
            runs = [r for r in csv.DictReader(f) if r.get("finished") == "1"]
        with open(os.path.join(sweep, "results.csv")) as f:
            results = list(csv.DictReader(f))
    except OSError as e:
        print(f"zoo_table: {e}", file=sys.stderr)
        return 1
    variants = [r["variant"] for r in results]
    flags = {r["variant"]: r["flags"] for r in results}
    routers = {r["variant"]: r["router"] for r in results}

    def col(v, key):
        return mean_sd([num(r[key]) for r in runs if r["variant"] == v])

    print(f"| variant | router, options | val bpb | val bpb (per-token rule) | Δ vs {control} | Δ vs {baseline} "
          "| maxvio | overlap | expert_sim | domain_mi | drop_frac | tok/s | router share |")
    print("|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v in variants:
        opts = flags[v].replace('router_opts=""', "").replace("router_opts=", "").strip().strip('"') or "defaults"
        cells = [v, f"{routers[v]} ({opts})", fmt(*col(v, "val_bpb"), 4), fmt(*col(v, "val_bpb_infer"), 4),
                 "–" if v == control else fmt(*paired(runs, v, control, "val_bpb"), 4),
                 "–" if v == baseline else fmt(*paired(runs, v, baseline, "val_bpb"), 4)]
        for key in ("maxvio", "overlap", "expert_sim", "domain_mi", "drop_frac"):
            cells.append(fmt(*col(v, "analyze_" + key), 3))
        tps, tps_sd = col(v, "tok_per_s")
        cells.append("–" if tps is None else f"{tps:.0f} ± {tps_sd:.0f}")
        cells.append(fmt(*col(v, "router_share"), 3))
        print("| " + " | ".join(cells) + " |")
    domains = [k[len("val_bpb_"):] for k in runs[0] if k.startswith("val_bpb_") and k != "val_bpb_infer"] if runs else []
    if domains:
        print()
        print("| variant | " + " | ".join(domains) + " |")
        print("|:---|" + "---:|" * len(domains))
        for v in variants:
            print("| " + v + " | " + " | ".join(fmt(*col(v, "val_bpb_" + d), 3) for d in domains) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
