"""Independent numpy/scipy reference for the Chinchilla and data-constrained fits.

This module re-implements, in plain numpy + scipy, the published fitting recipes that
``atlas_jax`` is benchmarked and cross-checked against. It deliberately does *not*
import jax or atlas_jax: it is written to be obviously correct, not fast.

Recipes reproduced (see ``data/*/SOURCE.md``):

* Besiroglu et al. (2024), "Chinchilla Scaling: A replication attempt"
  (epoch-research/analyzing-chinchilla, ``data_analysis.ipynb``):

  - cell 18, "replicate exactly": L-BFGS-B (default tolerances, finite-difference
    gradients) from every point of Hoffmann et al.'s 4500-point grid, keep the best
    *successful* run  -> :func:`epoch_grid_fit`;
  - cell 15 + 21, bootstrap: ``np.random.seed(42)``, 4000 sequential
    ``np.random.choice(..., replace=True)`` resamples, each refitted with BFGS
    (autograd gradient) from Hoffmann's unrounded parameters -> :func:`epoch_bootstrap`.

* Muennighoff et al. (2023), "Scaling Data-Constrained Language Models"
  (huggingface/datablations, ``utils/parametric_fit.ipynb`` cells 28-34): the
  data-constrained law with the base Chinchilla coefficients frozen and only
  (R_D*, R_N*) fitted -> :func:`dcsl_log_pred`, :func:`dcsl_stage2_fit`.

* The multi-start fit one would write with scipy for a small table: ``scipy.optimize.curve_fit``
  (Levenberg-Marquardt) on log loss from 128 random starts, best by objective
  -> :func:`curve_fit_multistart` (the ``cli`` bench suite times it as a whole process).

Validation (scipy 1.17, numpy 2.4, this repo's data): the full 4000-resample
:func:`epoch_bootstrap` reproduces Epoch's published bootstrap SEs (``ddof=1``; A 124.52,
B 1293.28, E 0.02566, alpha 0.01540, beta 0.02060) and 95 % percentile CIs (A 285.214-743.626,
B 1042.357-5810.344) to every printed digit. The full finite-difference grid reaches objective
0.001018274040 (Epoch: 0.0010182740346); the winning start depends on round-off in the
finite differences, so compare objectives/parameters, not starts.

Parameter conventions: ``theta = [a, b, e, alpha, beta]`` with ``A = exp(a)``,
``B = exp(b)``, ``E = exp(e)`` and ``L(N, D) = E + A / N**alpha + B / D**beta``.
Everything is float64; all public functions take and return numpy arrays.

Run ``python -m atlas_jax.bench.reference`` to time the full 4500-start grid fit
(finite differences, as Epoch ran it) and a 200-resample bootstrap.
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

__all__ = [
    "HOFFMANN_UNROUNDED",
    "DATABLATIONS_BASE",
    "huber",
    "huber_grad",
    "chinchilla_log_pred",
    "chinchilla_objective",
    "chinchilla_grad",
    "hoffmann_grid",
    "epoch_grid_fit",
    "bootstrap_indices",
    "epoch_bootstrap",
    "dcsl_n_opt",
    "dcsl_log_pred",
    "dcsl_objective",
    "dcsl_stage2_fit",
    "r_squared",
    "generic_huber_fit",
    "curve_fit_multistart",
    "load_chinchilla_240",
    "load_dcsl_182",
]

#: Hoffmann et al.'s fitted parameters, unrounded, as used by Epoch (``true_params``),
#: ordered ``[a, b, e, alpha, beta]``.
HOFFMANN_UNROUNDED = np.array([6.0073404, 6.0179186, 0.5267228, 0.33917084, 0.2849083])

#: Base Chinchilla-form coefficients used (frozen) in the datablations R* fit,
#: ``[a, b, e, alpha, beta]`` (alpha tied to beta).
DATABLATIONS_BASE = np.array([6.255414, 7.3049974, 0.6254804, 0.3526596, 0.3526596])

_DATA = Path(__file__).resolve().parents[1] / "datasets"  # by path: this module imports no atlas_jax
CHINCHILLA_CSV = _DATA / "epoch_chinchilla" / "chinchilla_tidy.csv"
DCSL_CSV = _DATA / "datablations" / "c4_runs_fit182.csv"


# --------------------------------------------------------------------------- Huber


def huber(r, delta=1e-3):
    """Elementwise Huber loss.

    ``huber(r) = 0.5 r**2`` if ``|r| <= delta`` else ``delta * (|r| - delta / 2)``.
    """
    r = np.asarray(r, dtype=float)
    ar = np.abs(r)
    return np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))


def huber_grad(r, delta=1e-3):
    """Derivative of :func:`huber`: ``r`` if ``|r| <= delta`` else ``delta * sign(r)``,
    i.e. ``clip(r, -delta, delta)``."""
    return np.clip(np.asarray(r, dtype=float), -delta, delta)


def _lse3(x1, x2, x3):
    """``log(exp(x1) + exp(x2) + exp(x3))`` elementwise, shifted by the max.

    Returns the value and the three softmax weights ``exp(x_k - lse)``.
    """
    m = np.maximum(np.maximum(x1, x2), x3)
    e1, e2, e3 = np.exp(x1 - m), np.exp(x2 - m), np.exp(x3 - m)
    s = e1 + e2 + e3
    return m + np.log(s), (e1 / s, e2 / s, e3 / s)


# --------------------------------------------------------------------- Chinchilla


def chinchilla_log_pred(theta, N, D):
    """Chinchilla prediction in log space.

    ``log L = logsumexp(a - alpha log N, b - beta log D, e)``
    ``      = log(E + A / N**alpha + B / D**beta)``, ``theta = [a, b, e, alpha, beta]``.
    """
    a, b, e, alpha, beta = np.asarray(theta, dtype=float)
    N = np.asarray(N, dtype=float)
    D = np.asarray(D, dtype=float)
    val, _ = _lse3(a - alpha * np.log(N), b - beta * np.log(D), np.full(N.shape, e))
    return val


def _weights(weights, n):
    return np.ones(n) if weights is None else np.asarray(weights, dtype=float)


def chinchilla_objective(theta, N, D, L, delta=1e-3, weights=None):
    """Summed Huber objective ``sum_i w_i huber(log_pred_i - log L_i, delta)``
    (``w_i = 1`` by default)."""
    r = chinchilla_log_pred(theta, N, D) - np.log(np.asarray(L, dtype=float))
    return float(np.sum(_weights(weights, r.size) * huber(r, delta)))


def chinchilla_grad(theta, N, D, L, delta=1e-3, weights=None):
    """Analytic gradient of :func:`chinchilla_objective`.

    With ``r_i = pred_i - log L_i``, ``psi = clip(r, -delta, delta)`` and softmax weights
    ``p_k = exp(t_k - pred)`` of the three terms ``t = (a - alpha log N, b - beta log D, e)``:
    ``grad = sum_i w_i psi_i [p1, p2, p3, -p1 log N, -p2 log D]_i``.
    """
    a, b, e, alpha, beta = np.asarray(theta, dtype=float)
    N = np.asarray(N, dtype=float)
    D = np.asarray(D, dtype=float)
    logN, logD = np.log(N), np.log(D)
    pred, (p1, p2, p3) = _lse3(a - alpha * logN, b - beta * logD, np.full(N.shape, e))
    r = pred - np.log(np.asarray(L, dtype=float))
    g = _weights(weights, r.size) * huber_grad(r, delta)
    return np.array(
        [np.sum(g * p1), np.sum(g * p2), np.sum(g * p3), -np.sum(g * p1 * logN), -np.sum(g * p2 * logD)]
    )


def hoffmann_grid():
    """Hoffmann et al.'s 4500 starting points as a ``(4500, 5)`` array of ``[a, b, e, alpha, beta]``.

    ``alpha, beta in {0, .5, ..., 2}``, ``e in {-1, -.5, ..., 1}``, ``a, b in {0, 5, ..., 25}``,
    enumerated in Epoch's order ``product(alpha, beta, e, a, b)`` (so ties resolve identically).
    """
    alpha_vals = np.arange(0, 2.5, 0.5)
    beta_vals = np.arange(0, 2.5, 0.5)
    e_vals = np.arange(-1, 1.5, 0.5)
    a_vals = np.arange(0, 30, 5)
    b_vals = np.arange(0, 30, 5)
    return np.array(
        [[a, b, e, al, be] for al, be, e, a, b in itertools.product(alpha_vals, beta_vals, e_vals, a_vals, b_vals)],
        dtype=float,
    )


def epoch_grid_fit(N, D, L, delta=1e-3, starts=None, jac=None, progress=False, options=None):
    """Epoch's "replicate exactly" multi-start fit (notebook cell 18).

    ``scipy.optimize.minimize(chinchilla_objective, x0, method="L-BFGS-B")`` with default
    tolerances from every start (default :func:`hoffmann_grid`); ``jac=None`` uses scipy's
    finite differences exactly as Epoch did, ``jac="analytic"`` uses :func:`chinchilla_grad`.
    Keeps the best run with ``result.success`` (strict ``<``, first start wins ties). ``options`` go to
    L-BFGS-B (scipy >= 1.15's C port stops earlier than the Fortran one Epoch ran on this flat valley with the
    analytic gradient: 0.0011083 from their best start with default tolerances under scipy 1.17.1).

    Returns ``{"theta", "objective", "start", "n_starts", "n_success", "seconds"}``.
    """
    N, D, L = (np.asarray(x, dtype=float) for x in (N, D, L))
    starts = hoffmann_grid() if starts is None else np.atleast_2d(np.asarray(starts, dtype=float))
    if jac is None:
        jac_fn = None
    elif isinstance(jac, str) and jac == "analytic":
        jac_fn = chinchilla_grad
    elif callable(jac):
        jac_fn = jac
    else:
        raise ValueError(f"jac must be None, 'analytic' or a callable, got {jac!r}")

    best_f, best_theta, best_start, n_success = np.inf, None, None, 0
    t0 = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for k, x0 in enumerate(starts):
            res = minimize(chinchilla_objective, x0, args=(N, D, L, delta), jac=jac_fn, method="L-BFGS-B",
                           options=options)
            if res.success:
                n_success += 1
                if res.fun < best_f:
                    best_f, best_theta, best_start = float(res.fun), np.array(res.x), np.array(x0)
            if progress and (k + 1) % 500 == 0:
                print(f"  grid start {k + 1}/{len(starts)}: best {best_f:.13g}", file=sys.stderr, flush=True)
    return {
        "theta": best_theta,
        "objective": best_f,
        "start": best_start,
        "n_starts": len(starts),
        "n_success": n_success,
        "seconds": time.perf_counter() - t0,
    }


def bootstrap_indices(n, n_resamples, seed=42):
    """Epoch's resample indices as a ``(n_resamples, n)`` int array of positions ``0..n-1``.

    Identical to ``np.random.seed(seed); [np.random.choice(n, size=n, replace=True) for _ in
    range(n_resamples)]`` (and, mapped through Epoch's list of kept rows, to Epoch's
    ``np.random.choice(indices, ...)``), but uses a private ``RandomState`` so the global
    numpy random state is left untouched.
    """
    rs = np.random.RandomState(seed)
    return np.stack([rs.choice(n, size=n, replace=True) for _ in range(n_resamples)]).astype(np.int64)


def epoch_bootstrap(
    N, D, L, n_resamples=4000, seed=42, theta0=HOFFMANN_UNROUNDED, delta=1e-3, indices=None, progress=False
):
    """Epoch's sequential non-parametric bootstrap (notebook cells 15 and 21).

    For each resample ``idx`` (rows of ``indices``, default :func:`bootstrap_indices`),
    refit ``chinchilla_objective`` on ``(N[idx], D[idx], L[idx])`` with
    ``scipy.optimize.minimize(method="BFGS", jac=chinchilla_grad)`` (Epoch: autograd gradient)
    from ``theta0``. Returns a ``(n_resamples, 5)`` array of ``[a, b, e, alpha, beta]``.
    """
    N, D, L = (np.asarray(x, dtype=float) for x in (N, D, L))
    if indices is None:
        indices = bootstrap_indices(N.size, n_resamples, seed)
    indices = np.asarray(indices)
    theta0 = np.asarray(theta0, dtype=float)
    out = np.empty((len(indices), 5))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for k, idx in enumerate(indices):
            res = minimize(
                chinchilla_objective, theta0, args=(N[idx], D[idx], L[idx], delta), jac=chinchilla_grad, method="BFGS"
            )
            out[k] = res.x
            if progress and (k + 1) % 100 == 0:
                print(f"  bootstrap {k + 1}/{len(indices)}", file=sys.stderr, flush=True)
    return out


# ------------------------------------------------------- data-constrained scaling law


def dcsl_n_opt(theta, U):
    """Compute-optimal model size for a compute budget that would be optimal for ``U`` tokens.

    ``G = ((alpha A) / (beta B))**(1 / (alpha + beta))``, ``C(D) = 6 (G D)**((alpha + beta) / alpha)``,
    ``N_opt(C) = G (C / 6)**(beta / (alpha + beta))``, hence ``N_opt(C(U)) = G (G U)**(beta / alpha)``.
    """
    a, b, _e, alpha, beta = np.asarray(theta, dtype=float)[:5]
    G = ((alpha * np.exp(a)) / (beta * np.exp(b))) ** (1.0 / (alpha + beta))
    return G * (G * np.asarray(U, dtype=float)) ** (beta / alpha)


def dcsl_log_pred(theta, N, D, U):
    """Data-constrained law of Muennighoff et al. (2023) in log space.

    ``theta = [a, b, e, alpha, beta, R_D*, R_N*]``; ``U`` the unique tokens available, of which a run sees
    ``min(U, D)`` (used as U below);
    ``U_N = min(N, N_opt(C(U)))`` (see :func:`dcsl_n_opt`), ``R_N = max(N / U_N - 1, 0)``,
    ``R_D = max(D / U - 1, 0)``,
    ``N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*))``, ``D' = U + U R_D* (1 - exp(-R_D / R_D*))``,
    ``log L = logsumexp(a - alpha log N', b - beta log D', e)``.
    """
    theta = np.asarray(theta, dtype=float)
    a, b, e, alpha, beta, rd_star, rn_star = theta
    N, D, U = (np.asarray(x, dtype=float) for x in (N, D, U))
    U = np.minimum(U, D)
    U_N = np.minimum(N, dcsl_n_opt(theta, U))
    R_N = np.maximum(N / U_N - 1.0, 0.0)
    R_D = np.maximum(D / U - 1.0, 0.0)
    N_eff = U_N + U_N * rn_star * (1.0 - np.exp(-R_N / rn_star))
    D_eff = U + U * rd_star * (1.0 - np.exp(-R_D / rd_star))
    val, _ = _lse3(a - alpha * np.log(N_eff), b - beta * np.log(D_eff), np.full(N.shape, e))
    return val


def dcsl_objective(theta, N, D, U, L, delta=1e-3):
    """Summed Huber objective ``sum_i huber(dcsl_log_pred_i - log L_i, delta)``."""
    r = dcsl_log_pred(theta, N, D, U) - np.log(np.asarray(L, dtype=float))
    return float(np.sum(huber(r, delta)))


def dcsl_stage2_fit(N, D, U, L, base, start=(15.0, 5.0), delta=1e-3, method="Nelder-Mead"):
    """Fit ``(R_D*, R_N*)`` with the base ``[a, b, e, alpha, beta]`` frozen (datablations cell 29).

    Local minimisation of :func:`dcsl_objective` from ``start`` with scipy (Nelder-Mead by default,
    ``xatol=1e-10, fatol=1e-15``; or L-BFGS-B with finite differences and ``ftol=1e-15,
    gtol=1e-12``). Non-positive R* are rejected (objective ``inf``). The objective is multi-modal:
    this is a *local* fit, as the authors' was. Returns ``np.array([R_D*, R_N*])``.
    """
    base = np.asarray(base, dtype=float)[:5]

    def f(x):
        if np.any(x <= 0):
            return np.inf
        return dcsl_objective(np.concatenate([base, x]), N, D, U, L, delta)

    x0 = np.asarray(start, dtype=float)
    if method == "Nelder-Mead":
        res = minimize(f, x0, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-15, "maxiter": 20000})
    elif method == "L-BFGS-B":
        res = minimize(
            f,
            x0,
            method="L-BFGS-B",
            bounds=[(1e-6, None), (1e-6, None)],
            options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10000},
        )
    else:
        raise ValueError(f"method must be 'Nelder-Mead' or 'L-BFGS-B', got {method!r}")
    return np.asarray(res.x, dtype=float)


# ------------------------------------------------------------------------ generic


def r_squared(y, yhat):
    """Coefficient of determination ``1 - SS_res / SS_tot`` with
    ``SS_res = sum (y - yhat)**2``, ``SS_tot = sum (y - mean y)**2`` (= sklearn ``r2_score``)."""
    y = np.asarray(y, dtype=float)
    yhat = np.asarray(yhat, dtype=float)
    return float(1.0 - np.sum((y - yhat) ** 2) / np.sum((y - y.mean()) ** 2))


def generic_huber_fit(log_pred, theta0, args, log_y, delta=1e-3, weights=None):
    """Minimise ``sum_i w_i huber(log_pred(theta, *args)_i - log_y_i, delta)`` for any law.

    L-BFGS-B with finite-difference gradients and tight tolerances (``ftol=1e-15``,
    ``gtol=1e-12``, ``maxiter=10000``); meant for cross-checking arbitrary laws on small
    problems. Returns the scipy ``OptimizeResult``.
    """
    log_y = np.asarray(log_y, dtype=float)
    w = _weights(weights, log_y.size)
    args = tuple(args)

    def f(theta):
        return float(np.sum(w * huber(log_pred(theta, *args) - log_y, delta)))

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return minimize(
            f,
            np.asarray(theta0, dtype=float),
            method="L-BFGS-B",
            options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10000, "maxfun": 1_000_000},
        )


def curve_fit_multistart(N, D, L, n_starts=128, seed=0):
    """The Chinchilla law fitted to log loss by ``scipy.optimize.curve_fit`` from ``n_starts`` starts.

    Model ``log L = chinchilla_log_pred([a, b, e, alpha, beta], N, D)`` (least squares on log loss, no Huber),
    curve_fit's default Levenberg-Marquardt (unbounded), starts drawn uniformly with ``default_rng(seed)``
    from Hoffmann et al.'s grid box: ``a, b in [0, 25]``, ``e in [-1, 1]``, ``alpha, beta in [0, 2]``.
    A start whose fit raises (no convergence within curve_fit's ``maxfev``) or ends non-finite is skipped;
    the best is the smallest sum of squared log residuals (first start wins ties).

    Returns ``{"theta", "objective", "n_starts", "n_success", "seconds"}``.
    """
    import warnings

    from scipy.optimize import OptimizeWarning, curve_fit

    N, D, L = (np.asarray(x, dtype=float) for x in (N, D, L))
    x, log_l = np.stack([N, D]), np.log(L)
    model = lambda x, a, b, e, alpha, beta: chinchilla_log_pred([a, b, e, alpha, beta], x[0], x[1])
    rng = np.random.default_rng(seed)
    starts = np.column_stack([rng.uniform(0, 25, n_starts), rng.uniform(0, 25, n_starts),
                              rng.uniform(-1, 1, n_starts), rng.uniform(0, 2, n_starts), rng.uniform(0, 2, n_starts)])
    best_f, best_theta, n_success = np.inf, None, 0
    t0 = time.perf_counter()
    with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", OptimizeWarning)  # covariance not estimated: 5 runs, 5 parameters
        for x0 in starts:
            try:
                theta, _ = curve_fit(model, x, log_l, p0=x0)
            except (RuntimeError, ValueError):
                continue
            f = float(np.sum((model(x, *theta) - log_l) ** 2))
            if np.isfinite(f):
                n_success += 1
                if f < best_f:
                    best_f, best_theta = f, np.asarray(theta, dtype=float)
    return {"theta": best_theta, "objective": best_f, "n_starts": n_starts, "n_success": n_success,
            "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------- data


def load_chinchilla_240(path=CHINCHILLA_CSV):
    """The 240 points of Epoch's fit (``in_epoch_fit == 1``) as float arrays ``(N, D, L)``,
    in file order (the order Epoch indexes them)."""
    import pandas as pd

    df = pd.read_csv(path)
    df = df[df["in_epoch_fit"] == 1]
    return df["N_params"].to_numpy(float), df["D_tokens"].to_numpy(float), df["loss"].to_numpy(float)


def load_dcsl_182(path=DCSL_CSV):
    """The 182 C4 runs of the published R* fit as float arrays ``(N, D, U, L)``."""
    import pandas as pd

    df = pd.read_csv(path)
    return (
        df["N_params"].to_numpy(float),
        df["D_tokens"].to_numpy(float),
        df["U_unique_tokens"].to_numpy(float),
        df["val_loss"].to_numpy(float),
    )


# --------------------------------------------------------------------------- main


def _summary(theta):
    a, b, e, alpha, beta = theta
    return f"A={np.exp(a):.2f} B={np.exp(b):.2f} E={np.exp(e):.5f} alpha={alpha:.6f} beta={beta:.6f}"


if __name__ == "__main__":
    import os
    import platform

    n_boot = int(os.environ.get("SCIPY_REF_BOOTSTRAPS", "200"))
    N, D, L = load_chinchilla_240()
    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"scipy {__import__('scipy').__version__}, {os.cpu_count()} CPUs")

    print("Epoch grid fit: 4500 L-BFGS-B starts, finite differences (jac=None), 240 points ...", flush=True)
    grid = epoch_grid_fit(N, D, L, jac=None, progress=True)
    print(f"  wall {grid['seconds']:.1f} s; objective {grid['objective']:.13g}; "
          f"success {grid['n_success']}/{grid['n_starts']}; best start {grid['start'].tolist()}")
    print(f"  {_summary(grid['theta'])}")

    print(f"Epoch bootstrap: {n_boot} BFGS resamples (analytic gradient), seed 42 ...", flush=True)
    t0 = time.perf_counter()
    boot = epoch_bootstrap(N, D, L, n_resamples=n_boot, progress=True)
    dt = time.perf_counter() - t0
    se = np.std(np.hstack([np.exp(boot[:, :3]), boot[:, 3:]]), axis=0, ddof=1)
    print(f"  wall {dt:.1f} s ({1e3 * dt / n_boot:.1f} ms/resample)")
    print("  bootstrap SE (A, B, E, alpha, beta): " + ", ".join(f"{s:.5g}" for s in se))
