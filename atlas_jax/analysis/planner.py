"""Planning a model for one target language with ATLAS, every answer with a bootstrap interval.

Given a run table, a target language t, optional helper languages trained alongside it (uniform shares)
and one budget (FLOPs C = 6 N D, tokens D, or parameters N), :func:`plan`

1. fits the ATLAS law (Longpre et al. 2026, arXiv:2510.22037) to t's pretraining runs with B bootstrap
   resamples (the full transfer variant where the mixtures allow, else "other" or monolingual);
2. evaluates every draw on a grid of model sizes for each compute level and keeps the loss-minimising
   size: the compute-optimal frontier N*(C), D*(C), L*(C) of that mixture, repetition included (S(D; U)
   with each language's unique tokens in the table);
3. reads the frontier at the budget (for a token or parameter budget, at the compute where D*(C) = D or
   N*(C) = N);
4. ranks t's transfer languages by fitted tau, and gives the transfer-matrix prior
   tau = BTS / (2 - BTS) for requested languages that are not among them;
5. where the table has t's finetune and scratch loss curves, fits their crossover D* and says whether
   to finetune the checkpoint (planned target tokens below D*'s interval) or pretrain (above it). With
   curves at two or more model sizes, D* is read at the planned N from the fitted crossover compute
   C* = 6 N D* = k N^gamma (interval from its resamples); with one size, D* of that size is used and a
   note says so when the planned N is more than 2x away from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..data.runs import RunTable, validate_runs
from ..engine import fit
from ..engine.bootstrap import percentile_interval
from ..laws import atlas_law, transfer_languages
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

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "helpers"}
        out["helpers"] = self.helpers.to_dict(orient="records")
        return json.loads(json.dumps(out, default=float))

    def __str__(self) -> str:
        pct = f"{self.level:.0%}"
        fmt = lambda t: f"{t[0]:.4g}  [{t[1]:.4g}, {t[2]:.4g}]"
        mix = ", ".join((self.target,) + self.languages)
        lines = [f"plan for {self.target} (mixture: {mix}; law {self.law}; {self.n_draws} bootstrap draws, "
                 f"{pct} intervals)",
                 f"  budget            {', '.join(f'{k} = {v:.4g}' for k, v in self.budget.items())}",
                 f"  model size N      {fmt(self.params)}",
                 f"  tokens D          {fmt(self.tokens)}",
                 f"  target tokens D_t {fmt(self.target_tokens)}",
                 f"  compute C = 6ND   {fmt(self.flops)}",
                 f"  expected loss     {fmt(self.loss)}",
                 f"  verdict           {self.verdict}"]
        if self.crossover is not None:
            lines.append(f"  crossover D*      {fmt(self.crossover)}")
        lines.append("  helper languages (by tau):")
        for row in self.helpers.itertuples(index=False):
            lines.append(f"    {row.language:<6} tau {row.tau:+.3f}  [{row.ci_low:+.3f}, {row.ci_high:+.3f}]  ({row.source})")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _internal(law, public: np.ndarray) -> np.ndarray:
    return np.stack([p.to_internal(public[..., j]) for j, p in enumerate(law.params)], axis=-1)


def _frontier(law, theta: np.ndarray, frame_of, helpers) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """N*(C), D*(C), L*(C) per draw on the compute grid: arrays [draws, len(_C_GRID)]."""
    n = np.repeat(_N_GRID[None, :], len(_C_GRID), axis=0)
    d = _C_GRID[:, None] / (6.0 * n)
    grid = frame_of(n.ravel(), d.ravel())
    x = {k: jnp.asarray(v) for k, v in law.features(grid, helpers=helpers).items()}
    log_l = jax.jit(jax.vmap(lambda th: jax.vmap(lambda xi: law.log_loss(th, xi))(x)))(jnp.asarray(theta))
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


def plan(runs: RunTable | pd.DataFrame, target: str, *, languages: Sequence[str] = (), flops: float | None = None,
         tokens: float | None = None, params: float | None = None, from_checkpoint: bool = False,
         bootstrap: int = 200, seed: int = 0, level: float = 0.95, progress: bool = False) -> Plan:
    """Recommend N and D for ``target`` under one budget (``flops``, ``tokens`` or ``params``); see the module doc."""
    budgets = {k: v for k, v in (("flops", flops), ("tokens", tokens), ("params", params)) if v is not None}
    if len(budgets) != 1:
        raise ValueError("give exactly one budget: flops (C = 6 N D), tokens (D) or params (N)")
    (kind, value), = budgets.items()
    if not value > 0:
        raise ValueError(f"{kind}: expected a positive number, got {value}")
    frame = (runs if isinstance(runs, RunTable) else validate_runs(runs, required=("params", "tokens", "loss",
                                                                                    "language"))).frame
    known = sorted(frame["language"].astype(str).unique())
    if target not in known:
        raise ValueError(f"unknown target language {target!r}; the runs measure: {', '.join(known)}")
    languages = tuple(dict.fromkeys(l for l in languages if l != target))
    mixture = [c[len("tokens_"):] for c in frame.columns if c.startswith("tokens_")]
    unknown = [l for l in (target,) + languages if mixture and l not in mixture]
    if unknown:
        raise ValueError(f"language(s) {unknown} have no tokens_<lang> column; the runs mix: {', '.join(mixture)}")
    is_target = frame["language"].astype(str) == target
    finetune = frame["regime"].astype(str) == "finetune" if "regime" in frame else np.zeros(len(frame), bool)
    runs_t = frame[is_target & ~finetune].reset_index(drop=True)

    notes = []
    law = atlas_law("transfer")
    try:
        transfer_languages(runs_t, 3)
    except ValueError as err:
        law = atlas_law("other" if mixture else "monolingual")
        notes.append(f"{err}; using the {law.name} variant")
    res = fit(law, runs_t, bootstrap=bootstrap, seed=seed, level=level, progress=progress)
    names = res.names[0]
    helpers = [n[len("tau_"):] for n in names if n.startswith("tau_") and n != "tau_other"]
    draws = res.samples[0][np.isin(res.sample_status[0], (0, 3))] if bootstrap else np.empty((0, len(names)))
    public = np.vstack([res.estimate, draws])
    theta = _internal(law, public)

    unique = {l: float(frame[f"unique_{l}"].max()) if f"unique_{l}" in frame else np.inf
              for l in set(mixture) | {target}}
    share = 1.0 / (1 + len(languages))

    def frame_of(n, d):
        cols = {"params": n, "tokens": d, "loss": np.ones_like(n), "language": target}
        if mixture:
            cols.update({f"tokens_{l}": (d * share if l in (target,) + languages else np.zeros_like(d))
                         for l in mixture})
            cols.update({f"unique_{l}": np.full_like(n, unique[l]) for l in mixture})
        elif np.isfinite(unique[target]):
            cols["unique_tokens"] = np.full_like(n, unique[target])
        return pd.DataFrame(cols)

    n_opt, d_opt, l_opt = _frontier(law, theta, frame_of, helpers)
    c_grid = np.broadcast_to(_C_GRID, n_opt.shape)
    anchor = {"flops": c_grid, "tokens": d_opt, "params": n_opt}[kind]
    n_at, d_at, l_at = (_at(anchor, value, y) for y in (n_opt, d_opt, l_opt))
    c_at = 6.0 * n_at * d_at
    if np.isnan(n_at[0]):
        raise ValueError(f"{kind} = {value:g} lies outside the planning grid (C from {_C_GRID[0]:.0e} to "
                         f"{_C_GRID[-1]:.0e} FLOPs)")
    triple = lambda a: (float(a[0]), *map(float, percentile_interval(a[1:], level))) if len(a) > 1 else \
        (float(a[0]), float("nan"), float("nan"))

    helper_rows = [{"language": h, "tau": float(res.estimate[0, names.index(f"tau_{h}")]),
                    "ci_low": float(res.ci_low[0, names.index(f"tau_{h}")]) if bootstrap else np.nan,
                    "ci_high": float(res.ci_high[0, names.index(f"tau_{h}")]) if bootstrap else np.nan,
                    "source": "fitted"} for h in helpers]
    matrix = load_transfer_matrix()
    for lang in languages:
        if lang not in helpers and target in LANGUAGES and lang in LANGUAGES:
            tau = float(tau_from_bts(matrix.loc[target, lang]))
            helper_rows.append({"language": lang, "tau": tau, "ci_low": np.nan, "ci_high": np.nan,
                                "source": "transfer-matrix prior"})
    helper_table = pd.DataFrame(helper_rows, columns=["language", "tau", "ci_low", "ci_high", "source"])
    helper_table = helper_table.sort_values("tau", ascending=False, kind="stable").reset_index(drop=True)

    crossover, verdict = _verdict(frame, target, is_target, finetune, n_at[0], d_at[0] * share, from_checkpoint,
                                  bootstrap, seed, level, notes)
    return Plan(target=target, languages=languages, budget={kind: float(value)}, params=triple(n_at),
                tokens=triple(d_at), target_tokens=triple(d_at * share), flops=triple(c_at), loss=triple(l_at),
                helpers=helper_table, verdict=verdict, crossover=crossover, law=law.name, level=level,
                n_draws=len(public) - 1, notes=tuple(notes + list(res.warnings)))


def _verdict(frame, target, is_target, finetune, n_plan, planned, from_checkpoint, bootstrap, seed, level, notes):
    """Crossover D* of t's finetune and scratch curves at the planned size, and the finetune-or-pretrain verdict."""
    ft = frame[is_target & finetune]
    if ft.empty:
        return None, ("pretrain from scratch (no finetune curves for this language in the runs, so no crossover)"
                      if from_checkpoint else "pretrain from scratch (no checkpoint given)")
    sizes = ft["params"].unique()
    scratch = frame[is_target & ~finetune & frame["params"].isin(sizes)]
    if "num_languages" in frame:
        scratch = scratch[scratch["num_languages"] == 1]
    curves = pd.concat([scratch, ft]).assign(regime=lambda f: np.where(f["regime"] == "finetune", "finetune",
                                                                         "pretrain"))
    table = fit_crossovers(curves[["language", "params", "regime", "tokens", "loss"]], bootstrap=max(bootstrap, 1),
                           seed=seed, level=level)
    crossing = table[np.isfinite(table["crossover_tokens"])]
    if len(crossing) >= 2:
        law = fit_crossover_compute(crossing["params"], crossing["draws"], seed=seed, level=level)
        crossover = crossover_at(law, n_plan)
        notes.append(f"crossover at N = {n_plan:.3g} from C* = {law['k']:.4g} N^{law['gamma']:.3f} (gamma "
                     f"[{law['gamma_ci'][0]:.3f}, {law['gamma_ci'][1]:.3f}]), fitted to the crossovers of "
                     f"{len(crossing)} model sizes from {crossing['params'].min():.3g} to {crossing['params'].max():.3g}")
    else:
        row = table.iloc[int(np.argmin(np.abs(np.log(table["params"].to_numpy() / n_plan))))]
        crossover = (float(row["crossover_tokens"]), float(row["ci_low"]), float(row["ci_high"]))
        notes.append(f"crossover measured on {row['params']:.3g}-parameter curves" +
                     (f", not at the planned N = {n_plan:.3g}" if abs(np.log(row["params"] / n_plan)) > np.log(2) else ""))
    if not from_checkpoint:
        return crossover, "pretrain from scratch (no checkpoint given; see the crossover to decide with one)"
    if planned < crossover[1]:
        return crossover, f"finetune the checkpoint: {planned:.3g} target tokens is below the crossover"
    if planned > crossover[2]:
        return crossover, f"pretrain from scratch: {planned:.3g} target tokens is above the crossover"
    return crossover, f"too close to call: {planned:.3g} target tokens lies inside the crossover interval"
