"""Parameters shared across groups (atlas_jax.engine.shared): the block-arrow joint fit against scipy on the same
objective, recovery of known exponents from languages with 4 runs each, small groups, flags and the bootstrap.

The tables are drawn here from the Chinchilla law in plain numpy: every language has its own E, A, B and all
share alpha = 0.34, beta = 0.37.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

import atlas_jax as aj

ALPHA, BETA, DELTA = 0.34, 0.37, 1e-3
SIZES = np.array([5e7, 3e8, 2e9, 1e10])
TOKENS_PER_PARAM = np.array([[5.0, 40.0, 10.0, 80.0], [80.0, 10.0, 40.0, 5.0], [20.0, 5.0, 80.0, 20.0]])
STARTS = np.array(np.meshgrid([0.0, 0.5], [5.0, 7.0], [6.0, 8.0], [0.3, 0.5], [0.3, 0.5],
                              indexing="ij")).reshape(5, -1).T  # internal e, a, b, alpha, beta


def languages(n_languages, seed, noise=0.003, runs=4):
    rng = np.random.default_rng(seed)
    rows, truth = [], {}
    for g in range(n_languages):
        E, A, B = 1.5 + 0.5 * rng.random(), 300 + 300 * rng.random(), 1000 + 2000 * rng.random()
        truth[f"l{g}"] = dict(E=E, A=A, B=B)
        d = SIZES * TOKENS_PER_PARAM[g % 3]
        loss = (E + A / SIZES**ALPHA + B / d**BETA) * np.exp(rng.normal(0.0, noise, 4))
        rows += [(f"l{g}", n, t, l) for n, t, l in list(zip(SIZES, d, loss))[:runs]]
    return pd.DataFrame(rows, columns=["language", "params", "tokens", "loss"]), truth


@pytest.fixture(scope="module")
def five():
    frame, truth = languages(5, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = aj.fit("chinchilla", frame, group_by="language", share=["alpha", "beta"], starts=STARTS, bootstrap=100)
    return frame, truth, res


def huber(r):
    a = np.abs(r)
    return np.where(a <= DELTA, 0.5 * r * r, DELTA * (a - 0.5 * DELTA))


def test_joint_optimum_matches_scipy_on_the_same_objective(five):
    """scipy's L-BFGS-B on the 17-parameter joint Huber objective (from our optimum and from the truth) finds no
    lower objective, and our optimum is a stationary point of it."""
    frame, truth, res = five
    groups = list(res.groups)
    idx = frame["language"].map({g: i for i, g in enumerate(groups)}).to_numpy()
    n, d, y = (frame[c].to_numpy() for c in ("params", "tokens", "loss"))

    def objective(x):
        alpha, beta, own = x[0], x[1], x[2:].reshape(-1, 3)
        e, a, b = own[idx, 0], own[idx, 1], own[idx, 2]
        pred = np.logaddexp(np.logaddexp(e, a - alpha * np.log(n)), b - beta * np.log(d))
        return huber(pred - np.log(y)).sum()

    est = res.estimate
    ours = np.concatenate([[est[0, 3], est[0, 4]], np.log(est[:, :3]).ravel()])
    start = np.concatenate([[ALPHA, BETA], np.log([[truth[g][k] for k in "EAB"] for g in groups]).ravel()])
    assert objective(ours) == pytest.approx(res.objective[0], rel=1e-10)
    for x0 in (ours, start):
        sp = minimize(objective, x0, method="L-BFGS-B", options=dict(ftol=1e-15, gtol=1e-12, maxiter=20000))
        assert res.objective[0] <= sp.fun * (1 + 1e-7)
    assert np.all(est[:, 3] == est[0, 3]) and np.all(est[:, 4] == est[0, 4])   # one alpha, one beta


def test_shared_exponents_are_recovered_with_intervals(five):
    _, truth, res = five
    assert res.shared == ("alpha", "beta") and res.status[0] == "converged"
    for name, value in (("alpha", ALPHA), ("beta", BETA)):
        lo, hi = res.interval(name, "l0")
        assert lo < value < hi and hi - lo < 0.1, (name, lo, hi)
    for g in res.groups:
        assert res.params(g)["E"] == pytest.approx(truth[g]["E"], rel=0.05)
    assert res.summary()["l0"]["shared"] == ["alpha", "beta"]


def test_groups_too_small_for_their_own_law_fit_when_sharing():
    """4 runs per language cannot fit 5 parameters each: without sharing every group is skipped (an error); with
    alpha and beta shared they fit."""
    frame, _ = languages(3, seed=1)
    with pytest.raises(ValueError, match="no group has the 5 runs"):
        aj.fit("chinchilla", frame, group_by="language", starts=STARTS)
    with pytest.raises(ValueError, match="share: parameters are shared across groups; give group_by"):
        aj.fit("chinchilla", frame, share=["alpha"])
    with pytest.raises(ValueError, match=r"share: \['gamma'\] are not free parameters"):
        aj.fit("chinchilla", frame, group_by="language", share=["gamma"])


def test_three_runs_per_language_leave_no_degrees_of_freedom():
    frame, _ = languages(4, seed=2, runs=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = aj.fit("chinchilla", frame, group_by="language", share=["alpha", "beta"], starts=STARTS)
    assert all("no_dof" in f for f in res.flags) and not any(res.usable)


def test_bootstrap_resamples_within_each_group(five):
    frame, _, res = five
    assert res.samples.shape == (5, 100, 5) and res.bootstrap_unit == "row"
    assert np.all(res.samples[:, :, 3] == res.samples[:1, :, 3])  # a resample has one alpha for every group
    assert np.mean(np.isin(res.sample_status, (0, 3))) > 0.9
