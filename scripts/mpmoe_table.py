#!/usr/bin/python3
"""The MP-MoE experiment's tables, from a `moelab compare` sweep's runs.csv.

    scripts/mpmoe_table.py SWEEPDIR [--baselines topk,topk-norenorm]

For every metric: each variant's mean ± sample sd over its seeds, and for every variant
that is not a baseline, the difference to each baseline paired by seed (mean ± sd of the
per-seed differences, over the seeds both have). Markdown on stdout. Metrics from
`moelab analyze` (the final checkpoint on the whole validation split) are preferred for
routing; the quality numbers are the final evaluation of each run.
"""
import csv
import math
import sys

QUALITY = [("val_loss", "val loss"), ("val_bpb", "val bpb"), ("train_loss", "train loss (last 10 steps)")]
ROUTING = ["overlap", "expert_sim", "domain_mi", "maxvio", "dead_frac", "load_cv",
           "sel_differ", "sel_mass", "sel_mass_abs", "sel_outside"]
SPEED = [("tok_per_s", "tokens/s (median of logged steps)"), ("router_share", "router share of the step")]


def num(s):
    try:
        v = float(s)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def mean_sd(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None, 0
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
    return m, sd, len(xs)


def fmt(m, sd, n, digits, signed=False):
    if m is None:
        return "–"
    f = "%+.*f" if signed else "%.*f"
    s = f % (digits, m)
    if sd is not None:
        s += " ± %.*f" % (digits, sd)
    return s if n > 1 else s + " (1 seed)"


def load(sweep):
    with open(sweep + "/runs.csv") as f:
        rows = list(csv.DictReader(f))
    order, runs = [], {}
    for r in rows:
        v = r["variant"]
        if v not in runs:
            order.append(v)
            runs[v] = {}
        if r.get("finished", "1") == "1":
            runs[v][int(r["seed"])] = r
    return order, runs


def values(runs, variant, key):
    return {s: num(r.get(key)) for s, r in runs[variant].items()}


def paired(runs, a, b, key):
    va, vb = values(runs, a, key), values(runs, b, key)
    return [va[s] - vb[s] for s in sorted(va) if s in vb and va[s] is not None and vb[s] is not None]


def table(title, metrics, order, runs, baselines, digits):
    others = [v for v in order if v not in baselines]
    pairs = [(o, b) for o in others for b in baselines]
    head = ["metric"] + order + ["Δ %s − %s" % p for p in pairs]
    out = ["### " + title, "", "| " + " | ".join(head) + " |", "|:---" + "|---:" * (len(head) - 1) + "|"]
    any_row = False
    for key, name in metrics:
        cells = [fmt(*mean_sd(values(runs, v, key).values()), digits) for v in order]
        cells += [fmt(*mean_sd(paired(runs, o, b, key)), digits, signed=True) for o, b in pairs]
        if all(c == "–" for c in cells):
            continue
        any_row = True
        out.append("| " + " | ".join([name] + cells) + " |")
    return out + [""] if any_row else []


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(sys.argv) >= 2 else 1
    sweep = sys.argv[1]
    baselines = ["topk", "topk-norenorm"]
    if len(sys.argv) > 3 and sys.argv[2] == "--baselines":
        baselines = sys.argv[3].split(",")
    try:
        order, runs = load(sweep)
    except OSError as e:
        print("mpmoe_table.py: %s (run moelab compare on the sweep first)" % e, file=sys.stderr)
        return 1
    baselines = [b for b in baselines if b in runs]
    with open(sweep + "/runs.csv") as f:
        cols = next(csv.reader(f))
    domains = [c[len("val_bpb_"):] for c in cols if c.startswith("val_bpb_") and c != "val_bpb_infer"]
    seeds = {v: sorted(runs[v]) for v in order}
    out = ["## Results of `%s`" % sweep, "",
           "Finished seeds: " + "; ".join("%s %s" % (v, ",".join(map(str, seeds[v])) or "none") for v in order) + ".",
           "Mean ± sample sd over seeds; Δ columns: the per-seed difference (row variant minus baseline, "
           "same seed: same initial weights where layouts agree, same batches), mean ± sd over the seeds both have. "
           "Negative Δ loss/bpb = better than the baseline.", ""]
    out += table("Quality (final evaluation)", QUALITY, order, runs, baselines, 4)
    out += table("Bits per byte by domain", [("val_bpb_" + d, d) for d in domains], order, runs, baselines, 4)
    out += table("Loss by domain", [("val_loss_" + d, d) for d in domains], order, runs, baselines, 4)
    analyze = [("analyze_" + k, k) for k in ROUTING]
    out += table("Routing of the final checkpoint on the whole validation split (moelab analyze)", analyze, order, runs,
                 baselines, 3)
    out += table("Routing at the last evaluation in training", [(k, k) for k in ROUTING], order, runs, baselines, 3)
    out += table("Speed in the sweep (runs side by side on a shared machine: indicative only)", SPEED, order, runs,
                 baselines, 3)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
