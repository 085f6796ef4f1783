"""Planning a model for one target language with ATLAS (or a monolingual law), every answer with a bootstrap
interval, or a refusal.

Given a run table, a target language t, optional helper languages trained alongside it (uniform shares)
and one budget (FLOPs C = 6 N D, tokens D, or parameters N), :func:`plan`

1. fits the ATLAS law (Longpre et al. 2026, arXiv:2510.22037) to t's pretraining runs with B bootstrap
   resamples (the largest variant t's mixtures support, :func:`~atlas_jax.data.select.atlas_variant`), or,
   for a table without languages, any law with ``E A B alpha beta`` (default Chinchilla), or takes that fit
   from a saved one (``fitted``, :class:`~atlas_jax.engine.saved.SavedFit`) after checking that it is the fit
   this step would make (same law, same rows, draws where intervals are asked for); it refuses
   (``ValueError``) when that fit carries an identification flag on E, A, B, alpha, beta or the whole fit
   (:mod:`atlas_jax.engine.identify`): a plan is never built on a fit the data do not determine;
2. evaluates every draw on a grid of model sizes for each compute level and keeps the loss-minimising
   size: the compute-optimal frontier N*(C), D*(C), L*(C) of that mixture, repetition included (S(D; U)
   with each language's unique tokens in the table);
3. reads the frontier at the budget (for a token or parameter budget, at the compute where D*(C) = D or
   N*(C) = N);
4. ranks t's transfer languages by fitted tau when tau is identified (its interval excludes 0 and is at
   most 1 wide), lists the others as "not identified", and gives the transfer-matrix prior
   tau = BTS / (2 - BTS) (no interval) for requested languages that are not among them;
5. where the table has t's finetune and scratch loss curves, fits their crossover D* and says whether
   to finetune the checkpoint (planned target tokens below D*'s interval) or pretrain (above it). With
   curves at two or more model sizes, D* is read at the planned N from the fitted crossover compute
   C* = 6 N D* = k N^gamma (interval from its resamples); with one size, D* of that size is used. Without
   finetune curves the verdict is "cannot tell".

``Plan.flags`` names what makes a number less than an answer: ``N_at_search_bound`` /
``D_at_search_bound`` (the optimum lies at an end of the size grid), ``crossover_extrapolated`` (D* read at
an N outside the sizes whose curves were fitted), ``crossover_unbounded`` (D*'s interval is open),
``lambda_not_identified`` (no run repeats data, yet the plan does), ``no_interval`` (no bootstrap).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ..data.runs import RunTable, mixture_languages, validate_runs
from ..data.select import atlas_variant
from ..engine import fit
from ..engine.bootstrap import percentile_interval
from ..engine.evaluate import log_losses
from ..engine.identify import describe
from ..engine.result import FitResult
from ..engine.saved import SavedFit
from ..engine.solver import Status
from ..laws import atlas_law_name, get_law
from .crossover import crossover_at, fit_crossover_compute, fit_crossovers
from .transfer import LANGUAGES, tau_from_bts, load_transfer_matrix

__all__ = ["Plan", "plan"]

_N_GRID = np.geomspace(1e6, 1e13, 561)  # 80 points per decade
_C_GRID = np.geomspace(1e15, 1e27, 241)


@dataclass(frozen=True)
class Plan:
    """A plan; every ``(estimate, low, high)`` triple is a point estimate with its percentile interval."""

    target: str
    languages: tuple[str, ...]
    budget: dict
    params: tuple[float, float, float]
    tokens: tuple[float, float, float]
    target_tokens: tuple[float, float, float]
    flops: tuple[float, float, float]
    loss: tuple[float, float, float]
    helpers: pd.DataFrame
    verdict: str
    crossover: tuple[float, float, float] | None
    law: str
    level: float
    n_draws: int
    notes: tuple[str, ...] = field(default_factory=tuple)
    flags: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        """Plain data; an absent interval end is ``None``, never NaN."""
        out = {k: v for k, v in self.__dict__.items() if k != "helpers"}
        out["helpers"] = self.helpers.astype(object).where(self.helpers.notna(), None).to_dict(orient="records")
        clean = lambda v: None if isinstance(v, float) and not np.isfinite(v) else v
        out = {k: tuple(clean(float(x)) for x in v) if isinstance(v, tuple) and v and isinstance(v[0], float) else v
               for k, v in out.items()}
        return json.loads(json.dumps(out, default=float))

    def save(self, out) -> None:
        """Write ``out/plan.json`` (:meth:`to_dict`) and ``out/plan.txt`` (the printed plan), atomically."""
        from ..io import atomic_output_dir, write_json

        with atomic_output_dir(out) as tmp:
            write_json(tmp / "plan.json", self.to_dict())
            (tmp / "plan.txt").write_text(str(self) + "\n")

    def __str__(self) -> str:
        pct = f"{self.level:.0%}"

        def fmt(t):
            bounds = f"[{t[1]:.4g}, {t[2]:.4g}]" if np.isfinite(t[1]) and np.isfinite(t[2]) else \
                f"[{t[1]:.4g}, unbounded]" if np.isfinite(t[1]) else "(no interval)"
            return f"{t[0]:.4g}  {bounds}"

        mix = ", ".join(((self.target,) if self.target else ()) + self.languages) or "monolingual"
        lines = [f"plan{' for ' + self.target if self.target else ''} (mixture: {mix}; law {self.law}; "
                 f"{self.n_draws} bootstrap draws, {pct} intervals)"]
        if self.flags:
            lines.append(f"  FLAGGED           {', '.join(self.flags)} (see the notes)")
        lines += [f"  budget            {', '.join(f'{k} = {v:.4g}' for k, v in self.budget.items())}",
                  f"  model size N      {fmt(self.params)}",
                  f"  tokens D          {fmt(self.tokens)}",
                  *([f"  target tokens D_t {fmt(self.target_tokens)}"] if self.target else []),
                  f"  compute C = 6ND   {fmt(self.flops)}",
                  f"  expected loss     {fmt(self.loss)}",
                  f"  verdict           {self.verdict}"]
        if self.crossover is not None:
            lines.append(f"  crossover D*      {fmt(self.crossover)}")
        if len(self.helpers):
            lines.append("  helper languages (ranked by tau where identified):")
        for row in self.helpers.itertuples(index=False):
            ci = f"[{row.ci_low:+.3f}, {row.ci_high:+.3f}]" if np.isfinite(row.ci_low) else "no interval"
            lines.append(f"    {row.language:<6} tau {row.tau:+.3f}  {ci}  ({row.source}; {row.status})")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _internal(law, public: np.ndarray) -> np.ndarray:
    return np.stack([p.to_internal(public[..., j]) for j, p in enumerate(law.params)], axis=-1)


def _frontier(law, theta: np.ndarray, frame_of, helpers) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """N*(C), D*(C), L*(C) per draw on the compute grid: arrays [draws, len(_C_GRID)]."""
    n = np.repeat(_N_GRID[None, :], len(_C_GRID), axis=0)
    d = _C_GRID[:, None] / (6.0 * n)
    grid = frame_of(n.ravel(), d.ravel())
    log_l = log_losses(law, theta, law.features(grid) if helpers is None else law.features(grid, helpers=helpers))
    log_l = np.asarray(log_l).reshape(len(theta), len(_C_GRID), len(_N_GRID))
    best = np.argmin(log_l, axis=2)
    n_opt = _N_GRID[best]
    return n_opt, _C_GRID[None, :] / (6.0 * n_opt), np.exp(np.take_along_axis(log_l, best[..., None], 2)[..., 0])


def _at(x_grid: np.ndarray, value: float, y: np.ndarray) -> np.ndarray:
    """Per draw, y where the (increasing) curve x_grid equals value, interpolated in log space."""
    out = np.full(len(y), np.nan)
    for i in range(len(y)):
        xs, order = np.log(x_grid[i]), np.argsort(np.log(x_grid[i]), kind="stable")
        if xs[order[0]] <= np.log(value) <= xs[order[-1]]:
            out[i] = np.exp(np.interp(np.log(value), xs[order], np.log(y[i][order])))
    return out


#: flags on these parameters, or on the whole fit, make a fit unfit to plan with
_CORE = ("E", "A", "B", "alpha", "beta")
_ADVICE = {"collapsed": "add runs that vary N and D more widely, or fix the flagged parameter",
           "ill_conditioned": "add runs at more model sizes and token counts, or fix a flagged parameter",
           "at_bound": "add runs that constrain it, or fix it",
           "no_dof": "add runs (the fit has as many parameters as runs)",
           "not_converged": "check the table for outliers or units",
           "refits_failed": "add runs: resamples of this table cannot be fitted",
           "wide_interval": "add runs to narrow it"}


def plan(runs: RunTable | pd.DataFrame, target: str | None = None, *, law: str | None = None,
         languages: Sequence[str] = (), flops: float | None = None, tokens: float | None = None,
         params: float | None = None, from_checkpoint: bool = False, bootstrap: int | None = None,
         seed: int | None = None, level: float | None = None, progress: bool = False,
         fitted: SavedFit | None = None) -> Plan:
    """Recommend N and D for ``target`` (``None``: a table of one language) under one budget (``flops``,
    ``tokens`` or ``params``); see the module doc. ``law`` (monolingual tables only) is any registered law with
    ``E A B alpha beta``, default ``chinchilla`` (with ``fitted``, the saved fit's). ``bootstrap``, ``seed`` and
    ``level`` default to 200, 0 and 0.95, or with ``fitted`` to the saved fit's draws, seed and level (given, they
    must agree with them). Raises ``ValueError`` when the fit is flagged, or ``fitted`` is not the fit the plan
    needs (see :func:`_saved_fit`)."""
    kind, value = _budget(flops=flops, tokens=tokens, params=params)
    frame = (runs if isinstance(runs, RunTable) else validate_runs(runs, required=("params", "tokens", "loss"))).frame
    finetune = frame["regime"].astype(str) == "finetune" if "regime" in frame else np.zeros(len(frame), bool)
    model, runs_t, mixture, is_target, languages, why = _model_and_rows(frame, finetune, target, law, languages,
                                                                        from_checkpoint, fitted)
    notes, flags = ([why] if target is not None else []), []
    if fitted is None:
        bootstrap, seed, level = (200 if bootstrap is None else bootstrap, 0 if seed is None else seed,
                                  0.95 if level is None else level)
        res = fit(model, runs_t, bootstrap=bootstrap, seed=seed, level=level, progress=progress)
    else:
        res, bootstrap, seed, level = _saved_fit(fitted, target if target is not None and fitted.group_by else None,
                                                 model.name, why, runs_t, bootstrap, seed, level)
        notes.append(f"the {model.name} fit is a saved one ({bootstrap} bootstrap draws, seed {seed}), not refitted")
    _refuse_if_flagged(res, target)
    names = res.names[0]
    helpers = [n[len("tau_"):] for n in names if n.startswith("tau_") and n != "tau_other"]
    draws = res.samples[0][Status.usable(res.sample_status[0])] if bootstrap else \
        np.empty((0, len(names)))
    if not bootstrap:
        flags.append("no_interval")
    theta = _internal(model, np.vstack([res.estimate, draws]))

    unique = {l: float(frame[f"unique_{l}"].max()) if f"unique_{l}" in frame else np.inf
              for l in set(mixture) | ({target} if target else set())}
    if target is None and "unique_tokens" in frame:
        unique[None] = float(frame["unique_tokens"].max())
    share = 1.0 / (1 + len(languages))

    def frame_of(n, d):
        cols = {"params": n, "tokens": d, "loss": np.ones_like(n)}
        if target is not None:
            cols["language"] = target
        if mixture:
            cols.update({f"tokens_{l}": (d * share if l in (target,) + languages else np.zeros_like(d))
                         for l in mixture})
            cols.update({f"unique_{l}": np.full_like(n, unique[l]) for l in mixture})
        elif np.isfinite(unique.get(target, np.inf)):
            cols["unique_tokens"] = np.full_like(n, unique[target])
        return pd.DataFrame(cols)

    n_opt, d_opt, l_opt = _frontier(model, theta, frame_of, helpers if target is not None else None)
    n_at, d_at, l_at, c_at = _on_frontier(kind, value, n_opt, d_opt, l_opt, flags, notes)
    repeats = [l for l in (target,) + languages if l is not None and d_at[0] * share > unique.get(l, np.inf)]
    if repeats and ("lambda" in names and any("lambda" in p for p in res.flags[0].values())):
        flags.append("lambda_not_identified")
        notes.append(f"the plan repeats {', '.join(repeats)}'s data, but lambda (repetition) is not identified by "
                     "the runs: its loss is extrapolated")

    def triple(a):
        low, high = percentile_interval(a[1:], level) if len(a) > 1 else (np.nan, np.nan)
        return float(a[0]), float(low), float(high)

    helper_table = _helpers(res, names, helpers, languages, target)
    if target is None:
        crossover, verdict = None, "pretrain (monolingual table: no checkpoint to compare)"
    else:
        crossover, verdict = _verdict(frame, target, is_target, finetune, n_at[0], d_at[0] * share, from_checkpoint,
                                      bootstrap, seed, level, notes, flags)
    for flag, what in res.flags[0].items():  # flags on lambda or the taus: reported, not refused
        notes.append(f"{model.name} fit: {describe({flag: what})}")
    return Plan(target=target, languages=languages, budget={kind: float(value)}, params=triple(n_at),
                tokens=triple(d_at), target_tokens=triple(d_at * share), flops=triple(c_at), loss=triple(l_at),
                helpers=helper_table, verdict=verdict, crossover=crossover, law=model.name, level=level,
                n_draws=len(draws), notes=tuple(notes + [w for w in res.warnings if "not a trustworthy" not in w]),
                flags=tuple(flags))




def _on_frontier(kind, value, n_opt, d_opt, l_opt, flags, notes):
    """N, D, loss and compute where the frontier (per draw, [1 + draws, grid]) meets the budget ``kind = value``;
    flags (and notes) an optimum at the end of the searched sizes."""
    anchor = {"flops": np.broadcast_to(_C_GRID, n_opt.shape), "tokens": d_opt, "params": n_opt}[kind]
    n_at, d_at, l_at = (_at(anchor, value, y) for y in (n_opt, d_opt, l_opt))
    c_at = 6.0 * n_at * d_at
    if np.isnan(n_at[0]):
        raise ValueError(f"{kind} = {value:g} lies outside the planning grid (C from {_C_GRID[0]:.0e} to "
                         f"{_C_GRID[-1]:.0e} FLOPs, N from {_N_GRID[0]:.0e} to {_N_GRID[-1]:.0e})")
    if not _N_GRID[0] * 1.05 < n_at[0] < _N_GRID[-1] / 1.05:
        flags.append("N_at_search_bound")
        notes.append(f"the optimal N lies at the end of the searched sizes [{_N_GRID[0]:.0e}, {_N_GRID[-1]:.0e}]: "
                     "the fit gives no interior optimum at this budget")
    if not 6 * _N_GRID[0] * 1.05 < c_at[0] / d_at[0] < 6 * _N_GRID[-1] / 1.05:
        flags.append("D_at_search_bound")
    return n_at, d_at, l_at, c_at

def _budget(**budgets) -> tuple[str, float]:
    """The one budget given (``flops``, ``tokens`` or ``params``) and its value."""
    given = {k: v for k, v in budgets.items() if v is not None}
    if len(given) != 1:
        raise ValueError("give exactly one budget: flops (C = 6 N D), tokens (D) or params (N)")
    (kind, value), = given.items()
    if not value > 0:
        raise ValueError(f"{kind}: expected a positive number, got {value}")
    return kind, value


def _model_and_rows(frame, finetune, target, law, languages, from_checkpoint, fitted):
    """The law a plan fits and its rows: ``(law, pretraining rows of the target, mixture languages, target-row
    mask, helper languages, why this law)``; a monolingual table (``target`` None) takes ``law`` (default the
    saved fit's, else chinchilla), a target language the largest ATLAS variant its runs support."""
    if target is None:
        known = sorted(frame["language"].astype(str).unique()) if "language" in frame else []
        if len(known) > 1:
            raise ValueError(f"the runs measure {len(known)} languages ({', '.join(known[:8])}): give a target")
        if languages or from_checkpoint:
            raise ValueError("helper languages and --from-checkpoint need a target language")
        model = get_law(law or (fitted.result()[0].law if fitted is not None else "chinchilla"))
        missing = [n for n in _CORE if n not in model.names]
        if missing:
            raise ValueError(f"law {model.name!r} has no {', '.join(missing)}: planning needs E A B alpha beta")
        why = f"law {model.name} was asked for" if law else "the saved fit's law"
        return model, frame[~finetune].reset_index(drop=True), [], np.ones(len(frame), bool), (), why
    if law is not None:
        raise ValueError("a target language is planned with the ATLAS law; --law is for monolingual tables")
    if "language" not in frame:
        raise ValueError("the runs have no 'language' column: plan without a target (monolingual)")
    known = sorted(frame["language"].astype(str).unique())
    if target not in known:
        raise ValueError(f"unknown target language {target!r}; the runs measure: {', '.join(known)}")
    languages = tuple(dict.fromkeys(l for l in languages if l != target))
    mixture = list(mixture_languages(frame))
    unknown = [l for l in (target,) + languages if mixture and l not in mixture]
    if unknown:
        raise ValueError(f"language(s) {unknown} have no tokens_<lang> column; the runs mix: {', '.join(mixture)}")
    is_target = frame["language"].astype(str) == target
    runs_t = frame[is_target & ~finetune].reset_index(drop=True)
    variant = atlas_variant(runs_t)
    return (get_law(atlas_law_name(variant)), runs_t, mixture, is_target, languages,
            f"{target}'s runs support the ATLAS {variant} variant")

def _saved_fit(saved: SavedFit, group: str | None, law: str, why: str, rows: pd.DataFrame, bootstrap: int | None,
               seed: int | None, level: float | None) -> tuple[FitResult, int, int, float]:
    """The saved fit of ``group`` (``None``: its only group) as a one-group result, with the plan's bootstrap, seed
    and level; ``ValueError`` unless it is the fit the plan would make: law ``law`` (``why``) on ``rows``, with
    draws when intervals are asked for, and the ``bootstrap``, ``seed``, ``level`` given (if any)."""
    res, g = saved.result(group)
    name = res.groups[g]
    if res.law != law:
        raise ValueError(f"the saved fit of group {name!r} uses law {res.law!r}, but the plan needs {law!r} ({why}): "
                         f"refit with that law")
    saved.check_rows(name, rows)
    res = res.select(name)
    draws = 0 if res.samples is None else res.samples.shape[1]
    if bootstrap is None and not draws:
        raise ValueError("the saved fit has no bootstrap draws, which the plan's intervals need: refit with "
                         "resamples (atlas-jax fit --bootstrap 200), or plan with bootstrap 0 (no intervals)")
    if bootstrap is not None and bootstrap != draws:
        raise ValueError(f"bootstrap {bootstrap}: the saved fit has {draws} bootstrap draws; leave bootstrap unset "
                         "to plan with them, or refit")
    if seed is not None and draws and seed != saved.settings.get("seed"):
        raise ValueError(f"seed {seed}: the saved fit's draws come from seed {saved.settings.get('seed')}; leave "
                         "seed unset to plan with them, or refit")
    if level is not None and level != res.level:
        raise ValueError(f"level {level}: the saved fit's intervals are at level {res.level}; leave level unset, "
                         "or refit")
    return res, draws, saved.settings.get("seed", 0) if seed is None else seed, res.level


def _refuse_if_flagged(res, target) -> None:
    """ValueError naming the flag and what to do, when the fit's core parameters or the whole fit are flagged."""
    bad = {f: p for f, p in res.flags[0].items() if not p or set(p) & set(_CORE)}
    if bad:
        flag = next(iter(bad))
        raise ValueError(f"cannot plan{' for ' + target if target else ''}: the {res.law} fit is flagged "
                         f"({describe(bad, float(res.condition[0]))}); {_ADVICE[flag]}")


def _helpers(res, names, helpers, languages, target) -> pd.DataFrame:
    """Fitted transfer weights (ranked when identified: interval excludes 0 and is at most 1 wide), then the
    transfer-matrix prior for requested languages that are not fitted helpers."""
    rows = []
    for h in helpers:
        j = names.index(f"tau_{h}")
        low, high = (float(res.ci_low[0, j]), float(res.ci_high[0, j])) if res.ci_low is not None else (np.nan, np.nan)
        identified = np.isfinite(low) and (low > 0 or high < 0) and high - low <= 1.0
        rows.append({"language": h, "tau": float(res.estimate[0, j]), "ci_low": low, "ci_high": high,
                     "source": "fitted", "status": "ranked" if identified else "not identified"})
    matrix = load_transfer_matrix()
    for lang in languages:
        if lang not in helpers and target in LANGUAGES and lang in LANGUAGES:
            rows.append({"language": lang, "tau": float(tau_from_bts(matrix.loc[target, lang])), "ci_low": np.nan,
                         "ci_high": np.nan, "source": "transfer-matrix prior", "status": "prior, no interval"})
    table = pd.DataFrame(rows, columns=["language", "tau", "ci_low", "ci_high", "source", "status"])
    rank = table["status"].map({"ranked": 0, "not identified": 1, "prior, no interval": 2})
    return table.assign(_rank=rank, _neg=-table["tau"]).sort_values(["_rank", "_neg"], kind="stable") \
        .drop(columns=["_rank", "_neg"]).reset_index(drop=True)


def _verdict(frame, target, is_target, finetune, n_plan, planned, from_checkpoint, bootstrap, seed, level, notes,
             flags):
    """Crossover D* of t's finetune and scratch curves at the planned size, and the finetune-or-pretrain verdict."""
    ft = frame[is_target & finetune]
    if ft.empty:
        return None, (f"cannot tell (no finetune curves for {target} in the runs)" if from_checkpoint
                      else "pretrain from scratch (no checkpoint given)")
    sizes = ft["params"].unique()
    scratch = frame[is_target & ~finetune & frame["params"].isin(sizes)]
    if "num_languages" in frame:
        scratch = scratch[scratch["num_languages"] == 1]
    curves = pd.concat([scratch, ft]).assign(regime=lambda f: np.where(f["regime"] == "finetune", "finetune",
                                                                         "pretrain"))
    table = fit_crossovers(curves[["language", "params", "regime", "tokens", "loss"]], bootstrap=max(bootstrap, 2),
                           seed=seed, level=level)
    crossing = table[np.isfinite(table["crossover_tokens"]) & (table["crossover_tokens"] > 0)]
    if len(crossing) >= 2:
        law = fit_crossover_compute(crossing["params"], crossing["draws"], seed=seed, level=level)
        crossover = crossover_at(law, n_plan)
        lo, hi = crossing["params"].min(), crossing["params"].max()
        notes.append(f"crossover at N = {n_plan:.3g} from C* = {law['k']:.4g} N^{law['gamma']:.3f} (gamma "
                     f"[{law['gamma_ci'][0]:.3f}, {law['gamma_ci'][1]:.3f}]), fitted to the crossovers of "
                     f"{len(crossing)} model sizes from {lo:.3g} to {hi:.3g}")
        if not lo / 1.5 <= n_plan <= hi * 1.5:
            flags.append("crossover_extrapolated")
            notes.append(f"the planned N = {n_plan:.3g} lies outside the curves' sizes [{lo:.3g}, {hi:.3g}]: "
                         "the crossover is extrapolated along C* = k N^gamma")
    elif len(crossing) == 1:
        row = crossing.iloc[0]
        crossover = (float(row["crossover_tokens"]), float(row["ci_low"]), float(row["ci_high"]))
        notes.append(f"crossover measured on {row['params']:.3g}-parameter curves only")
        if abs(np.log(row["params"] / n_plan)) > np.log(2):
            flags.append("crossover_extrapolated")
            notes.append(f"the planned N = {n_plan:.3g} is more than 2x from the curves' {row['params']:.3g}")
    else:
        return None, f"cannot tell (the finetune and scratch curves of {target} do not cross in [1e6, 1e15] tokens)"
    if not (np.isfinite(crossover[1]) and np.isfinite(crossover[2]) and crossover[1] > 0):
        flags.append("crossover_unbounded")
    if not from_checkpoint:
        return crossover, "pretrain from scratch (no checkpoint given; see the crossover to decide with one)"
    if np.isfinite(crossover[1]) and planned < crossover[1]:
        return crossover, f"finetune the checkpoint: {planned:.3g} target tokens is below the crossover"
    if np.isfinite(crossover[2]) and planned > crossover[2]:
        return crossover, f"pretrain from scratch: {planned:.3g} target tokens is above the crossover"
    return crossover, f"too close to call: {planned:.3g} target tokens lies inside the crossover interval"
