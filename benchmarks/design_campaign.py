"""Simulated campaigns for the designer (issue 17). From a 4 x 4 lattice of Chinchilla runs (the truth of Hoffmann
et al. 2022, 1 % lognormal noise, numpy), pick 12 and 48 runs for N* at 1e22 FLOPs with ``aj.design``, linearised
(``refit=0``), and 12 re-scored by refits (``refit=16``); against them, 3 random runs of the same candidate grid;
simulate their losses from the truth, refit with 200 bootstrap resamples, and record the interval's width, its
compute and whether it holds the true N*. Writes ``benchmarks/results/design_<date>.json``.

Then, over LATTICE campaigns, the lattice grown by two rounds of larger runs against rounds of designed runs until
the lattice's final width: rounds of 12 runs picked per FLOP (no budget), rounds of at most 12 within ROUND_BUDGET
FLOPs each, and random grid runs with the second's compute; the compute each used, and whether each interval holds
the truth.

    python benchmarks/design_campaign.py [CAMPAIGNS] [LATTICE]      # default 5 10
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TRUTH = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
FLOPS = 1e22
ROUND_BUDGET = 1e21  # FLOPs per designed round: 1/29 of the lattice's two rounds


def runs_at(N, D, seed):
    N, D = np.asarray(N, float), np.asarray(D, float)
    t = TRUTH
    loss = t["E"] + t["A"] / N ** t["alpha"] + t["B"] / D ** t["beta"]
    return pd.DataFrame({"params": N, "tokens": D,
                         "loss": loss * np.exp(0.01 * np.random.default_rng(seed).standard_normal(len(N)))})


def n_opt(A, B, a, b):
    return (a * A / (b * B)) ** (1 / (a + b)) * (FLOPS / 6) ** (b / (a + b))


def interval(frame, aj) -> tuple[float, bool]:
    s = aj.fit("chinchilla", frame, bootstrap=200).samples[0]
    low, high = np.percentile(n_opt(s[:, 1], s[:, 2], s[:, 3], s[:, 4]), [2.5, 97.5])
    true = n_opt(TRUTH["A"], TRUTH["B"], TRUTH["alpha"], TRUTH["beta"])
    return float(high - low), bool(low <= true <= high)


def lattice_against_design(c: int, aj) -> dict:
    """Campaign ``c``'s lattice grown by two rounds (each the next size, x3, at the four token counts x3), and
    rounds of designed runs until the lattice's final width is reached (at most 8 rounds or its compute): 12 runs
    per FLOP, and at most 12 within ROUND_BUDGET; random grid runs with the budgeted design's compute."""
    from atlas_jax.analysis import candidate_grid

    N0, D0 = [5e7, 1.5e8, 4.5e8, 1.35e9], [1e9, 3e9, 9e9, 2.7e10]
    base = runs_at(*(a.ravel() for a in np.meshgrid(N0, D0, indexing="ij")), 100 + c)
    lattice, lattice_flops = base, 0.0
    for r in (1, 2):
        n, d = N0[-1] * 3 ** r, np.array(D0) * 3 ** r
        lattice = pd.concat([lattice, runs_at(np.full(4, n), d, 500 + 10 * c + r)])
        lattice_flops += float((6 * n * d).sum())
    row = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        target, lattice_covered = interval(lattice, aj)
        row["lattice"] = {"width": target, "flops": lattice_flops, "covered": lattice_covered}
        for name, budget in (("design", None), ("design_budget", ROUND_BUDGET)):
            runs, spent, rounds, width, covered = base, 0.0, 0, np.inf, False
            while width > target and spent < lattice_flops and rounds < 8:
                picked = aj.design("chinchilla", runs, "N_opt", flops=FLOPS, k=12, seed=c, budget=budget).picks
                runs = pd.concat([runs, runs_at(picked["params"], picked["tokens"], 600 + 10 * c + rounds)])
                spent, rounds = spent + float(picked["flops"].sum()), rounds + 1
                width, covered = interval(runs, aj)
            row[name] = {"rounds": rounds, "width": width, "flops": spent, "covered": covered,
                         "reached": width <= target}
        order = candidate_grid(base).sample(frac=1.0, random_state=c)
        cum = np.cumsum(6 * order["params"] * order["tokens"]).to_numpy()
        take = order.iloc[: max(1, int(np.searchsorted(cum, row["design_budget"]["flops"], side="right")))]
        width, covered = interval(pd.concat([base, runs_at(take["params"], take["tokens"], 900 + c)]), aj)
        row["random"] = {"runs": len(take), "width": width, "flops": float(cum[len(take) - 1]), "covered": covered}
    shown = "; ".join(f"{k} {row[k]['rounds']} rounds {row[k]['width']:.3g} with {row[k]['flops']:.2e} FLOPs "
                      f"({row[k]['flops'] / lattice_flops:.3%})" for k in ("design", "design_budget"))
    print(f"campaign {c}: lattice (2 rounds) {target:.3g} with {lattice_flops:.2e} FLOPs; {shown}; random "
          f"{row['random']['width']:.3g} with {row['random']['flops']:.2e}", flush=True)
    return row


