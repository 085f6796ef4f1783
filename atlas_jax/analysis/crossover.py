"""Pretrain from scratch vs finetune a multilingual checkpoint: the token crossover and its compute law.

Longpre et al. (2026), *ATLAS*, arXiv:2510.22037, section 5. At fixed model size N, the loss on a target
language of a model pretrained from scratch and of one continued from a multilingual (Unimax) checkpoint
follow (:mod:`atlas_jax.laws.curve`)

    scratch:   L_s(D) = E_s + B_s / D^beta_s
    finetune:  L_f(D) = E_f + B_f / (D + D0)^beta_f

with D the tokens of the curve. The checkpoint gives a head start (D0) but usually a higher floor
(E_f > E_s), so finetuning wins below the crossover D*, where L_s(D*) = L_f(D*), and pretraining wins
above it. The paper reports D* for 2B models between 144B (EN) and 283B (ZH) tokens, and a fit of the
crossover compute C* = 6 N D* = k N^gamma printed three inconsistent ways (see
:func:`crossover_check_published`). It gives no intervals; here every crossover and (k, gamma) carries a
bootstrap interval, and :func:`posterior_crossovers` gives D* per posterior draw.

Fitted curves can meet more than once: g(D) = L_s(D) - L_f(D) tends to E_s - E_f, so e.g. a finetune curve
with a lower floor but a flatter power law (beta_f < beta_s) loses to scratch inside the data and wins again
far beyond it, and g has the same sign at both ends of a wide bracket. :func:`crossover_search` therefore
scans g on a log grid, takes the first crossing inside the token range where both curves were observed (the
one nearest that range when none is inside), refines it by bisection and reports the next one;
:func:`fit_crossovers` and :func:`posterior_crossovers` mark what cannot be taken at face value with the
named :data:`FLAGS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..engine import fit
from ..engine.bootstrap import percentile_interval
from ..engine.solver import Status
from ..laws.curve import FINETUNE_CURVE, SCRATCH_CURVE, curve_loss

__all__ = [
    "crossover_curves",
    "PUBLISHED_CROSSOVERS_2B",
    "PUBLISHED_COMPUTE_FITS",
    "FLAGS",
    "Crossings",
    "crossover_search",
    "crossover_tokens",
    "fit_crossovers",
    "posterior_crossovers",
    "fit_crossover_compute",
    "crossover_at",
    "crossover_check_published",
]

#: Published crossover tokens D* of 2B-parameter models (paper section 5).
PUBLISHED_CROSSOVERS_2B = {"en": 144e9, "ja": 145e9, "pt": 148e9, "de": 160e9, "ru": 189e9, "vi": 234e9,
                           "es": 239e9, "zh": 283e9}
#: The three printed versions (k, gamma) of the crossover-compute fit C* = k N^gamma.
PUBLISHED_COMPUTE_FITS = ((1113708.0, 1.65), (10283128.0, 1.65), (10283128.0, 1.54))

#: The named flags of a crossover row (column ``flags``, a tuple of these names; empty when nothing is amiss).
FLAGS = {
    "no_crossing": "the curves do not meet in [lo, hi]: no D*; the verdict says which wins throughout",
    "extrapolated": "D* lies outside the token range where both curves were observed",
    "second_crossing": "the curves meet more than once in [lo, hi] (n_crossings; the next one is "
                       "second_crossing_tokens): the verdict flips again there",
    "unbounded_interval": "ci_low is 0 or ci_high is inf: some draws have no crossing in [lo, hi]",
    "no_interval": "ci_low and ci_high are NaN: no bootstrap (bootstrap=0) or no refit converged",
    "refits_failed": "fewer than 90 % of the paired bootstrap refits converged",
    "fit_failed": "a point fit of one of the two curves did not converge",
}
_MIN_CONVERGED = 0.9    # share of converged paired refits below which a row is flagged refits_failed
_GRID = 512             # log-spaced scan points on [lo, hi]: crossings closer than (hi/lo)^(1/511) (4 % on
                        # [1e6, 1e15]) apart are missed, as is a tangency (g touching 0 without changing sign)
_BISECTION_STEPS = 48   # halvings of a grid bracket in log D: 0.04 / 2^48 is below float64 resolution of log D
_CHUNK = 8192           # elements scanned at once: [8192, 512] float64 arrays (32 MB)
_SCRATCH_NAMES, _FINETUNE_NAMES = SCRATCH_CURVE.names, FINETUNE_CURVE.names  # (E, B, beta), (E, B, beta, D0)


def _unpack(params, names) -> list[np.ndarray]:
    """Parameters as a ``{name: value or array}`` mapping or an array whose last axis is in law order."""
    if isinstance(params, Mapping):
        return [np.asarray(params[n], float) for n in names]
    params = np.asarray(params, float)
    if params.shape[-1] != len(names):
        raise ValueError(f"expected {len(names)} parameters ({', '.join(names)}) on the last axis, "
                         f"got shape {params.shape}")
    return [params[..., i] for i in range(len(names))]


def _gap(d, scratch, finetune):
    """L_s(D) - L_f(D): positive where the finetuned model is better."""
    return curve_loss(d, *scratch) - curve_loss(d, *finetune)


class Crossings(NamedTuple):
    """What :func:`crossover_search` finds, each with the broadcast shape of the parameters."""

    tokens: np.ndarray          #: D*, the chosen crossing; NaN without one in [lo, hi] or with a NaN parameter
    second_tokens: np.ndarray   #: the next crossing above D* in [lo, hi]; NaN if there is none
    n_crossings: np.ndarray     #: sign changes of g = L_s - L_f on the scan grid over [lo, hi]
    finetune_below: np.ndarray  #: finetuning is better just below D* (without a crossing: throughout)


def crossover_search(scratch_params, finetune_params, lo: float = 1e6, hi: float = 1e15,
                     observed: tuple[float, float] | None = None) -> Crossings:
    """Crossings of the scratch and finetune curves in [lo, hi]: the relevant one D*, the next one, their count.

    Scans g(D) = L_s(D) - L_f(D) (:func:`~atlas_jax.laws.curve.curve_loss`; g > 0 where finetuning is
    better) on 512 log-spaced token counts over [lo, hi] (plus the ends of ``observed``), vectorised over
    parameter draws, and locates every sign change. D* is the first one, or with ``observed = (d_min,
    d_max)`` the first one inside [d_min, d_max], and when none is inside the one nearest that range in
    log D (the last below d_min or the first above d_max). D* and the next crossing above it are refined
    by bisection in log D within their grid brackets, to float64 resolution. Crossings less than one grid
    step (4 % on [1e6, 1e15]) apart, and tangencies, are not seen.

    Args:
        scratch_params: ``{"E", "B", "beta"}`` (scalars or arrays, e.g. bootstrap draws) or an array
            ``[..., 3]`` in that order (``FitResult.samples[g]`` of :data:`SCRATCH_CURVE`).
        finetune_params: ``{"E", "B", "beta", "D0"}`` or an array ``[..., 4]``; broadcast against
            ``scratch_params`` (paired draws).
        lo, hi: token bracket of the search.
        observed: token range (d_min, d_max) where both curves were measured; None: D* is the first crossing.

    Returns:
        :class:`Crossings` (``tokens`` is NaN without a crossing in [lo, hi]: finetuning wins throughout
        where ``finetune_below``, D* > hi; pretraining does otherwise, D* < lo).
    """
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < lo < hi, got lo={lo:g}, hi={hi:g}")
    log_grid = np.linspace(np.log(lo), np.log(hi), _GRID)
    log_obs = None
    if observed is not None:
        d_min, d_max = (float(v) for v in observed)
        if not 0 < d_min <= d_max:
            raise ValueError(f"observed must be a token range 0 < d_min <= d_max, got {observed}")
        log_obs = (np.log(d_min), np.log(d_max))
        log_grid = np.unique(np.concatenate([log_grid, np.clip(log_obs, log_grid[0], log_grid[-1])]))
    scratch, finetune = _unpack(scratch_params, _SCRATCH_NAMES), _unpack(finetune_params, _FINETUNE_NAMES)
    shape = np.broadcast_shapes(*(p.shape for p in scratch + finetune))
    flat = [np.broadcast_to(p, shape).reshape(-1) for p in scratch + finetune]
    parts = [_scan(*(p[i:i + _CHUNK] for p in flat), log_grid=log_grid, log_obs=log_obs)
             for i in range(0, max(flat[0].size, 1), _CHUNK)]
    return Crossings(*(np.concatenate(column).reshape(shape) for column in zip(*parts)))


def _scan(*params, log_grid, log_obs):
    """:func:`crossover_search` on 1-D parameter arrays (E_s, B_s, beta_s, E_f, B_f, beta_f, D0)."""
    scratch, finetune = params[:3], params[3:]
    with np.errstate(all="ignore"):
        positive = _gap(np.exp(log_grid), [p[:, None] for p in scratch], [p[:, None] for p in finetune]) > 0
    valid = np.all([np.isfinite(p) for p in params], axis=0)
    change = (positive[:, 1:] != positive[:, :-1]) & valid[:, None]          # [n, bracket]
    if log_obs is None:
        k = _first(change)
    else:  # log_obs's ends are grid points: every bracket lies below, inside or above the observed range
        left, right = log_grid[:-1], log_grid[1:]
        candidates = np.stack([_first(change & (left >= log_obs[0]) & (right <= log_obs[1])),
                               _last(change & (right <= log_obs[0])), _first(change & (left >= log_obs[1]))], -1)
        with np.errstate(invalid="ignore"):
            roots = np.log(_refine(candidates, log_grid, scratch, finetune))
        below = np.nan_to_num(log_obs[0] - roots[:, 1], nan=np.inf)  # log distances to the observed range
        above = np.nan_to_num(roots[:, 2] - log_obs[1], nan=np.inf)
        k = np.where(candidates[:, 0] >= 0, candidates[:, 0],
                     np.where(below <= above, candidates[:, 1], candidates[:, 2]))
    k2 = _first(change & (np.arange(change.shape[1]) > k[:, None]) & (k >= 0)[:, None])
    roots = _refine(np.stack([k, k2], -1), log_grid, scratch, finetune)
    finetune_below = np.where(k >= 0, positive[np.arange(len(k)), np.maximum(k, 0)], positive[:, 0]) & valid
    return roots[:, 0], roots[:, 1], change.sum(-1), finetune_below


def _first(mask):
    """Index of the first True along the last axis of a 2-D mask; -1 where there is none."""
    return np.where(mask.any(-1), mask.argmax(-1), -1)


def _last(mask):
    """Index of the last True along the last axis of a 2-D mask; -1 where there is none."""
    return np.where(mask.any(-1), mask.shape[-1] - 1 - mask[:, ::-1].argmax(-1), -1)


def _refine(brackets, log_grid, scratch, finetune):
    """Root of g in grid bracket [log_grid[k], log_grid[k + 1]] for every k of ``brackets`` [n, K] (-1: NaN),
    by bisection in log D."""
    k = np.maximum(brackets, 0)
    a, b = log_grid[k], log_grid[k + 1]
    scratch, finetune = [p[:, None] for p in scratch], [p[:, None] for p in finetune]
    with np.errstate(all="ignore"):
        positive_a = _gap(np.exp(a), scratch, finetune) > 0
        for _ in range(_BISECTION_STEPS):
            mid = 0.5 * (a + b)
            right = (_gap(np.exp(mid), scratch, finetune) > 0) == positive_a  # the root lies right of mid
            a, b = np.where(right, mid, a), np.where(right, b, mid)
    return np.where(brackets >= 0, np.exp(0.5 * (a + b)), np.nan)


def crossover_tokens(scratch_params, finetune_params, lo: float = 1e6, hi: float = 1e15,
                     observed: tuple[float, float] | None = None) -> np.ndarray:
    """Tokens D* in [lo, hi] where the scratch and finetune curves meet: ``crossover_search(...).tokens``.

    Solves ``E_s + B_s/D^beta_s = E_f + B_f/(D + D0)^beta_f`` for the first crossing in [lo, hi], or with
    ``observed = (d_min, d_max)`` the first inside the observed token range (nearest to it when none is
    inside); see :func:`crossover_search` for the scan, the rule and the arguments. Usually g > 0 below D*
    (finetune better) and g < 0 above (pretrain better); a crossing in the other direction is returned all
    the same.

    Returns:
        D* with the broadcast shape of the parameters; NaN where the curves do not cross in [lo, hi] or a
        parameter is NaN.
    """
    return crossover_search(scratch_params, finetune_params, lo, hi, observed).tokens


def _common_range(tokens_s, tokens_f) -> tuple[float, float] | None:
    """Token range where both curves were observed; None when their ranges do not overlap."""
    low, high = max(np.min(tokens_s), np.min(tokens_f)), min(np.max(tokens_s), np.max(tokens_f))
    return (float(low), float(high)) if low <= high else None


def _crossover_draws(scratch, finetune, lo, hi, level, observed) -> tuple[np.ndarray, dict]:
    """D* of paired parameter draws [n, 3] and [n, 4] (NaN rows: left out) by :func:`crossover_search`, a draw
    without a crossing in [lo, hi] censored to +inf (finetuning wins throughout) or 0 (pretraining does); and
    its summary: median, equal-tailed ``level`` interval (inverted-CDF, so censored draws need no
    interpolation), the shares of valid draws without a crossing, with finetuning better below D*, and with
    more than one crossing, and the share of valid draws (``converged``)."""
    found = crossover_search(scratch, finetune, lo, hi, observed)
    valid = np.isfinite(scratch).all(-1) & np.isfinite(finetune).all(-1)
    censored = valid & np.isnan(found.tokens)
    d = np.where(censored, np.where(found.finetune_below, np.inf, 0.0), found.tokens)
    tail = round(50.0 * (1.0 - level), 12)  # 2.5, not 2.5000000000000022: ranks are exact here
    low, median, high = (np.percentile(d[valid], [tail, 50.0, 100.0 - tail], method="inverted_cdf")
                         if valid.any() else (np.nan,) * 3)
    n = max(valid.sum(), 1)
    return d, {"median": median, "ci_low": low, "ci_high": high, "no_crossing": censored.sum() / n,
               "finetune_first": (valid & found.finetune_below).sum() / n,
               "second_crossing": (valid & (found.n_crossings > 1)).sum() / n,
               "converged": valid.sum() / max(valid.size, 1)}


def _flags(d_star, second, observed, ci=None, converged=None, fit_ok=True) -> tuple[str, ...]:
    """The :data:`FLAGS` of one crossover estimate (NaN, 0 or inf ``d_star``: no crossing)."""
    flags = [] if fit_ok else ["fit_failed"]
    if not 0 < d_star < np.inf:
        flags.append("no_crossing")
    elif observed is None or not observed[0] <= d_star <= observed[1]:
        flags.append("extrapolated")
    if second:
        flags.append("second_crossing")
    if ci is None or np.isnan(ci).any():
        flags.append("no_interval")
    elif ci[0] <= 0 or ci[1] == np.inf:
        flags.append("unbounded_interval")
    if converged is not None and converged < _MIN_CONVERGED:
        flags.append("refits_failed")
    return tuple(flags)


def posterior_crossovers(scratch, finetune, lo: float = 1e6, hi: float = 1e15, level: float = 0.95) -> pd.DataFrame:
    """Crossover tokens D* per posterior draw, for every group of two posteriors (:func:`atlas_jax.posterior`)
    of :data:`SCRATCH_CURVE` and :data:`FINETUNE_CURVE` fitted with the same ``group_by`` (e.g. language).

    Draw k of the scratch posterior is paired with draw k of the finetune one (chains flattened; the two
    curves are independent experiments, so pairs are draws of the joint posterior); each draw's D* is its
    crossing inside (or nearest) the token range where both of the group's curves were observed
    (:func:`crossover_search`). Returns one row per group: ``median``, ``ci_low``, ``ci_high``
    (equal-tailed ``level``; censored draws as in :func:`fit_crossovers`), ``no_crossing``,
    ``finetune_first`` (finetuning better below D*) and ``second_crossing`` (more than one crossing in
    [lo, hi]) as shares of draws, ``observed_min`` and ``observed_max``, ``verdict``, ``flags`` (:data:`FLAGS`
    of the median: ``second_crossing`` when half the draws or more cross twice) and the draws (``draws``).
    """
    for post, law in ((scratch, SCRATCH_CURVE), (finetune, FINETUNE_CURVE)):
        if tuple(post.public_names) != law.names:
            raise ValueError(f"expected a posterior of {law.name!r} ({', '.join(law.names)}), got law "
                             f"{post.law!r} ({', '.join(post.public_names)})")
    missing = [g for g in scratch.groups if g not in finetune.groups]
    if missing:
        raise ValueError(f"group(s) {missing} of the scratch posterior are not in the finetune posterior "
                         f"(groups {list(finetune.groups)}); fit both with the same group_by")
    flat = {id(p): p.public.reshape((-1,) + p.public.shape[2:]) for p in (scratch, finetune)}
    n = min(len(flat[id(scratch)]), len(flat[id(finetune)]))
    rows = []
    for g, group in enumerate(scratch.groups):
        f = finetune.groups.index(group)
        observed = _common_range(scratch.features["d"][scratch.run_group == g],
                                 finetune.features["d"][finetune.run_group == f])
        d, summary = _crossover_draws(flat[id(scratch)][:n, g], flat[id(finetune)][:n, f], lo, hi, level, observed)
        median = summary["median"] if 0 < summary["median"] < np.inf else np.nan
        rows.append({scratch.group_by: group, **{k: v for k, v in summary.items() if k != "converged"},
                     "observed_min": observed[0] if observed else np.nan,
                     "observed_max": observed[1] if observed else np.nan,
                     "verdict": _verdict(median, summary["finetune_first"] >= 0.5, lo, hi),
                     "flags": _flags(median, summary["second_crossing"] >= 0.5, observed,
                                     (summary["ci_low"], summary["ci_high"])),
                     "draws": d})
    return pd.DataFrame(rows)


def _verdict(d_star: float, finetune_below: bool, lo: float, hi: float, second: float = np.nan) -> str:
    if np.isfinite(d_star):
        first, other = ("finetune", "pretrain") if finetune_below else ("pretrain", "finetune")
        if np.isfinite(second):
            return f"{first} below {d_star:.3g} tokens, {other} from there to {second:.3g}, {first} again above"
        return f"{first} below {d_star:.3g} tokens, {other} above"
    return f"finetune throughout [{lo:.0e}, {hi:.0e}] tokens" if finetune_below else \
        f"pretrain throughout [{lo:.0e}, {hi:.0e}] tokens"


def crossover_curves(frame: pd.DataFrame, language: str, params: float | None = None) -> pd.DataFrame:
    """The pretrain and finetune loss curves of ``language`` at one model size (``params``; default the
    smallest), as :func:`fit_crossovers` takes them; a ``ValueError`` naming what is missing."""
    if "regime" not in frame.columns or "language" not in frame.columns:
        raise ValueError("crossover: the runs need 'language' and 'regime' columns (pretrain/finetune curves)")
    curves = frame[(frame["language"].astype(str) == language) & frame["regime"].isin(["pretrain", "finetune"])]
    if "group" in curves.columns:
        curves = curves[curves["group"].isin(["scratch", "finetune"])]
    if curves.empty:
        raise ValueError(f"crossover: no pretrain/finetune curves for language {language!r}")
    if "params" in curves.columns:
        sizes = sorted(curves["params"].unique())
        pick = sizes[0] if params is None else params
        if pick not in sizes:
            raise ValueError(f"--params {params:g}: {language} has curves at {', '.join(f'{v:.4g}' for v in sizes)}")
        curves = curves[curves["params"] == pick]
    return curves


def fit_crossovers(curves: pd.DataFrame, bootstrap: int = 200, seed: int = 0, level: float = 0.95,
                   lo: float = 1e6, hi: float = 1e15, progress: bool = False) -> pd.DataFrame:
    """Fit every language's (and model size's) scratch and finetune curves; return its crossover D* with an interval.

    All ``pretrain`` curves are fitted in one batched :func:`atlas_jax.fit` call of :data:`SCRATCH_CURVE`
    and all ``finetune`` curves in one call of :data:`FINETUNE_CURVE`, one group per language and model
    size, with ``bootstrap`` resamples of each curve's checkpoints (seeds ``seed`` and ``seed + 1``: the
    two curves are independent experiments). D* is the crossing of the fitted curves inside (or nearest)
    the token range where both curves have checkpoints (:func:`crossover_search`; the first in [lo, hi]
    when the two ranges do not overlap). Draw b of the scratch fit is paired with draw b of the finetune
    fit and D*_b found by the same rule; a draw with no crossing in [lo, hi] counts as D* = +inf when
    finetuning wins throughout and D* = 0 when pretraining does (so it widens the interval instead of
    vanishing); refits that did not converge are left out. The interval is the equal-tailed ``level``
    percentile interval (inverted-CDF, so censored draws need no interpolation).

    Args:
        curves: tidy checkpoints with columns ``language``, ``regime`` (``pretrain`` or ``finetune``),
            ``tokens`` (D of the curve), ``loss``, and optionally ``params`` (model size N; each size of a
            language is its own pair of curves).
        progress: show progress bars (finished fits) on stderr.

    Returns:
        One row per language and size: ``language``, [``params``], ``crossover_tokens`` (point estimate;
        NaN without a crossing, flagged), ``ci_low``, ``ci_high``, [``crossover_compute`` = 6 N D*],
        ``second_crossing_tokens`` (the fitted curves' next crossing above D* in [lo, hi], NaN if none),
        ``n_crossings`` (crossings of the fitted curves in [lo, hi]), ``observed_min`` and ``observed_max``
        (token range of both curves; NaN if they do not overlap), ``no_crossing`` (share of draws without
        a crossing in [lo, hi]), ``refits_converged`` (share of paired bootstrap refits that converged),
        ``verdict`` (e.g. "finetune below 1.5e+11 tokens, pretrain above"), ``flags`` (a tuple of
        :data:`FLAGS` names, empty when nothing is amiss), the fitted ``E/B/beta_pretrain`` and
        ``E/B/beta/D0_finetune``, and ``draws``: the D* draws as an array (censored as above, NaN for
        failed refits), ready for :func:`fit_crossover_compute`. Intervals, ``no_crossing`` and
        ``refits_converged`` are NaN and ``draws`` None when ``bootstrap=0`` (flag ``no_interval``).

    Raises:
        ValueError: missing columns, an unknown regime, or a language (and size) lacking one of its two curves.
    """
    missing = [c for c in ("language", "regime", "tokens", "loss") if c not in curves.columns]
    if missing:
        raise ValueError(f"missing column(s) {missing}; available columns: {list(curves.columns)}")
    frame = curves.assign(language=curves["language"].astype(str))
    unknown = sorted(set(frame["regime"]) - {"pretrain", "finetune"}, key=str)
    if unknown:
        raise ValueError(f"column 'regime': unknown value(s) {unknown}; expected 'pretrain' or 'finetune'")
    sized = "params" in frame.columns
    frame["_pair"] = frame["language"] + (" at N = " + frame["params"].map("{:.6g}".format) if sized else "")
    pairs = list(dict.fromkeys(frame["_pair"]))
    for pair in pairs:
        lacking = {"pretrain", "finetune"} - set(frame.loc[frame["_pair"] == pair, "regime"])
        if lacking:
            raise ValueError(f"language {pair!r} has no {lacking.pop()!r} curve; each language (and size) needs both")

    cols = ["_pair", "tokens", "loss"]
    fits = {regime: fit(law, frame.loc[frame["regime"] == regime, cols], group_by="_pair",
                        bootstrap=bootstrap, seed=seed + i, level=level, progress=progress)
            for i, (regime, law) in enumerate((("pretrain", SCRATCH_CURVE), ("finetune", FINETUNE_CURVE)))}

    def draws(regime, g):
        res = fits[regime]
        ok = Status.usable(res.sample_status[g])
        return np.where(ok[:, None], res.samples[g], np.nan)

    ok_status = {str(Status.CONVERGED), str(Status.AT_BOUND)}
    rows = []
    for pair in pairs:
        pair_rows = frame.loc[frame["_pair"] == pair]
        first = pair_rows.iloc[0]
        observed = _common_range(*(pair_rows.loc[pair_rows["regime"] == r, "tokens"]
                                   for r in ("pretrain", "finetune")))
        s, f = (fits[r].groups.index(pair) for r in ("pretrain", "finetune"))
        point_s, point_f = fits["pretrain"].estimate[s], fits["finetune"].estimate[f]
        found = crossover_search(point_s, point_f, lo, hi, observed)
        d_star, second = float(found.tokens), float(found.second_tokens)
        row = {"language": first["language"]}
        if sized:
            row["params"] = float(first["params"])
        row["crossover_tokens"] = d_star
        if bootstrap:
            d, summary = _crossover_draws(draws("pretrain", s), draws("finetune", f), lo, hi, level, observed)
            row.update({k: summary[k] for k in ("ci_low", "ci_high")})
        else:
            row["ci_low"] = row["ci_high"] = np.nan
            d, summary = None, {"no_crossing": np.nan, "converged": np.nan}
        if sized:
            row["crossover_compute"] = 6.0 * row["params"] * d_star
        fit_ok = fits["pretrain"].status[s] in ok_status and fits["finetune"].status[f] in ok_status
        row.update({"second_crossing_tokens": second, "n_crossings": int(found.n_crossings),
                    "observed_min": observed[0] if observed else np.nan,
                    "observed_max": observed[1] if observed else np.nan,
                    "no_crossing": summary["no_crossing"], "refits_converged": summary["converged"],
                    "verdict": _verdict(d_star, bool(found.finetune_below), lo, hi, second),
                    "flags": _flags(d_star, found.n_crossings > 1, observed, (row["ci_low"], row["ci_high"]),
                                    summary["converged"] if bootstrap else None, fit_ok)})
        row.update({f"{n}_pretrain": float(v) for n, v in zip(_SCRATCH_NAMES, point_s)})
        row.update({f"{n}_finetune": float(v) for n, v in zip(_FINETUNE_NAMES, point_f)})
        row["draws"] = d
        rows.append(row)
    return pd.DataFrame(rows)


def fit_crossover_compute(n_params, crossover_tokens, bootstrap: int = 1000, seed: int = 0,
                          level: float = 0.95) -> dict:
    """Fit the crossover compute law C* = k N^gamma, with C* = 6 N D*, by least squares in log space.

    ``log C* = log k + gamma log N`` is an ordinary linear regression over the model sizes. The interval
    comes from a pairs bootstrap: each resample draws the M (N, D*) pairs with replacement; when
    ``crossover_tokens`` holds draws ([M, draws], or M draw arrays such as the ``draws`` column of
    :func:`fit_crossovers`), each drawn pair also takes a random one of its size's D* draws, so the
    interval carries the crossover's own uncertainty; the point estimate then uses each size's median
    draw. Non-finite or non-positive D* (censored draws, failed refits) are left out of the regression
    they fall in.

    Returns:
        ``{"k", "gamma", "k_ci", "gamma_ci", "level", "n_sizes", "k_draws", "gamma_draws"}``; intervals are
        equal-tailed percentile intervals over the resamples (``k_ci`` from those of log k), whose values
        are ``k_draws`` and ``gamma_draws`` (NaN where a resample drew fewer than two sizes).
    """
    n = np.asarray(n_params, float)
    d = np.asarray([np.asarray(v, float) for v in crossover_tokens])
    if n.ndim != 1 or d.ndim not in (1, 2) or d.shape[0] != n.shape[0]:
        raise ValueError(f"n_params must be 1-D and crossover_tokens 1-D or 2-D with the same first axis; "
                         f"got shapes {n.shape} and {d.shape}")
    if np.any(~(n > 0)):
        raise ValueError("n_params must be positive numbers")
    with np.errstate(divide="ignore", invalid="ignore"):
        log_c = np.log(6.0 * n[:, None] * d.reshape(len(n), -1))
        point = np.log(6.0 * n * (np.nanmedian(d, axis=1) if d.ndim == 2 else d))
    log_n = np.log(n)
    use = np.isfinite(point)
    if np.unique(log_n[use]).size < 2:
        raise ValueError("need finite positive crossovers at two or more distinct model sizes")
    log_k, gamma = _log_fit(log_n[None, use], point[None, use], np.ones((1, use.sum())))

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(n), size=(bootstrap, len(n)))
    y = log_c[idx, rng.integers(0, log_c.shape[1], size=idx.shape)]
    log_k_b, gamma_b = _log_fit(log_n[idx], y, np.isfinite(y).astype(float))
    (g_lo, k_lo), (g_hi, k_hi) = percentile_interval(np.stack([gamma_b, log_k_b], -1), level, axis=0)
    return {"k": float(np.exp(log_k[0])), "gamma": float(gamma[0]),
            "k_ci": (float(np.exp(k_lo)), float(np.exp(k_hi))), "gamma_ci": (float(g_lo), float(g_hi)),
            "level": level, "n_sizes": int(use.sum()), "k_draws": np.exp(log_k_b), "gamma_draws": gamma_b}


def crossover_at(compute_fit: dict, n_params: float) -> tuple[float, float, float]:
    """Crossover tokens D*(N) = k N^gamma / (6 N) at ``n_params`` from :func:`fit_crossover_compute`'s result:
    (estimate, low, high), the interval over its resamples at its level."""
    point = compute_fit["k"] * n_params ** (compute_fit["gamma"] - 1.0) / 6.0
    draws = compute_fit["k_draws"] * n_params ** (compute_fit["gamma_draws"] - 1.0) / 6.0
    low, high = percentile_interval(draws, compute_fit["level"])
    return float(point), float(low), float(high)


def _log_fit(x, y, w):
    """Row-wise weighted least squares y = a + b x; NaN where the x's of a row do not vary."""
    y = np.where(w > 0, y, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        total = w.sum(-1, keepdims=True)
        xm, ym = (w * x).sum(-1, keepdims=True) / total, (w * y).sum(-1, keepdims=True) / total
        sxx = (w * (x - xm) ** 2).sum(-1)
        b = np.where(sxx > 1e-12 * total[:, 0], (w * (x - xm) * (y - ym)).sum(-1) / sxx, np.nan)
    return ym[:, 0] - b * xm[:, 0], b


def crossover_check_published(n_params: float = 2e9) -> pd.DataFrame:
    """Which printed crossover-compute fit agrees with the published 2B crossovers?

    Converts each printed C* = k N^gamma (:data:`PUBLISHED_COMPUTE_FITS`) at ``n_params`` to tokens
    D* = C*/(6N) and compares with the range of :data:`PUBLISHED_CROSSOVERS_2B` (144B-283B).
    ``1113708 N^1.65`` (2.1e11) and ``10283128 N^1.54`` (1.8e11) fall inside; ``10283128 N^1.65``
    (1.9e12) is ~7x above the range, ~9x the first: a misprinted k or gamma.

    Returns:
        One row per formula: ``formula``, ``k``, ``gamma``, ``compute``, ``tokens``, ``fold_outside``
        (factor beyond the nearest end of the published range, 1 inside) and ``inside`` (bool).
    """
    low, high = min(PUBLISHED_CROSSOVERS_2B.values()), max(PUBLISHED_CROSSOVERS_2B.values())
    rows = []
    for k, gamma in PUBLISHED_COMPUTE_FITS:
        compute = k * n_params**gamma
        tokens = compute / (6.0 * n_params)
        rows.append({"formula": f"C = {k:.0f} N^{gamma:g}", "k": k, "gamma": gamma, "compute": compute,
                     "tokens": tokens, "fold_outside": max(tokens / high, low / tokens, 1.0),
                     "inside": bool(low <= tokens <= high)})
    return pd.DataFrame(rows)
