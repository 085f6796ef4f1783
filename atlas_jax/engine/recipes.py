"""Published multi-stage fitting recipes built on :func:`~atlas_jax.fit`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.runs import RunTable, validate_runs
from ..laws import CHINCHILLA, DATA_CONSTRAINED
from .batch import fit
from .result import FitResult

__all__ = ["fit_data_constrained_two_stage"]


def fit_data_constrained_two_stage(runs: RunTable | pd.DataFrame, *, delta: float = 1e-3, tie_exponents: bool = True,
                                   base: dict[str, float] | None = None, **kwargs) -> tuple[FitResult, FitResult]:
    """Muennighoff et al. (2023): stage 1 fits Chinchilla on runs of at most one epoch (``tokens <= unique_tokens``),
    stage 2 fits ``R_D_star, R_N_star`` on all runs with the stage-1 parameters frozen, from the grid
    ``R_D*, R_N* in linspace(0, 20, 4)^2`` (zeros dropped: they are undefined).

    ``base`` skips stage 1 and freezes the given ``E A B alpha beta`` (e.g. the published values).
    ``tie_exponents`` fits alpha = beta in stage 1, as the authors did. Returns (stage-1 result or None, stage-2 result).
    """
    table = runs if isinstance(runs, RunTable) else validate_runs(runs, required=DATA_CONSTRAINED.required)
    frame = table.frame
    first = None
    if base is None:
        one_epoch = frame[frame["tokens"] <= frame["unique_tokens"] * (1 + 1e-9)]
        if len(one_epoch) < 5:
            raise ValueError(f"two-stage fit: only {len(one_epoch)} run(s) have tokens <= unique_tokens; "
                             "stage 1 needs at least 5 single-epoch runs")
        first = fit(CHINCHILLA, one_epoch, delta=delta, tie=[("alpha", "beta")] if tie_exponents else None, **kwargs)
        base = first.params()
    grid = np.linspace(0.0, 20.0, 4)[1:]
    starts = np.zeros((len(grid) ** 2, len(DATA_CONSTRAINED.params)))
    starts[:, 5:] = np.log(np.array(np.meshgrid(grid, grid, indexing="ij")).reshape(2, -1).T)
    second = fit(DATA_CONSTRAINED, table, delta=delta, fix={k: base[k] for k in ("E", "A", "B", "alpha", "beta")},
                 starts=starts, **kwargs)
    return first, second
