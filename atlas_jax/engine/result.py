"""The outcome of a batched fit: estimates, diagnostics and bootstrap intervals per group."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np
import pandas as pd

from .identify import describe
from .solver import Status

__all__ = ["FitResult", "group_index"]

#: the array fields of a FitResult (saved to .npz); the others are plain data (saved to JSON)
ARRAY_FIELDS = ("estimate", "objective", "steps", "grad_norm", "n_runs", "samples", "sample_status", "ci_low",
                "ci_high", "condition")


def group_index(groups: tuple[str, ...], group: str | None) -> int:
    """Position of ``group`` in ``groups``; ``None`` names the only group."""
    if group is None:
        if len(groups) != 1:
            raise ValueError(f"several groups were fitted ({', '.join(groups)}): name one")
        return 0
    if group not in groups:
        raise ValueError(f"unknown group {group!r}; groups: {', '.join(groups)}")
    return groups.index(group)


@dataclass(frozen=True)
class FitResult:
    """Per-group fits of one law. Arrays are indexed ``[group, parameter]``.

    ``estimate`` and ``samples`` are in public space (E, A, B, not their logs);
    ``samples`` is ``[group, resample, parameter]`` when bootstrapped. ``status`` is the solver's status of
    each group's best fit; ``flags`` holds each group's identification flags ``{flag: parameters}``
    (:mod:`atlas_jax.engine.identify`) and ``condition`` the condition number of its Gauss-Newton Hessian.
    A group is usable only when it has no flag: :meth:`verdict` says ``converged`` only then.
    """

    law: str
    groups: tuple[str, ...]
    names: tuple[tuple[str, ...], ...]       # public parameter names, per group
    estimate: np.ndarray
    objective: np.ndarray
    status: tuple[str, ...]
    steps: np.ndarray
    grad_norm: np.ndarray
    n_runs: np.ndarray
    n_starts: int
    delta: float
    fixed: dict = field(default_factory=dict)
    ties: tuple = ()
    samples: np.ndarray | None = None
    sample_status: np.ndarray | None = None  # [group, resample] status codes
    ci_low: np.ndarray | None = None
    ci_high: np.ndarray | None = None
    level: float = 0.95
    warnings: tuple[str, ...] = ()
    timings: dict = field(default_factory=dict)
    flags: tuple[dict, ...] = ()
    condition: np.ndarray | None = None
    bootstrap_unit: str | None = None
    skipped: tuple[str, ...] = ()            # groups with fewer runs than free parameters, not fitted
    shared: tuple[str, ...] = ()             # parameters fitted jointly across the groups
    screen_rows: int | None = None           # runs per group the starts were screened on (None: all)

    @property
    def usable(self) -> tuple[bool, ...]:
        """Per group: converged with no identification flag."""
        return tuple(not self._flags(g) for g in range(len(self.groups)))

    def _flags(self, g: int) -> dict:
        return self.flags[g] if self.flags else {}

    def verdict(self, group: str | None = None) -> str:
        """``converged``, or ``flagged: ...`` naming every flag and the parameters it concerns."""
        g = self._group_index(group)
        flags = self._flags(g)
        if not flags:
            return self.status[g]
        refits = float(np.mean(Status.usable(self.sample_status[g]))) if self.sample_status is not None else None
        condition = None if self.condition is None else float(self.condition[g])
        return "flagged: " + describe(flags, condition, refits)

    def param_flags(self, name: str, group: str | None = None) -> tuple[str, ...]:
        """Flags that concern parameter ``name`` of a group (whole-group flags included)."""
        g = self._group_index(group)
        return tuple(f for f, params in self._flags(g).items() if not params or name in params)

    def params(self, group: str | None = None) -> dict[str, float]:
        """Estimates of one group (the only one if ``group`` is None) as ``{name: value}``."""
        g = self._group_index(group)
        return dict(zip(self.names[g], map(float, self.estimate[g])))

    def predicted(self, frame: pd.DataFrame, group: str | None = None,
                  level: float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Fitted loss of every run of ``frame`` (rows of ``group``) [runs], and the ``level`` interval (default the
        fit's) over the usable bootstrap refits [2, runs], None without refits
        (:func:`~atlas_jax.engine.evaluate.predict`)."""
        from .bootstrap import percentile_interval
        from .evaluate import predict

        g = self._group_index(group)
        point = predict(self.law, frame, self.params(self.groups[g]))
        if self.samples is None:
            return point, None
        draws = self.samples[g][Status.usable(self.sample_status[g])]
        losses = predict(self.law, frame, dict(zip(self.names[g], draws.T)))
        return point, np.stack(percentile_interval(losses, self.level if level is None else level))

    def interval(self, name: str, group: str | None = None) -> tuple[float, float]:
        if self.ci_low is None:
            raise ValueError("no bootstrap was run: fit with bootstrap > 0 for intervals")
        g = self._group_index(group)
        j = self.names[g].index(name)
        return float(self.ci_low[g, j]), float(self.ci_high[g, j])

    def _group_index(self, group):
        return group_index(self.groups, group)

    def select(self, group: str | None = None) -> FitResult:
        """The fit of one group as a one-group result; warnings about other groups (``group '<name>': ...``)
        are left out."""
        g = self._group_index(group)
        others = tuple(f"group {o!r}" for o in self.groups if o != self.groups[g])
        pick = lambda a: None if a is None else a[g:g + 1]
        return replace(self, groups=self.groups[g:g + 1], names=self.names[g:g + 1],
                       status=self.status[g:g + 1], flags=self.flags[g:g + 1],
                       warnings=tuple(w for w in self.warnings if not w.startswith(others)),
                       **{k: pick(getattr(self, k)) for k in ARRAY_FIELDS})

    def to_record(self) -> tuple[dict[str, np.ndarray], dict]:
        """``(arrays, metadata)``: the array fields (absent ones left out) and every other field as JSON-ready
        data; :meth:`from_record` rebuilds an equal result."""
        arrays = {k: np.asarray(getattr(self, k)) for k in ARRAY_FIELDS if getattr(self, k) is not None}
        meta = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ARRAY_FIELDS}
        meta.update(groups=list(self.groups), names=[list(n) for n in self.names], status=list(self.status),
                    ties=[list(t) for t in self.ties], warnings=list(self.warnings), skipped=list(self.skipped),
                    shared=list(self.shared), flags=[{f: list(p) for f, p in fl.items()} for fl in self.flags],
                    fixed={k: float(v) for k, v in self.fixed.items()})
        return arrays, meta

    @classmethod
    def from_record(cls, arrays: dict[str, np.ndarray], meta: dict) -> FitResult:
        """The result :meth:`to_record` described."""
        tuples = {k: tuple(meta[k]) for k in ("groups", "status", "warnings", "skipped", "shared")}
        return cls(**{**meta, **tuples, "names": tuple(map(tuple, meta["names"])),
                      "ties": tuple(map(tuple, meta["ties"])),
                      "flags": tuple({f: tuple(p) for f, p in fl.items()} for fl in meta["flags"])},
                   **{k: arrays.get(k) for k in ARRAY_FIELDS})

    def to_frame(self) -> pd.DataFrame:
        """Long format: one row per group and parameter (``group, param, estimate[, ci_low, ci_high], flags``);
        ``flags`` lists the flags that concern the parameter, separated by ``;`` (empty when none)."""
        rows = []
        for g, group in enumerate(self.groups):
            for j, name in enumerate(self.names[g]):
                row = {"group": group, "param": name, "estimate": float(self.estimate[g, j])}
                if self.ci_low is not None:
                    row["ci_low"] = float(self.ci_low[g, j])
                    row["ci_high"] = float(self.ci_high[g, j])
                row["flags"] = ";".join(f for f, params in self._flags(g).items() if not params or name in params)
                rows.append(row)
        return pd.DataFrame(rows)

    def summary(self) -> dict:
        """Per-group diagnostics as plain data (for fit.json)."""
        return {
            group: {
                "objective": float(self.objective[g]),
                "status": "flagged" if self._flags(g) else self.status[g],
                "solver_status": self.status[g],
                "flags": {f: list(p) for f, p in self._flags(g).items()},
                "verdict": self.verdict(group),
                **({"condition_number": float(self.condition[g])} if self.condition is not None else {}),
                "steps": int(self.steps[g]),
                "grad_norm": float(self.grad_norm[g]),
                "n_runs": int(self.n_runs[g]),
                **({"shared": list(self.shared)} if self.shared else {}),
                **({"bootstrap_converged_fraction": float(np.mean(self.sample_status[g] == Status.CONVERGED))}
                   if self.sample_status is not None else {}),
            }
            for g, group in enumerate(self.groups)
        } | {group: {"status": "skipped", "verdict": "skipped: fewer runs than free parameters"}
             for group in self.skipped}