def main(campaigns: int = 5, lattice_campaigns: int = 10) -> dict:
    import atlas_jax as aj
    from atlas_jax.analysis import candidate_grid
    from atlas_jax.io import machine_record, save_record

    N, D = (a.ravel() for a in np.meshgrid([5e7, 1.5e8, 4.5e8, 1.35e9], [1e9, 3e9, 9e9, 2.7e10], indexing="ij"))
    record = {**machine_record(), "truth": TRUTH, "flops": FLOPS, "campaigns": []}
    for c in range(campaigns):
        base = runs_at(N, D, 100 + c)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            now, _ = interval(base, aj)
            designs = {}
            for k, refit in ((12, 0), (48, 0), (12, 16)):
                picked = aj.design("chinchilla", base, "N_opt", flops=FLOPS, k=k, seed=c, refit=refit).picks
                width, covered = interval(pd.concat([base, runs_at(picked["params"], picked["tokens"], 200 + c)]),
                                          aj) if len(picked) else interval(base, aj)
                designs[f"k{k}_refit{refit}"] = {
                    "runs": len(picked), "flops": float(picked["flops"].sum()), "width": width, "covered": covered,
                    "predicted_width": float(picked["width"].iloc[-1]) if len(picked) else None}
            grid, random = candidate_grid(base), []
            for s in range(6):
                r = grid.iloc[np.random.default_rng(1000 * c + s).choice(len(grid), 3, replace=False)]
                w, cov = interval(pd.concat([base, runs_at(r["params"], r["tokens"], 300 + 10 * c + s)]), aj)
                random.append({"width": w, "covered": cov, "flops": float((6 * r["params"] * r["tokens"]).sum())})
        row = {"width_now": now, "design": designs,
               "random_3_runs": {"median_width": float(np.median([r["width"] for r in random])),
                                 "median_flops": float(np.median([r["flops"] for r in random])),
                                 "coverage": float(np.mean([r["covered"] for r in random]))}}
        record["campaigns"].append(row)
        shown = "; ".join(f"{k}: {d['runs']} runs, {d['width']:.3g} with {d['flops']:.2g} FLOPs"
                          for k, d in designs.items())
        print(f"campaign {c}: width {now:.3g} now; {shown}; 3 random runs "
              f"{row['random_3_runs']['median_width']:.3g} with {row['random_3_runs']['median_flops']:.2g} FLOPs",
              flush=True)
    record["lattice"] = [lattice_against_design(c, aj) for c in range(lattice_campaigns)]
    for name in ("design", "design_budget"):
        rows = [r[name] for r in record["lattice"]]
        share = [d["flops"] / r["lattice"]["flops"] for d, r in zip(rows, record["lattice"]) if d["reached"]]
        print(f"lattice, {name}: reached its width in {len(share)} of {lattice_campaigns} campaigns"
              + (f", with {min(share):.2%}-{max(share):.2%} of its compute" if share else "")
              + f"; intervals held N* in {np.mean([d['covered'] for d in rows]):.0%}")
    save_record(ROOT / "benchmarks" / "results", "design", record)
    return record


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
