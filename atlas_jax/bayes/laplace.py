"""Laplace approximation of a posterior, used to whiten NUTS's space before it adapts.

For a potential U(x) = -log p(x | data) on unconstrained parameters x, damped Newton finds the mode
m = argmin U and the Hessian H = grad^2 U(m); the Laplace approximation is x ~ Normal(m, H^-1). With
H = V diag(w) V^T, the square root S = V diag(w^-1/2) gives H^-1 = S S^T, and x = m + S z maps a
standard normal z onto it. NUTS then samples z, where the posterior is close to N(0, I).

Why: NumPyro's (and Stan's) windowed mass-matrix adaptation shrinks the sample covariance towards
1e-3 I. Scaling-law posteriors span five orders of magnitude in scale (sd 1e-4 for a transfer weight
against 0.2 for log A), so the shrinkage alone leaves the adapted metric 5e4 times too wide in the
narrowest direction, and NUTS runs at maximum tree depth (campaign language yo, ATLAS law: 836 leapfrog
steps per draw adapted, 15 with the Laplace metric). In the whitened space the shrinkage is harmless.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import numpy as np

__all__ = ["Laplace", "laplace"]


class Laplace(NamedTuple):
    """Mode ``mode`` [d], square root ``scale`` [d, d] of the inverse Hessian, Newton ``iterations``,
    ``converged`` (Newton decrement below tolerance) and ``clipped`` (non-positive Hessian eigenvalues,
    replaced by their magnitude: the point is not a strict local mode)."""

    mode: np.ndarray
    scale: np.ndarray
    iterations: int
    converged: bool
    clipped: int


def laplace(potential: Callable, x0, *, fixed=None, max_iter: int = 200, tol: float = 1e-9) -> Laplace:
    """Damped Newton on ``potential`` from ``x0``, holding the coordinates where the boolean mask ``fixed``
    is true at their ``x0`` values (a conditional mode); the returned scale is that of the full Hessian there.

    Eigenvalues of the Hessian are replaced by their magnitude (floored at 1e-10 of the largest) so each step
    descends, and the damping grows until the step lowers the potential. A potential that is not finite at
    ``x0`` raises FloatingPointError."""
    x = np.asarray(x0, dtype=np.float64)
    free = np.flatnonzero(~np.asarray(fixed, bool)) if fixed is not None else np.arange(x.shape[0])
    value_grad = jax.jit(jax.value_and_grad(potential))
    f, g = value_grad(x)
    if not np.isfinite(f):
        raise FloatingPointError(f"the potential is {float(f)} at the start point")
    damping, converged, it = 0.0, False, 0
    for it in range(1, max_iter + 1):
        w, v = np.linalg.eigh(_hessian(value_grad, x, free))
        w = np.maximum(np.abs(w), 1e-10 * np.abs(w).max())
        gv = v.T @ np.asarray(g)[free]
        if float(gv @ (gv / w)) < tol:  # squared Newton decrement: predicted decrease x 2
            converged = True
            break
        while damping < 1e12:
            step = x.copy()
            step[free] -= v @ (gv / (w + damping))
            f_new, g_new = value_grad(step)
            if np.isfinite(f_new) and f_new <= f:
                x, f, g, damping = step, f_new, g_new, damping * 0.1
                break
            damping = max(10.0 * damping, 1e-6 * w.max())
        else:
            break
    w, v = np.linalg.eigh(_hessian(value_grad, x, np.arange(x.shape[0])))
    clipped = int((w <= 0).sum())
    w = np.maximum(np.abs(w), 1e-10 * np.abs(w).max())
    return Laplace(x, v / np.sqrt(w), it, converged, clipped)


def _hessian(value_grad, x, idx, rel: float = 1e-5) -> np.ndarray:
    """Hessian block [idx, idx] by central differences of the gradient (step 1e-5 max(1, |x_i|)).

    Gradient calls only: a compiled ``jax.hessian`` of a 97-parameter posterior occasionally deadlocked in
    XLA's CPU runtime (2 of about 15 runs on the 2-core machine), and it costs 2.4 s to compile."""
    cols = []
    for i in idx:
        h = rel * max(1.0, abs(x[i]))
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        cols.append((np.asarray(value_grad(up)[1])[idx] - np.asarray(value_grad(down)[1])[idx]) / (2.0 * h))
    hess = np.stack(cols, axis=1)
    return 0.5 * (hess + hess.T)
