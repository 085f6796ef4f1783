"""Checks of the plain numpy/scipy reference (atlas_jax/bench/reference.py, loaded from its file) against the
published numbers recorded in atlas_jax/datasets/epoch_chinchilla/SOURCE.md and
atlas_jax/datasets/datablations/SOURCE.md.

These test the *reference itself*; nothing here imports jax or atlas_jax. Kept fast
(a subset of the 4500-start grid; the full grid is timed by running the module).
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import approx_fprime, check_grad

_REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("scipy_reference", _REPO / "atlas_jax" / "bench" / "reference.py")
ref = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("scipy_reference", ref)
_spec.loader.exec_module(ref)

# Epoch "replicate exactly" (notebook cell 18), 240 points.
EPOCH_GRID = dict(A=477.84, B=2143.86, E=1.81724, alpha=0.347313, beta=0.367183, objective=0.0010182740346)
# The start that wins the full 4500-start finite-difference grid with scipy 1.17 on this data
# (found by `python -m atlas_jax.bench.reference`).
BEST_START = np.array([20.0, 20.0, -1.0, 1.0, 0.0])
# datablations published R* fit (notebook cells 29 and 34).
DCSL_THETA = np.array([6.255414, 7.3049974, 0.6254804, 0.3526596, 0.3526596, 15.387756, 5.309743])
DCSL_OBJECTIVE = 0.015825936570763588  # float32 torch
DCSL_R2 = 0.7722046084968408


@pytest.fixture(scope="module")
def chin():
    return ref.load_chinchilla_240()


@pytest.fixture(scope="module")
def dcsl():
    return ref.load_dcsl_182()


def _params(theta):
    a, b, e, alpha, beta = theta
    return dict(A=np.exp(a), B=np.exp(b), E=np.exp(e), alpha=alpha, beta=beta)


# ----------------------------------------------------------------------- Huber


def test_huber_values_and_derivative():
    d = 1e-3
    r = np.array([-0.1, -d, -5e-4, 0.0, 5e-4, d, 0.1])
    expected = np.array([d * (0.1 - d / 2), 0.5 * d**2, 0.5 * 25e-8, 0.0, 0.5 * 25e-8, 0.5 * d**2, d * (0.1 - d / 2)])
    np.testing.assert_allclose(ref.huber(r, d), expected, rtol=1e-14, atol=0)
    np.testing.assert_allclose(ref.huber_grad(r, d), [-d, -d, -5e-4, 0, 5e-4, d, d], rtol=0, atol=0)
    # continuity of value at the kink for a non-default delta
    for delta in (0.5, 2.0):
        lo, hi = ref.huber(delta * (1 - 1e-12), delta), ref.huber(delta * (1 + 1e-12), delta)
        assert abs(lo - hi) < 1e-10


# ------------------------------------------------------------------ Chinchilla


def test_log_pred_matches_direct_formula(chin):
    N, D, _ = chin
    for theta in (ref.HOFFMANN_UNROUNDED, np.array([6.17795598, 7.64273236, 0.59711196, 0.34781303, 0.36585412])):
        a, b, e, alpha, beta = theta
        direct = np.log(np.exp(e) + np.exp(a) / N**alpha + np.exp(b) / D**beta)
        np.testing.assert_allclose(ref.chinchilla_log_pred(theta, N, D), direct, rtol=1e-13)
    # stable where the naive formula overflows
    big = ref.chinchilla_log_pred([800.0, 0.0, 0.0, 0.0, 0.0], N[:3], D[:3])
    np.testing.assert_allclose(big, 800.0)


GRAD_THETAS = [
    ref.HOFFMANN_UNROUNDED,
    np.array([6.16924, 7.67016, 0.597307, 0.347310, 0.367172]),  # Epoch grid optimum (gradient ~1e-4)
    np.array([20.0, 20.0, -1.0, 1.0, 0.0]),
    np.array([5.0, 10.0, 0.5, 0.5, 1.5]),
]


def _central_diff(f, x, h, *args):
    g = np.zeros_like(x)
    for i in range(len(x)):
        step = np.zeros_like(x)
        step[i] = h
        g[i] = (f(x + step, *args) - f(x - step, *args)) / (2 * h)
    return g


@pytest.mark.parametrize("theta", GRAD_THETAS)
def test_chinchilla_grad_matches_central_differences(chin, theta):
    N, D, L = chin
    g = ref.chinchilla_grad(theta, N, D, L)
    fd = _central_diff(ref.chinchilla_objective, theta, 1e-7, N, D, L)
    assert np.linalg.norm(g - fd) <= 1e-5 * np.linalg.norm(g)


@pytest.mark.parametrize("theta", [GRAD_THETAS[0], GRAD_THETAS[2], GRAD_THETAS[3]])
def test_chinchilla_grad_scipy_check_grad(chin, theta):
    """Forward differences (scipy approx_fprime / check_grad), away from the optimum where
    the gradient is large compared with their O(h) error."""
    N, D, L = chin
    g = ref.chinchilla_grad(theta, N, D, L)
    fd = approx_fprime(theta, ref.chinchilla_objective, 1e-7, N, D, L)
    assert np.linalg.norm(g - fd) <= 1e-3 * np.linalg.norm(g)
    err = check_grad(ref.chinchilla_objective, ref.chinchilla_grad, theta, N, D, L, epsilon=1e-7)
    assert err <= 1e-3 * np.linalg.norm(g)


def test_weights_equal_repeated_rows(chin):
    """Integer weights = counts reproduce the objective/gradient on explicitly resampled rows."""
    N, D, L = chin
    idx = ref.bootstrap_indices(len(N), 1, seed=3)[0]
    w = np.bincount(idx, minlength=len(N)).astype(float)
    theta = ref.HOFFMANN_UNROUNDED
    np.testing.assert_allclose(
        ref.chinchilla_objective(theta, N, D, L, weights=w), ref.chinchilla_objective(theta, N[idx], D[idx], L[idx]), rtol=1e-12
    )
    np.testing.assert_allclose(
        ref.chinchilla_grad(theta, N, D, L, weights=w), ref.chinchilla_grad(theta, N[idx], D[idx], L[idx]), rtol=1e-11
    )


def test_hoffmann_grid_layout():
    g = ref.hoffmann_grid()
    assert g.shape == (4500, 5)
    assert len(np.unique(g, axis=0)) == 4500
    for col, vals in enumerate(
        ([0, 5, 10, 15, 20, 25], [0, 5, 10, 15, 20, 25], [-1, -0.5, 0, 0.5, 1], [0, 0.5, 1, 1.5, 2], [0, 0.5, 1, 1.5, 2])
    ):
        np.testing.assert_array_equal(np.unique(g[:, col]), vals)
    # Epoch's enumeration order: product(alpha, beta, e, a, b) -> b varies fastest, alpha slowest
    np.testing.assert_array_equal(g[0], [0, 0, -1, 0, 0])
    np.testing.assert_array_equal(g[1], [0, 5, -1, 0, 0])
    np.testing.assert_array_equal(g[-1], [25, 25, 1, 2, 2])
    assert (g == BEST_START).all(axis=1).sum() == 1


def test_epoch_240_selection_rule():
    """in_epoch_fit == 1  <=>  loss < 5th-largest loss (Epoch cell 15)."""
    df = pd.read_csv(ref.CHINCHILLA_CSV)
    losses = df["loss"].to_numpy()
    keep = losses < sorted(losses)[-5]
    np.testing.assert_array_equal(keep, df["in_epoch_fit"].to_numpy() == 1)
    assert keep.sum() == 240


def test_epoch_grid_fit_subset_reaches_published_optimum(chin):
    """Every 15th grid start plus the winning start, finite differences as Epoch ran it."""
    N, D, L = chin
    g = ref.hoffmann_grid()
    starts = np.vstack([g[::15], BEST_START])
    res = ref.epoch_grid_fit(N, D, L, starts=starts, jac=None)
    assert res["n_starts"] == len(starts)
    assert res["n_success"] >= 0.9 * len(starts)
    assert res["objective"] <= 0.0010183
    assert abs(res["objective"] - EPOCH_GRID["objective"]) < 1e-10
    p = _params(res["theta"])
    assert p["A"] == pytest.approx(477.8, rel=1e-2)
    assert p["B"] == pytest.approx(2143.9, rel=1e-2)
    assert p["E"] == pytest.approx(1.8172, rel=1e-3)
    assert p["alpha"] == pytest.approx(0.34731, rel=1e-3)
    assert p["beta"] == pytest.approx(0.36718, rel=1e-3)


def test_epoch_grid_fit_analytic_jac(chin):
    N, D, L = chin
    # default tolerances stop at 0.00110 under scipy >= 1.15 (its C port of L-BFGS-B); tight ones reach the optimum
    res = ref.epoch_grid_fit(N, D, L, starts=[BEST_START, [0.0, 0.0, -1.0, 0.0, 0.0]], jac="analytic",
                             options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000})
    assert res["n_success"] == 2
    assert res["objective"] <= 0.0010183
    p = _params(res["theta"])
    for k in ("E", "alpha", "beta"):
        assert p[k] == pytest.approx(EPOCH_GRID[k], rel=1e-3)
    with pytest.raises(ValueError):
        ref.epoch_grid_fit(N, D, L, starts=[BEST_START], jac="autograd")


# --------------------------------------------------------------------- bootstrap


def test_bootstrap_indices_reproduce_epoch_sequence():
    n, B = 240, 25
    state = np.random.get_state()
    try:
        np.random.seed(42)
        expected = np.stack([np.random.choice(n, size=n, replace=True) for _ in range(B)])
        # Epoch draws from its list of kept row numbers; positions are the same stream.
        df = pd.read_csv(ref.CHINCHILLA_CSV)
        epoch_rows = [i for i in range(len(df)) if df["in_epoch_fit"].iloc[i] == 1]
        np.random.seed(42)
        epoch_draws = np.stack([np.random.choice(epoch_rows, size=n, replace=True) for _ in range(B)])
    finally:
        np.random.set_state(state)
    before = np.random.get_state()[1].copy()
    got = ref.bootstrap_indices(n, B, seed=42)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # global state untouched
    assert got.shape == (B, n) and np.issubdtype(got.dtype, np.integer)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(np.asarray(epoch_rows)[got], epoch_draws)
    np.testing.assert_array_equal(ref.bootstrap_indices(n, B + 5, seed=42)[:B], got)  # sequential prefix


def test_epoch_bootstrap_runs(chin):
    N, D, L = chin
    boot = ref.epoch_bootstrap(N, D, L, n_resamples=20)
    assert boot.shape == (20, 5) and np.isfinite(boot).all()
    assert np.all((boot[:, 3] > 0.3) & (boot[:, 3] < 0.4))
    # explicit indices give identical refits
    idx = ref.bootstrap_indices(len(N), 20, seed=42)
    np.testing.assert_array_equal(ref.epoch_bootstrap(N, D, L, indices=idx[:5]), boot[:5])


# ---------------------------------------------------------------- datablations


def test_dcsl_n_opt_is_composition(dcsl):
    _, _, U, _ = dcsl
    a, b, e, alpha, beta = ref.DATABLATIONS_BASE
    A, B = np.exp(a), np.exp(b)
    G = ((alpha * A) / (beta * B)) ** (1 / (alpha + beta))
    C = 6 * (G * U) ** ((alpha + beta) / alpha)
    n_opt = G * (C / 6) ** (beta / (alpha + beta))
    np.testing.assert_allclose(ref.dcsl_n_opt(ref.DATABLATIONS_BASE, U), n_opt, rtol=1e-12)
    # with distinct exponents too
    th = np.array([6.0, 7.0, 0.5, 0.3, 0.4])
    A, B, alpha, beta = np.exp(6.0), np.exp(7.0), 0.3, 0.4
    G = ((alpha * A) / (beta * B)) ** (1 / (alpha + beta))
    C = 6 * (G * U) ** ((alpha + beta) / alpha)
    np.testing.assert_allclose(ref.dcsl_n_opt(th, U), G * (C / 6) ** (beta / (alpha + beta)), rtol=1e-12)


def test_dcsl_matches_notebook_formula_and_readme(dcsl):
    N, D, U, _ = dcsl
    a, b, e, alpha, beta, rd_star, rn_star = DCSL_THETA
    UN = np.minimum(N, ref.dcsl_n_opt(DCSL_THETA, U))
    rn = np.maximum(N / UN - 1, 0)
    rd = np.maximum(D / U - 1, 0)
    L_nb = (
        np.exp(e)
        + np.exp(a) / (UN + UN * rn_star * (1 - np.exp(-rn / rn_star))) ** alpha
        + np.exp(b) / (U + U * rd_star * (1 - np.exp(-rd / rd_star))) ** beta
    )
    np.testing.assert_allclose(np.exp(ref.dcsl_log_pred(DCSL_THETA, N, D, U)), L_nb, rtol=1e-13)
    # README example predictions
    pred = np.exp(ref.dcsl_log_pred(DCSL_THETA, [6.34e9, 8.67e9], [242e9, 178e9], [25e9, 25e9]))
    np.testing.assert_allclose(pred, [2.2256440889984477, 2.2269634075087867], rtol=1e-12)


def test_dcsl_objective_and_r2_at_published(dcsl):
    N, D, U, L = dcsl
    assert len(N) == 182
    obj = ref.dcsl_objective(DCSL_THETA, N, D, U, L)
    assert obj == pytest.approx(0.0158259, abs=1e-7)
    assert abs(obj - DCSL_OBJECTIVE) < 5e-9  # float64 vs the authors' float32
    pred = ref.dcsl_log_pred(DCSL_THETA, N, D, U)
    # The notebook's R^2 (sklearn r2_score) is on L itself, not on log L.
    r2 = ref.r_squared(L, np.exp(pred))
    assert round(r2, 4) == 0.7722
    assert r2 == pytest.approx(DCSL_R2, abs=1e-9)
    assert abs(ref.r_squared(np.log(L), pred) - DCSL_R2) > 0.01


@pytest.mark.parametrize("method", ["Nelder-Mead", "L-BFGS-B"])
def test_dcsl_stage2_fit_local(dcsl, method):
    N, D, U, L = dcsl
    rd, rn = ref.dcsl_stage2_fit(N, D, U, L, ref.DATABLATIONS_BASE, start=(15.0, 5.0), method=method)
    assert rd == pytest.approx(15.37, abs=0.1)
    assert rn == pytest.approx(5.31, abs=0.02)
    obj = ref.dcsl_objective(np.r_[ref.DATABLATIONS_BASE, rd, rn], N, D, U, L)
    assert obj <= ref.dcsl_objective(DCSL_THETA, N, D, U, L) + 1e-12


# ---------------------------------------------------------------------- generic


def test_r_squared():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert ref.r_squared(y, y) == 1.0
    assert ref.r_squared(y, np.full(4, y.mean())) == 0.0
    yhat = np.array([1.1, 1.9, 3.2, 3.7])
    assert ref.r_squared(y, yhat) == pytest.approx(1 - 0.15 / 5.0, rel=1e-14)


def test_generic_huber_fit_recovers_synthetic_law(chin):
    N, D, _ = chin
    true = np.array([6.2, 7.5, 0.6, 0.35, 0.37])
    logL = ref.chinchilla_log_pred(true, N, D)
    res = ref.generic_huber_fit(ref.chinchilla_log_pred, true + [0.1, -0.1, 0.02, 0.01, -0.01], (N, D), logL)
    assert res.success and res.fun < 1e-8
    np.testing.assert_allclose(res.x, true, rtol=1e-3)


def test_generic_huber_fit_matches_epoch_objective(chin):
    N, D, L = chin
    start = np.array([6.17, 7.67, 0.597, 0.347, 0.367])
    res = ref.generic_huber_fit(ref.chinchilla_log_pred, start, (N, D), np.log(L))
    assert res.fun <= 0.0010183
    assert res.fun == pytest.approx(ref.chinchilla_objective(res.x, N, D, L), rel=1e-14)
    w = np.ones(len(N))
    w[:10] = 2.0
    res_w = ref.generic_huber_fit(ref.chinchilla_log_pred, start, (N, D), np.log(L), weights=w)
    assert res_w.fun == pytest.approx(ref.chinchilla_objective(res_w.x, N, D, L, weights=w), rel=1e-14)
