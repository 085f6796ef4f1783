"""The law specification shared by every engine.

A law is a parameter spec plus a pure single-run prediction of the log loss,
``log_loss(theta, x) -> scalar``, where ``theta`` holds the parameters in their
*internal* (unconstrained or log) space and ``x`` maps feature names to scalars
of one run. Engines vmap over runs, starts, groups and resamples; no law knows
about batching. ``features(frame, ...)`` turns a validated run table into the
feature arrays the prediction reads (the one place a law touches pandas).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from ..runtime import lazy

jnp = lazy("jax.numpy")  # imported when a law is first evaluated: laws are read without JAX

__all__ = ["Param", "Law", "lse", "grid_product", "LOSS_SCALED"]

#: Parameters (log-parameterised) proportional to the loss in every law: multiplying all losses by c multiplies
#: them by c and leaves the others (exponents, transfer weights) unchanged.
LOSS_SCALED = ("E", "A", "B")


@dataclass(frozen=True)
class Param:
    """One law parameter.

    ``name`` is the public (output) name, ``internal`` the name in fitting space;
    ``log=True`` means ``public = exp(internal)``. ``grid`` lists internal start
    values; ``bounds`` is the internal box the solver keeps to; ``prior`` is the (loc, scale) of the
    weakly informative Normal prior on the internal value used by :mod:`atlas_jax.bayes`.
    """

    name: str
    internal: str
    log: bool = False
    grid: tuple[float, ...] = (0.0,)
    bounds: tuple[float, float] = (-np.inf, np.inf)
    prior: tuple[float, float] = (0.0, 1.0)

    def to_public(self, value):
        return np.exp(value) if self.log else value

    def to_internal(self, value):
        return np.log(value) if self.log else value

    def internal_value(self, value: float) -> float:
        """The internal value of the public ``value``; a ``ValueError`` unless it is finite and in the domain."""
        value = float(value)
        if self.log and not value > 0:
            raise ValueError(f"--fix {self.name}={value:g}: {self.name} must be > 0")
        internal = float(self.to_internal(value)) if np.isfinite(value) else np.nan
        low, high = self.bounds
        if not low <= internal <= high:
            shown = [float(self.to_public(b)) for b in self.bounds]
            raise ValueError(f"--fix {self.name}={value:g}: expected a finite value in [{shown[0]:.6g}, "
                             f"{shown[1]:.6g}], the domain the law gives {self.name}")
        return internal


@dataclass(frozen=True)
class Law:
    """A scaling law: parameters, single-run log-loss prediction, feature builder."""

    name: str
    params: tuple[Param, ...]
    log_loss: Callable[[jnp.ndarray, Mapping[str, jnp.ndarray]], jnp.ndarray]
    features: Callable[..., dict[str, np.ndarray]]
    required: tuple[str, ...] = ("params", "tokens", "loss")
    description: str = ""
    group_names: Callable[..., tuple[str, ...]] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def internal_names(self) -> tuple[str, ...]:
        return tuple(p.internal for p in self.params)

    def names_for(self, frame) -> tuple[str, ...]:
        """Public names for one group's fit (laws whose names depend on the group override ``group_names``)."""
        return self.names if self.group_names is None else self.group_names(frame)

    def index(self, name: str) -> int:
        """Position of a parameter given by public or internal name."""
        for i, p in enumerate(self.params):
            if name in (p.name, p.internal):
                return i
        raise ValueError(f"law {self.name!r} has no parameter {name!r}; parameters: {', '.join(self.names)}")

    def start_grid(self, loss_scale: float = 1.0) -> np.ndarray:
        """Cartesian product of the parameters' start grids, shape (S, P), internal space. The grids suit losses
        of a few nats; for losses ``loss_scale`` times larger, the starts of the parameters proportional to the
        loss (:data:`LOSS_SCALED`, every law's E, A, B) are multiplied by it."""
        return grid_product([np.asarray(p.grid) + (np.log(loss_scale) if p.name in LOSS_SCALED else 0.0)
                             for p in self.params])

    def to_public(self, theta: np.ndarray) -> np.ndarray:
        """Internal -> public parameters along the last axis."""
        theta = np.asarray(theta, dtype=float)
        return np.stack([p.to_public(theta[..., i]) for i, p in enumerate(self.params)], axis=-1)


def grid_product(axes) -> np.ndarray:
    return np.array(list(itertools.product(*axes)), dtype=float).reshape(-1, len(axes))


def lse(*terms):
    """Log-sum-exp of scalar terms, written out (max, exp, log) so it fuses and vmaps cheaply."""
    m = terms[0]
    for t in terms[1:]:
        m = jnp.maximum(m, t)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    return m + jnp.log(sum(jnp.exp(t - m) for t in terms))
