"""Coverage check of the posterior intervals on synthetic Chinchilla campaigns with known parameters.

Each dataset draws true parameters around Chinchilla's (E ~ U(1.5, 2), A ~ logU(200, 800),
B ~ logU(500, 3000), alpha ~ U(0.28, 0.42), beta ~ U(0.25, 0.40)), evaluates the law on 6 model sizes
(1e7-3e9) x 6 token counts (1e9-3e11) and multiplies by log-normal noise; NUTS then samples the
posterior of :mod:`atlas_jax.bayes.model` (:func:`~atlas_jax.bayes.posterior`, the public entry point)
and the equal-tailed ``level`` interval of every parameter is checked against the truth.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .sampler import posterior

__all__ = ["synthetic_chinchilla", "interval_coverage"]

_SIZES, _TOKENS = np.geomspace(1e7, 3e9, 6), np.geomspace(1e9, 3e11, 6)


def synthetic_chinchilla(n_datasets: int, noise: float = 0.01, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs of ``n_datasets`` campaigns (column ``dataset``) and their true parameters (one row each)."""
    rng = np.random.default_rng(seed)
    truth = pd.DataFrame({"E": rng.uniform(1.5, 2.0, n_datasets), "A": np.exp(rng.uniform(np.log(200), np.log(800), n_datasets)),
                          "B": np.exp(rng.uniform(np.log(500), np.log(3000), n_datasets)),
                          "alpha": rng.uniform(0.28, 0.42, n_datasets), "beta": rng.uniform(0.25, 0.40, n_datasets)})
    n, d = (a.ravel() for a in np.meshgrid(_SIZES, _TOKENS))
    frames = []
    for i, p in truth.iterrows():
        loss = p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]
        frames.append(pd.DataFrame({"dataset": f"d{i:04d}", "params": n, "tokens": d,
                                    "loss": loss * np.exp(noise * rng.standard_normal(len(n)))}))
    return pd.concat(frames, ignore_index=True), truth


def interval_coverage(n_datasets: int = 200, level: float = 0.9, noise: float = 0.01, chains: int = 2,
                      draws: int = 500, warmup: int = 500, batch: int = 10, seed: int = 0,
                      progress: bool = False) -> pd.DataFrame:
    """One row per dataset and parameter: ``batch, dataset, param, truth, low, high, covered`` plus the
    batch's divergences and worst r-hat.

    Datasets are sampled ``batch`` at a time as independent groups of one :func:`posterior` call (their
    joint posterior factorises, so each group's marginal is its dataset's posterior).
    """
    runs, truth = synthetic_chinchilla(n_datasets, noise, seed)
    tail = 50.0 * (1.0 - level)
    rows = []
    starts = range(0, n_datasets, batch)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="calibration", unit="batch")
    for first in starts:
        ids = [f"d{i:04d}" for i in range(first, min(first + batch, n_datasets))]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            post = posterior("chinchilla", runs[runs["dataset"].isin(ids)], group_by="dataset", chains=chains,
                             draws=draws, warmup=warmup, seed=seed + first)
        for g, name in enumerate(post.groups):
            i = int(name[1:])
            for p in post.public_names:
                low, high = np.percentile(post.draws(p, name), [tail, 100.0 - tail])
                value = float(truth.loc[i, p])
                rows.append({"batch": first // batch, "dataset": i, "param": p, "truth": value, "low": float(low), "high": float(high),
                             "covered": bool(low <= value <= high), "divergences": post.diagnostics["divergences"],
                             "r_hat": post.diagnostics["r_hat_max"]})
    return pd.DataFrame(rows)
