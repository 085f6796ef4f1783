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
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..engine import fit
from ..engine.bootstrap import percentile_interval
from ..engine.solver import AT_BOUND, CONVERGED
from ..laws.curve import FINETUNE_CURVE, SCRATCH_CURVE, curve_loss

__all__ = [
    "PUBLISHED_CROSSOVERS_2B",
    "PUBLISHED_COMPUTE_FITS",
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

_BISECTION_STEPS = 64  # 64 halvings take a log-D bracket of width ln(1e15/1e6) = 20.7 below float64 resolution
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


def crossover_tokens(scratch_params, finetune_params, lo: float = 1e6, hi: float = 1e15) -> np.ndarray:
    """Tokens D* in [lo, hi] where the scratch and finetune curves meet.

    Solves ``E_s + B_s/D^beta_s = E_f + B_f/(D + D0)^beta_f`` by bisection in log D on the difference
    g(D) = L_s(D) - L_f(D) of the two curves (:func:`~atlas_jax.laws.curve.curve_loss`), a fixed
    number of steps for every element at once. Usually g > 0 below D* (finetune better) and g < 0 above
    (pretrain better); a crossing in the other direction is returned all the same, and with several
    crossings in [lo, hi] bisection returns one of them.

    Args:
        scratch_params: ``{"E", "B", "beta"}`` (scalars or arrays, e.g. bootstrap draws) or an array
            ``[..., 3]`` in that order (``FitResult.samples[g]`` of :data:`SCRATCH_CURVE`).
        finetune_params: ``{"E", "B", "beta", "D0"}`` or an array ``[..., 4]``; broadcast against
            ``scratch_params`` (paired draws).
        lo, hi: token bracket.

    Returns:
        D* with the broadcast shape of the parameters; NaN where g(lo) and g(hi) have the same sign (no
        crossing in the bracket: g > 0 means finetuning wins throughout, D* > hi; g < 0 means pretraining
        wins throughout, D* < lo) or a parameter is NaN.
    """
    scratch, finetune = _unpack(scratch_params, _SCRATCH_NAMES), _unpack(finetune_params, _FINETUNE_NAMES)
    shape = np.broadcast_shapes(*(p.shape for p in scratch + finetune))
    a, b = np.full(shape, np.log(lo)), np.full(shape, np.log(hi))
    with np.errstate(all="ignore"):
        g_a = _gap(lo, scratch, finetune)
        crosses = np.sign(g_a) * np.sign(_gap(hi, scratch, finetune)) < 0
        for _ in range(_BISECTION_STEPS):
            mid = 0.5 * (a + b)
            g_mid = _gap(np.exp(mid), scratch, finetune)
            left = np.sign(g_mid) == np.sign(g_a)  # the root lies right of mid
            a, g_a, b = np.where(left, mid, a), np.where(left, g_mid, g_a), np.where(left, b, mid)
    return np.where(crosses, np.exp(0.5 * (a + b)), np.nan)


def _crossover_draws(scratch, finetune, lo, hi, level) -> tuple[np.ndarray, dict]:
    """D* of paired parameter draws [n, 3] and [n, 4] (NaN rows: left out), a draw without a crossing in
    [lo, hi] censored to +inf (finetuning wins throughout) or 0 (pretraining does); and its summary: median,
    equal-tailed ``level`` interval (inverted-CDF, so censored draws need no interpolation), the share of
    draws without a crossing and of draws where finetuning is better at ``lo``."""
    d = crossover_tokens(scratch, finetune, lo, hi)
    valid = np.isfinite(scratch).all(-1) & np.isfinite(finetune).all(-1)
    censored = valid & np.isnan(d)
    finetune_first = _gap(lo, _unpack(scratch, _SCRATCH_NAMES), _unpack(finetune, _FINETUNE_NAMES)) > 0
    d = np.where(censored, np.where(finetune_first, np.inf, 0.0), d)
    tail = round(50.0 * (1.0 - level), 12)  # 2.5, not 2.5000000000000022: ranks are exact here
    low, median, high = np.nanpercentile(d, [tail, 50.0, 100.0 - tail], method="inverted_cdf")
    n = max(valid.sum(), 1)
    return d, {"median": median, "ci_low": low, "ci_high": high, "no_crossing": censored.sum() / n,
               "finetune_first": (valid & finetune_first).sum() / n}


def posterior_crossovers(scratch, finetune, lo: float = 1e6, hi: float = 1e15, level: float = 0.95) -> pd.DataFrame:
    """Crossover tokens D* per posterior draw, for every group of two posteriors (:func:`atlas_jax.posterior`)
    of :data:`SCRATCH_CURVE` and :data:`FINETUNE_CURVE` fitted with the same ``group_by`` (e.g. language).

    Draw k of the scratch posterior is paired with draw k of the finetune one (chains flattened; the two
    curves are independent experiments, so pairs are draws of the joint posterior). Returns one row per
    group: ``median``, ``ci_low``, ``ci_high`` (equal-tailed ``level``; censored draws as in
    :func:`fit_crossovers`), ``no_crossing`` and ``finetune_first`` (shares of draws), ``verdict`` and the
    draws themselves (``draws``).
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
        d, summary = _crossover_draws(flat[id(scratch)][:n, g], flat[id(finetune)][:n, finetune.groups.index(group)],
                                      lo, hi, level)
        rows.append({scratch.group_by: group, **summary,
                     "verdict": _verdict(summary["median"] if 0 < summary["median"] < np.inf else np.nan,
                                         summary["finetune_first"] >= 0.5, lo, hi),
                     "draws": d})
    return pd.DataFrame(rows)


def _verdict(d_star: float, finetune_first: bool, lo: float, hi: float) -> str:
    if np.isfinite(d_star):
        first, second = ("finetune", "pretrain") if finetune_first else ("pretrain", "finetune")
        return f"{first} below {d_star:.3g} tokens, {second} above"
    return f"finetune throughout [{lo:.0e}, {hi:.0e}] tokens" if finetune_first else \
        f"pretrain throughout [{lo:.0e}, {hi:.0e}] tokens"


def fit_crossovers(curves: pd.DataFrame, bootstrap: int = 200, seed: int = 0, level: float = 0.95,
                   lo: float = 1e6, hi: float = 1e15, progress: bool = False) -> pd.DataFrame:
    """Fit every language's (and model size's) scratch and finetune curves; return its crossover D* with an interval.

    All ``pretrain`` curves are fitted in one batched :func:`atlas_jax.fit` call of :data:`SCRATCH_CURVE`
    and all ``finetune`` curves in one call of :data:`FINETUNE_CURVE`, one group per language and model
    size, with ``bootstrap`` resamples of each curve's checkpoints (seeds ``seed`` and ``seed + 1``: the
    two curves are independent experiments). Draw b of the scratch fit is paired with draw b of the
    finetune fit and D*_b = :func:`crossover_tokens`; a draw with no crossing in [lo, hi] counts as
    D* = +inf when finetuning wins throughout and D* = 0 when pretraining does (so it widens the interval
    instead of vanishing); refits that did not converge are left out. The interval is the equal-tailed
    ``level`` percentile interval (inverted-CDF, so censored draws need no interpolation).

    Args:
        curves: tidy checkpoints with columns ``language``, ``regime`` (``pretrain`` or ``finetune``),
            ``tokens`` (D of the curve), ``loss``, and optionally ``params`` (model size N; each size of a
            language is its own pair of curves).

    Returns:
        One row per language and size: ``language``, [``params``], ``crossover_tokens`` (point estimate),
        ``ci_low``, ``ci_high``, [``crossover_compute`` = 6 N D*], ``no_crossing`` (share of draws
        without a crossing in [lo, hi]), ``verdict`` (e.g. "finetune below 1.5e+11 tokens, pretrain
        above"), the fitted ``E/B/beta_pretrain`` and ``E/B/beta/D0_finetune``, and ``draws``: the D* draws
        as an array (censored as above, NaN for failed refits), ready for :func:`fit_crossover_compute`.
        Intervals and ``no_crossing`` are NaN and ``draws`` None when ``bootstrap=0``.

        progress: show progress bars (finished fits) on stderr.

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
        ok = np.isin(res.sample_status[g], (CONVERGED, AT_BOUND))
        return np.where(ok[:, None], res.samples[g], np.nan)

    rows = []
    for pair in pairs:
        first = frame.loc[frame["_pair"] == pair].iloc[0]
        s, f = (fits[r].groups.index(pair) for r in ("pretrain", "finetune"))
        point_s, point_f = fits["pretrain"].estimate[s], fits["finetune"].estimate[f]
        d_star = float(crossover_tokens(point_s, point_f, lo, hi))
        finetune_first = _gap(lo, _unpack(point_s, _SCRATCH_NAMES), _unpack(point_f, _FINETUNE_NAMES)) > 0
        row = {"language": first["language"]}
        if sized:
            row["params"] = float(first["params"])
        row["crossover_tokens"] = d_star
        if bootstrap:
            d, summary = _crossover_draws(draws("pretrain", s), draws("finetune", f), lo, hi, level)
            row.update({k: summary[k] for k in ("ci_low", "ci_high", "no_crossing")})
        else:
            row["ci_low"] = row["ci_high"] = row["no_crossing"] = np.nan
            d = None
        if sized:
            row["crossover_compute"] = 6.0 * row["params"] * d_star
        row["verdict"] = _verdict(d_star, bool(finetune_first), lo, hi)
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
