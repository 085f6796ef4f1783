"""Simulation check of the run-level bootstrap (issue 13): on checkpointed runs with per-run offsets
(:func:`atlas_jax.data.checkpoints.checkpointed_campaigns`), nominal 95 % intervals from resampling whole
runs should cover the truth 90-98 % of the time; resampling checkpoints as independent rows is reported
beside it. Writes ``validation/results/run_bootstrap_<date>.json``.

    python validation/run_bootstrap.py [--campaigns 200] [--resamples 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

import atlas_jax as aj
from atlas_jax.data.checkpoints import CHECKPOINT_TRUTH, checkpointed_campaigns
from atlas_jax.io import machine_record, save_record

#: a few starts around the truth's region (internal e, a, b, alpha, beta): the check is of the bootstrap
STARTS = np.array(np.meshgrid([0.0, 1.0], [5.0, 8.0], [5.0, 8.0], [0.3, 0.5], [0.3, 0.5],
                              indexing="ij")).reshape(5, -1).T


def coverage(campaigns: int, resamples: int, seed: int, unit: str) -> dict[str, float]:
    """Share of campaigns whose 95 % interval holds the true value, per parameter."""
    frame = checkpointed_campaigns(campaigns, seed)
    res = aj.fit("chinchilla", frame, group_by="campaign", starts=STARTS, bootstrap=resamples, bootstrap_unit=unit,
                 seed=seed)
    truth = np.array([CHECKPOINT_TRUTH[n] for n in res.names[0]])
    held = (res.ci_low <= truth) & (truth <= res.ci_high)
    return {n: float(held[:, j].mean()) for j, n in enumerate(res.names[0])} | {"all": float(held.mean())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--campaigns", type=int, default=200)
    ap.add_argument("--resamples", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", UserWarning)
    t = time.perf_counter()
    result = {unit: coverage(args.campaigns, args.resamples, args.seed, unit) for unit in ("run", "row")}
    for unit, cov in result.items():
        print(f"{unit:>4} bootstrap: " + ", ".join(f"{k} {v:.1%}" for k, v in cov.items()))
    save_record(args.out, "run_bootstrap", machine_record() | {"settings": vars(args) | {"out": str(args.out)},
                                                               "coverage": result,
                                                               "seconds": time.perf_counter() - t})


if __name__ == "__main__":
    main()
