"""The designer on real runs (issue 17): a retrospective campaign on the 240 Chinchilla runs of Hoffmann et al.
(2022, Fig. 4, digitised by Epoch AI), where every outcome is a measured loss, not one simulated from the law.

Start from the runs below START FLOPs. The rest of the 240 runs are the candidates, each trainable once
(``distinct=True``), and a pick's outcome is its real loss. Target: N* at Chinchilla's budget, 5.76e23 FLOPs.
Reference: the fit of all 240 runs (the best available stand-in for the truth; its own 95 % interval is
recorded beside it). Three ways of spending compute, each refitted with 200 bootstrap resamples after each round:

* habit: the next IsoFLOP levels, in half-decade rounds of compute, up to 1e21 FLOPs;
* design: rounds of 8 picks by ``aj.design`` until the habit's final width, its compute, or 10 rounds; and
  rounds of at most 8 within ROUND_BUDGET FLOPs each;
* random: pool runs in random order up to the design's compute (median of 10 orders).

Records each round's width, compute, estimate and whether the interval holds the 240-run estimate, in
``benchmarks/results/design_real_<date>.json``.

    python benchmarks/design_real.py [START ...]      # default 1.2e19 3.2e19
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
FLOPS = 5.76e23  # Chinchilla's budget (Hoffmann et al. 2022)
ROUND_BUDGET = 3e21  # FLOPs per designed round in the budgeted variant


def n_opt(A, B, a, b):
    return (a * A / (b * B)) ** (1 / (a + b)) * (FLOPS / 6) ** (b / (a + b))


def summary(frame, aj, reference) -> dict:
    res = aj.fit("chinchilla", frame, bootstrap=200)
    s, e = res.samples[0], res.estimate[0]
    low, high = np.percentile(n_opt(s[:, 1], s[:, 2], s[:, 3], s[:, 4]), [2.5, 97.5])
    est = float(n_opt(e[1], e[2], e[3], e[4]))
    return {"runs": len(frame), "largest_flops": float((6.0 * frame["params"] * frame["tokens"]).max()),
            "estimate": est, "low": float(low), "high": float(high), "width": float(high - low),
            "holds_reference": bool(low <= reference <= high), "flags": sorted(res.flags[0])}


def campaign(start: float, runs, aj, reference) -> dict:
    flops = 6.0 * runs["params"] * runs["tokens"]
    base, pool = runs[flops <= start], runs[flops > start]
    now = summary(base, aj, reference)
    habit, spent, levels = [], 0.0, start * 10 ** (0.5 * np.arange(1, 9))
    for lo, hi in zip([start, *levels], levels):
        if lo >= 1e21:
            break
        spent += float((6.0 * pool["params"] * pool["tokens"])[(flops > lo) & (flops <= hi)].sum())
        habit.append({"flops": spent, **summary(runs[flops <= hi], aj, reference)})
    target, budget = habit[-1]["width"], habit[-1]["flops"]
    rounds = {}
    for name, per_round in (("design", None), ("design_budget", ROUND_BUDGET)):
        design, chosen, spent = [], base, 0.0
        while len(design) < 10 and spent < budget and (not design or design[-1]["width"] > target):
            left = pool.drop(index=chosen.index.intersection(pool.index))[["row", "params", "tokens"]]
            picks = aj.design("chinchilla", chosen, "N_opt", left, flops=FLOPS, k=8, distinct=True,
                              seed=len(design), budget=per_round).picks
            chosen = pd.concat([chosen, runs[runs["row"].isin(picks["row"])]])
            spent += float(picks["flops"].sum())
            design.append({"flops": spent, "predicted_width": float(picks["width"].iloc[-1]),
                           **summary(chosen, aj, reference)})
        rounds[name] = design
    design, spent = rounds["design"], rounds["design"][-1]["flops"]
    random = []
    for s in range(10):
        order = pool.sample(frac=1.0, random_state=s)
        cum = np.cumsum(6.0 * order["params"] * order["tokens"]).to_numpy()
        take = order.iloc[: max(1, int(np.searchsorted(cum, spent, side="right")))]
        random.append({"flops": float(cum[len(take) - 1]), **summary(pd.concat([base, take]), aj, reference)})
    median = {k: float(np.median([r[k] for r in random])) for k in ("flops", "width", "estimate")}
    median["holds_reference"] = float(np.mean([r["holds_reference"] for r in random]))
    print(f"start {start:.2g} FLOPs ({now['runs']} runs): N* {now['estimate']:.3g}, width {now['width']:.3g}\n"
          "  habit  : " + "; ".join(f"{h['width']:.3g} ({h['flops']:.2g} FLOPs, holds {h['holds_reference']})"
                                    for h in habit) +
          "\n  design : " + "; ".join(f"{d['width']:.3g} ({d['flops']:.2g} FLOPs, holds {d['holds_reference']}, "
                                      f"N* {d['estimate']:.3g})" for d in design) +
          "\n  within : " + "; ".join(f"{d['width']:.3g} ({d['flops']:.2g} FLOPs, holds {d['holds_reference']}, "
                                      f"N* {d['estimate']:.3g})" for d in rounds["design_budget"]) +
          f"\n  random : {median['width']:.3g} with {median['flops']:.2g} FLOPs, holds {median['holds_reference']:.0%}",
          flush=True)
    b = rounds["design_budget"]
    return {"start": start, "now": now, "habit": habit, "design": design, "random": random, "random_median": median,
            "reached": design[-1]["width"] <= target, "compute_share": spent / budget, "design_budget": b,
            "budget_reached": b[-1]["width"] <= target, "budget_compute_share": b[-1]["flops"] / budget}


def main(starts=(1.2e19, 3.2e19)) -> dict:
    import atlas_jax as aj
    from atlas_jax.datasets import load_chinchilla
    from atlas_jax.io import machine_record, save_record

    runs = load_chinchilla().frame
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        full = summary(runs, aj, np.nan)
        record = {**machine_record(), "flops": FLOPS, "reference": full,
                  "campaigns": [campaign(s, runs, aj, full["estimate"]) for s in starts]}
    print(f"reference (240 runs): N* {full['estimate']:.3g}, 95 % interval {full['low']:.3g}-{full['high']:.3g}")
    save_record(ROOT / "benchmarks" / "results", "design_real", record)
    return record


if __name__ == "__main__":
    main(tuple(float(a) for a in sys.argv[1:]) or (1.2e19, 3.2e19))
