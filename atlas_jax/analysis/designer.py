"""Which runs to train next: Bayesian c-optimal design of a scaling-law campaign (issue 17), :func:`design`.

Given the runs so far, a law and a target quantity T (N* or D* at a compute budget, the compute-optimal loss
there, or any parameter such as ``alpha`` or ``tau_en``), every candidate run x (a grid over N and D, or a
user's table) is scored by how much it is expected to narrow T's interval per unit of training compute 6 N D.

The current uncertainty: the fit's bootstrap draws theta_b (internal space) and the linearised covariance at
each, Sigma_b = (J_b^T J_b / sigma^2)^-1 (J_b = d log L / d theta of the runs so far at theta_b; sigma: the fit's
robust residual scale; fixed parameters left out). A new run x of log loss log L(theta; x) + e, e ~ N(0,
sigma^2), adds information j j^T / sigma^2, j = d log L / d theta at x, so that (Sherman-Morrison, no inverse)

    Var_b(T | x) = g_b^T Sigma_b g_b - (g_b^T Sigma_b j_b)^2 / (sigma^2 + j_b^T Sigma_b j_b),  g_b = dT/dtheta

with g and j evaluated at every draw theta_b: a linearised preposterior analysis averaged over the current
uncertainty (Chaloner & Verdinelli 1995, "Bayesian experimental design: a review", sections 2.2-2.3). The
expected interval width after x is the current (bootstrap percentile) width times
mean_b sqrt(Var_b(T | x) / Var_b(T)): a ratio per draw, so the few draws where the runs barely identify the law
(huge Var_b) do not swamp the average, as they swamp a covariance of the draws. A batch of k runs is chosen
greedily: after each pick every Sigma_b is updated by it (Sigma_b - Sigma_b j j^T Sigma_b / (sigma^2 + j^T
Sigma_b j)), so a second copy of the best run is worth less than the first, and the next pick goes where the
remaining uncertainty is. Within a FLOP budget the batch is the better of greedy per FLOP and greedy by narrowing
in all: per FLOP alone can fill a budget with cheap runs that a few large ones beat (the budgeted maximum
coverage problem's modified greedy, Khuller, Moss & Naor 1999, Inf. Process. Lett. 70).

The linearisation ranks all candidates; with ``refit=M``, at each pick the best M of them are scored again by
simulation: in replicate b the existing runs are drawn with bootstrap counts, the runs picked so far and the
candidate get losses simulated from theta_b with noise sigma, and the law is refitted from the estimate; the
target's interval over the replicates is the expected width. All candidates x replicates are one batched fit.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..data.runs import RunTable, validate_runs
from ..engine.batch import fit
from ..engine.result import group_index
from ..engine.solver import Status
from ..laws import get_law
from ..laws.chinchilla import compute_optimal
from ..laws.spec import Law
from ..programs import stored_jit

__all__ = ["Design", "design", "design_crossover", "candidate_grid", "TARGETS", "MULTIPLIER_TARGETS", "EXTRAPOLATION"]

#: Planning quantities at a compute budget (``flops``), for laws with E A B alpha beta; any parameter name of the
#: law is a target too.
TARGETS = ("N_opt", "D_opt", "loss_opt")
#: Curse-of-multilinguality multipliers for ``ratio`` times the languages (:func:`~atlas_jax.analysis.curse.
#: expansion_multipliers`), for laws with alpha beta phi psi.
MULTIPLIER_TARGETS = ("model_multiplier", "data_multiplier", "data_per_language_multiplier", "compute_multiplier")
#: A budget this many times the largest run's compute is flagged ``extrapolated``: on the 240 Chinchilla runs,
#: intervals of N* at 5.76e23 FLOPs from runs 190-15,000x below it held the 240-run estimate in 9 of 47 rounds
#: (``benchmarks/design_real.py``).
EXTRAPOLATION = 100.0


@dataclass(frozen=True)
class Design:
    """The ranked candidates and the greedy batch: ``picks`` (k rows: ``params, tokens, flops`` and the expected
    interval ``width`` after the runs picked so far, ``value_per_pflop``), ``candidates`` (every candidate with
    its value alone), the current ``width`` of the target's ``level`` interval and ``estimate``; ``flags``:
    ``extrapolated`` when ``flops`` is more than :data:`EXTRAPOLATION` times the largest run's compute, picks
    included (the interval then holds sampling error only, not the law's drift across scales)."""

    law: str
    target: str
    flops: float | None
    group: str | None
    estimate: float
    width: float
    level: float
    picks: pd.DataFrame
    candidates: pd.DataFrame
    runs: pd.DataFrame
    notes: tuple[str, ...] = field(default=())
    ratio: float | None = None
    flags: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        return {"law": self.law, "target": self.target, "flops": self.flops, "ratio": self.ratio,
                "group": self.group, "estimate": self.estimate, "width": self.width, "level": self.level,
                "flags": list(self.flags), "picks": self.picks.to_dict(orient="records"), "notes": list(self.notes)}

    def __str__(self) -> str:
        at = (f" at {self.flops:.3g} FLOPs" if self.flops else "") + (f" for {self.ratio:g}x the languages"
                                                                       if self.ratio else "")
        head = (f"{self.target}{at} ({self.law}{', ' + self.group if self.group else ''}): {self.estimate:.4g}, "
                f"{self.level:.0%} interval width {self.width:.4g} now"
                + (f" [FLAGGED: {', '.join(self.flags)}]" if self.flags else ""))
        mixture = sorted((c for c in self.picks.columns if str(c).startswith("tokens_") and (self.picks[c] > 0).any()),
                         key=lambda c: -(self.picks[c] / self.picks["tokens"]).max())  # the largest shares first
        shown = [c for c in ("regime", "language", "num_languages", "params", "tokens", *mixture[:4], "checkpoints",
                             "flops", "width", "linearised_width", "value_per_pflop", "total_flops")
                 if c in self.picks.columns]  # picks.csv: every column
        with pd.option_context("display.float_format", "{:.4g}".format, "display.width", 140):
            table = self.picks[shown].to_string(index=False)
        return "\n".join([head, "next runs, in order (expected width after each):", table, *self.notes])

    def save(self, out, figure: bool = True) -> None:
        """Write ``out/design.json`` (:meth:`to_dict`), ``picks.csv``, ``candidates.csv`` and (``figure``)
        ``design.png`` (:func:`atlas_jax.figures.design_map`), atomically."""
        from ..io import atomic_output_dir, write_json

        with atomic_output_dir(out) as tmp:
            write_json(tmp / "design.json", self.to_dict())
            self.picks.to_csv(tmp / "picks.csv", index=False)
            self.candidates.to_csv(tmp / "candidates.csv", index=False)
            if figure:
                import matplotlib.pyplot as plt

                from ..figures import design_map

                fig = design_map(self)
                fig.savefig(tmp / "design.png", dpi=120)
                plt.close(fig)


def candidate_grid(runs: pd.DataFrame, law: Law | None = None, n: int = 25, m: int = 40, reach: float = 8.0,
                   size: int = 2000) -> pd.DataFrame:
    """Candidate runs log-spaced from the smallest to ``reach`` times the largest ``params`` and ``tokens`` of
    ``runs`` (``n`` x ``m``), none below the smallest run's compute 6 N D (the law is least trusted below its
    runs), crossed with each mixture of the runs: every distinct combination of the other columns ``law`` reads
    (``num_languages``, ...), of ``language``, ``unique_*`` and the token shares ``tokens_<lang> / tokens``
    (scaled to each candidate's tokens). With several mixtures the N-D grid is thinned to keep about ``size``
    candidates."""
    def lattice(n_, m_):
        axis = lambda c, k: np.geomspace(runs[c].min(), runs[c].max() * reach, k)
        N, D = (a.ravel() for a in np.meshgrid(axis("params", n_), axis("tokens", m_), indexing="ij"))
        keep = N * D >= (runs["params"] * runs["tokens"]).min() * (1 - 1e-12)
        return pd.DataFrame({"params": N[keep], "tokens": D[keep]})

    shares = [c for c in runs.columns if str(c).startswith("tokens_")]
    read = [c for c in runs.columns if law is not None and c in law.required and c not in ("params", "tokens", "loss")
            or c == "language" or f"tokens_{str(c).removeprefix('unique_')}" in shares]
    if not read and not shares:
        return lattice(n, m)
    mixtures = runs[read].join(runs[shares].div(runs["tokens"], axis=0))
    mixtures = mixtures[~mixtures.round(9).duplicated()]  # shares equal to 9 digits are one mixture
    if len(mixtures) * 16 > size:
        raise ValueError(f"the runs hold {len(mixtures)} distinct mixtures ({', '.join(read + shares[:3])}"
                         f"{', ...' if len(shares) > 3 else ''}): too many to cross with an N-D grid; give the "
                         "candidate runs as a table (candidates=..., --candidates FILE)")
    thin = min(1.0, np.sqrt(size / (n * m * len(mixtures))))
    grid = lattice(max(4, round(n * thin)), max(4, round(m * thin))).merge(mixtures.reset_index(drop=True),
                                                                         how="cross")
    grid[shares] = grid[shares].mul(grid["tokens"], axis=0)
    return grid


def design(law: Law | str, runs: RunTable | pd.DataFrame, target: str, candidates: pd.DataFrame | None = None, *,
           flops: float | None = None, group_by: str | None = None, group: str | None = None, k: int = 1,
           budget: float | None = None, bootstrap: int = 200, seed: int = 0, level: float = 0.95,
           refit: int = 0, distinct: bool = False, ratio: float = 2.0, grid: tuple[int, int] = (25, 40),
           min_flops: float | None = None) -> Design:
    """Rank ``candidates`` (default :func:`candidate_grid`) by the expected narrowing of ``target``'s interval per
    FLOP and pick ``k`` runs greedily (module doc); within ``budget`` FLOPs in all, the better (by expected width)
    of greedy per FLOP and greedy by narrowing in all, as for a knapsack (the first alone can fill a budget with
    cheap runs that a few large ones beat). ``target``: one of :data:`TARGETS` (with ``flops``), of
    :data:`MULTIPLIER_TARGETS` (curse law, for ``ratio`` times the languages) or a parameter name; ``group``: the
    group of ``group_by`` to design for (fitted alone); ``grid``: the sizes of the default
    :func:`candidate_grid`; ``min_flops``: leave out candidates below this compute (the design favours cheap
    runs; this keeps it to sizes where you trust the law).
    ``refit``: at each pick the best ``refit`` candidates of the linearised ranking are scored again by
    simulated outcomes refitted in one batch (:class:`_Simulation`); 0 (default) keeps the linearised scores.
    ``distinct``: each candidate is picked at most once (a table of concrete runs); by default a run may be picked
    again (another seed of the same configuration). The design stops early when no candidate is expected to
    narrow the interval.
    Raises ``ValueError`` when the fit has a flag other than a wide interval (no design can rest on a fit that is
    not identified, at a bound or not converged), or the target is unknown."""
    law = get_law(law) if isinstance(law, str) else law
    frame = (runs if isinstance(runs, RunTable) else validate_runs(runs, required=law.required,
                                                                   group_by=group_by)).frame
    if int(k) != k or k < 1 or (budget is not None and not budget > 0) or bootstrap < 20 or refit < 0:
        raise ValueError(f"k = {k}, budget = {budget}, bootstrap = {bootstrap}, refit = {refit}: expected an integer "
                         "k >= 1, a budget > 0 FLOPs, at least 20 bootstrap resamples and refit >= 0")
    if group_by is not None and group is not None:  # fit that group alone
        labels = frame[group_by].astype(str)
        group_index(tuple(dict.fromkeys(labels)), str(group))  # an unknown group is named with the known ones
        frame = frame[labels == str(group)]
    res = fit(law, RunTable(frame), group_by=group_by, bootstrap=bootstrap, seed=seed, level=level)
    g = group_index(res.groups, None if group is None else str(group))
    notes = []
    if set(res.flags[g]) - {"wide_interval"}:
        raise ValueError(f"cannot design runs: the {law.name} fit of {res.groups[g]!r} is {res.verdict(res.groups[g])};"
                         " a design needs a fit whose only flag, if any, is a wide interval (more varied runs "
                         "first, or fix parameters)")
    if res.flags[g]:
        notes.append(f"the fit is {res.verdict(res.groups[g])}: what the next runs should narrow")
    value = _target(law, res.names[g], target, flops, ratio)
    ok = Status.usable(res.sample_status[g])
    theta = np.array([[p.to_internal(v) for p, v in zip(law.params, row)] for row in res.samples[g][ok]])
    estimate = float(value(jnp.asarray([p.to_internal(v) for p, v in zip(law.params, res.estimate[g])])))
    values = np.asarray(jax.vmap(value)(jnp.asarray(theta)))
    tail = 50.0 * (1.0 - level)
    width = float(np.diff(np.nanpercentile(values, [tail, 100.0 - tail]))[0])

    rows = frame if group_by is None else frame[frame[group_by].astype(str) == res.groups[g]]
    cand = candidate_grid(rows, law, *grid) if candidates is None else candidates.reset_index(drop=True)
    if min_flops is not None:
        compute = 6.0 * cand["params"] * cand["tokens"]
        if not (compute >= min_flops).any():
            raise ValueError(f"min_flops = {min_flops:.3g}: no candidate run takes that much compute (the largest "
                             f"takes {compute.max():.3g} FLOPs)")
        cand = cand[compute >= min_flops].reset_index(drop=True)
    features = law.features(cand)
    fixed = np.array([p.name in res.fixed for p in law.params])
    sigma2 = _noise_variance(law, rows, res.estimate[g])
    grad_t = np.array(jax.vmap(jax.grad(value))(jnp.asarray(theta)))                       # [B, P]
    jac = _jacobians(law, theta, features, bootstrap)                                       # [B, C, P]
    sigma = _covariance(_jacobians(law, theta, law.features(rows), bootstrap), sigma2, ~fixed)  # 0 where fixed
    cost = 6.0 * cand["params"].to_numpy(float) * cand["tokens"].to_numpy(float)

    v0 = np.einsum("bp,bpq,bq->b", grad_t, sigma, grad_t)
    linear = _expected_width(grad_t, sigma, jac, sigma2, width, v0)  # each candidate alone, then after the picks
    scored = cand.assign(flops=cost, width=linear, value_per_pflop=(width - linear) / cost * 1e15)
    sim = _Simulation(law, rows, theta, res.estimate[g], features, np.sqrt(sigma2), value, level, seed) \
        if refit else None
    simulated_now = float(sim.widths()[0]) if sim is not None else width  # the same scheme, no new run

    def greedy(per_flop: bool):
        """k picks, each the best by expected narrowing per FLOP (``per_flop``) or in all; (picks, note)."""
        picks, spent, taken, s, lin = [], 0.0, np.zeros(len(cand), bool), sigma, linear
        for _ in range(int(k)):
            before = picks[-1]["width"] if picks else simulated_now
            allowed = np.isfinite(lin) & ~taken & (True if budget is None else spent + cost <= budget)
            if not allowed.any():
                break
            after = lin
            if sim is not None:  # the linearised ranking's best, scored by refits of simulated outcomes
                linear_before = picks[-1]["linearised_width"] if picks else width
                top = np.argsort(np.where(allowed, (lin - linear_before) / cost, np.inf))[:refit]
                top = top[allowed[top]]
                after = np.full_like(lin, np.inf)
                after[top] = sim.widths(top)
            gain = (before - after) / cost
            i = int(np.argmax(np.where(allowed & np.isfinite(gain), gain if per_flop else before - after, -np.inf)))
            if not gain[i] > 0:
                return picks, f"stopped after {len(picks)} run(s): no candidate is expected to narrow the interval " \
                              "further"
            spent += cost[i]
            taken[i] = distinct
            picks.append({**cand.iloc[i].to_dict(), "flops": cost[i], "width": float(after[i]),
                          "linearised_width": float(lin[i]), "value_per_pflop": float(gain[i] * 1e15),
                          "total_flops": spent})
            s = _updated(s, jac[:, i], sigma2)
            lin = _expected_width(grad_t, s, jac, sigma2, width, v0)
            if sim is not None:
                sim.add(i)
        return picks, None

    picks = _greedy_batch(greedy, budget if sim is None else None, notes, "runs")  # refits: per FLOP only
    notes += [f"ranked linearised: each run's information j j^T / sigma^2 (sigma = {np.sqrt(sigma2):.3g} in log "
              f"loss, the fit's robust residual scale) added to the covariance of {len(theta)} bootstrap draws"
              + (f"; the best {refit} at each pick scored by {len(theta)} refits of simulated outcomes each "
                 f"(width without new runs in that scheme: {simulated_now:.4g})" if refit else "")]
    if len(picks) < k and budget is not None and not any(n.startswith("stopped") for n in notes):
        notes.append(f"{len(picks)} of {k} runs fit the budget of {budget:.3g} FLOPs")
    flags = ()
    if target in TARGETS:
        largest = max([6.0 * float((rows["params"] * rows["tokens"]).max())] + [p["flops"] for p in picks])
        if flops > EXTRAPOLATION * largest:
            flags = ("extrapolated",)
            notes.append(f"extrapolated: {flops:.3g} FLOPs is {flops / largest:.0f}x the largest run, picks included; "
                         "the interval holds sampling error, not the law's drift across scales (on real Chinchilla "
                         "runs 190x or more below the budget it missed the 240-run N* in 38 of 47 rounds: README)")
    columns = [*cand.columns, "flops", "width", "linearised_width", "value_per_pflop", "total_flops"]
    return Design(law.name, target, flops, res.groups[g] if group_by else None, estimate, width, level,
                  pd.DataFrame(picks, columns=columns),
                  scored.sort_values("value_per_pflop", ascending=False, ignore_index=True),
                  rows[["params", "tokens", "loss"]].reset_index(drop=True), tuple(notes),
                  ratio if target in MULTIPLIER_TARGETS else None, flags)


class _Simulation:
    """Preposterior bootstrap by simulation: replicate b of the campaign after new runs S draws the existing runs
    with bootstrap counts c_b and gives each new run the loss simulated from draw theta_b (log L(theta_b; x) plus
    N(0, sigma^2) noise); the law is refitted to every replicate from the estimate, all candidates x all replicates
    in one batch (:func:`~atlas_jax.fit_arrays`), and the target's interval over the replicates is the width to
    expect after S."""

    def __init__(self, law, rows, theta, estimate, features, sigma, value, level, seed):
        from ..engine.batch import group_data
        from ..engine.bootstrap import resample_counts

        self.law, self.value, self.level, self.theta = law, value, level, theta
        self.base = group_data(law, rows, None)
        rng = np.random.default_rng(seed + 7)
        self.counts = resample_counts(rng, self.base.mask.shape[1], len(theta)).astype(float)   # [B, n]
        self.start = np.array([[p.to_internal(v) for p, v in zip(law.params, estimate)]])
        self.candidates = {k: np.asarray(v, float) for k, v in features.items()}              # [C] each
        predicted = np.asarray(jax.vmap(lambda t: jax.vmap(lambda x: law.log_loss(t, x))(
            {k: jnp.asarray(v) for k, v in self.candidates.items()}))(jnp.asarray(theta)))     # [B, C]
        self.outcomes = predicted + sigma * rng.standard_normal(predicted.shape)
        self.picked: list[int] = []

    def add(self, i: int) -> None:
        self.picked.append(i)

    def widths(self, candidates: np.ndarray | None = None) -> np.ndarray:
        """The target's interval width after the picked runs and each of ``candidates`` (None: the picked runs
        alone): [len(candidates)] (or [1])."""
        from ..engine.batch import GroupedData, fit_arrays

        new = np.array([self.picked + [c] for c in candidates] if candidates is not None else [self.picked],
                       dtype=int).reshape(-1 if candidates is not None else 1, len(self.picked) + (
                           candidates is not None))                                            # [M, s (+ 1)]
        B, (_, n), M = len(self.theta), self.base.mask.shape, len(new)
        feats = {k: np.concatenate([np.broadcast_to(v, (M, B, n)), np.broadcast_to(
            self.candidates[k][new][:, None, :], (M, B, new.shape[1]))], axis=2).reshape(M * B, -1)
            for k, v in self.base.features.items()}
        log_y = np.concatenate([np.broadcast_to(self.base.log_y, (M, B, n)),
                                np.swapaxes(self.outcomes[:, new], 0, 1)], axis=2).reshape(M * B, -1)
        mask = np.concatenate([np.broadcast_to(self.counts, (M, B, n)), np.ones((M, B, new.shape[1]))],
                              axis=2).reshape(M * B, -1)
        data = GroupedData(tuple(map(str, range(M * B))), (self.law.names,) * (M * B), feats, log_y, mask)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # replicates' flags: their spread is the answer
            refits = fit_arrays(self.law, data, starts=self.start, screen_steps=0, keep=1)
        with np.errstate(divide="ignore"):  # a collapsed refit (E = 0): not usable below
            internal = np.stack([p.to_internal(refits.estimate[:, j]) for j, p in enumerate(self.law.params)], 1)
        values = np.asarray(jax.vmap(self.value)(jnp.asarray(internal))).reshape(M, B)
        usable = Status.usable(np.array([Status[s.upper()] for s in refits.status])).reshape(M, B)
        values = np.where(usable & np.isfinite(values), values, np.nan)
        tail = 50.0 * (1.0 - self.level)
        low, high = np.nanpercentile(values, [tail, 100.0 - tail], axis=1)
        return high - low


def _greedy_batch(greedy, budget, notes: list, what: str) -> list:
    """The batch of ``greedy(per_flop=True)``; within a ``budget``, that of ``greedy(per_flop=False)`` instead when
    it is expected to leave the interval narrower (module doc). Each ``greedy`` returns (picks, stop note)."""
    picks, stop = greedy(per_flop=True)
    if budget is not None:
        whole, whole_stop = greedy(per_flop=False)
        if whole and (not picks or whole[-1]["width"] < picks[-1]["width"]):
            picks, stop = whole, whole_stop
            notes.append(f"within the budget, {what} that narrow the interval the most in all (not per FLOP) are "
                         "expected to leave it narrower: those are the picks")
    if stop:
        notes.append(stop)
    return picks


def _target(law: Law, names: Sequence[str], target: str, flops: float | None, ratio: float = 2.0):
    """T(theta) on internal parameters, differentiable."""
    if target in MULTIPLIER_TARGETS:
        from .curse import expansion_multipliers

        if any(n not in law.names for n in ("alpha", "beta", "phi", "psi")):
            raise ValueError(f"target {target!r}: needs a law with alpha beta phi psi, the curse law ({law.name!r} "
                             f"has {', '.join(law.names)})")
        if not ratio > 0:
            raise ValueError(f"target {target!r}: ratio = {ratio}; expected the factor of languages, > 0")
        idx = [law.index(n) for n in ("alpha", "beta", "phi", "psi")]
        key = target.removesuffix("_multiplier")
        return lambda theta: expansion_multipliers(ratio, *(theta[i] for i in idx), xp=jnp)[key]
    if target in TARGETS:
        if any(n not in law.names for n in ("E", "A", "B", "alpha", "beta")):
            raise ValueError(f"target {target!r}: needs a law with E A B alpha beta ({law.name!r} has "
                             f"{', '.join(law.names)})")
        if flops is None or not flops > 0:
            raise ValueError(f"target {target!r}: give the compute budget it is at (flops=, --flops C > 0; got "
                             f"{flops})")
        idx = {n: law.index(n) for n in ("E", "A", "B", "alpha", "beta")}

        def value(theta):
            E, A, B = (jnp.exp(theta[idx[n]]) for n in ("E", "A", "B"))
            alpha, beta = theta[idx["alpha"]], theta[idx["beta"]]
            n_opt, d_opt = compute_optimal(A, B, alpha, beta, flops)
            if target == "N_opt":
                return n_opt
            if target == "D_opt":
                return d_opt
            return E + A / n_opt ** alpha + B / d_opt ** beta
        return value
    if target not in names:
        raise ValueError(f"unknown target {target!r}: expected one of {', '.join(TARGETS)} (with --flops), "
                         f"{', '.join(MULTIPLIER_TARGETS)} (curse law, with --ratio) or a parameter: "
                         f"{', '.join(names)}")
    i, p = list(names).index(target), law.params[list(names).index(target)]
    return (lambda theta: jnp.exp(theta[i])) if p.log else (lambda theta: theta[i])


def _jacobians(law: Law, theta: np.ndarray, features: dict, draws: int) -> np.ndarray:
    """d log L / d theta at every draw and candidate, [B, C, P]: one compiled program, stored across processes
    (:mod:`atlas_jax.programs`), its shapes padded (draws to ``draws``, candidates to a multiple of 256) so that
    the next design reuses it."""
    B, C = theta.shape[0], len(next(iter(features.values())))
    pad = lambda a, n: np.concatenate([a, np.repeat(a[:1], n - len(a), axis=0)])
    x = {k: jnp.asarray(pad(np.asarray(v, float), -(-C // 256) * 256)) for k, v in features.items()}
    return np.array(_jacobian_program(jnp.asarray(pad(theta, max(draws, B))), x, law.log_loss))[:B, :C]


@partial(stored_jit, static_argnames=("log_loss",))
def _jacobian_program(theta, features, log_loss):
    return jax.vmap(lambda t: jax.vmap(lambda x: jax.grad(log_loss)(t, x))(features))(theta)


def _noise_variance(law: Law, rows: pd.DataFrame, estimate) -> float:
    """Squared robust scale (1.4826 MAD) of the fit's log residuals, floored at 1e-8."""
    internal = jnp.asarray([p.to_internal(v) for p, v in zip(law.params, estimate)])
    x = {k: jnp.asarray(v) for k, v in law.features(rows).items()}
    resid = np.log(rows["loss"].to_numpy(float)) - np.asarray(jax.vmap(lambda xi: law.log_loss(internal, xi))(x))
    return max(float(1.4826 * np.median(np.abs(resid - np.median(resid)))) ** 2, 1e-8)


def _covariance(jac, sigma2, free) -> np.ndarray:
    """Every draw's linearised covariance (J_b^T J_b / sigma^2)^-1 over the ``free`` parameters, zero rows and
    columns for the others: [B, P, P] from the runs' Jacobians [B, n, P]."""
    J = jac[..., free]
    out = np.zeros(jac.shape[:1] + (jac.shape[2],) * 2)
    out[:, free[:, None] & free[None, :]] = np.linalg.pinv(np.einsum("bnp,bnq->bpq", J, J) / sigma2,
                                                           hermitian=True).reshape(len(jac), -1)
    return out


def _scaled_width(var, v0, width) -> np.ndarray:
    """``width`` x mean_b sqrt(Var_b / Var_b(T) now) (module doc), over the draws with Var_b(T) > 0;
    ``var``: [B, ...]."""
    use = v0 > 0
    now = v0[use].reshape((-1,) + (1,) * (var.ndim - 1))
    return width * np.mean(np.sqrt(np.maximum(var[use], 0.0) / now), axis=0)


def _expected_width(grad_t, sigma, jac, sigma2, width, v0) -> np.ndarray:
    """Expected interval width after adding each candidate (module doc): [C]; ``v0``: Var_b(T) before any new run."""
    sg = np.einsum("bpq,bq->bp", sigma, grad_t)                                   # Sigma g  [B, P]
    v = np.einsum("bp,bp->b", grad_t, sg)[:, None]                                # g' Sigma g
    num = np.einsum("bcp,bp->bc", jac, sg) ** 2                                   # (g' Sigma j)^2
    den = sigma2 + np.einsum("bcp,bpq,bcq->bc", jac, sigma, jac)                  # sigma^2 + j' Sigma j
    return _scaled_width(v - num / den, v0, width)


def _updated(sigma, j, sigma2) -> np.ndarray:
    """Every draw's covariance after one more run with Jacobian j [B, P]."""
    sj = np.einsum("bpq,bq->bp", sigma, j)
    return sigma - np.einsum("bp,bq->bpq", sj, sj) / (sigma2 + np.einsum("bp,bp->b", j, sj))[:, None, None]


def design_crossover(curves: pd.DataFrame, language: str, params: float | None = None, *, k: int = 1,
                     budget: float | None = None, bootstrap: int = 200, seed: int = 0, level: float = 0.95,
                     reach: float = 8.0, lo: float = 1e6, hi: float = 1e15) -> Design:
    """Which of ``language``'s two curves at model size ``params`` (default the smallest) to train further, and how
    far, to narrow the interval of the pretrain/finetune crossover D* (:mod:`atlas_jax.analysis.crossover`) the
    most per FLOP.

    The scratch curve (E_s, B_s, beta_s) and the finetune curve (E_f, B_f, beta_f, D0) are fitted with
    ``bootstrap`` resamples each (seeds ``seed``, ``seed + 1``, as :func:`~atlas_jax.analysis.fit_crossovers`),
    draws paired. The target is log D*, the root of g(D) = L_s(D) - L_f(D); by the implicit function theorem
    d log D* / d theta = -(dg/d theta) / (dg/d log D) at D*. A candidate extends one curve from its last
    checkpoint to D, adding checkpoints at the curve's median log spacing, each with information j j' / sigma_r^2
    (sigma_r: that curve's robust residual scale), at a cost of 6 N (D - D_last); the two fits are independent,
    so the covariance is block-diagonal. The rest is :func:`design`'s greedy batch: ``k`` extensions (a curve
    may be extended again), within ``budget`` FLOPs (the better of greedy per FLOP and in all), stopping when
    none narrows the interval.
    Flags: ``extrapolated`` (D* outside the tokens both curves saw), ``second_crossing``, ``unbounded_interval``
    (some draws never cross, so D*'s interval is open: the widths are then those of the draws that cross).
    Raises ``ValueError`` when either fit has a flag other than a wide interval, or when the curves do not cross
    at the estimate or in half the draws."""
    from .crossover import _common_range, _crossover_draws, _flags, crossover_curves, crossover_search
    from ..laws.curve import FINETUNE_CURVE, SCRATCH_CURVE

    if int(k) != k or k < 1 or (budget is not None and not budget > 0) or bootstrap < 20 or not reach > 1:
        raise ValueError(f"k = {k}, budget = {budget}, bootstrap = {bootstrap}, reach = {reach}: expected an "
                         "integer k >= 1, a budget > 0 FLOPs, at least 20 bootstrap resamples and reach > 1")
    pair = crossover_curves(curves, language, params)
    if "params" not in pair.columns:
        raise ValueError("crossover design: the curves need a 'params' column (model size N): a checkpoint costs "
                         "6 N D FLOPs")
    N = float(pair["params"].iloc[0])
    laws = {"pretrain": SCRATCH_CURVE, "finetune": FINETUNE_CURVE}
    rows = {r: pair[pair["regime"] == r].sort_values("tokens") for r in laws}
    for r, frame in rows.items():
        if frame.empty:
            raise ValueError(f"crossover design: {language} at N = {N:.4g} has no {r} curve")
    with warnings.catch_warnings():  # the fits' flags: refused or noted below
        warnings.simplefilter("ignore", UserWarning)
        fits = {r: fit(law, rows[r][["tokens", "loss"]].reset_index(drop=True), bootstrap=bootstrap, seed=seed + i,
                       level=level) for i, (r, law) in enumerate(laws.items())}
    for r, res in fits.items():
        if set(res.flags[0]) - {"wide_interval"}:
            raise ValueError(f"cannot design runs: the {r} curve's fit ({laws[r].name}) of {language} at N = "
                             f"{N:.4g} (checkpoints to {rows[r]['tokens'].max():.3g} tokens) is "
                             f"{res.verdict(res.groups[0])}; extend that curve first")
    ok = Status.usable(fits["pretrain"].sample_status[0]) & Status.usable(fits["finetune"].sample_status[0])
    public = {r: fits[r].samples[0][ok] for r in laws}
    observed = _common_range(rows["pretrain"]["tokens"], rows["finetune"]["tokens"])
    point = crossover_search(fits["pretrain"].estimate[0], fits["finetune"].estimate[0], lo, hi, observed)
    found, summary = _crossover_draws(public["pretrain"], public["finetune"], lo, hi, level, observed)
    crossing = np.isfinite(found) & (found > 0)  # censored draws (inf, 0): in the interval, not in the gradients
    if not 0 < point.tokens < np.inf or crossing.mean() < 0.5:
        raise ValueError(f"crossover design: the {language} curves at N = {N:.4g} cross in [{lo:.0e}, {hi:.0e}] "
                         f"tokens {'at' if 0 < point.tokens < np.inf else 'not at'} the estimate and in "
                         f"{crossing.mean():.0%} of the draws; a design needs a crossing (longer curves first)")
    width = float(summary["ci_high"] - summary["ci_low"])
    notes = [f"the {r} curve's fit is {fits[r].verdict(fits[r].groups[0])}: what the next checkpoints should narrow"
             for r in laws if fits[r].flags[0]]
    unbounded = not (np.isfinite(width) and summary["ci_low"] > 0)
    if unbounded:  # the interval is open: widths of the draws that cross, flagged
        tail = 50.0 * (1.0 - level)
        width = float(np.diff(np.percentile(found[crossing], [tail, 100.0 - tail]))[0])
        notes.append(f"unbounded interval: {1 - crossing.mean():.0%} of the draws do not cross in [{lo:.0e}, "
                     f"{hi:.0e}] tokens, so D*'s interval is [{summary['ci_low']:.3g}, {summary['ci_high']:.3g}]; "
                     "the widths here are those of the draws that cross")
    elif not crossing.all():
        notes.append(f"{1 - crossing.mean():.0%} of the draws do not cross in [{lo:.0e}, {hi:.0e}] tokens: counted "
                     "in the width, left out of the linearised ranking")
    theta = np.concatenate([np.stack([p.to_internal(public[r][crossing, j]) for j, p in enumerate(laws[r].params)], 1)
                            for r in laws], axis=1)                                          # [B, 3 + 4]
    log_d = np.log(found[crossing])
    grad_t = np.asarray(jax.vmap(_log_crossover_gradient)(jnp.asarray(theta), jnp.asarray(log_d)))   # [B, 7]
    blocks = {"pretrain": slice(0, 3), "finetune": slice(3, 7)}
    noise = {r: _noise_variance(laws[r], rows[r], fits[r].estimate[0]) for r in laws}
    sigma = np.zeros((len(theta),) + (theta.shape[1],) * 2)  # the two fits are independent: block-diagonal
    for r, b in blocks.items():
        sigma[:, b, b] = _covariance(_jacobians(laws[r], theta[:, b], laws[r].features(rows[r]), bootstrap),
                                     noise[r], np.ones(b.stop - b.start, bool))
    v0 = np.einsum("bp,bpq,bq->b", grad_t, sigma, grad_t)

    def expected(s):
        return float(_scaled_width(np.einsum("bp,bpq,bq->b", grad_t, s, grad_t), v0, width))

    ladders = {}  # regime -> (tokens of the next checkpoints, their Jacobians [B, M, 7], noise variance)
    for r, law in laws.items():
        log_tokens = np.log(rows[r]["tokens"].to_numpy(float))
        step = float(np.median(np.diff(np.unique(log_tokens)))) if len(np.unique(log_tokens)) > 1 else np.log(2.0)
        tokens = np.exp(log_tokens.max() + step * np.arange(1, max(4, int(np.log(reach) / step)) + 1))
        jac = np.zeros((len(theta), len(tokens), theta.shape[1]))
        jac[..., blocks[r]] = _jacobians(law, theta[:, blocks[r]], {"d": tokens}, bootstrap)
        ladders[r] = (tokens, jac, noise[r])

    def extensions(sigma, at):
        """Expected width after extending each curve from checkpoint ``at[r]`` to each later one."""
        out = {}
        for r, (tokens, jac, s2) in ladders.items():
            s, widths = sigma, np.full(len(tokens), np.nan)
            for m in range(at[r], len(tokens)):
                s = _updated(s, jac[:, m], s2)
                widths[m] = expected(s)
            out[r] = widths
        return out

    def last(r, at):
        return ladders[r][0][at[r] - 1] if at[r] else float(rows[r]["tokens"].max())

    at = {r: 0 for r in laws}
    alone = extensions(sigma, at)
    candidates = pd.DataFrame([{"regime": r, "params": N, "tokens": d, "checkpoints": m + 1,
                                "flops": 6.0 * N * (d - last(r, at)), "width": alone[r][m]}
                               for r in laws for m, d in enumerate(ladders[r][0])])
    candidates["value_per_pflop"] = (width - candidates["width"]) / candidates["flops"] * 1e15

    def greedy(per_flop: bool):
        """k extensions, each the best by expected narrowing per FLOP (``per_flop``) or in all; (picks, note)."""
        picks, spent, before, s, pos = [], 0.0, width, sigma, dict(at)
        for _ in range(int(k)):
            after = extensions(s, pos)
            options = [(r, m, 6.0 * N * (ladders[r][0][m] - last(r, pos))) for r in laws
                       for m in range(pos[r], len(ladders[r][0]))]
            options = [(r, m, c) for r, m, c in options if budget is None or spent + c <= budget]
            if not options:
                break
            r, m, cost = max(options, key=lambda o: (before - after[o[0]][o[1]]) / (o[2] if per_flop else 1.0))
            if not before - after[r][m] > 0:
                return picks, f"stopped after {len(picks)} extension(s): none is expected to narrow the interval " \
                              "further"
            spent += cost
            picks.append({"regime": r, "params": N, "tokens": ladders[r][0][m], "checkpoints": m + 1 - pos[r],
                          "flops": cost, "width": float(after[r][m]), "linearised_width": float(after[r][m]),
                          "value_per_pflop": float((before - after[r][m]) / cost * 1e15), "total_flops": spent})
            for j in range(pos[r], m + 1):
                s = _updated(s, ladders[r][1][:, j], ladders[r][2])
            pos[r], before = m + 1, float(after[r][m])
        return picks, None

    picks = _greedy_batch(greedy, budget, notes, "extensions")
    if len(picks) < k and budget is not None and not any(n.startswith("stopped") for n in notes):
        notes.append(f"{len(picks)} of {k} extensions fit the budget of {budget:.3g} FLOPs")
    notes.append("ranked linearised: each new checkpoint's information j j^T / sigma_r^2 (sigma = "
                 + ", ".join(f"{ladders[r][2] ** 0.5:.3g} ({r})" for r in laws)
                 + f" in log loss) added to the covariance of {len(theta)} paired bootstrap draws")
    flags = tuple(f for f in _flags(float(point.tokens), point.n_crossings > 1, observed)
                  if f in ("extrapolated", "second_crossing")) + (("unbounded_interval",) if unbounded else ())
    if "extrapolated" in flags:
        notes.append(f"extrapolated: D* = {float(point.tokens):.3g} lies outside the tokens where both curves were "
                     "observed; the interval assumes both fitted curves hold out to it")
    runs = pair[["params", "tokens", "loss", "regime"]].reset_index(drop=True)
    columns = ["regime", "params", "tokens", "checkpoints", "flops", "width", "linearised_width", "value_per_pflop",
               "total_flops"]
    return Design("crossover", "crossover_tokens", None, f"{language} at N = {N:.4g}", float(point.tokens), width,
                  level, pd.DataFrame(picks, columns=columns),
                  candidates.sort_values("value_per_pflop", ascending=False, ignore_index=True), runs,
                  tuple(notes), None, flags)


def _log_crossover_gradient(theta, log_d):
    """d log D* / d theta for theta = (scratch internal, finetune internal) at the crossing log_d (module doc of
    :func:`design_crossover`): -(dg/d theta) / (dg/d log D), g = L_s - L_f."""
    from ..laws.curve import FINETUNE_CURVE, SCRATCH_CURVE

    def g(th, ld):
        x = {"d": jnp.exp(ld)}
        return jnp.exp(SCRATCH_CURVE.log_loss(th[:3], x)) - jnp.exp(FINETUNE_CURVE.log_loss(th[3:], x))

    return -jax.grad(g, 0)(theta, log_d) / jax.grad(g, 1)(theta, log_d)
