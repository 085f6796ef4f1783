"""Identification verdicts: is each fitted number determined by the data?

A fit can converge and still not be an answer. For every group, at the point estimate and over the
bootstrap, :func:`point_flags` and :func:`bootstrap_flags` name what the data cannot determine:

=================== ======================================================================================
flag                meaning
=================== ======================================================================================
``not_converged``   the best start stopped at ``max_steps`` or with a non-finite objective
``at_bound``        the parameter sits on a bound of its box (the solver's status ``at_bound``)
``collapsed``       the parameter no longer changes any prediction, ``max_i |d log L_i / d theta| <
                    COLLAPSE_SENSITIVITY`` (internal space): it went towards 0 or infinity in public
                    space (E -> 1e-17, or B -> 1e-53 with beta 5.4)
``no_dof``          residual degrees of freedom ``runs - free parameters < 1``: the fit interpolates
``ill_conditioned`` the Gauss-Newton Hessian ``J^T W J`` at the estimate (internal space) has condition
                    number > ``MAX_CONDITION``; the parameters loading on its flattest direction (at least 0.3 of
                    its largest loading) are named
``refits_failed``   fewer than ``MIN_REFITS`` of the bootstrap refits converged (at a bound counts: a
                    constrained optimum)
``wide_interval``   a positive parameter's interval spans more than a decade (``high / low > 10``)
=================== ======================================================================================

Flags are data: ``{flag: parameters}`` per group (an empty tuple for a whole-group flag), carried by
:class:`~atlas_jax.engine.result.FitResult` into ``params.csv``, ``fit.json``, the planner and the
printed summary. A group with any flag is reported as ``flagged``, never as plain ``converged``.
"""

from __future__ import annotations

from functools import partial

import jax
import numpy as np

from ..programs import stored_jit

__all__ = ["COLLAPSE_SENSITIVITY", "MAX_CONDITION", "MIN_REFITS", "WIDE_RATIO", "gauss_newton",
           "point_flags", "bootstrap_flags", "describe"]

COLLAPSE_SENSITIVITY = 1e-6
MAX_CONDITION = 1e10
MIN_REFITS = 0.9
WIDE_RATIO = 10.0


@partial(stored_jit, static_argnames=("log_loss",))
def gauss_newton(log_loss, features, log_y, weights, phi, basis, offset):
    """Per group: the Jacobian of the log predictions at ``phi`` ([G, n, q], free internal parameters) and
    the Gauss-Newton Hessian ``J^T diag(w) J`` ([G, q, q])."""

    def one(phi_g, x, y, w):
        jac = jax.jacfwd(lambda p: jax.vmap(lambda xi: log_loss(offset + basis @ p, xi))(x) - y)(phi_g)
        return jac, (jac * w[:, None]).T @ jac

    return jax.vmap(one)(phi, features, log_y, weights)


def point_flags(jac: np.ndarray, hess: np.ndarray, weights: np.ndarray, phi: np.ndarray, lower: np.ndarray,
                upper: np.ndarray, solver_status: np.ndarray, free_names: tuple[str, ...]):
    """Flags of each group's point estimate and the Hessian's condition numbers.

    Args: ``jac`` [G, n, q] and ``hess`` [G, q, q] from :func:`gauss_newton`; ``weights`` [G, n] (0 on padding);
    ``phi`` [G, q] free internal estimates in the box ``[lower, upper]``; ``solver_status`` [G] codes.
    Returns ``(flags, condition)``: a list of ``{flag: free parameter names}`` and an array [G].
    """
    from .solver import Status

    flags, condition = [], np.full(len(phi), np.inf)
    for g in range(len(phi)):
        f = {}
        if not Status.usable(solver_status[g]):
            f["not_converged"] = ()
        bound = [free_names[j] for j in range(len(free_names)) if not lower[j] < phi[g, j] < upper[j]]
        if bound:
            f["at_bound"] = tuple(bound)
        live = weights[g] > 0
        sensitivity = np.max(np.abs(jac[g][live]), axis=0, initial=0.0)
        gone = [free_names[j] for j in np.flatnonzero(~(sensitivity >= COLLAPSE_SENSITIVITY))]
        if gone:
            f["collapsed"] = tuple(gone)
        if live.sum() - len(free_names) < 1:
            f["no_dof"] = ()
        h = hess[g]
        if h.size == 0:  # every parameter fixed: nothing to identify
            condition[g] = 1.0
        elif np.all(np.isfinite(h)):
            values, vectors = np.linalg.eigh(h)
            condition[g] = values[-1] / values[0] if values[0] > 0 else np.inf
            if condition[g] > MAX_CONDITION:
                flat = vectors[:, 0]
                f["ill_conditioned"] = tuple(free_names[j] for j in np.flatnonzero(np.abs(flat) >= 0.3 * np.abs(flat).max()))
        else:
            f["ill_conditioned"] = ()
        flags.append(f)
    return flags, condition


def bootstrap_flags(flags: list[dict], ok: np.ndarray, ci_low: np.ndarray, ci_high: np.ndarray,
                    positive: np.ndarray, names: tuple[tuple[str, ...], ...], free: set[str]) -> list[dict]:
    """Add ``refits_failed`` (converged share of ``ok`` [G, B] below :data:`MIN_REFITS`) and ``wide_interval``
    (a free parameter with ``positive`` domain whose interval has ``high / low > WIDE_RATIO``, or is not finite)."""
    out = []
    for g, f in enumerate(flags):
        f = dict(f)
        if ok[g].mean() < MIN_REFITS:
            f["refits_failed"] = ()
        with np.errstate(divide="ignore", invalid="ignore"):
            wide = ~(ci_high[g] / ci_low[g] <= WIDE_RATIO) & positive
        wide = [n for j, n in enumerate(names[g]) if wide[j] and n in free]
        if wide:
            f["wide_interval"] = tuple(wide)
        out.append(f)
    return out


def describe(flags: dict, condition: float | None = None, refits: float | None = None) -> str:
    """One line: ``collapsed (E, B); ill-conditioned (condition number 2.2e+29: E, alpha)``."""
    parts = []
    for flag, params in flags.items():
        text = flag.replace("_", "-")
        detail = []
        if flag == "ill_conditioned" and condition is not None:
            detail.append(f"condition number {condition:.2g}")
        if flag == "refits_failed" and refits is not None:
            detail.append(f"{refits:.0%} converged")
        if params:
            detail.append(", ".join(params))
        parts.append(text + (f" ({': '.join(detail)})" if detail else ""))
    return "; ".join(parts)
