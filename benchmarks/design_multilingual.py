"""Simulated campaigns for the designer's multilingual targets (issue 17): the pretrain/finetune crossover D* and
the curse-of-multilinguality data multiplier. Losses come from numpy closed forms with known parameters.

Crossover: CAMPAIGNS pairs of curves of a 5e8-parameter model (scratch E + B/D^beta, finetune E + B/(D + D0)^beta,
truths drawn around a crossing near 1e11 tokens), observed to 6e10 tokens. The design's 3 extensions
(``aj.analysis.design_crossover``) against, with the same compute: extending the other curve, and extending both
curves alike (the habit). After each, both curves are refitted (``fit_crossovers``, 200 resamples): D*'s 95 %
interval width and whether it holds the true D*.

Curse: CAMPAIGNS lattices of K = 1, 2, 4, 8 languages x 3 sizes x 3 token counts (the curse law with phi = 0.11,
psi = -0.04 and per-campaign A, B), target the data multiplier for 4x the languages; 12 designed runs against
random grid runs and against a new K = 16 lattice level (the habit: more languages), each with the design's
compute (at least one run). Width and coverage of the true multiplier after each.

Writes ``benchmarks/results/design_multilingual_<date>.json``.

    python benchmarks/design_multilingual.py [CAMPAIGNS]      # default 20
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import brentq

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "analysis")]
from test_designer import curve, cursed_runs  # noqa: E402  the tests' numpy generators

N = 5e8  # the curves' model size (test_designer.curve)


def crossover_truth(rng) -> tuple[dict, dict, float]:
    """Scratch and finetune curves crossing at D* in [6e10, 2e11]: the finetune B solves L_s(D*) = L_f(D*)."""
    s = dict(E=rng.uniform(1.8, 2.0), B=rng.uniform(300, 500), beta=rng.uniform(0.27, 0.33))
    f = dict(E=s["E"] + rng.uniform(0.07, 0.13), beta=rng.uniform(0.22, 0.28), D0=10 ** rng.uniform(9.3, 10))
    d_star = 10 ** rng.uniform(np.log10(6e10), np.log10(2e11))
    f["B"] = (s["E"] + s["B"] / d_star ** s["beta"] - f["E"]) * (d_star + f["D0"]) ** f["beta"]
    gap = lambda d: (s["E"] + s["B"] / d ** s["beta"]) - (f["E"] + f["B"] / (d + f["D0"]) ** f["beta"])
    return s, f, brentq(gap, 1e9, 1e14)


def crossover_interval(curves, an, true) -> dict:
    row = an.fit_crossovers(curves, bootstrap=200).iloc[0]
    return {"width": float(row["ci_high"] - row["ci_low"]), "covered": bool(row["ci_low"] <= true <= row["ci_high"])}


def crossover_campaign(c: int, an) -> dict:
    rng = np.random.default_rng(1000 + c)
    s, f, true = crossover_truth(rng)
    tokens = np.exp(np.arange(np.log(5e8), np.log(6e10), 0.33))
    curves = pd.concat([curve("pretrain", tokens, 10 * c, s, f), curve("finetune", tokens, 10 * c + 1, s, f)])
    try:
        d = an.design_crossover(curves, "sw", k=3)
    except ValueError as e:  # a fit the design refuses: recorded, not hidden
        return {"true": true, "refused": str(e)}
    picks, last = d.picks, float(tokens[-1])
    extended = pd.concat([curves, *(curve(p.regime, [p.tokens], 100 * c + i, s, f)
                                    for i, p in enumerate(picks.itertuples()))])
    spent = float(picks["flops"].sum())
    other = "pretrain" if picks["regime"].iloc[0] == "finetune" else "finetune"
    reach = last + spent / (6 * N)                          # the other curve, the same compute
    half = last + spent / (12 * N)                          # both curves, half each
    step = lambda top: np.exp(np.arange(np.log(last) + 0.33, np.log(top) + 1e-9, 0.33)) if top > last * 1.39 \
        else np.array([top])
    instead = pd.concat([curves, curve(other, step(reach), 100 * c + 50, s, f)])
    both = pd.concat([curves, curve("pretrain", step(half), 100 * c + 60, s, f),
                      curve("finetune", step(half), 100 * c + 61, s, f)])
    return {"true": true, "estimate": d.estimate, "flags": list(d.flags), "now": crossover_interval(curves, an, true),
            "picks": picks[["regime", "tokens", "flops"]].to_dict(orient="records"), "flops": spent,
            "predicted_width": float(picks["width"].iloc[-1]),
            "design": crossover_interval(extended, an, true), "other_curve": crossover_interval(instead, an, true),
            "both_curves": crossover_interval(both, an, true)}


CURSE = dict(E=1.7, alpha=0.45, beta=0.15, phi=0.11, psi=-0.04)


def multiplier_interval(frame, aj, true) -> dict:
    s = aj.fit("curse", frame, bootstrap=200).samples[0]
    low, high = np.percentile(4.0 ** (1 + s[:, 6] / s[:, 4]), [2.5, 97.5])
    return {"width": float(high - low), "covered": bool(low <= true <= high)}


def curse_campaign(c: int, aj) -> dict:
    from atlas_jax.analysis import candidate_grid

    rng = np.random.default_rng(2000 + c)
    truth = {**CURSE, "A": rng.uniform(1500, 2500), "B": rng.uniform(30, 50)}
    true = 4.0 ** (1 + truth["psi"] / truth["beta"])
    K, n, d = (a.ravel() for a in np.meshgrid([1, 2, 4, 8], np.geomspace(1e7, 4e9, 3), [1e9, 1e10, 1e11],
                                              indexing="ij"))
    base = cursed_runs(K, n, d, 10 * c, truth)
    picks = aj.design("curse", base, "data_multiplier", k=12, ratio=4.0, seed=c).picks
    spent = float(picks["flops"].sum())
    outcome = lambda rows, seed: cursed_runs(rows["num_languages"], rows["params"], rows["tokens_sw"], seed, truth)
    grid = candidate_grid(base, aj.get_law("curse"))
    order = grid.sample(frac=1.0, random_state=c)
    cum = np.cumsum(6 * order["params"] * order["tokens"]).to_numpy()
    random = order.iloc[: max(1, int(np.searchsorted(cum, spent, side="right")))]
    level = pd.DataFrame({"params": np.repeat(np.geomspace(1e7, 4e9, 3), 3), "num_languages": 16.0,
                          "tokens_sw": np.tile([1e9, 1e10, 1e11], 3)})
    level = level.iloc[np.argsort(level["params"] * level["tokens_sw"])]
    cost = np.cumsum(6 * level["params"] * 16 * level["tokens_sw"]).to_numpy()
    habit = level.iloc[: max(1, int(np.searchsorted(cost, spent, side="right")))]
    return {"true": true, "flops": spent, "predicted_width": float(picks["width"].iloc[-1]),
            "now": multiplier_interval(base, aj, true),
            "design": multiplier_interval(pd.concat([base, outcome(picks, 10 * c + 1)]), aj, true),
            "random": {**multiplier_interval(pd.concat([base, outcome(random, 10 * c + 2)]), aj, true),
                       "runs": len(random), "flops": float(cum[len(random) - 1])},
            "k16_level": {**multiplier_interval(pd.concat([base, outcome(habit, 10 * c + 3)]), aj, true),
                          "runs": len(habit), "flops": float(cost[len(habit) - 1])}}


def main(campaigns: int = 20) -> dict:
    import atlas_jax as aj
    from atlas_jax import analysis as an
    from atlas_jax.io import machine_record, save_record

    record = {**machine_record(), "crossover": [], "curse": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the refits' flags: widths and coverage are the record
        for c in range(campaigns):
            row = crossover_campaign(c, an)
            record["crossover"].append(row)
            if "refused" in row:
                print(f"crossover {c}: refused: {row['refused']}", flush=True)
                continue
            print(f"crossover {c}: D* {row['true']:.3g}; width {row['now']['width']:.3g} now; design "
                  f"{row['design']['width']:.3g} ({'/'.join(p['regime'][0] for p in row['picks'])}, "
                  f"{row['flops']:.2g} FLOPs); other curve {row['other_curve']['width']:.3g}; both "
                  f"{row['both_curves']['width']:.3g}; covered {row['design']['covered']}", flush=True)
        for c in range(campaigns // 2):
            row = curse_campaign(c, aj)
            record["curse"].append(row)
            print(f"curse {c}: x{row['true']:.3f}; width {row['now']['width']:.3g} now; design "
                  f"{row['design']['width']:.3g} ({row['flops']:.2g} FLOPs); random {row['random']['width']:.3g} "
                  f"({row['random']['runs']} runs, {row['random']['flops']:.2g}); K=16 {row['k16_level']['width']:.3g} "
                  f"({row['k16_level']['runs']} runs, {row['k16_level']['flops']:.2g}); covered "
                  f"{row['design']['covered']}", flush=True)
    save_record(ROOT / "benchmarks" / "results", "design_multilingual", record)
    return record


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
