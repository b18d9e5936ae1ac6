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
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpmoe_table import fmt, load, mean_sd, num, paired  # noqa: E402  (the same per-seed statistics)


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args else 2
    sweep, control, baseline = args[0], "random", "topk"
    rest = args[1:]
    while rest:
        if rest[0] not in ("--control", "--baseline") or len(rest) < 2:
            print(f"zoo_table: unexpected argument {rest[0]!r} (see --help)", file=sys.stderr)
            return 2
        if rest[0] == "--control":
            control = rest[1]
        else:
            baseline = rest[1]
        rest = rest[2:]
    try:
        variants, runs = load(sweep)
        with open(os.path.join(sweep, "results.csv")) as f:
            results = {r["variant"]: r for r in csv.DictReader(f)}
    except OSError as e:
        print(f"zoo_table: {e}", file=sys.stderr)
        return 1

    def col(v, key, digits):
        return fmt(*mean_sd([num(r.get(key)) for r in runs[v].values()]), digits)

    def diff(v, base):
        return "–" if v == base or base not in runs else fmt(*mean_sd(paired(runs, v, base, "val_bpb")), 4, signed=True)

    print(f"| variant | router, options | val bpb | val bpb (per-token rule) | Δ vs {control} | Δ vs {baseline} "
          "| maxvio | overlap | expert_sim | domain_mi | drop_frac | tok/s | router share |")
    print("|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v in variants:
        flags = results.get(v, {}).get("flags", "")
        opts = flags.replace('router_opts=""', "").replace("router_opts=", "").strip().strip('"') or "defaults"
        cells = [v, f"{results.get(v, {}).get('router', '?')} ({opts})", col(v, "val_bpb", 4), col(v, "val_bpb_infer", 4),
                 diff(v, control), diff(v, baseline)]
        cells += [col(v, "analyze_" + key, 3) for key in ("maxvio", "overlap", "expert_sim", "domain_mi", "drop_frac")]
        cells += [col(v, "tok_per_s", 0), col(v, "router_share", 3)]
        print("| " + " | ".join(cells) + " |")
    first = next((r for v in variants for r in runs[v].values()), {})
    domains = [k[len("val_bpb_"):] for k in first if k.startswith("val_bpb_") and k != "val_bpb_infer"]
    if domains:
        print()
        print("| variant | " + " | ".join(domains) + " |")
        print("|:---|" + "---:|" * len(domains))
        for v in variants:
            print("| " + v + " | " + " | ".join(col(v, "val_bpb_" + d, 3) for d in domains) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
