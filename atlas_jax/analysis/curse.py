"""Curse of multilinguality: what it costs to train on r times more languages at equal loss.

Law (Longpre et al. 2026, arXiv:2510.22037, section 4; :mod:`atlas_jax.laws.curse`)::

    L(K, N, D_t) = L_inf + A K^phi / N^alpha + B K^psi / D_t^beta,     D_total = K D_t,  C = 6 N D_total.

Compute-optimal multipliers. At fixed K and compute C, D_t = C / (6 N K), so with
X = A K^phi N^-alpha and Y = B K^psi D_t^-beta

    dL/dlog N = -alpha X + beta Y = 0   =>   alpha X = beta Y,   X / (X + Y) = beta / (alpha + beta):

a compute-optimal model splits its reducible loss X + Y in the fixed ratio beta : alpha,
whatever K is. Going from K to rK languages at equal loss, compute-optimally on both
sides, keeps X + Y (equal loss) and the ratio X : Y, hence each term::

    A (rK)^phi N'^-alpha = A K^phi N^-alpha    =>  N'/N     = r^(phi/alpha)
    B (rK)^psi D_t'^-beta = B K^psi D_t^-beta  =>  D_t'/D_t = r^(psi/beta)
    D_total'/D_total = (rK D_t') / (K D_t)                  = r^(1 + psi/beta)
    C'/C = (N'/N) (D_total'/D_total)                         = r^(1 + phi/alpha + psi/beta)

Published (phi = 0.11, psi = -0.04, Fig. 5: phi/alpha = 0.243, 1 + psi/beta = 0.728):
x1.18 model and x1.66 total tokens for r = 2, C'/C ~ r^0.97.

Iso-loss frontier. For any s = N'/N and t = D_t'/D_t, equal loss at rK means
r^phi X s^-alpha + r^psi Y t^-beta = X + Y; dividing by X + Y, with w_N = X / (X + Y)::

    r^phi w_N s^-alpha + r^psi (1 - w_N) t^-beta = 1,
    t = [r^psi (1 - w_N) / (1 - r^phi w_N s^-alpha)]^(1/beta),

feasible iff s^alpha > r^phi w_N (a model so small that its term alone exceeds the
budget cannot be rescued by data). At a compute-optimal baseline w_N = beta/(alpha+beta).

Example:
    >>> m = expansion_multipliers(2.0, alpha=0.11 / 0.243, beta=0.04 / 0.272, phi=0.11, psi=-0.04)
    >>> round(float(m["model"]), 2), round(float(m["data"]), 2)
    (1.18, 1.66)
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..engine.batch import fit
from ..engine.bootstrap import percentile_interval
from ..engine.result import FitResult
from ..engine.solver import Status
from ..laws.curse import CURSE, joint_curse_law

__all__ = [
    "MULTIPLIERS",
    "expansion_multipliers",
    "iso_loss_frontier",
    "loss_share",
    "multipliers_with_intervals",
    "fit_curse_joint",
]

#: Keys of :func:`expansion_multipliers`, in output order.
MULTIPLIERS = ("model", "data_per_language", "data", "compute")

_EXPONENTS = ("alpha", "beta", "phi", "psi")


def expansion_multipliers(r, alpha, beta, phi, psi, xp=np) -> dict[str, np.ndarray]:
    """Compute-optimal multipliers from K to rK languages at equal loss.

    Returns ``{"model": r^(phi/alpha), "data_per_language": r^(psi/beta),
    "data": r^(1 + psi/beta), "compute": r^(1 + phi/alpha + psi/beta)}`` (N'/N,
    D_t'/D_t, D_total'/D_total, C'/C). Arguments broadcast against each other (e.g.
    ``r[:, None]`` against bootstrap draws of the exponents); ``xp=jax.numpy`` to differentiate them.
    """
    r, alpha, beta, phi, psi = (xp.asarray(v, float) for v in (r, alpha, beta, phi, psi))
    log_r = xp.log(r)
    model = phi / alpha
    data_t = psi / beta
    return {
        "model": xp.exp(model * log_r),
        "data_per_language": xp.exp(data_t * log_r),
        "data": xp.exp((1.0 + data_t) * log_r),
        "compute": xp.exp((1.0 + model + data_t) * log_r),
    }


def loss_share(K, N, D_t, params: Mapping[str, float]) -> np.ndarray:
    """w_N = X / (X + Y), the model term's share of the reducible loss at a baseline (K, N, D_t).

    X = A K^phi / N^alpha, Y = B K^psi / D_t^beta; ``params`` holds ``A B alpha beta phi psi``
    (e.g. ``FitResult.params()``). Equals beta / (alpha + beta) at a compute-optimal baseline.
    """
    K, N, D_t = (np.asarray(v, float) for v in (K, N, D_t))
    p = {k: float(params[k]) for k in ("A", "B", "alpha", "beta", "phi", "psi")}
    log_x = np.log(p["A"]) + p["phi"] * np.log(K) - p["alpha"] * np.log(N)
    log_y = np.log(p["B"]) + p["psi"] * np.log(K) - p["beta"] * np.log(D_t)
    return 1.0 / (1.0 + np.exp(log_y - log_x))


def iso_loss_frontier(r, w_N, alpha, beta, phi, psi, s) -> np.ndarray:
    """t = D_t'/D_t that keeps the loss of model multiplier s = N'/N when going from K to rK languages.

    Solves r^phi w_N s^-alpha + r^psi (1 - w_N) t^-beta = 1 for t:
    t = [r^psi (1 - w_N) / (1 - r^phi w_N s^-alpha)]^(1/beta); NaN where infeasible
    (s^alpha <= r^phi w_N). ``w_N=None`` takes a compute-optimal baseline, w_N = beta/(alpha+beta);
    otherwise pass :func:`loss_share` of the baseline. All arguments broadcast.
    """
    r, alpha, beta, phi, psi, s = (np.asarray(v, float) for v in (r, alpha, beta, phi, psi, s))
    w = beta / (alpha + beta) if w_N is None else np.asarray(w_N, float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rest = 1.0 - r**phi * w * s**-alpha
        t = (r**psi * (1.0 - w) / rest) ** (1.0 / beta)
    return np.where(rest > 0, t, np.nan)


def multipliers_with_intervals(result: FitResult, r_values: Sequence[float] = (2, 4, 8, 16),
                               level: float = 0.95) -> pd.DataFrame:
    """Multipliers of every group of a bootstrapped ``curse`` fit, with percentile intervals.

    Long format, one row per group, r and multiplier (:data:`MULTIPLIERS`): ``group, r,
    multiplier, estimate, ci_low, ci_high``. ``estimate`` comes from the point fit; the
    interval is the equal-tailed ``level`` percentile interval of the multiplier over the
    bootstrap draws ``result.samples`` (draws whose refit did not converge are left out,
    as in the fit's own intervals).

    Raises:
        ValueError: if the fit has no bootstrap draws or lacks the exponents alpha beta phi psi.
    """
    if result.samples is None:
        raise ValueError("multipliers_with_intervals needs bootstrap draws: fit the 'curse' law with bootstrap > 0")
    r = np.asarray(r_values, float)
    rows = []
    for g, group in enumerate(result.groups):
        names = result.names[g]
        # a joint fit (fit_curse_joint) has alpha_<lang>, beta_<lang>: one row set per language
        langs = [n[len("alpha_"):] for n in names if n.startswith("alpha_")]
        for label, suffix in ([(lang, f"_{lang}") for lang in langs] if langs else [(group, "")]):
            wanted = [f"{n}{suffix}" if n in ("alpha", "beta") else n for n in _EXPONENTS]
            missing = [n for n in wanted if n not in names]
            if missing:
                raise ValueError(f"group {group!r}: fit of law {result.law!r} has no parameter(s) {missing}; "
                                 "fit the 'curse' law")
            col = [names.index(n) for n in wanted]
            point = expansion_multipliers(r, *(result.estimate[g, j] for j in col))
            ok = np.ones(result.samples.shape[1], bool) if result.sample_status is None else \
                Status.usable(result.sample_status[g])
            draws = np.where(ok[:, None], result.samples[g], np.nan)                  # [draw, param]
            boot = expansion_multipliers(r[None, :], *(draws[:, j, None] for j in col))  # [draw, r]
            for key in MULTIPLIERS:
                lo, hi = percentile_interval(boot[key], level, axis=0)
                for i, ri in enumerate(r):
                    rows.append({"group": label, "r": float(ri), "multiplier": key, "estimate": float(point[key][i]),
                                 "ci_low": float(lo[i]), "ci_high": float(hi[i])})
    return pd.DataFrame(rows)


def fit_curse_joint(runs: pd.DataFrame, *, bootstrap: int = 0, seed: int = 0, level: float = 0.95,
                    progress: bool = False) -> FitResult:
    """Fit the curse law jointly across target languages: own E A B alpha beta each, one phi and psi.

    Two stages: every language's runs are fitted alone (``fit(CURSE, runs, group_by="language")``, the
    multi-start grid), then :func:`~atlas_jax.laws.curse.joint_curse_law` is fitted to all runs from
    those estimates, with phi and psi started at their medians across languages. Bootstrap resamples
    draw from all runs (pooled). Returns the joint :class:`FitResult` (one group, ``all``; parameters
    ``E_<lang> ... beta_<lang>``, ``phi``, ``psi``); :func:`multipliers_with_intervals` gives each
    language's multipliers from it.
    """
    frame = runs.frame if hasattr(runs, "frame") else runs
    single = fit(CURSE, frame, group_by="language", progress=progress)
    law = joint_curse_law(single.groups)
    internal = np.stack([[p.to_internal(v) for p, v in zip(CURSE.params, est)] for est in single.estimate])
    start = np.concatenate([internal[:, :5].ravel(), np.median(internal[:, 5:], axis=0)])
    return fit(law, frame, starts=start[None], bootstrap=bootstrap, seed=seed, level=level, progress=progress)
