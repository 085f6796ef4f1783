"""Cross-lingual transfer: the ATLAS transfer matrix, its statistics, and transfer scores from loss curves.

Reference: S. Longpre et al., "ATLAS: Adaptive Transfer Scaling Laws for Multilingual Pretraining,
Finetuning, and Decoding the Curse of Multilinguality", arXiv:2510.22037 (v2, 2026), section 3 and
Figure C.2.

The Bilingual Transfer Score of source s on target t is

    BTS(s->t) = -(sigma_bi(L_t(d_mono)) - 2 d_mono) / d_mono

where L_t(d) is the loss on t of the monolingual-t model after d tokens and sigma_bi(l) the total
tokens the 50/50 (s, t) bilingual model needs to reach loss l on t. 0 is neutral (the bilingual model
needs exactly twice the tokens, i.e. the s half is worthless), > 0 helps, < 0 interferes.

Link to the ATLAS transfer weight tau (no repetition, model size fixed): the monolingual model has
D_eff = d, the bilingual one D_eff = sigma/2 + tau sigma/2 = sigma (1 + tau)/2. Equal loss means equal
D_eff, so sigma_bi = 2 d / (1 + tau) and

    BTS = 2 tau / (1 + tau),        tau = BTS / (2 - BTS)        (tau > -1  <=>  BTS < 2),

independently of d, N and the other law parameters; :func:`transfer_weights` uses it to turn the
published matrix into initial values of the ATLAS tau's.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

from ..datasets import DATA_DIR
from ..engine.batch import fit
from ..engine.result import FitResult
from ..engine.solver import Status
from ..laws.curve import SCRATCH_CURVE, curve_loss, tokens_to_loss

__all__ = [
    "LANGUAGES",
    "SCRIPTS",
    "load_transfer_matrix",
    "matrix_statistics",
    "tau_from_bts",
    "bts_from_tau",
    "transfer_weights",
    "bts_interpolated",
    "bts_fitted",
    "transfer_matrix_from_curves",
]

MATRIX_PATH = DATA_DIR / "transfer" / "atlas_transfer_matrix_figC2_1dp.csv"

#: The 38 languages of the matrix, in the paper's order.
LANGUAGES: tuple[str, ...] = tuple(
    "en ru es fr de pt zh vi ja sw ko cy kk tr af no sv el bn ckb fa gu mr ps ur fil id ms ca it ro ar he hr uk "
    "te th yo".split()
)

#: Writing system of each language. Japanese (kana + kanji) is its own script, not Han: this is what
#: reproduces the published same/different-script means to 3 d.p. (-0.225 / -0.392; with ja as Han
#: they are -0.226 / -0.392). Sorani Kurdish (ckb) is written in Arabic script, Marathi in Devanagari.
SCRIPTS: dict[str, str] = {
    **dict.fromkeys("en es fr de pt vi sw cy tr af no sv fil id ms ca it ro hr yo".split(), "Latin"),
    **dict.fromkeys("ru kk uk".split(), "Cyrillic"),
    **dict.fromkeys("ar fa ps ur ckb".split(), "Arabic"),
    "zh": "Han", "ja": "Japanese", "ko": "Hangul", "el": "Greek", "he": "Hebrew", "mr": "Devanagari",
    "bn": "Bengali", "gu": "Gujarati", "te": "Telugu", "th": "Thai",
}

_CURVE_NAMES = ("E", "B", "beta")


@lru_cache(maxsize=1)
def _bundled_matrix() -> pd.DataFrame:
    frame = pd.read_csv(MATRIX_PATH, index_col=0).astype(float)
    frame.index.name, frame.columns.name = "target", "source"
    return frame


def load_transfer_matrix() -> pd.DataFrame:
    """The 38 x 38 BTS matrix of Figure C.2 (1 d.p.): rows = target t, columns = source s, NaN diagonal.

    Only the top-left 9 x 9 block (en ... ja) was measured; the other cells are the paper's
    random-forest estimates. See ``atlas_jax/datasets/transfer/*.PROVENANCE.md``.
    """
    return _bundled_matrix().copy()


def _check_matrix(matrix: pd.DataFrame) -> None:
    if list(matrix.index) != list(matrix.columns):
        raise ValueError("the transfer matrix must be square with the same languages, in the same order, "
                         "as rows (targets) and columns (sources)")


def matrix_statistics(matrix: pd.DataFrame | None = None, scripts: Mapping[str, str] = SCRIPTS,
                      strong: float = 0.3) -> dict:
    """Summary statistics of a transfer matrix (default: the bundled one) as in the paper's section 3.

    Returns a dict with
      ``same_script_mean`` / ``different_script_mean`` (and ``n_same_script`` / ``n_different_script``):
        mean BTS over off-diagonal cells (t, s) whose languages share / do not share a script;
      ``asymmetry_r`` (and ``n_pairs``): Pearson correlation of BTS(s->t) with BTS(t->s) over the
        unordered pairs {s, t} (the paper: r = -0.11, i.e. transfer is not symmetric);
      ``sources``: DataFrame indexed by source, sorted by ``mean`` (mean BTS as a source over all its
        targets, ties broken by ``n_nonnegative``, the number of targets it does not hurt, BTS >= 0)
        descending, with ``median``. On the bundled matrix en, fr, es are in the top 10 by mean (led by
        yo, ckb, ps, whose random-forest scores are uniformly mildly negative) and en, fr lead by
        ``n_nonnegative`` (23 and 19 of 37 targets): the paper's "most helpful sources";
      ``strong_pairs``: DataFrame ``target, source, bts, reverse_bts`` of the cells with BTS >= ``strong``,
        strongest first.
    """
    matrix = load_transfer_matrix() if matrix is None else matrix
    _check_matrix(matrix)
    langs = list(matrix.index)
    missing = [lang for lang in langs if lang not in scripts]
    if missing:
        raise ValueError(f"no script given for language(s) {missing}")
    values = matrix.to_numpy(float)
    script = np.array([scripts[lang] for lang in langs])
    off = ~np.eye(len(langs), dtype=bool)
    same = (script[:, None] == script[None, :]) & off
    different = script[:, None] != script[None, :]
    upper = np.triu_indices(len(langs), 1)
    forward, backward = values[upper], values.T[upper]
    ok = np.isfinite(forward) & np.isfinite(backward)

    sources = pd.DataFrame({"mean": matrix.mean(axis=0).round(12), "median": matrix.median(axis=0),
                            "n_nonnegative": (matrix >= 0).sum(axis=0)})
    sources = sources.sort_values(["mean", "n_nonnegative"], ascending=False, kind="stable")
    cells = matrix.stack().rename("bts").reset_index()
    cells["reverse_bts"] = [matrix.loc[s, t] for t, s in zip(cells["target"], cells["source"])]
    pairs = cells[cells["bts"] >= strong].sort_values("bts", ascending=False, kind="stable").reset_index(drop=True)
    return {
        "same_script_mean": float(np.nanmean(values[same])),
        "different_script_mean": float(np.nanmean(values[different])),
        "n_same_script": int(same.sum()),
        "n_different_script": int(different.sum()),
        "asymmetry_r": float(np.corrcoef(forward[ok], backward[ok])[0, 1]),
        "n_pairs": int(ok.sum()),
        "sources": sources,
        "strong_pairs": pairs,
    }


def tau_from_bts(bts):
    """ATLAS transfer weight tau = BTS / (2 - BTS) (equal tokens from s and t, no repetition); needs BTS < 2."""
    bts = np.asarray(bts, float)
    if np.any(bts >= 2):
        raise ValueError("BTS must be < 2 (BTS = 2 tau/(1 + tau) -> 2 as tau -> inf)")
    return bts / (2.0 - bts)


def bts_from_tau(tau):
    """Bilingual transfer score BTS = 2 tau / (1 + tau) implied by an ATLAS transfer weight tau > -1."""
    tau = np.asarray(tau, float)
    if np.any(tau <= -1):
        raise ValueError("tau must be > -1 (D_eff = sigma (1 + tau)/2 must stay positive)")
    return 2.0 * tau / (1.0 + tau)


def transfer_weights(target: str, sources: str | Sequence[str],
                     matrix: pd.DataFrame | None = None) -> np.ndarray:
    """tau_{s->t} = BTS / (2 - BTS) for each source s, from the matrix (default: the bundled one).

    These are initial values for the ATLAS law's transfer weights tau_i (ATLAS.md section 2), not
    estimates: the paper calls the plotted scores "normalized" without defining the normalisation, and
    most cells are random-forest predictions.
    """
    matrix = load_transfer_matrix() if matrix is None else matrix
    _check_matrix(matrix)
    sources = [sources] if isinstance(sources, str) else list(sources)
    known = list(matrix.index)
    for lang in [target, *sources]:
        if lang not in known:
            raise ValueError(f"unknown language {lang!r}; known languages: {', '.join(known)}")
    if target in sources:
        raise ValueError(f"the target {target!r} is not its own source (its weight in D_eff is 1)")
    return tau_from_bts(matrix.loc[target, sources].to_numpy(float))


def _curve(tokens, loss, what: str) -> tuple[np.ndarray, np.ndarray]:
    tokens, loss = np.asarray(tokens, float).ravel(), np.asarray(loss, float).ravel()
    if tokens.shape != loss.shape or tokens.size < 2:
        raise ValueError(f"{what} curve: tokens and loss need the same length >= 2, got {tokens.size} and {loss.size}")
    if not (np.all(np.isfinite(tokens)) and np.all(np.isfinite(loss)) and np.all(tokens > 0)):
        raise ValueError(f"{what} curve: tokens must be finite and > 0, losses finite")
    order = np.argsort(tokens)
    return tokens[order], loss[order]


def bts_interpolated(mono_tokens, mono_loss, bi_tokens, bi_loss, d_mono: float) -> float:
    """BTS(s->t) from measured curves by monotone interpolation in log-tokens.

    L_t(d_mono) is interpolated linearly in log d on the monolingual curve. sigma_bi(l) is the first
    point where the bilingual curve reaches l: its loss is reduced to the checkpoints that set a new
    minimum (strictly decreasing), and log sigma is interpolated linearly against that loss.
    ``bi_tokens`` are the bilingual run's total tokens (both languages).
    """
    mono_d, mono_l = _curve(mono_tokens, mono_loss, "monolingual")
    bi_d, bi_l = _curve(bi_tokens, bi_loss, "bilingual")
    if not mono_d[0] <= d_mono <= mono_d[-1]:
        raise ValueError(f"d_mono = {d_mono:g} is outside the monolingual curve's tokens "
                         f"[{mono_d[0]:g}, {mono_d[-1]:g}]")
    target = float(np.interp(np.log(d_mono), np.log(mono_d), mono_l))
    record = bi_l < np.minimum.accumulate(np.concatenate([[np.inf], bi_l[:-1]]))
    bi_d, bi_l = bi_d[record], bi_l[record]
    if target < bi_l[-1]:
        raise ValueError(f"bilingual curve does not reach loss {target:.6g} = L_t(d_mono) (its lowest loss is "
                         f"{bi_l[-1]:.6g} at {bi_d[-1]:g} tokens); extend the bilingual run")
    if target > bi_l[0]:
        raise ValueError(f"bilingual curve starts below loss {target:.6g} = L_t(d_mono) (first loss "
                         f"{bi_l[0]:.6g} at {bi_d[0]:g} tokens); add earlier checkpoints")
    sigma = float(np.exp(np.interp(target, bi_l[::-1], np.log(bi_d[::-1]))))
    return -(sigma - 2.0 * d_mono) / d_mono


def _curve_params(params: FitResult | Mapping[str, object]) -> dict[str, np.ndarray]:
    if isinstance(params, FitResult):
        params = params.params()
    missing = [k for k in _CURVE_NAMES if k not in params]
    if missing:
        raise ValueError(f"curve parameters {missing} missing (need E, B, beta of a {SCRATCH_CURVE.name} fit)")
    return {k: np.asarray(params[k], float) for k in _CURVE_NAMES}


def bts_fitted(mono: FitResult | Mapping[str, object], bi: FitResult | Mapping[str, object],
               d_mono: float) -> np.ndarray:
    """BTS(s->t) in closed form from SCRATCH_CURVE fits L(D) = E + B / D^beta of both curves.

    L_t(d_mono) = E_m + B_m / d_mono^beta_m and sigma_bi(l) = (B_b / (l - E_b))^(1/beta_b)
    (infinite, so BTS = -inf, when l <= E_b). ``mono``/``bi`` are single-group :class:`FitResult`s
    (their estimates) or mappings ``{E, B, beta}`` of floats or arrays, e.g. bootstrap draws, which
    broadcast against each other.
    """
    m, b = _curve_params(mono), _curve_params(bi)
    sigma = tokens_to_loss(curve_loss(d_mono, **m), **b)
    return -(sigma - 2.0 * d_mono) / d_mono


def _is_mono(target: pd.Series, source: pd.Series) -> pd.Series:
    return source.isna() | (source.astype(str).str.strip() == "") | (source.astype(str) == target.astype(str))


def transfer_matrix_from_curves(curves: pd.DataFrame, d_mono: float, bootstrap: int = 200, seed: int = 0,
                                level: float = 0.95, progress: bool = False) -> pd.DataFrame:
    """BTS(s->t) with bootstrap intervals for every bilingual curve of a tidy table of loss curves.

    ``curves`` has columns ``target, source, tokens, loss``: one row per checkpoint; ``source`` equal to
    ``target`` (or empty/NaN) marks the monolingual curve of ``target``; ``tokens`` are the run's total
    tokens so far. Every curve is fitted with SCRATCH_CURVE in one batched call (groups ``"t|s"``) with
    ``bootstrap`` resamples of its checkpoints; BTS is :func:`bts_fitted` on the estimates, and the
    ``level`` percentile interval pairs the i-th draw of the monolingual and bilingual fits (draws whose
    refit did not converge are left out). Returns a long DataFrame ``target, source, bts, ci_low,
    ci_high`` (NaN intervals when ``bootstrap`` is 0); ``DataFrame.pivot`` makes it a matrix. ``progress``
    shows the fits' progress bars on stderr.
    """
    needed = ["target", "source", "tokens", "loss"]
    absent = [c for c in needed if c not in curves.columns]
    if absent:
        raise ValueError(f"missing column(s) {absent}; curves need {needed}, got {list(curves.columns)}")
    frame = curves[needed].copy()
    frame["target"] = frame["target"].astype(str)
    mono = _is_mono(frame["target"], frame["source"])
    frame["source"] = np.where(mono, frame["target"], frame["source"].astype(str))
    frame["curve"] = frame["target"] + "|" + frame["source"]
    pairs = frame.loc[~mono, ["target", "source"]].drop_duplicates()
    if pairs.empty:
        raise ValueError("no bilingual curve (a row whose source differs from its target)")
    orphans = sorted(set(pairs["target"]) - set(frame.loc[mono, "target"]))
    if orphans:
        raise ValueError(f"target(s) {orphans} have bilingual curves but no monolingual curve "
                         "(rows with source equal to the target, or empty)")

    result = fit(SCRATCH_CURVE, frame[["curve", "tokens", "loss"]], group_by="curve", bootstrap=bootstrap, seed=seed,
                 level=level, progress=progress)
    index = {group: g for g, group in enumerate(result.groups)}
    tail = 50.0 * (1.0 - level)
    rows = []
    for target, source in pairs.itertuples(index=False):
        g_m, g_b = index[f"{target}|{target}"], index[f"{target}|{source}"]
        estimate = float(bts_fitted(result.params(f"{target}|{target}"), result.params(f"{target}|{source}"), d_mono))
        low = high = np.nan
        if bootstrap:
            draws = [dict(zip(result.names[g], result.samples[g].T)) for g in (g_m, g_b)]
            ok = Status.usable(result.sample_status[[g_m, g_b]]).all(axis=0)
            bts = np.where(ok, bts_fitted(*draws, d_mono), np.nan)
            # empirical quantiles: a draw may be -inf (bilingual fit never reaches the loss)
            low, high = (float(q) for q in np.nanpercentile(bts, [tail, 100.0 - tail], method="inverted_cdf"))
        _warn_extrapolation(frame, target, source, d_mono, estimate)
        rows.append({"target": target, "source": source, "bts": estimate, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


def _warn_extrapolation(frame: pd.DataFrame, target: str, source: str, d_mono: float, bts: float) -> None:
    mono_tokens = frame.loc[frame["curve"] == f"{target}|{target}", "tokens"]
    bi_tokens = frame.loc[frame["curve"] == f"{target}|{source}", "tokens"]
    sigma = (2.0 - bts) * d_mono
    if d_mono > mono_tokens.max() or sigma > bi_tokens.max():
        warnings.warn(f"BTS({source}->{target}) extrapolates a fitted curve: d_mono = {d_mono:g} (monolingual run "
                      f"up to {mono_tokens.max():g} tokens), sigma_bi = {sigma:g} (bilingual run up to "
                      f"{bi_tokens.max():g})", UserWarning, stacklevel=3)
