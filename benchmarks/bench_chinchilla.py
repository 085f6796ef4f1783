"""Epoch's Chinchilla recipe: atlas-jax against the scipy reference, side by side in one run.

1. Grid fit: 4,500 Hoffmann starts, Huber delta 1e-3, the 240 Epoch points. Reference: scipy
   L-BFGS-B with finite-difference gradients from every start, as Epoch ran it.
2. Bootstrap: 4,000 resamples (the same np.random.seed(42) draws for both). Reference: Epoch's
   sequential per-resample BFGS (analytic gradient) from Hoffmann's parameters.

atlas-jax is timed cold (first call in the process, compilation included) and warm (best of
``--repeats`` further calls). Prints the ratios and writes JSON to benchmarks/results/.

    python benchmarks/bench_chinchilla.py [--resamples 4000] [--repeats 3] [--skip-reference-grid]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scipy_reference as ref  # noqa: E402

import atlas_jax  # noqa: E402
from atlas_jax.io import machine_record, save_record  # noqa: E402


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resamples", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args(argv)

    runs = atlas_jax.load_chinchilla()
    N, D, L = (runs.frame[c].to_numpy(float) for c in ("params", "tokens", "loss"))
    res = machine_record()

    # 1. grid fit
    ours, cold = timed(atlas_jax.fit, "chinchilla", runs)
    warm = min(timed(atlas_jax.fit, "chinchilla", runs)[1] for _ in range(args.repeats))
    print(f"atlas-jax grid fit: cold {cold:.2f} s, warm {warm:.3f} s, objective {ours.objective[0]:.13g}", flush=True)
    scipy_fit, scipy_s = timed(ref.epoch_grid_fit, N, D, L)
    print(f"scipy L-BFGS-B (finite differences) x {scipy_fit['n_starts']} starts: {scipy_s:.1f} s, "
          f"objective {scipy_fit['objective']:.13g}", flush=True)
    res["grid"] = {"n_starts": 4500, "n_points": len(N), "atlas_cold_s": cold, "atlas_warm_s": warm,
                   "scipy_s": scipy_s, "atlas_objective": float(ours.objective[0]),
                   "scipy_objective": float(scipy_fit["objective"]),
                   "atlas_params": ours.params(), "speedup_warm": scipy_s / warm, "speedup_cold": scipy_s / cold}

    # 2. bootstrap, identical resamples
    idx = ref.bootstrap_indices(len(N), args.resamples, seed=42)
    boot_cold = timed(atlas_jax.fit, "chinchilla", runs, resample_indices=idx)[1]
    boots = [timed(atlas_jax.fit, "chinchilla", runs, resample_indices=idx) for _ in range(args.repeats)]
    boot_warm = min(b[0].timings["bootstrap_s"] for b in boots)
    ours_b = boots[0][0]
    theta_ref, ref_s = timed(ref.epoch_bootstrap, N, D, L, indices=idx)
    ref_alpha = np.percentile(theta_ref[:, 3], [2.5, 97.5])
    print(f"atlas-jax bootstrap x {args.resamples}: warm {boot_warm:.3f} s (cold call incl. grid fit and "
          f"compile {boot_cold:.2f} s); scipy sequential BFGS: {ref_s:.1f} s", flush=True)
    res["bootstrap"] = {"n_resamples": args.resamples, "atlas_warm_s": boot_warm, "atlas_cold_call_s": boot_cold,
                        "scipy_s": ref_s, "speedup_warm": ref_s / boot_warm,
                        "atlas_alpha_ci": ours_b.interval("alpha"), "scipy_alpha_ci": ref_alpha.tolist()}

    print("\n| benchmark | scipy reference | atlas-jax warm | atlas-jax cold | ratio warm | ratio cold |")
    print("|---|---|---|---|---|---|")
    g, b = res["grid"], res["bootstrap"]
    print(f"| Epoch grid, 4,500 starts x 240 pts | {g['scipy_s']:.1f} s | {g['atlas_warm_s']:.3f} s | "
          f"{g['atlas_cold_s']:.2f} s | {g['speedup_warm']:.0f}x | {g['speedup_cold']:.0f}x |")
    print(f"| bootstrap, {b['n_resamples']:,} resamples | {b['scipy_s']:.1f} s | {b['atlas_warm_s']:.3f} s | "
          f"- | {b['speedup_warm']:.0f}x | - |")
    save_record(args.out, "chinchilla", res)
    return res


if __name__ == "__main__":
    main()
