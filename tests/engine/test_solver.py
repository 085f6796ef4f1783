"""The Levenberg-Marquardt solver (atlas_jax/engine/solver.py) on its own: a zoo of problems x settings, each
asserting the status it must end with and its answer against scipy or the known truth."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import least_squares, minimize

from atlas_jax.engine.robust import huber
from atlas_jax.engine.solver import Config, Status, levenberg_marquardt

T = np.linspace(0.0, 4.0, 12)
Y = 2.0 * np.exp(-0.7 * T)  # a = 2, b = 0.7, no noise
SETTINGS = {"least_squares": 10.0, "huber": 1e-3}  # delta: Huber with delta >> |r| is 0.5 r^2


def decay(phi):
    return phi[0] * jnp.exp(-phi[1] * jnp.asarray(T)) - jnp.asarray(Y)


def solve(residual, phi0, delta, lower=(-np.inf, -np.inf), upper=(np.inf, np.inf), max_steps=200):
    cfg = Config(jnp.asarray(lower, float), jnp.asarray(upper, float), delta=delta, max_steps=max_steps)
    sol = jax.jit(lambda p: levenberg_marquardt(residual, p, jnp.ones(len(T)), cfg))(jnp.asarray(phi0, float))
    return jax.tree.map(np.asarray, sol)


def test_status_vocabulary():
    import atlas_jax as aj

    assert aj.Status is Status and [str(s) for s in Status] == ["converged", "max_steps", "nonfinite", "at_bound"]
    np.testing.assert_array_equal(Status.usable([0, 1, 2, 3]), [True, False, False, True])
    assert Status.usable(Status.AT_BOUND) and not Status.usable(np.int32(Status.MAX_STEPS))


@pytest.mark.parametrize("setting", SETTINGS)
def test_converged_recovers_the_truth(setting):
    sol = solve(decay, [1.0, 0.2], SETTINGS[setting])
    assert Status(int(sol.status)) is Status.CONVERGED
    np.testing.assert_allclose(sol.params, [2.0, 0.7], rtol=1e-8)
    assert sol.objective < 1e-18 and sol.grad_norm < 1e-9


@pytest.mark.parametrize("setting", SETTINGS)
def test_at_bound_is_the_constrained_optimum(setting):
    """b <= 0.5 excludes the truth (0.7): the answer sits on the bound, a at its constrained optimum (scipy)."""
    delta = SETTINGS[setting]
    sol = solve(decay, [1.0, 0.2], delta, upper=(np.inf, 0.5))
    assert Status(int(sol.status)) is Status.AT_BOUND and sol.params[1] == 0.5
    objective = lambda a: float(np.sum(huber(np.asarray(decay(jnp.asarray([a[0], 0.5]))), delta)))
    ref = minimize(objective, [1.0], method="Nelder-Mead", options={"xatol": 1e-12, "fatol": 1e-16})
    if setting == "least_squares":  # independently: scipy's bounded least squares
        ls = least_squares(lambda p: p[0] * np.exp(-p[1] * T) - Y, [1.0, 0.2],
                           bounds=([-np.inf, -np.inf], [np.inf, 0.5]), xtol=1e-15, ftol=1e-15, gtol=1e-15)
        np.testing.assert_allclose(sol.params, ls.x, rtol=1e-7)
    np.testing.assert_allclose(sol.params[0], ref.x[0], rtol=1e-6)
    assert sol.objective <= ref.fun * (1 + 1e-9)


@pytest.mark.parametrize("setting", SETTINGS)
def test_max_steps_is_reported_not_converged(setting):
    sol = solve(decay, [20.0, 5.0], SETTINGS[setting], max_steps=2)
    assert Status(int(sol.status)) is Status.MAX_STEPS and int(sol.steps) == 2
    assert not Status.usable(sol.status)


@pytest.mark.parametrize("setting", SETTINGS)
def test_nonfinite_start_is_reported(setting):
    """log of a negative parameter: the objective is NaN at the start and the fit stops there."""
    sol = solve(lambda phi: jnp.log(phi[0]) * jnp.ones(len(T)) + phi[1] - jnp.asarray(Y), [-1.0, 0.0],
                SETTINGS[setting])
    assert Status(int(sol.status)) is Status.NONFINITE and not np.isfinite(sol.objective)
    assert not Status.usable(sol.status)
