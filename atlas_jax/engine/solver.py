"""Levenberg-Marquardt for Huber-robust nonlinear least squares, one problem at a time.

Minimises ``f(phi) = sum_i w_i rho_delta(r_i(phi))`` for a residual function
``r: R^q -> R^n``. Each step solves Marquardt-damped Gauss-Newton equations

    (J^T H J + mu diag(J^T H J)) s = -J^T (w psi(r))
    H = diag(w c(r)),  c(r) = 1 if |r| <= delta else eps delta / |r|

``c`` is Huber's exact second derivative on inliers (so the step is a
semismooth Newton step once the inlier set is right) plus a small share
``eps = outlier_curvature`` of the IRLS weight on outliers, which keeps the
system well posed when few residuals are inliers. (Pure IRLS weights, eps = 1,
reach the same optima in 3-10x more steps; eps = 0 stalls when no residual is an
inlier.) Marquardt 1963 scaling, Nielsen's 1999 damping update; one evaluation
of ``f`` and the Jacobian per step; the trial is kept only if ``f`` decreased;
steps are projected onto the box ``[lower, upper]``.

The loop has no inner line search, so ``jax.vmap`` of :func:`levenberg_marquardt`
over starts, groups and bootstrap weights runs one fused iteration for the whole
batch; elements that have converged are frozen by the batched ``while_loop``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from .robust import huber, huber_psi

__all__ = ["Solution", "levenberg_marquardt", "CONVERGED", "MAX_STEPS", "NONFINITE", "AT_BOUND", "STATUS_NAMES"]

CONVERGED, MAX_STEPS, NONFINITE, AT_BOUND = 0, 1, 2, 3
STATUS_NAMES = ("converged", "max_steps", "nonfinite", "at_bound")


class Solution(NamedTuple):
    params: jnp.ndarray      # (q,) final estimate
    objective: jnp.ndarray   # () robust objective at params
    status: jnp.ndarray      # () int: CONVERGED, MAX_STEPS, NONFINITE or AT_BOUND
    steps: jnp.ndarray       # () iterations taken
    grad_norm: jnp.ndarray   # () max-norm of the objective's gradient at params


class _State(NamedTuple):
    phi: jnp.ndarray
    f: jnp.ndarray
    grad: jnp.ndarray    # (q,) J^T (w psi(r)) at phi
    hess: jnp.ndarray    # (q, q) J^T H J at phi
    mu: jnp.ndarray
    nu: jnp.ndarray
    step: jnp.ndarray
    done: jnp.ndarray
    fresh: jnp.ndarray   # phi not evaluated yet: the first pass only evaluates phi0


def levenberg_marquardt(
    residual: Callable[[jnp.ndarray], jnp.ndarray],
    phi0: jnp.ndarray,
    weights: jnp.ndarray,
    lower: jnp.ndarray,
    upper: jnp.ndarray,
    *,
    delta: float = 1e-3,
    max_steps: int = 200,
    ftol: float = 1e-13,
    xtol: float = 1e-11,
    mu0: float = 1e-3,
    outlier_curvature: float = 0.05,
) -> Solution:
    """Minimise ``sum(weights * huber(residual(phi), delta))`` from ``phi0``.

    Converged when an accepted step lowers ``f`` by less than ``ftol * f`` or the
    step is shorter than ``xtol * (|phi| + xtol)`` in every coordinate.
    """
    phi0 = jnp.clip(phi0, lower, upper)
    q = phi0.shape[0]
    dtype = jnp.result_type(phi0, float)

    def curvature(r):
        a = jnp.abs(r)
        return jnp.where(a <= delta, 1.0, outlier_curvature * delta / jnp.maximum(a, delta))

    @jax.jit  # traced once, shared by every call below
    def evaluate(phi):
        # f, g = J^T (w psi(r)) and J^T diag(w c(r)) J at phi. Only these small reductions
        # travel in the loop state, not r (n,) or J (n, q). The Jacobian comes from one
        # vmapped jvp as (q, n), so the reductions over n run along the contiguous axis.
        r, jac = jax.vmap(lambda t: jax.jvp(residual, (phi,), (t,)), out_axes=(None, 0))(
            jnp.eye(q, dtype=phi.dtype))
        f = jnp.sum(weights * huber(r, delta))
        return f, jac @ (weights * huber_psi(r, delta)), (jac * (weights * curvature(r))) @ jac.T

    # The first pass of the loop evaluates phi0 (``fresh``) instead of stepping, so the
    # compiled program holds one copy of ``evaluate`` rather than two.
    inf = jnp.asarray(jnp.inf, dtype)
    init = _State(phi0, inf, jnp.zeros(q, dtype), jnp.eye(q, dtype=dtype), jnp.asarray(mu0, dtype),
                  jnp.asarray(2.0, dtype), jnp.asarray(0), jnp.asarray(False), jnp.asarray(True))

    def cond(s):
        return s.fresh | ((~s.done) & (s.step < max_steps))

    def body(s):
        grad, hess = s.grad, s.hess
        diag = jnp.diag(hess)
        scale = jnp.maximum(diag, 1e-12 * jnp.max(diag, initial=0.0) + 1e-300)
        trial = jnp.clip(s.phi + jnp.linalg.solve(hess + s.mu * jnp.diag(scale), -grad), lower, upper)
        trial = jnp.where(s.fresh, s.phi, trial)
        dx = trial - s.phi
        f1, g1, h1 = evaluate(trial)
        predicted = -(grad @ dx) - 0.5 * dx @ hess @ dx
        gain = (s.f - f1) / jnp.where(predicted > 0, predicted, jnp.inf)
        accept = jnp.isfinite(f1) & (f1 < s.f)
        small_f = accept & (s.f - f1 <= ftol * s.f)
        small_x = jnp.all(jnp.abs(dx) <= xtol * (jnp.abs(s.phi) + xtol))
        mu = jnp.where(accept, s.mu * jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * gain - 1.0) ** 3), s.mu * s.nu)
        nu = jnp.where(accept, 2.0, 2.0 * s.nu)
        keep = lambda new, old: jnp.where(accept, new, old)
        stepped = _State(
            phi=keep(trial, s.phi), f=keep(f1, s.f), grad=keep(g1, grad), hess=keep(h1, hess),
            mu=jnp.clip(mu, 1e-15, 1e15), nu=jnp.minimum(nu, 1e6), step=s.step + 1,
            done=small_f | small_x | (s.mu >= 1e15), fresh=jnp.asarray(False),
        )
        first = _State(s.phi, f1, g1, h1, s.mu, s.nu, s.step, ~jnp.isfinite(f1), jnp.asarray(False))
        return jax.tree.map(lambda a, b: jnp.where(s.fresh, a, b), first, stepped)

    s = jax.lax.while_loop(cond, body, init)
    free = (s.phi > lower) & (s.phi < upper)
    at_bound = jnp.any(~free)
    status = jnp.where(
        ~jnp.isfinite(s.f), NONFINITE,
        jnp.where(~s.done, MAX_STEPS, jnp.where(at_bound, AT_BOUND, CONVERGED)),
    )
    return Solution(s.phi, s.f, status, s.step, jnp.max(jnp.abs(jnp.where(free, s.grad, 0.0)), initial=0.0))
