"""Published multi-stage fitting recipes built on :func:`~atlas_jax.fit`."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd

from ..data.runs import RunTable, validate_runs
from ..laws import CHINCHILLA, DATA_CONSTRAINED
from .batch import fit
from .evaluate import predict
from .result import FitResult
from .robust import huber

__all__ = ["MUENNIGHOFF2023_BASE", "fit_data_constrained_two_stage"]

#: Muennighoff et al.'s (2023) Chinchilla base for C4 (GPT-2 tokens), alpha tied to beta, frozen in their R* fit:
#: a=6.255414, b=7.3049974, e=0.6254804, alpha=beta=0.3526596. They fitted it to 54 C4 points of Hoffmann et al.
#: that are not bundled here (atlas_jax/datasets/datablations/SOURCE.md), not to the 182 runs of ``load_datablations``.
MUENNIGHOFF2023_BASE = dict(E=float(np.exp(0.6254804)), A=float(np.exp(6.255414)), B=float(np.exp(7.3049974)),
                            alpha=0.3526596, beta=0.3526596)

_BOOTSTRAP_ARGS = ("bootstrap", "bootstrap_unit", "seed", "resample_indices", "bootstrap_multistart", "level", "progress")


def fit_data_constrained_two_stage(runs: RunTable | pd.DataFrame, *, delta: float = 1e-3, tie_exponents: bool = True,
                                   base: dict[str, float] | str | None = None,
                                   **kwargs) -> tuple[FitResult | None, FitResult]:
    """Two-stage fit of the data-constrained law (Muennighoff et al. 2023, arXiv:2305.16264, App. and
    ``utils/parametric_fit.ipynb``).

    Stage 1 fits Chinchilla ``L = E + A/N^alpha + B/D^beta`` (alpha = beta if ``tie_exponents``) to the runs of at most
    one epoch (``tokens <= unique_tokens``). ``base`` skips it and freezes the given ``E A B alpha beta`` instead;
    ``base="muennighoff2023"`` freezes :data:`MUENNIGHOFF2023_BASE`, the authors' C4 base, which reproduces their
    (R_D*, R_N*) on ``load_datablations()``. Stage 1 on those runs' 29 single-epoch rows cannot: the authors fitted
    their base to other data.

    Stage 2 minimises ``sum_i Huber_delta(log L_hat_i - log L_i)`` over (R_D*, R_N*) with the base frozen, from the
    authors' grid ``R_D*, R_N* in linspace(0, 20, 4)^2`` (zeros dropped: undefined). As their local optimiser did, it
    polishes the grid point of lowest objective only (their torch L-BFGS, float32, stops in that point's basin; on
    the datablations runs the published (15.387756, 5.309743) is its stopping point near the local minimum
    (15.3718, 5.3151)). The objective is flat and multi-modal, so every grid point is also polished: a lower optimum
    elsewhere, and an R* that halving or doubling hardly changes the objective for, are named in the stage-2
    ``warnings`` (the engine adds one when R_D* or R_N* end at a bound).

    ``kwargs`` (``bootstrap``, ``seed``, ``progress``, ``dtype``, ...) go to both stages' :func:`~atlas_jax.fit`;
    stage 2's bootstrap refits (R_D*, R_N*) only. Returns (stage-1 result, or None with ``base``; stage-2 result).
    """
    table = runs if isinstance(runs, RunTable) else validate_runs(runs, required=DATA_CONSTRAINED.required)
    frame = table.frame
    first = None
    if isinstance(base, str):
        if base != "muennighoff2023":
            raise ValueError(f"base: expected a dict of E A B alpha beta, 'muennighoff2023' or None, got {base!r}")
        base = MUENNIGHOFF2023_BASE
    if base is None:
        one_epoch = frame[frame["tokens"] <= frame["unique_tokens"] * (1 + 1e-9)]
        if len(one_epoch) < 5:
            raise ValueError(f"two-stage fit: only {len(one_epoch)} run(s) have tokens <= unique_tokens; "
                             "stage 1 needs at least 5 single-epoch runs")
        first = fit(CHINCHILLA, one_epoch, delta=delta, tie=[("alpha", "beta")] if tie_exponents else None, **kwargs)
        base = first.params()
    fix = {k: base[k] for k in ("E", "A", "B", "alpha", "beta")}
    grid = np.linspace(0.0, 20.0, 4)[1:]
    starts = np.zeros((len(grid) ** 2, len(DATA_CONSTRAINED.params)))
    starts[:, 5:] = np.log(np.array(np.meshgrid(grid, grid, indexing="ij")).reshape(2, -1).T)
    second = fit(DATA_CONSTRAINED, table, delta=delta, fix=fix, starts=starts, screen_steps=0, keep=1, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        every = fit(DATA_CONSTRAINED, table, delta=delta, fix=fix, starts=starts,
                    **{k: v for k, v in kwargs.items() if k not in _BOOTSTRAP_ARGS})
    notes = _stage2_notes(frame, second, every, delta, kwargs.get("weights"))
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    return first, dataclasses.replace(second, warnings=second.warnings + tuple(notes)) if notes else second


def _stage2_notes(frame: pd.DataFrame, second: FitResult, every: FitResult, delta: float, weights) -> list[str]:
    """Warnings on a flat stage-2 objective ``f`` (weights w): a lower optimum from another grid point, and each R*
    whose halving or doubling raises ``f`` by less than ``f / sum(w)``, about one unit of log-likelihood (Laplace
    residuals of scale ``f / (delta sum(w))``): the data do not pin that R* down to a factor 2."""
    w = np.ones(len(frame)) if weights is None else np.asarray(weights, float)
    y = np.log(frame["loss"].to_numpy(float))
    objective = lambda p: float(np.sum(w * huber(np.log(predict(DATA_CONSTRAINED, frame, p)) - y, delta)))
    mine, best = second.params(), every.params()
    f, lower = float(second.objective[0]), float(every.objective[0])
    notes = []
    if lower < f * (1 - 1e-9) and max(abs(np.log(best[k] / mine[k])) for k in ("R_D_star", "R_N_star")) > 0.01:
        notes.append(f"stage 2: the objective is multi-modal: from another grid point a local fit reaches {lower:.10g} "
                     f"({f - lower:.2g} lower; objective/runs = {f / w.sum():.2g}) at R_D*={best['R_D_star']:.4g}, "
                     f"R_N*={best['R_N_star']:.4g}; kept the recipe's fit from the grid's best point "
                     f"(R_D*={mine['R_D_star']:.4g}, R_N*={mine['R_N_star']:.4g}, objective {f:.10g})")
    for k in ("R_D_star", "R_N_star"):
        rise = min(objective({**mine, k: mine[k] * m}) for m in (0.5, 2.0)) - f
        if rise < f / w.sum():
            notes.append(f"stage 2: the objective is flat in {k}: halving or doubling {k}={mine[k]:.4g} changes it by "
                         f"{rise:+.2g}, less than objective/runs = {f / w.sum():.2g}; {k} is not determined")
    return notes
