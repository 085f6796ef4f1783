"""Non-parametric bootstrap expressed as integer weights on fixed data (Efron 1979).

A resample of a group's ``n`` runs drawn with replacement is the vector of how
often each run was drawn, so every resample has the same shape and all of them
fit in one compiled batch.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["resample_counts", "counts_from_indices", "percentile_interval"]


def counts_from_indices(indices: np.ndarray, n: int) -> np.ndarray:
    """(B, m) integer draws in [0, n) -> (B, n) integer counts."""
    indices = np.asarray(indices)
    B = indices.shape[0]
    flat = (indices + n * np.arange(B)[:, None]).ravel()
    return np.bincount(flat, minlength=B * n).reshape(B, n)


def resample_counts(rng: np.random.Generator, n: int, n_resamples: int) -> np.ndarray:
    """(B, n) counts of ``n_resamples`` bootstrap resamples of ``n`` runs."""
    return counts_from_indices(rng.integers(0, n, size=(n_resamples, n)), n)


def percentile_interval(samples: np.ndarray, level: float = 0.95, axis: int = 0):
    """Equal-tailed percentile interval, ignoring non-finite draws; NaN where no draw is finite (a group without a
    usable refit, which its flags report)."""
    tail = 50.0 * (1.0 - level)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "All-NaN slice": the NaN is the answer
        return (np.nanpercentile(samples, tail, axis=axis), np.nanpercentile(samples, 100.0 - tail, axis=axis))
