"""Fixed and tied parameters as an affine map from free to full parameters.

``theta = offset + basis @ phi``: a fixed parameter has a zero row and its value
in ``offset``; tied parameters share one column of ``basis``. The solver only
sees ``phi`` (the free parameters), so constraints cost nothing inside the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..laws.spec import Law

__all__ = ["Constraints"]


@dataclass(frozen=True)
class Constraints:
    basis: np.ndarray      # (P, q) 0/1
    offset: np.ndarray     # (P,) internal values of fixed parameters, 0 elsewhere
    lower: np.ndarray      # (q,)
    upper: np.ndarray      # (q,)
    free_names: tuple[str, ...]
    fixed: Mapping[str, float]
    ties: tuple[tuple[str, str], ...]

    @classmethod
    def build(cls, law: Law, fix: Mapping[str, float] | None = None,
              tie: Sequence[tuple[str, str]] | None = None) -> "Constraints":
        """``fix`` maps public names to public values; ``tie`` pairs (leader, follower) with follower = leader."""
        fix = dict(fix or {})
        ties = tuple(tuple(t) for t in (tie or ()))
        P = len(law.params)
        owner = list(range(P))  # which parameter each one follows
        for leader, follower in ties:
            i, j = law.index(leader), law.index(follower)
            if law.params[i].log != law.params[j].log:
                raise ValueError(f"cannot tie {leader!r} and {follower!r}: one is fitted in log space, the other not")
            if i == j:
                raise ValueError(f"cannot tie {leader!r} to itself")
            owner[j] = owner[i]
        offset = np.zeros(P)
        fixed_idx = set()
        for name, value in fix.items():
            i = law.index(name)
            offset[i] = law.params[i].internal_value(value)
            fixed_idx.add(i)
        for i in range(P):  # a parameter tied to a fixed one is fixed too
            if owner[i] in fixed_idx and i not in fixed_idx:
                offset[i] = offset[owner[i]]
                fixed_idx.add(i)
            elif i in fixed_idx and owner[i] != i:
                raise ValueError(f"parameter {law.params[i].name!r} is both fixed and tied to another parameter")
        leaders = [i for i in range(P) if owner[i] == i and i not in fixed_idx]
        basis = np.zeros((P, len(leaders)))
        for col, lead in enumerate(leaders):
            for i in range(P):
                if owner[i] == lead and i not in fixed_idx:
                    basis[i, col] = 1.0
        lower = np.array([max(law.params[i].bounds[0] for i in range(P) if basis[i, c]) for c in range(len(leaders))])
        upper = np.array([min(law.params[i].bounds[1] for i in range(P) if basis[i, c]) for c in range(len(leaders))])
        return cls(basis, offset, lower, upper, tuple(law.params[i].name for i in leaders),
                   {law.params[i].name: float(law.params[i].to_public(offset[i])) for i in sorted(fixed_idx)}, ties)

    @property
    def n_free(self) -> int:
        return self.basis.shape[1]

    def expand(self, phi: np.ndarray) -> np.ndarray:
        """Free (..., q) -> full internal (..., P)."""
        return self.offset + np.asarray(phi) @ self.basis.T

    def project(self, theta: np.ndarray) -> np.ndarray:
        """Full internal (..., P) -> free (..., q): each free parameter takes its first member's value."""
        first = np.argmax(self.basis, axis=0)
        return np.asarray(theta)[..., first]
