"""Batched robust fitting: groups x starts x bootstrap resamples in one compiled call.

``fit(law, runs)`` minimises, for every group g independently,

    sum_i w_i Huber_delta(log L_hat(theta; x_i) - log L_i)      (Hoffmann et al. 2022)

with the Levenberg-Marquardt solver of :mod:`atlas_jax.engine.solver`, through a pool of
solver slots (:func:`~atlas_jax.engine.solver.solve_many`). Multi-start is
screen-then-polish: every start takes ``screen_steps`` steps, the ``keep`` best
per group are run to convergence, and the lowest objective wins. A bootstrap
resample is a vector of integer weights on the group's runs, refitted from the
group's estimate (or by the whole multi-start); intervals are percentiles of the refits.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from functools import partial
from typing import Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from tqdm import tqdm  # text bars on stderr: tqdm.auto needs ipywidgets in Jupyter, or warns

from ..data.runs import RunTable, split_groups, validate_runs
from ..data.select import check_settings
from ..devices import batch_mesh, replicated
from ..laws import get_law
from ..laws.spec import LOSS_SCALED, Law
from ..programs import stored_jit
from .bootstrap import counts_from_indices, percentile_interval, resample_counts
from .constraints import Constraints
from .identify import bootstrap_flags, describe, gauss_newton, point_flags
from .result import FitResult
from .shared import SharedLayout, fit_shared
from .solver import Config, Solution, Status, pool_size, solve_many

__all__ = ["fit", "fit_arrays", "GroupedData", "group_data", "solve_batch", "problem_shapes", "bucket", "power_of_2",
           "pad_to"]

DTYPES = ("float64", "float32", "mixed")
BOOTSTRAP_UNITS = ("run", "row")
PROGRESS_MIN = 2**22  # fits x runs of a batch worth a progress bar (~3 s on a 2-core CPU)
ROW_CHUNK = 4096  # groups of more runs are padded to a multiple of it and evaluated a chunk at a time
POLISH_ALL = 4  # the subsample's best optima polished on all runs (screen_rows)
TYPICAL_LOSS = 2.5  # nats per token: the start grids suit median losses within a factor 10 of it


def require_x64() -> None:
    if jnp.zeros(()).dtype != jnp.float64:
        raise RuntimeError("atlas_jax needs float64: jax_enable_x64 was switched off after import")


class GroupedData(NamedTuple):
    """The array form of a run table that :func:`fit_arrays` fits: groups padded to one length ``n``.

    ``features`` (the law's inputs, each [G, n]), ``log_y`` [G, n] (log losses), ``mask`` [G, n] (each run's
    weight, 0 on padding), ``run`` [G, n] (integer training-run ids, -1 on padding; None when runs are not
    identified), ``names``: each group's public parameter names (``tau_en`` for the law's ``tau_1``)."""

    groups: tuple[str, ...]
    names: tuple[tuple[str, ...], ...]
    features: dict[str, np.ndarray]
    log_y: np.ndarray
    mask: np.ndarray
    run: np.ndarray | None = None

    @property
    def n_runs(self) -> np.ndarray:
        """Runs of positive weight, per group."""
        return (self.mask > 0).sum(axis=1)

    def take(self, keep: np.ndarray) -> GroupedData:
        """The groups at positions ``keep``."""
        return GroupedData(tuple(self.groups[i] for i in keep), tuple(self.names[i] for i in keep),
                           {k: v[keep] for k, v in self.features.items()}, self.log_y[keep], self.mask[keep],
                           None if self.run is None else self.run[keep])


def bucket(n: int) -> int:
    """The smallest of 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (2^k and 3 * 2^k) that is at least ``n``: sizes padded to
    it share one compiled program, less than 50 % larger than needed."""
    n = max(int(n), 1)
    power = 1 << (n - 1).bit_length()
    return 3 * power // 4 if 3 * power // 4 >= n and power >= 4 else power


def power_of_2(n: int, least: int = 1) -> int:
    """The smallest power of 2 that is at least ``n`` and ``least``: coarser buckets than :func:`bucket` (less than
    2x larger than needed), for sizes whose padding costs no arithmetic."""
    return max(least, 1 << (max(int(n), 1) - 1).bit_length())


def pad_to(a: np.ndarray, shape: tuple[int, ...], mode: str = "edge") -> np.ndarray:
    """``a`` padded at the end of its leading axes to ``shape`` (repeating the last entries, or zeros)."""
    a = np.asarray(a)
    return np.pad(a, [(0, s - d) for s, d in zip(shape, a.shape)] + [(0, 0)] * (a.ndim - len(shape)), mode=mode)


def group_data(law: Law, frame: pd.DataFrame, group_by: str | None, weights: np.ndarray | None = None) -> GroupedData:
    """Split a validated frame into groups and build each group's arrays (:class:`GroupedData`); ``weights``: one
    per row (default 1)."""
    weights = np.ones(len(frame)) if weights is None else np.asarray(weights, float)
    if weights.shape != (len(frame),) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(f"weights: expected {len(frame)} finite values >= 0, one per run")
    groups, rows = split_groups(frame, group_by)
    frames = [frame.iloc[r].reset_index(drop=True) for r in rows]
    n_max = max(len(f) for f in frames)
    pad = lambda v, mode="edge": np.pad(np.asarray(v, float), (0, n_max - len(v)), mode=mode)
    feats = [law.features(f) for f in frames]
    run = None
    if "run" in frame.columns:
        ids = [np.unique(f["run"].to_numpy(), return_inverse=True)[1] for f in frames]
        run = np.stack([np.pad(i, (0, n_max - len(i)), constant_values=-1) for i in ids])
    return GroupedData(groups, tuple(law.names_for(f) for f in frames),
                       {k: np.stack([pad(fe[k]) for fe in feats]) for k in feats[0]},
                       np.stack([pad(np.log(f["loss"].to_numpy(float))) for f in frames]),
                       np.stack([pad(weights[r], "constant") for r in rows]), run)


class _Progress:
    """One tqdm bar at a time, fed from inside compiled loops by :func:`_tick` (a fixed function, so that
    turning progress on costs one compilation, not one per bar)."""

    bar = None


def _tick(k) -> None:
    if _Progress.bar is not None:
        _Progress.bar.update(int(k))


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int, desc: str, unit: str = "fit"):
    if not enabled:
        yield
        return
    _Progress.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr)
    try:
        yield
    finally:
        _Progress.bar.close()
        _Progress.bar = None


@partial(stored_jit, static_argnames=("log_loss", "progress", "devices"), devices="devices", unless=("progress",))
def solve_batch(log_loss, features, log_y, weights, row_group, problem_row, phi0, basis, offset, lower, upper, delta,
                max_steps, n_problems, progress=False, devices=1):
    """Solve problems ``0 .. n_problems - 1`` of a padded batch: problem i starts at ``phi0[i]`` (phi0 [count, q])
    with run weights ``weights[problem_row[i]]`` (weights [rows, n]) on group ``row_group[problem_row[i]]``'s
    ``features``/``log_y`` [G, n] (a group's point fit, or one bootstrap resample of it). ``n_problems`` is
    traced, so one compiled program serves every batch of the same padded shapes (:func:`problem_shapes`).
    Returns :class:`Solution` arrays with leading axis ``count`` (undefined past ``n_problems``).

    Groups of more than ``ROW_CHUNK`` runs (``n`` then a multiple of it) are evaluated ``ROW_CHUNK`` runs at a
    time, so a slot's memory does not grow with the table (:func:`~atlas_jax.engine.solver.solve_many`).
    The problems are split into ``devices`` equal contiguous blocks, one per device (``jax.shard_map``; under
    ``jax.distributed`` the devices of every process, with the inputs replicated, :mod:`atlas_jax.devices`);
    each device's problems share one slot pool, so problems that converge slowly do not hold the others'
    slots idle. Every problem is solved on its own, so the split changes results only in their last bits
    (XLA vectorises other pool sizes differently). In float32 the convergence tolerances are 1e-6.
    """
    count, q = phi0.shape
    n, per_device = log_y.shape[1], -(-count // devices)
    chunks = n // ROW_CHUNK if n > ROW_CHUNK else 0  # long groups: rows evaluated ROW_CHUNK at a time
    row_bytes = 8 * min(n, ROW_CHUNK) * (q + 2 + len(features))  # residual, Jacobian, features
    slots = pool_size(per_device, row_bytes + 8 * n)  # and the slot's weights
    share = -(-n_problems // devices)  # problems per device, traced
    if chunks:
        features, log_y, weights = jax.tree.map(lambda a: a.reshape(a.shape[:1] + (chunks, ROW_CHUNK)),
                                                (features, log_y, weights))

    def solve(lo, data):  # every array an argument: shard_map cannot close over arrays on a global mesh
        features, log_y, weights, row_group, problem_row, phi0, basis, offset, lower, upper = data
        single = phi0.dtype == jnp.float32
        cfg = Config(lower, upper, delta=delta, max_steps=max_steps,
                     ftol=1e-6 if single else 1e-10, xtol=1e-6 if single else 1e-11)

        def residual(phi, g, *chunk):  # group g's runs, or its chunk ``chunk[0]``
            theta = offset + basis @ phi
            x = jax.tree.map(lambda a: a[(g,) + chunk], features)
            return jax.vmap(lambda xi: log_loss(theta, xi))(x) - log_y[(g,) + chunk]

        def problem(i):
            i = jnp.minimum(lo[0] + i, count - 1)
            return phi0[i], weights[problem_row[i]], row_group[problem_row[i]]

        return solve_many(residual, problem, per_device, cfg, slots=slots, on_finish=_tick if progress else None,
                          limit=lo[1])

    start = share * jnp.arange(devices)
    # each device's first problem and how many it solves
    lo = jnp.stack([start, jnp.clip(n_problems - start, 0, share)], axis=1)
    data = (features, log_y, weights, row_group, problem_row, phi0, basis, offset, lower, upper)
    if devices > 1:
        mesh = batch_mesh(devices)
        sharded = jax.shard_map(lambda lo, d: solve(lo[0], d), mesh=mesh, in_specs=(jax.P("batch"), jax.P()),
                                out_specs=jax.P("batch"), check_vma=False)
        out = jax.tree.map(lambda x: jax.reshard(x, jax.NamedSharding(mesh, jax.P())),
                           sharded(jax.reshard(lo, jax.NamedSharding(mesh, jax.P("batch"))), data))
        i = jnp.arange(count)
        out = jax.tree.map(lambda a: a[(i // share) * per_device + i % share], out)  # device blocks -> problem order
    else:
        out = solve(lo[0], data)
    return out


def problem_shapes(problems: int, rows: int, n: int, budget: float, q: int) -> tuple[int, int]:
    """Padded (problems, weight rows) of a batch held in one call: powers of 2, at least 512 problems and 512 rows
    (fewer for long tables: at most 2 MiB of weights; and from 1 problem past ``ROW_CHUNK`` runs, as every
    solver slot, idle or not, evaluates all runs at each step), so that screening, polishing and bootstrap batches of
    most tables share a handful of compiled programs; the exact sizes where the padding would not fit in
    ``budget`` bytes (:func:`_chunk_size`). Padded problems cost no solver steps (``solve_many``'s ``limit``)."""
    least_rows = min(512, 1 << (max(2**21 // (8 * n), 1).bit_length() - 1))  # largest power of 2 within 2 MiB
    padded = power_of_2(problems, 512 if n <= ROW_CHUNK else 1), power_of_2(rows, least_rows)
    fits = padded[0] * _problem_bytes(q) + padded[1] * 8 * n <= budget
    return padded if fits else (problems, rows)


def fit(law: Law | str, runs: RunTable | pd.DataFrame, *, group_by: str | None = None,
        weights: np.ndarray | None = None, **options) -> FitResult:
    """Fit ``law`` to every group of ``runs``: the table is validated (if a DataFrame), split into groups and
    handed to :func:`fit_arrays`, whose keyword ``options`` (``bootstrap``, ``fix``, ``share``, ...) this takes.

    Args:
        law: a :class:`Law` or a registered name (:data:`~atlas_jax.laws.LAWS`).
        runs: a run table (:func:`~atlas_jax.data.runs.validate_runs`).
        group_by: column whose values define independent fits (e.g. ``language``).
        weights: one non-negative weight per run (e.g. 0 for held-out runs); bootstrap resamples draw from the
            runs with positive weight and keep their weights.
    """
    law = get_law(law) if isinstance(law, str) else law
    table = runs if isinstance(runs, RunTable) else validate_runs(runs, required=law.required, group_by=group_by)
    missing = [c for c in law.required + ((group_by,) if group_by else ()) if c not in table.frame.columns]
    if missing:
        raise ValueError(f"law {law.name!r} needs column(s) {missing}; available columns: {list(table.frame.columns)}")
    if options.get("share") and group_by is None:
        raise ValueError("share: parameters are shared across groups; give group_by (--group-by)")
    return fit_arrays(law, group_data(law, table.frame, group_by, weights), notes=table.warnings, **options)


def fit_arrays(
    law: Law | str,
    data: GroupedData,
    *,
    delta: float = 1e-3,
    starts: np.ndarray | None = None,
    fix: Mapping[str, float] | None = None,
    tie: Sequence[tuple[str, str]] | None = None,
    bootstrap: int = 0,
    bootstrap_unit: str | None = None,
    seed: int = 0,
    level: float = 0.95,
    screen_steps: int = 10,
    keep: int = 32,
    max_steps: int = 2000,
    screen_rows: int | None = 2048,
    resample_indices: np.ndarray | None = None,
    devices: int | None = None,
    memory_budget: float = 2**30,
    bootstrap_multistart: bool = False,
    dtype: str = "float64",
    share: Sequence[str] | None = None,
    progress: bool = False,
    notes: Sequence[str] = (),
) -> FitResult:
    """Fit ``law`` to every group of ``data`` (:class:`GroupedData`), optionally with ``bootstrap`` resamples.

    Args:
        delta: Huber threshold on log residuals.
        starts: (S, P) internal-space starts; default the law's grid, scaled to the losses when their median is
            more than 10x away from ``TYPICAL_LOSS`` (a note says so; :meth:`Law.start_grid`).
        fix: public parameter values to hold fixed, e.g. ``{"alpha": 0.35}``.
        tie: pairs ``(leader, follower)`` constrained equal, e.g. ``[("alpha", "beta")]``.
        bootstrap: number of resamples B (0: none).
        bootstrap_unit: what a resample draws with replacement: ``"run"`` (whole training runs: all rows
            sharing a ``run`` identifier, its checkpoints, enter or leave together) or ``"row"``; default
            ``"run"`` when the runs are identified (``data.run``), else ``"row"``.
        seed: seed of the resampling.
        level: the intervals' coverage.
        screen_steps, keep, max_steps: every start takes ``screen_steps`` steps, the ``keep`` best per group are
            polished for at most ``max_steps``.
        screen_rows: groups of more runs (of positive weight) screen and polish their starts on a random subsample
            of this many runs (fixed seed), and the best ``POLISH_ALL`` optima are then polished on all runs;
            ``None``: every step on all runs (cost rows x starts; BENCHMARKS.md "Large tables").
        resample_indices: (B, n) explicit resample indices (single group only), e.g. to replay another tool's draws.
        devices: devices the fits are split over (default: all; on a CPU, every core is one, and under
            ``jax.distributed`` every process's devices, which needs all of them, :mod:`atlas_jax.devices`);
            the results depend on it only in their last bits.
        memory_budget: bytes of weights, starts and solutions per compiled call (default 1 GiB); larger
            batches (many starts or resamples) run in chunks of equal size (same results to the last bits).
        bootstrap_multistart: refit every resample by the full screen-then-polish multi-start (S starts per
            resample) instead of from the group's estimate.
        dtype: the solver's arithmetic: ``"float64"`` (default); ``"float32"`` throughout (accelerator
            throughput, tolerances 1e-6); or ``"mixed"``, float32 for screening the starts and float64 for
            polishing and bootstrap refits from the estimate. Accuracy against float64: BENCHMARKS.md.
        share: free parameters shared by every group (e.g. ``["alpha", "beta"]``), fitted jointly with each
            group's own (:mod:`atlas_jax.engine.shared`; float64, one device); resamples are drawn within each group.
        progress: show progress bars (finished fits) on stderr for batches of at least ``PROGRESS_MIN`` fit-runs
            (smaller ones end in seconds, and keep their programs stored, :mod:`atlas_jax.programs`).
        notes: warnings already given about the data (kept in the result, not repeated).

    Groups with fewer runs (of positive weight) than free parameters are skipped with one warning naming
    them (``FitResult.skipped``); a ``ValueError`` when no group is left. Every fitted group gets
    identification flags (:mod:`atlas_jax.engine.identify`), one warning line per flagged group.

    ``FitResult.timings`` holds seconds (``prepare_s``, ``fit_s``, ``bootstrap_s``) and run-evaluations, the law
    and its Jacobian at one run for one fit (``fit_evaluations``, ``bootstrap_evaluations``).
    """
    require_x64()
    t0 = time.perf_counter()
    law = get_law(law) if isinstance(law, str) else law
    check_settings(delta=delta, bootstrap=bootstrap, level=level, screen_steps=screen_steps, keep=keep,
                    max_steps=max_steps, memory_budget=memory_budget, screen_rows=screen_rows)
    cons = Constraints.build(law, fix, tie)
    devices = _devices(devices)
    share = list(dict.fromkeys(share or ()))
    if share:
        SharedLayout.build(cons.free_names, share)  # names checked before any work
        if dtype != "float64" or bootstrap_multistart:
            raise ValueError("share: joint fits run in float64 from the estimate (no dtype, bootstrap_multistart)")
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {', '.join(map(repr, DTYPES))}, got {dtype!r}")
    unit = _bootstrap_unit(bootstrap_unit, data.run is not None, resample_indices)
    _check_arrays(law, data)
    _check_memory(bootstrap, data.mask.shape, len(law.params))
    n_needed = cons.n_free - len(share)
    data, skipped = _drop_small_groups(data, max(n_needed, 1), law.name)
    notes, given = list(notes), len(notes)
    if skipped:
        notes.append(f"skipped {len(skipped)} group(s) with fewer runs than the {n_needed} free parameters "
                     f"{'of its own ' if share else ''}of {law.name!r}: {', '.join(skipped)}")
    if starts is None:
        scale = _loss_scale(data)
        if scale != 1.0:
            notes.append(f"the losses are on an unusual scale (median {scale * TYPICAL_LOSS:.3g}, where the start "
                         f"grids expect about {TYPICAL_LOSS} nats per token): the starts of "
                         f"{', '.join(n for n in LOSS_SCALED if n in law.names)} are scaled by {scale:.3g}")
        grid = law.start_grid(scale)
    else:
        grid = np.atleast_2d(np.asarray(starts, float))
    phi_starts = np.unique(np.clip(cons.project(grid), cons.lower, cons.upper), axis=0)
    batches = _Batches(law, cons, data, devices, memory_budget, dtype, progress, screen_rows)
    timings = {"prepare_s": time.perf_counter() - t0}

    t0, boot = time.perf_counter(), None
    if share:
        best, boot, flags, condition = fit_shared(
            law, cons, data, share, delta=delta, grid=grid, bootstrap=bootstrap, unit=unit, seed=seed,
            screen_steps=screen_steps, keep=keep, max_steps=max_steps, indices=resample_indices)
        timings["fit_s"] = time.perf_counter() - t0
    else:
        groups = np.arange(len(data.groups))
        best = batches.multistart(data.mask, groups, phi_starts, delta, screen_steps, keep, max_steps)
        flags, condition = batches.point_flags(best)
        timings["fit_s"], timings["fit_evaluations"] = time.perf_counter() - t0, batches.evaluations
        if bootstrap or resample_indices is not None:
            t0 = time.perf_counter()
            counts = _bootstrap_weights(data, bootstrap, seed, resample_indices, unit)
            G, B, n = counts.shape
            rows, w = np.repeat(groups, B), counts.reshape(G * B, n)
            if bootstrap_multistart:
                boot = batches.multistart(w, rows, phi_starts, delta, screen_steps, keep, max_steps, "bootstrap ")
            else:
                boot = jax.tree.map(lambda a: a[:, 0], batches.solve(w, rows, best.params[rows, None, :], delta,
                                                                     max_steps, "bootstrap"))
            boot = jax.tree.map(lambda a: a.reshape((G, B) + a.shape[1:]), boot)
            timings["bootstrap_s"] = time.perf_counter() - t0
            timings["bootstrap_evaluations"] = batches.evaluations - timings["fit_evaluations"]
    return _result(law, cons, data, best, boot, flags, condition, level, notes, given,
                   dict(timings=timings, n_starts=len(phi_starts), delta=delta, shared=tuple(share),
                        screen_rows=None if batches.sub is None else screen_rows,
                        bootstrap_unit=unit if boot is not None else None, skipped=tuple(skipped)))


def _result(law, cons, data, best, boot, flags, condition, level, notes, given, fields) -> FitResult:
    """The :class:`FitResult` of a point fit ``best`` and bootstrap refits ``boot`` (None without): intervals,
    the flags of both named by each group's public parameters, one warning per new note (past the ``given``
    ones) and flagged group."""
    samples = sample_status = ci_low = ci_high = ok = None
    if boot is not None:
        samples, sample_status = law.to_public(cons.expand(boot.params.astype(float))), boot.status
        ok = Status.usable(sample_status)
        ci_low, ci_high = percentile_interval(np.where(ok[..., None], samples, np.nan), level, axis=1)
        positive = np.array([p.log or p.bounds[0] >= 0 for p in law.params])
        flags = bootstrap_flags(flags, ok, ci_low, ci_high, positive, (law.names,) * len(flags),
                                set(cons.free_names))
    public = [dict(zip(law.names, n)) for n in data.names]  # law-level names (tau_1) -> the group's (tau_en)
    flags = [{f: tuple(public[g][n] for n in params) for f, params in flags[g].items()} for g in range(len(flags))]
    for g, group in enumerate(data.groups):
        if flags[g]:
            refits = None if ok is None else float(np.mean(ok[g]))
            notes.append(f"group {group!r}: not a trustworthy fit: {describe(flags[g], condition[g], refits)}")
    for note in notes[given:]:
        warnings.warn(note, UserWarning, stacklevel=3)
    return FitResult(
        law=law.name, groups=data.groups, names=data.names,
        estimate=law.to_public(cons.expand(best.params.astype(float))), objective=best.objective.astype(float),
        status=tuple(str(Status(int(c))) for c in best.status), steps=best.steps,
        grad_norm=best.grad_norm.astype(float), n_runs=data.n_runs, fixed=dict(cons.fixed), ties=cons.ties,
        samples=samples, sample_status=sample_status, ci_low=ci_low, ci_high=ci_high, level=level,
        warnings=tuple(notes), flags=tuple(flags), condition=condition, **fields)


class _Batches:
    """One fit's padded arrays on its devices, and the batched solves over them (:func:`solve_batch`); for groups
    of more than ``screen_rows`` runs also those of a subsample of ``screen_rows`` runs per group (``sub``), on
    which the multi-start screens and polishes its starts (:meth:`multistart`)."""

    def __init__(self, law: Law, cons: Constraints, data: GroupedData, devices: int, memory_budget: float,
                 dtype: str, progress: bool, screen_rows: int | None = None):
        self.law, self.cons, self.data, self.devices, self.memory_budget = law, cons, data, devices, memory_budget
        self.screen_dtype = "float64" if dtype == "float64" else "float32"
        self.polish_dtype = "float32" if dtype == "float32" else "float64"
        self.progress, self.evaluations = progress, 0
        # groups: powers of 2 from 4; runs: buckets from 64 (padding runs weigh 0), so most tables share programs;
        # long groups: a multiple of ROW_CHUNK (solve_batch)
        n = max(64, bucket(data.mask.shape[1]))
        self.shape = (power_of_2(len(data.groups), 4), n if n <= ROW_CHUNK else -(-n // ROW_CHUNK) * ROW_CHUNK)
        self.features = {k: pad_to(v, self.shape) for k, v in data.features.items()}
        self.log_y = pad_to(data.log_y, self.shape)
        self.on_device = {dt: ({k: self.put(v, dt) for k, v in self.features.items()}, self.put(self.log_y, dt),
                               tuple(self.put(a, dt) for a in (cons.basis, cons.offset, cons.lower, cons.upper)))
                          for dt in {self.screen_dtype, self.polish_dtype}}
        self.sub = self.sub_rows = None
        if screen_rows and data.n_runs.max() > screen_rows:
            self.sub_rows = _subsample(data.mask, screen_rows)
            sub = GroupedData(data.groups, data.names,
                              {k: np.take_along_axis(v, self.sub_rows, 1) for k, v in data.features.items()},
                              np.take_along_axis(data.log_y, self.sub_rows, 1), self.sub_weights(data.mask))
            self.sub = _Batches(law, cons, sub, devices, memory_budget, dtype, progress)

    def sub_weights(self, weights: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """The weights [R, n] of rows (groups ``rows``, default all) on the subsample: [R, screen_rows]."""
        rows = np.arange(len(weights)) if rows is None else rows
        return np.take_along_axis(weights, np.maximum(self.sub_rows[rows], 0), 1) * (self.sub_rows[rows] >= 0)

    def put(self, a, dtype):
        return replicated(a, self.devices, dtype)

    def solve(self, w, rows, p0, delta, steps, desc, dt=None) -> Solution:
        """Solve rows (weights w [R, n] on groups ``rows`` [R]) x starts (p0 [R or 1, S, q]) in arithmetic ``dt``
        (default the polishing one): arrays [R, S, ...]. Batches are padded (:func:`problem_shapes`), so tables and
        batches of similar size share one compiled program; batches over ``memory_budget`` run in equal chunks
        (one program)."""
        (R, n), (S, q), n_padded = w.shape, p0.shape[1:], self.shape[1]
        dt = dt or self.polish_dtype
        features, log_y, consts = self.on_device[dt]
        w = np.pad(w, ((0, 0), (0, n_padded - n)))
        chunk = _chunk_size(R * S, S, n_padded, q, self.memory_budget)
        count, span = (problem_shapes(R * S, R, n_padded, self.memory_budget, q) if chunk == R * S
                       else (chunk, min(R, chunk // S + 2)))
        parts = []
        bar = self.progress and R * S * n_padded >= PROGRESS_MIN
        with _progress_bar(bar, R * S, desc):
            for lo in range(0, R * S, chunk):
                i = np.arange(lo, min(lo + chunk, R * S))
                r, first = i // S, lo // S
                take = np.minimum(np.arange(first, first + span), R - 1)  # rows of this chunk: one compilation
                starts = pad_to(p0[r if len(p0) > 1 else 0, i % S], (count,))
                sol = solve_batch(self.law.log_loss, features, log_y, self.put(w[take], dt),
                                  self.put(rows[take], None), self.put(pad_to(r - first, (count,)), None),
                                  self.put(starts, dt), *consts, delta, steps, len(i), progress=bar,
                                  devices=self.devices)
                parts.append(jax.tree.map(lambda a: np.asarray(a)[:len(i)], sol))
        sol = jax.tree.map(lambda *a: np.concatenate(a), *parts)
        self.evaluations += int(np.sum(sol.steps + 1)) * n  # the law and its Jacobian at every run, each step
        return jax.tree.map(lambda a: a.reshape((R, S) + a.shape[1:]), sol)

    def multistart(self, weights, rows, phi_starts, delta, screen_steps, keep, max_steps, desc="") -> Solution:
        """Screen every start for ``screen_steps`` steps (in the screening arithmetic), polish the ``keep`` best
        per row, return each row's best. With a subsample (``sub``) all this runs on it, and the ``POLISH_ALL``
        best of its optima are polished on all runs."""
        if self.sub is not None:
            before = self.sub.evaluations
            sol = self.sub.polished(self.sub_weights(weights, rows), rows, phi_starts, delta, screen_steps, keep,
                                    max_steps, desc + "subsample: ")
            self.evaluations += self.sub.evaluations - before
            sol = self.solve(weights, rows, _best(sol, POLISH_ALL).params, delta, max_steps, desc + "polishing")
        else:
            sol = self.polished(weights, rows, phi_starts, delta, screen_steps, keep, max_steps, desc)
        return jax.tree.map(lambda a: a[:, 0], _best(sol, 1))

    def polished(self, weights, rows, phi_starts, delta, screen_steps, keep, max_steps, desc) -> Solution:
        """The ``keep`` best starts per row after ``screen_steps`` steps, polished: arrays [R, keep, ...]."""
        starts = phi_starts[None]
        if len(phi_starts) > keep:
            screen = self.solve(weights, rows, starts, delta, screen_steps, desc + "screening starts",
                                self.screen_dtype)
            starts = _best(screen, keep).params
        return self.solve(weights, rows, starts, delta, max_steps, desc + "polishing")

    def point_flags(self, best: Solution):
        """Identification flags and condition numbers of each group's estimate (:mod:`.identify`)."""
        cons, mask = self.cons, self.data.mask
        (G, n), params = mask.shape, best.params.astype(float)
        jac, hess = gauss_newton(self.law.log_loss, self.features, self.log_y, pad_to(mask, self.shape, "constant"),
                                 pad_to(params, self.shape[:1]), cons.basis, cons.offset)
        return point_flags(np.asarray(jac)[:G, :n], np.asarray(hess)[:G], mask, params, cons.lower, cons.upper,
                           best.status, cons.free_names)


def _best(sol: Solution, k: int) -> Solution:
    """The ``k`` lowest finite objectives of each row of ``sol`` [R, S, ...], in order: [R, k, ...]."""
    order = np.argsort(np.where(np.isfinite(sol.objective), sol.objective, np.inf), axis=1, kind="stable")[:, :k]
    return jax.tree.map(lambda a: np.take_along_axis(a, order.reshape(order.shape + (1,) * (a.ndim - 2)), 1), sol)


def _subsample(mask: np.ndarray, m: int) -> np.ndarray:
    """[G, m] positions of up to ``m`` runs of positive weight per group, drawn without replacement (fixed seed) and
    sorted; -1 pads groups with fewer."""
    rng = np.random.default_rng(0)
    out = np.full((len(mask), m), -1)
    for g, w in enumerate(mask):
        live = np.flatnonzero(w > 0)
        pick = np.sort(rng.choice(live, m, replace=False)) if len(live) > m else live
        out[g, :len(pick)] = pick
    return out


def _problem_bytes(q: int) -> int:
    """Bytes of one problem in a compiled call: start (q), row index, solution (~q + 4)."""
    return 8 * (2 * q + 5)


def _chunk_size(total: int, S: int, n: int, q: int, memory_budget: float) -> int:
    """Problems per compiled call, so that its weights (8 n bytes per row; a chunk of c problems touches at
    most c / S + 2 rows) and problems (:func:`_problem_bytes`) stay within ``memory_budget`` bytes; all if they fit."""
    per_row = 8 * n
    room = memory_budget - 2 * per_row
    chunk = int(min(total, room // (_problem_bytes(q) + per_row / S)))
    if chunk < 1:
        raise ValueError(f"memory_budget: {memory_budget:.3g} bytes cannot hold one fit ({n} runs, {S} starts "
                         f"per row: {2 * per_row + _problem_bytes(q) + per_row / S:.0f} bytes); raise it")
    return chunk


def _check_memory(bootstrap: int, shape: tuple[int, int], n_params: int) -> None:
    """``ValueError`` when the resamples' weights and draws ([G, B, n + 2 P] float64) would not fit in half the
    machine's memory."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    per_resample = shape[0] * (shape[1] + 2 * n_params) * 8
    if bootstrap * per_resample > memory / 2:
        raise ValueError(f"bootstrap = {bootstrap}: the resamples' weights and draws need "
                         f"{bootstrap * per_resample / 2**30:.3g} GiB, more than half of this machine's "
                         f"{memory / 2**30:.3g} GiB; expected at most {int(memory / 2 / per_resample):,} resamples")


def _check_arrays(law: Law, data: GroupedData) -> None:
    """``ValueError`` unless ``data``'s arrays are [G, n] alike, its log losses and weights finite (weights >= 0)
    and its features those ``law`` reads."""
    shape = data.mask.shape
    for name, a in [("log_y", data.log_y), ("mask", data.mask)] + [(f"features[{k!r}]", v)
                                                                   for k, v in data.features.items()]:
        if np.shape(a) != shape or (name in ("log_y", "mask") and not np.all(np.isfinite(a))):
            raise ValueError(f"data.{name}: expected {'finite values' if name[0] in 'lm' else 'an array'} of shape "
                             f"{shape} (groups x runs), got shape {np.shape(a)}")
    if 0 in shape:
        raise ValueError(f"data: expected at least one group and one run, got arrays of shape {shape}")
    if len(data.groups) != shape[0] or len(data.names) != shape[0] or np.any(data.mask < 0):
        raise ValueError(f"data: expected {shape[0]} group names, parameter-name tuples and weights >= 0")
    try:
        jax.eval_shape(law.log_loss, np.zeros(len(law.params)), {k: v[0, 0] for k, v in data.features.items()})
    except KeyError as err:
        raise ValueError(f"data.features: law {law.name!r} reads feature {err}, got {sorted(data.features)}") from None


def _devices(devices: int | None) -> int:
    available = jax.device_count()
    devices = available if devices is None else devices
    if int(devices) != devices or not 1 <= devices <= available:
        raise ValueError(f"devices: expected an integer from 1 to {available} (the devices), got {devices}")
    if jax.process_count() > 1 and devices != available:
        raise ValueError(f"devices: under jax.distributed the fits span all {available} devices of the "
                         f"{jax.process_count()} processes; got {devices}")
    return int(devices)


def _loss_scale(data: GroupedData) -> float:
    """The median loss over ``TYPICAL_LOSS`` when it is more than 10x away from it (the start grids are scaled by
    it, :meth:`Law.start_grid`), else 1."""
    scale = float(np.exp(np.median(data.log_y[data.mask > 0]))) / TYPICAL_LOSS
    return scale if not 0.1 <= scale <= 10 else 1.0


def _drop_small_groups(data: GroupedData, n_free: int, law_name: str) -> tuple[GroupedData, list[str]]:
    """Leave out groups with fewer runs of positive weight than ``n_free``: (data, skipped names)."""
    small = data.n_runs < n_free
    if small.all():
        shown = ", ".join(f"{g!r} ({n})" for g, n in list(zip(data.groups, data.n_runs))[:10])
        raise ValueError(f"no group has the {n_free} runs (of positive weight) that the free parameters of "
                         f"{law_name!r} need: {shown}{' ...' if len(small) > 10 else ''}"
                         + ("; share parameters across groups (share=...) or fix some" if len(small) > 1
                            else "; fix some parameters (fix=...)"))
    return data.take(np.flatnonzero(~small)), [g for g, s in zip(data.groups, small) if s]


def _bootstrap_unit(unit: str | None, has_runs: bool, indices) -> str:
    if unit is None:
        return "run" if has_runs and indices is None else "row"
    if unit not in BOOTSTRAP_UNITS:
        raise ValueError(f"bootstrap_unit: expected one of {', '.join(BOOTSTRAP_UNITS)}, got {unit!r}")
    if unit == "run" and not has_runs:
        raise ValueError("bootstrap_unit 'run' needs a 'run' column (the training run each row belongs to)")
    if unit == "run" and indices is not None:
        raise ValueError("resample_indices draw rows: use bootstrap_unit='row'")
    return unit


def _bootstrap_weights(data: GroupedData, n_resamples: int, seed: int, indices, unit: str = "row") -> np.ndarray:
    """[G, B, n_max] resample counts times run weights; resamples draw from each group's weighted rows, or with
    ``unit="run"`` from its runs (a drawn run brings all its rows of positive weight)."""
    if indices is not None:
        if len(data.groups) != 1:
            raise ValueError("resample_indices needs a single group")
        indices = np.asarray(indices)
        if indices.min() < 0 or indices.max() >= data.n_runs[0]:
            raise ValueError(f"resample_indices: expected integers in [0, {data.n_runs[0]})")
    rng = np.random.default_rng(seed)
    out = np.zeros((len(data.groups), n_resamples if indices is None else len(indices), data.mask.shape[1]))
    for g, w in enumerate(data.mask):
        live = np.flatnonzero(w > 0)
        if unit == "run":
            _, run = np.unique(data.run[g][live], return_inverse=True)
            draws = resample_counts(rng, run.max() + 1, n_resamples)[:, run]
        else:
            draws = counts_from_indices(indices, len(live)) if indices is not None else \
                resample_counts(rng, len(live), n_resamples)
        if len(live) == len(w):
            np.multiply(draws, w, out=out[g])
        else:
            out[g][:, live] = draws * w[live]
    return out
