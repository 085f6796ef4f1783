"""The whole default campaign: every law x every target language x B bootstrap resamples, one command.

atlas-jax fits each law once over all languages and resamples (``fit(law, runs, group_by="language",
bootstrap=B)``: multi-start grid, then B refits per language in one compiled batch). The reference is the
loop one would write with scipy: for each law, language and resample, L-BFGS-B from the same start (the
full-data estimate) with the objective and its gradient compiled by ``jax.jit`` (exact gradients; only
the loop is sequential). The reference is timed on ``--scipy-fits`` grid starts and resamples per law and language
and its per-fit time is multiplied by the number of fits (grid starts and resamples are timed
separately); the ratio printed is (estimated scipy time) / (atlas-jax warm time), with the sample size
stated beside it.

    python benchmarks/bench_campaign.py [--resamples 1000] [--scipy-fits 5]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

import atlas_jax as aj
from atlas_jax.engine.robust import huber
from atlas_jax.io import machine_record, save_record
from atlas_jax.laws import get_law

LAWS = ("chinchilla", "msl", "atlas_monolingual", "atlas_other", "atlas")
TARGETS = ("en", "fr", "ru", "zh", "bn", "sw", "yo")


def campaign_runs():
    frame = aj.load_campaign()[0].frame
    keep = (frame["regime"] == "pretrain") & frame["language"].isin(TARGETS) & (frame["group"] != "scratch")
    return frame[keep].reset_index(drop=True)


def scipy_seconds_per_fit(law, runs, result, n_fits, seed=0):
    """Mean wall time of one scipy L-BFGS-B fit (jit-compiled objective and gradient), for grid starts
    (``"grid"``, from the law's start grid, all runs) and bootstrap refits (``"bootstrap"``, from the estimate)."""
    rng = np.random.default_rng(seed)
    times = {"grid": [], "bootstrap": []}
    grid = law.start_grid()
    for g, lang in enumerate(result.groups):
        sub = runs[runs["language"] == lang].reset_index(drop=True)
        x = {k: jnp.asarray(v) for k, v in law.features(sub).items()}
        log_y = jnp.log(jnp.asarray(sub["loss"].to_numpy(float)))
        theta0 = np.array([p.to_internal(v) for p, v in zip(law.params, result.estimate[g])])

        @jax.jit
        def value_and_grad(theta, w):
            f = lambda th: jnp.sum(w * huber(jax.vmap(lambda xi: law.log_loss(th, xi))(x) - log_y, 1e-3))
            return jax.value_and_grad(f)(theta)

        value_and_grad(jnp.asarray(theta0), jnp.ones(len(sub)))  # compile once per language, not timed
        bounds = [p.bounds for p in law.params]
        for kind in times:
            for _ in range(n_fits):
                if kind == "grid":
                    w, start = jnp.ones(len(sub)), grid[rng.integers(len(grid))]
                else:
                    w = jnp.asarray(np.bincount(rng.integers(0, len(sub), len(sub)), minlength=len(sub)), float)
                    start = theta0
                fun = lambda th, w=w: tuple(np.asarray(a, float) for a in value_and_grad(jnp.asarray(th), w))
                t = time.perf_counter()
                scipy.optimize.minimize(fun, start, jac=True, method="L-BFGS-B", bounds=bounds)
                times[kind].append(time.perf_counter() - t)
    return {k: float(np.mean(v)) for k, v in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--scipy-fits", type=int, default=5, help="timed scipy fits per kind, law and language")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    runs = campaign_runs()
    res = {**machine_record(), "rows": len(runs), "resamples": args.resamples, "laws": {}}
    total_atlas = total_scipy = 0.0
    for name in LAWS:
        law = get_law(name)
        t = time.perf_counter()
        aj.fit(law, runs, group_by="language", bootstrap=args.resamples)
        cold = time.perf_counter() - t
        result = aj.fit(law, runs, group_by="language", bootstrap=args.resamples)
        per_fit = scipy_seconds_per_fit(law, runs, result, args.scipy_fits)
        G = len(result.groups)
        row = {"atlas_cold_s": cold, "n_starts": result.n_starts, "n_groups": G,
               "atlas_grid_s": result.timings["fit_s"], "atlas_bootstrap_s": result.timings["bootstrap_s"],
               "scipy_s_per_start": per_fit["grid"], "scipy_s_per_refit": per_fit["bootstrap"],
               "scipy_grid_s": per_fit["grid"] * result.n_starts * G,
               "scipy_bootstrap_s": per_fit["bootstrap"] * args.resamples * G}
        row["atlas_s"] = row["atlas_grid_s"] + row["atlas_bootstrap_s"]
        row["scipy_s"] = row["scipy_grid_s"] + row["scipy_bootstrap_s"]
        res["laws"][name] = row
        total_atlas += row["atlas_s"]
        total_scipy += row["scipy_s"]
        print(f"{name:<18} grid {G} x {result.n_starts} starts: atlas-jax {row['atlas_grid_s']:6.2f} s, scipy "
              f"{row['scipy_grid_s']:8.1f} s ({row['scipy_grid_s'] / row['atlas_grid_s']:5.0f}x) | bootstrap "
              f"{G} x {args.resamples}: atlas-jax {row['atlas_bootstrap_s']:6.2f} s, scipy {row['scipy_bootstrap_s']:8.1f} s "
              f"({row['scipy_bootstrap_s'] / row['atlas_bootstrap_s']:4.0f}x) | cold call {cold:5.1f} s", flush=True)
    res["total"] = {"atlas_warm_s": total_atlas, "scipy_estimated_s": total_scipy, "ratio": total_scipy / total_atlas}
    print(f"all laws: atlas-jax {total_atlas:.1f} s warm, scipy {total_scipy:.0f} s (estimated from "
          f"{args.scipy_fits} starts and {args.scipy_fits} resamples per law and language): {total_scipy / total_atlas:.0f}x")
    save_record(args.out, "campaign", res)


if __name__ == "__main__":
    main()
