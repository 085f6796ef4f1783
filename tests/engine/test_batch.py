"""Accuracy of ``atlas_jax.fit`` (atlas_jax.engine): recovery of known parameters from noiseless synthetic data,
agreement with scipy on noisy problems, batched == one-at-a-time, constraints, bootstrap
intervals, held-out protocols and input errors.

Synthetic fits pass a few explicit ``starts`` (internal space, shape (S, P)) instead of the
laws' default grids to keep the suite fast; the default grid is exercised in test_published.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import expect_warnings
from scipy.optimize import minimize

import atlas_jax as aj
from atlas_jax.laws import CHINCHILLA, DATA_CONSTRAINED, MSL, atlas_law

RECOVERY_RTOL = 1e-6


def internal(law, names, public):
    return np.array([p.to_internal(public[n]) for p, n in zip(law.params, names)], float)


def near_start(theta, rel=0.05, shift=0.02):
    """A start near, but not at, the truth (internal space)."""
    return (theta * (1 + rel) + shift)[None, :]


def ref_theta(params):
    """Public Chinchilla parameters -> the scipy reference's [a, b, e, alpha, beta]."""
    return np.array([np.log(params["A"]), np.log(params["B"]), np.log(params["E"]), params["alpha"], params["beta"]])


def from_ref(x):
    a, b, e, alpha, beta = x
    return dict(E=np.exp(e), A=np.exp(a), B=np.exp(b), alpha=alpha, beta=beta)


def scipy_chinchilla(ref, frame, starts, weights=None, transform=None):
    """Best L-BFGS-B (analytic gradient, tight tolerances) fit of the reference objective over ``starts``
    ([a, b, e, alpha, beta]); ``transform`` maps a reduced vector to the full one (fixed/tied parameters)."""
    N, D, L = (frame[c].to_numpy(float) for c in ("params", "tokens", "loss"))
    T = (lambda z: z) if transform is None else transform
    best = None
    for x0 in starts:
        def f(z):
            return ref.chinchilla_objective(T(z), N, D, L, weights=weights)

        def g(z, eps=None):
            full = ref.chinchilla_grad(T(z), N, D, L, weights=weights)
            if transform is None:
                return full
            # chain rule through the (linear, 0/1) transform
            J = np.stack([T(np.eye(len(z))[i]) - T(np.zeros(len(z))) for i in range(len(z))], axis=1)
            return J.T @ full

        with np.errstate(over="ignore", invalid="ignore"):
            res = minimize(f, x0, jac=g, method="L-BFGS-B",
                           options=dict(ftol=1e-15, gtol=1e-12, maxiter=10000, maxfun=100000))
        if best is None or res.fun < best.fun:
            best = res
    return best


# --------------------------------------------------------------------------- synthetic designs

SIZES = [1e7, 5e7, 2e8, 1e9, 5e9]
TOKENS = [1e8, 1e9, 5e9, 2e10, 1e11, 1e12]
DCSL_TRUTH = dict(E=1.8, A=500.0, B=1500.0, alpha=0.34, beta=0.28, R_D_star=15.0, R_N_star=5.0)
MSL_TRUTH = dict(E=1.7, A=400.0, B=800.0, alpha=0.33, beta=0.3, gamma=0.25)


def dcsl_frame(npl):
    """5 N x 4 U x 6 epoch counts (0.5 ... 200 epochs): both U_N branches, R_D = 0 and heavy repetition."""
    rows = [(n, ep * u, u) for u in (1e8, 1e9, 1e10, 1e11) for n in SIZES for ep in (0.5, 1, 3, 10, 40, 200)]
    frame = pd.DataFrame(rows, columns=["params", "tokens", "unique_tokens"])
    frame["loss"], above = npl.dcsl(frame["params"], frame["tokens"], frame["unique_tokens"], **DCSL_TRUTH,
                                    return_branch=True)
    assert 10 < above.sum() < len(frame) - 10
    return frame


def msl_frame(npl):
    rows = [dict(params=n, tokens=d, language="xx", tokens_xx=d * p, tokens_yy=d * (1 - p))
            for n in SIZES for d in TOKENS for p in (1.0, 0.5, 0.2)]
    frame = pd.DataFrame(rows)
    frame["loss"] = npl.msl(frame["params"], frame["tokens"], frame["tokens_xx"] / frame["tokens"], **MSL_TRUTH)
    return frame


def atlas_frame(npl, variant, noise=0.0, seed=0):
    frame = npl.atlas_mixture_frame().drop(columns="mixture")
    frame["loss"] = npl.atlas(frame, "xx", ["aa", "bb", "cc"], npl.ATLAS_TRUTH, variant)
    if noise:
        frame["loss"] *= np.exp(noise * np.random.default_rng(seed).standard_normal(len(frame)))
    return frame


def _recovery_case(npl, name):
    if name == "chinchilla":
        return CHINCHILLA, npl.chinchilla_frame(SIZES, TOKENS), npl.CHIN_TRUTH
    if name == "data_constrained":
        return DATA_CONSTRAINED, dcsl_frame(npl), DCSL_TRUTH
    if name == "msl":
        return MSL, msl_frame(npl), MSL_TRUTH
    variant = name.split("_", 1)[1]
    law = atlas_law(variant)
    frame = atlas_frame(npl, variant)
    truth = {n: npl.ATLAS_TRUTH[n] for n in law.names_for(frame)}
    return law, frame, truth


@pytest.mark.parametrize("name", ["chinchilla", "data_constrained", "msl",
                                  "atlas_monolingual", "atlas_other", "atlas_transfer"])
def test_noiseless_recovery(npl, name):
    law, frame, truth = _recovery_case(npl, name)
    names = law.names_for(frame)
    assert set(names) == set(truth)
    theta = internal(law, names, truth)
    res = aj.fit(law, frame, starts=near_start(theta))
    assert res.status == ("converged",)
    est = res.params()
    for n in names:
        assert est[n] == pytest.approx(truth[n], rel=RECOVERY_RTOL), n
    assert res.objective[0] < 1e-20
    # the start was genuinely away from the truth (so the test exercises the solver)
    start_public = law.to_public(near_start(theta))[0]
    assert np.max(npl.rel_err(start_public, [truth[n] for n in names])) > 0.02


# --------------------------------------------------------------------------- agreement with scipy


@pytest.fixture(scope="module")
def noisy40(npl):
    """40 runs (8 N x 5 D) of the Hoffmann law with 1 % lognormal noise."""
    return npl.chinchilla_frame(np.geomspace(2e7, 1e10, 8), np.geomspace(2e8, 1e12, 5), noise=0.01, seed=3)


CHIN_STARTS = np.array([
    [np.log(1.69) + 0.05, np.log(406.4) * 1.05, np.log(410.7) * 0.95, 0.30, 0.30],  # near the truth
    [0.5, 5.0, 5.0, 0.5, 0.5],
    [0.0, 10.0, 10.0, 0.5, 0.5],
])  # internal order (e, a, b, alpha, beta)


def _to_ref_starts(starts):
    return [np.array([s[1], s[2], s[0], s[3], s[4]]) for s in starts]


@pytest.fixture(scope="module")
def noisy40_fit(noisy40):
    return aj.fit(CHINCHILLA, noisy40, starts=CHIN_STARTS)


def test_chinchilla_matches_scipy_lbfgsb(ref, noisy40, noisy40_fit):
    res = noisy40_fit
    sp = scipy_chinchilla(ref, noisy40, _to_ref_starts(CHIN_STARTS))
    assert sp.success
    assert res.objective[0] <= sp.fun + 1e-12
    sp_params = from_ref(sp.x)
    for n, v in res.params().items():
        assert v == pytest.approx(sp_params[n], rel=1e-4), n
    # the objective the package reports is the reference's objective at the package's estimate
    assert res.objective[0] == pytest.approx(
        ref.chinchilla_objective(ref_theta(res.params()), *(noisy40[c] for c in ("params", "tokens", "loss"))),
        rel=1e-12)
    # and no worse than the generic finite-difference reference fit
    gen = ref.generic_huber_fit(ref.chinchilla_log_pred, _to_ref_starts(CHIN_STARTS)[0],
                                (noisy40["params"].to_numpy(), noisy40["tokens"].to_numpy()),
                                np.log(noisy40["loss"].to_numpy()))
    assert res.objective[0] <= gen.fun + 1e-12


def test_atlas_transfer_objective_not_worse_than_scipy(npl, ref):
    """Noisy (1 %) ATLAS transfer problem: the package's optimum is at least as low as scipy's from the same start."""
    law = atlas_law("transfer")
    frame = atlas_frame(npl, "transfer", noise=0.01, seed=11)
    names = law.names_for(frame)
    theta0 = internal(law, names, npl.ATLAS_TRUTH)
    start = near_start(theta0, rel=0.03, shift=0.01)
    res = aj.fit(law, frame, starts=start)

    def log_pred(th, fr):
        p = {n: (np.exp(v) if prm.log else v) for n, v, prm in zip(names, th, law.params)}
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            return np.log(npl.atlas(fr, "xx", ["aa", "bb", "cc"], p, "transfer"))

    sp = ref.generic_huber_fit(log_pred, start[0], (frame,), np.log(frame["loss"].to_numpy()))
    assert np.isfinite(sp.fun)
    assert res.objective[0] <= sp.fun + 1e-12
    # the package's objective equals the reference objective evaluated at its estimate
    own = np.sum(npl.huber(log_pred(internal(law, names, res.params()), frame) - np.log(frame["loss"])))
    assert res.objective[0] == pytest.approx(own, rel=1e-10)


# --------------------------------------------------------------------------- batched == one at a time

GROUP_TRUTHS = {
    "g1": dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28),
    "g2": dict(E=2.1, A=900.0, B=2000.0, alpha=0.4, beta=0.36),
    "g3": dict(E=1.2, A=150.0, B=300.0, alpha=0.28, beta=0.25),
}


@pytest.fixture(scope="module")
def grouped(npl):
    """Three groups of different sizes (36, 40, 45 runs) with 0.5 % noise, to exercise padding. All three lie in
    one shape (up to 64 runs, atlas_jax.engine.batch) with noisy40, so the one-group fits below reuse
    noisy40_fit's compiled program."""
    designs = {"g1": (np.geomspace(1e7, 1e10, 6), np.geomspace(1e8, 1e12, 6)),
               "g2": (np.geomspace(2e7, 5e9, 8), np.geomspace(3e8, 3e11, 5)),
               "g3": (np.geomspace(5e7, 2e10, 5), np.geomspace(1e9, 1e12, 9))}
    frames = []
    for k, (g, (N, D)) in enumerate(designs.items()):
        frames.append(npl.chinchilla_frame(N, D, GROUP_TRUTHS[g], noise=0.005, seed=10 + k).assign(group=g))
    return pd.concat(frames, ignore_index=True)


def test_groups_batched_equal_individual(ref, grouped):
    together = aj.fit(CHINCHILLA, grouped, group_by="group", starts=CHIN_STARTS)
    assert together.groups == ("g1", "g2", "g3")
    assert list(together.n_runs) == [36, 40, 45]
    for g in together.groups:
        sub = grouped[grouped["group"] == g].drop(columns="group").reset_index(drop=True)
        alone = aj.fit(CHINCHILLA, sub, starts=CHIN_STARTS)
        # same optimum: the objective to 1e-12; parameters to 1e-6 because padding the smaller groups changes
        # the order of floating-point sums and the optimum lies in a flat valley (Hessian condition ~1e11)
        gi = together.groups.index(g)
        assert together.objective[gi] == pytest.approx(alone.objective[0], rel=1e-12)
        for n, v in together.params(g).items():
            assert v == pytest.approx(alone.params()[n], rel=1e-6), (g, n)
        # each group's estimate is also scipy's optimum on that group alone
        sp = scipy_chinchilla(ref, sub, _to_ref_starts(CHIN_STARTS))
        assert together.objective[gi] <= sp.fun + 1e-12
        for n, v in from_ref(sp.x).items():
            assert together.params(g)[n] == pytest.approx(v, rel=1e-4), (g, n)
    frame = together.to_frame()
    assert list(frame.columns) == ["group", "param", "estimate", "flags"]
    assert len(frame) == 15 and set(frame["group"]) == {"g1", "g2", "g3"}


@pytest.fixture(scope="module")
def boot6(noisy40):
    """6 explicit resamples of noisy40, refitted in one batch."""
    n = len(noisy40)
    idx = np.random.default_rng(5).integers(0, n, size=(6, n))
    return idx, aj.fit(CHINCHILLA, noisy40, starts=CHIN_STARTS, resample_indices=idx)


def test_bootstrap_batch_equals_individual_resamples(ref, noisy40, noisy40_fit, boot6):
    n = len(noisy40)
    idx, batch = boot6
    assert batch.samples.shape == (1, 6, 5)
    # the estimate of the full data is unaffected by bootstrapping
    np.testing.assert_allclose(batch.estimate, noisy40_fit.estimate, rtol=1e-12)
    for k in (0, 3, 5):
        alone = aj.fit(CHINCHILLA, noisy40, starts=CHIN_STARTS, resample_indices=idx[k:k + 1])
        np.testing.assert_allclose(batch.samples[0, k], alone.samples[0, 0], rtol=1e-8)
    # a resample's refit is the weighted optimum: compare with scipy on the explicitly resampled rows
    k = 3
    counts = np.bincount(idx[k], minlength=n).astype(float)
    sp = scipy_chinchilla(ref, noisy40, [ref_theta(noisy40_fit.params())], weights=counts)
    N, D, L = (noisy40[c].to_numpy(float) for c in ("params", "tokens", "loss"))
    mine = ref.chinchilla_objective(ref_theta(dict(zip(CHINCHILLA.names, batch.samples[0, k]))),
                                    N[idx[k]], D[idx[k]], L[idx[k]])
    assert mine <= sp.fun + 1e-12
    np.testing.assert_allclose(batch.samples[0, k], list(from_ref(sp.x).values()), rtol=1e-4)


def test_progress_bars_report_every_fit_and_change_nothing(noisy40, boot6, capsys, monkeypatch):
    """progress=True compiles its own programs (the flag is static, and they are not stored); the quiet fit is
    boot6's. Bars are shown for batches of any size here (by default from ``PROGRESS_MIN`` fit-runs)."""
    from atlas_jax.engine import batch as batch_module

    monkeypatch.setattr(batch_module, "PROGRESS_MIN", 0)
    idx, quiet = boot6
    capsys.readouterr()
    loud = aj.fit(CHINCHILLA, noisy40, starts=CHIN_STARTS, resample_indices=idx, progress=True)
    np.testing.assert_array_equal(loud.samples, quiet.samples)
    np.testing.assert_array_equal(loud.estimate, quiet.estimate)
    err = capsys.readouterr().err
    assert "bootstrap" in err and "/6" in err and "/3" in err and "polishing" in err


# --------------------------------------------------------------------------- fixed and tied parameters


def test_fixed_parameter(ref, noisy40):
    res = aj.fit(CHINCHILLA, noisy40, starts=CHIN_STARTS, fix={"alpha": 0.31})
    assert res.params()["alpha"] == 0.31
    assert res.fixed == {"alpha": 0.31}
    # scipy with alpha held at 0.31: x = [a, b, e, beta]
    T = lambda z: np.array([z[0], z[1], z[2], 0.31, z[3]])
    sp = scipy_chinchilla(ref, noisy40, [np.delete(s, 3) for s in _to_ref_starts(CHIN_STARTS)], transform=T)
    assert res.objective[0] <= sp.fun + 1e-12
    for n, v in from_ref(T(sp.x)).items():
        assert res.params()[n] == pytest.approx(v, rel=1e-4), n
    # fixing a log-space parameter returns it to round-off
    res_e = aj.fit(CHINCHILLA, noisy40, starts=CHIN_STARTS, fix={"E": 1.75})
    assert res_e.params()["E"] == pytest.approx(1.75, rel=1e-15)


def test_tied_parameters(ref, noisy40):
    res = aj.fit(CHINCHILLA, noisy40, starts=CHIN_STARTS, tie=[("alpha", "beta")])
    p = res.params()
    assert p["alpha"] == p["beta"]
    T = lambda z: np.array([z[0], z[1], z[2], z[3], z[3]])
    sp = scipy_chinchilla(ref, noisy40, [s[:4] for s in _to_ref_starts(CHIN_STARTS)], transform=T)
    assert res.objective[0] <= sp.fun + 1e-12
    for n, v in from_ref(T(sp.x)).items():
        assert p[n] == pytest.approx(v, rel=1e-4), n


def test_fix_and_tie_errors(noisy40):
    with pytest.raises(ValueError, match="gamma"):
        aj.fit(CHINCHILLA, noisy40, starts=CHIN_STARTS, fix={"gamma": 1.0})
    with pytest.raises(ValueError, match="E"):
        aj.fit(CHINCHILLA, noisy40, starts=CHIN_STARTS, fix={"E": -1.0})
    with pytest.raises(ValueError, match="log space"):
        aj.fit(CHINCHILLA, noisy40, starts=CHIN_STARTS, tie=[("A", "alpha")])


# --------------------------------------------------------------------------- bootstrap intervals


@pytest.fixture(scope="module")
def boot_pair(npl):
    """The same law with 2 % noise on 40 runs and on 160 runs, each with 300 bootstrap resamples."""
    small = npl.chinchilla_frame(np.geomspace(2e7, 1e10, 8), np.geomspace(2e8, 1e12, 5), noise=0.02, seed=21)
    large = npl.chinchilla_frame(np.geomspace(2e7, 1e10, 16), np.geomspace(2e8, 1e12, 10), noise=0.02, seed=22)
    with expect_warnings(r"not a trustworthy fit: wide-interval \(A\)"):  # 40 noisy runs: A is not pinned down
        fits = {k: aj.fit(CHINCHILLA, f, starts=CHIN_STARTS, bootstrap=300, seed=1) for k, f in
                (("small", small), ("large", large))}
    return fits


def test_bootstrap_intervals_contain_truth_and_shrink(npl, boot_pair):
    small, large = boot_pair["small"], boot_pair["large"]
    for res in (small, large):
        assert res.samples.shape == (1, 300, 5)
        assert np.mean(res.sample_status == 0) > 0.95
        for n in ("E", "alpha", "beta", "A", "B"):
            lo, hi = res.interval(n)
            assert lo < npl.CHIN_TRUTH[n] < hi, (n, lo, hi)
            assert lo <= res.params()[n] <= hi
            # the interval is the 2.5/97.5 percentile of the refits
            s = res.samples[0, :, res.names[0].index(n)]
            assert (lo, hi) == pytest.approx(tuple(np.percentile(s, [2.5, 97.5])), rel=1e-12)
    for n in ("E", "alpha", "beta", "A", "B"):
        w_small = np.subtract(*small.interval(n)[::-1])
        w_large = np.subtract(*large.interval(n)[::-1])
        assert w_large < 0.8 * w_small, n
    frame = small.to_frame()
    assert list(frame.columns) == ["group", "param", "estimate", "ci_low", "ci_high", "flags"]
    assert list(frame["param"]) == list(CHINCHILLA.names)
    np.testing.assert_allclose(frame["ci_low"], small.ci_low[0])


# --------------------------------------------------------------------------- held-out evaluation

HELD_SIZES = [9.0e7, 2.4e8, 661_807_872.0, 1.6e9, 4.3e9, 8_452_190_208.0]
HELD_TOKENS = [1e9, 4e9, 1.5e10, 5e10, 2e11]
MIXES = [("xx",), ("xx", "yy"), ("xx", "yy", "zz"), ("xx", "yy", "zz", "ww"), ("xx", "yy", "zz", "ww", "vv")]


@pytest.fixture(scope="module")
def holdout_table(npl):
    frame = npl.chinchilla_frame(HELD_SIZES, HELD_TOKENS, noise=0.01, seed=4)
    # perturb tokens slightly so that every compute value is distinct
    frame["tokens"] *= 1 + 1e-3 * np.arange(len(frame))
    frame["loss"] = npl.chinchilla(frame["params"], frame["tokens"], **npl.CHIN_TRUTH) * \
        np.exp(0.01 * np.random.default_rng(4).standard_normal(len(frame)))
    langs = ["xx", "yy", "zz", "ww", "vv"]
    k = np.arange(len(frame)) % len(MIXES)
    for lang in langs:
        frame[f"tokens_{lang}"] = [frame["tokens"].iloc[i] / len(MIXES[k[i]]) if lang in MIXES[k[i]] else 0.0
                                   for i in range(len(frame))]
    frame["tokens"] = frame[[f"tokens_{l}" for l in langs]].sum(axis=1)
    frame["n_langs"] = [len(MIXES[j]) for j in k]
    return frame


def test_holdout_masks(holdout_table):
    f = holdout_table
    n = len(f)
    assert n == 30
    # max_tokens: the 6 runs (20 %) with the most tokens are exactly those at the largest D
    m = aj.holdout_mask(f, "max_tokens")
    assert m.sum() == 6 and set(np.flatnonzero(m)) == set(np.argsort(f["tokens"].to_numpy())[-6:])
    assert f["tokens"][m].min() > f["tokens"][~m].max()
    assert np.all(f["tokens"][m] > 1.9e11)
    # max_compute: the 6 runs with the largest 6 N D
    C = 6 * f["params"] * f["tokens"]
    m = aj.holdout_mask(f, "max_compute")
    assert m.sum() == 6 and C[m].min() > C[~m].max()
    # model_sizes: the two sizes nearest to 660M and 8B (the ATLAS held-out sizes), all their runs
    m = aj.holdout_mask(f, "model_sizes")
    assert set(f["params"][m]) == {661_807_872.0, 8_452_190_208.0} and m.sum() == 10
    # mixtures: neither mono-, bilingual nor the largest mixture, i.e. 3 or 4 languages here
    m = aj.holdout_mask(f, "mixtures")
    np.testing.assert_array_equal(m, f["n_langs"].isin([3, 4]).to_numpy())
    # random: 20 %, reproducible from the seed, different for another seed
    m0, m0b, m1 = (aj.holdout_mask(f, "random", seed=s) for s in (0, 0, 1))
    assert m0.sum() == 6 and m1.sum() == 6
    np.testing.assert_array_equal(m0, m0b)
    assert not np.array_equal(m0, m1)
    assert aj.holdout_mask(f, "random", fraction=0.5).sum() == 15
    with pytest.raises(ValueError, match="unknown protocol"):
        aj.holdout_mask(f, "biggest")
    with pytest.raises(ValueError, match="mixture"):
        aj.holdout_mask(f[["params", "tokens", "loss"]], "mixtures")


def test_r_squared_hand_computed():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    y_hat = np.array([1.1, 1.9, 3.2, 3.8])
    # SS_res = 0.01 + 0.01 + 0.04 + 0.04 = 0.10, SS_tot = 2.25 + 0.25 + 0.25 + 2.25 = 5
    assert aj.r_squared(y, y_hat) == pytest.approx(1 - 0.10 / 5.0, rel=1e-14)
    assert aj.r_squared(y, y) == 1.0
    assert aj.r_squared(y, np.full(4, y.mean())) == 0.0


def test_evaluate_holdout_r2_matches_hand_computation(ref, npl, holdout_table):
    f = holdout_table.drop(columns="n_langs")
    out = aj.evaluate_holdout(CHINCHILLA, f, starts=CHIN_STARTS)
    assert list(out["protocol"]) == ["random", "max_tokens", "model_sizes", "max_compute", "mixtures"]
    for _, row in out.iterrows():
        test = aj.holdout_mask(f, row["protocol"])
        assert row["n_test"] == test.sum() and row["n_train"] == (~test).sum()
        train = f[~test].reset_index(drop=True)
        sp = scipy_chinchilla(ref, train, _to_ref_starts(CHIN_STARTS))
        held = f[test]
        pred = npl.chinchilla(held["params"], held["tokens"], **from_ref(sp.x))
        y = held["loss"].to_numpy()
        r2 = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
        assert row["r2"] == pytest.approx(r2, abs=1e-6), row["protocol"]
    # extrapolating to bigger runs of a noisy law is informative but not perfect
    assert out["r2"].notna().all()


# --------------------------------------------------------------------------- input errors


@pytest.mark.parametrize("as_table", [False, True])
def test_group_with_too_few_runs_is_skipped_by_name(npl, as_table):
    big = npl.chinchilla_frame(SIZES, TOKENS).assign(group="big")
    tiny = npl.chinchilla_frame([1e8, 1e9], [1e9, 1e10]).assign(group="tiny")
    frame = pd.concat([big, tiny], ignore_index=True)
    runs = aj.validate_runs(frame) if as_table else frame
    with pytest.warns(UserWarning, match=r"skipped 1 group\(s\) .*: tiny"):
        res = aj.fit(CHINCHILLA, runs, group_by="group", starts=CHIN_STARTS)
    assert res.groups == ("big",) and res.skipped == ("tiny",)
    with pytest.raises(ValueError, match="'tiny' \\(4\\)"):
        aj.fit(DATA_CONSTRAINED, tiny.assign(unique_tokens=1e12), group_by="group")


def test_fit_with_every_parameter_fixed_returns_objective(npl, noisy40):
    res = aj.fit(CHINCHILLA, noisy40, fix=npl.CHIN_TRUTH, starts=CHIN_STARTS)
    r = np.log(npl.chinchilla(noisy40["params"], noisy40["tokens"], **npl.CHIN_TRUTH)) - np.log(noisy40["loss"])
    assert res.objective[0] == pytest.approx(np.sum(npl.huber(r)), rel=1e-12)


def test_memory_budget_chunks_give_the_same_fits(noisy40, boot6):
    """A budget that holds two screening fits but one resample fit: noisy40's 3 starts are screened (keep=2, so
    the screen-then-polish path runs) in 2 padded chunks, the 6 resamples of boot6 refitted in 6 chunks, and they
    agree with one call each (to the last bits: XLA vectorises the solver's loops differently for other batch
    sizes); a budget below one fit is an error naming it. (noisy40's 40 runs, the start grid and the resamples of
    the other noisy40 tests: the unchunked call reuses their compiled programs.)"""
    idx, _ = boot6
    one = aj.fit(CHINCHILLA, noisy40, starts=CHIN_STARTS, keep=2, resample_indices=idx)
    # _chunk_size at 64 padded runs (512 bytes of weights per row, 1,024 fixed), 5 parameters (120 bytes per fit):
    # screening 3 starts per row (291 a fit) -> 2 a chunk; polishing 2 starts (376 a fit) -> both in one;
    # resamples from the estimate (632 a fit) -> 1 a chunk
    chunked = aj.fit(CHINCHILLA, noisy40, starts=CHIN_STARTS, keep=2, resample_indices=idx, memory_budget=1800)
    np.testing.assert_allclose(chunked.estimate, one.estimate, rtol=1e-10)
    np.testing.assert_allclose(chunked.samples, one.samples, rtol=1e-8)
    assert chunked.status == one.status
    with pytest.raises(ValueError, match="memory_budget: 100 bytes cannot hold one fit"):
        aj.fit(CHINCHILLA, noisy40, starts=CHIN_STARTS, memory_budget=100)


def test_bootstrap_multistart_refits_each_resample_like_a_point_fit(noisy40, boot6):
    """Every resample runs the whole screen-then-polish over the starts (3 screened, the best 2 polished): each
    refit equals the point fit of that resample's run weights (one call per resample) to 1e-4 (other batch sizes
    round differently, and the solver stops at ftol 1e-10 of the objective, where B can still move along the flat
    valley)."""
    idx, from_estimate = boot6
    n = len(noisy40)
    res = aj.fit(CHINCHILLA, noisy40, starts=CHIN_STARTS, keep=2, resample_indices=idx, bootstrap_multistart=True)
    counts = np.stack([np.bincount(i, minlength=n) for i in idx]).astype(float)
    for b, w in enumerate(counts):
        alone = aj.fit(CHINCHILLA, noisy40, starts=CHIN_STARTS, keep=2, weights=w)
        np.testing.assert_allclose(res.samples[0, b], alone.estimate[0], rtol=1e-4)
    assert np.all(res.sample_status == 0)
    # refitting from the estimate reaches the same optima on these resamples
    np.testing.assert_allclose(from_estimate.samples, res.samples, rtol=1e-4)


def test_float32_fit_is_close_to_float64_on_epoch_data():
    """float32 arithmetic (accelerator mode) lands within 2e-3 of the float64 optimum on Epoch's 240 points
    (published fit: E 1.81724, A 477.84, B 2143.86, alpha 0.347313, beta 0.367183), with objective within 1e-5;
    mixed precision (float32 screening, float64 polish) reaches the float64 optimum."""
    runs = aj.load_chinchilla()
    f64, f32 = aj.fit("chinchilla", runs), aj.fit("chinchilla", runs, dtype="float32")
    np.testing.assert_allclose(f32.estimate, f64.estimate, rtol=2e-3)
    assert f32.objective[0] == pytest.approx(f64.objective[0], rel=1e-5)
    assert f32.status == ("converged",)
    mixed = aj.fit("chinchilla", runs, dtype="mixed")  # float32 screening, float64 polish
    np.testing.assert_allclose(mixed.estimate, f64.estimate, rtol=1e-4)
    assert mixed.objective[0] == pytest.approx(f64.objective[0], rel=1e-9)
    with pytest.raises(ValueError, match="dtype: expected one of 'float64', 'float32', 'mixed'"):
        aj.fit("chinchilla", runs, dtype="bfloat16")


def test_fit_arrays_fits_hand_built_arrays_as_fit_fits_the_table():
    """The array-level engine under the pandas layer: arrays built by hand (two groups of 12 and 9 runs, the
    shorter padded with weight 0) give the table fit's estimates to 1e-9 and recover the generator's truth."""
    from conftest import CHIN_TRUTH, chinchilla_frame

    from atlas_jax.engine import GroupedData

    other = dict(E=2.1, A=300.0, B=900.0, alpha=0.30, beta=0.32)
    a = chinchilla_frame(np.geomspace(4e7, 4e9, 4), np.geomspace(1e9, 1e11, 3)).assign(g="a")
    b = chinchilla_frame(np.geomspace(6e7, 3e9, 3), np.geomspace(2e9, 2e11, 3), truth=other).assign(g="b")
    pad = lambda v: np.pad(v, (0, 12 - len(v)), mode="edge")
    arrays = GroupedData(("a", "b"), (CHINCHILLA.names,) * 2,
                         {name: np.stack([pad(np.log(f[column].to_numpy())) for f in (a, b)])
                          for name, column in (("log_n", "params"), ("log_d", "tokens"))},
                         np.stack([pad(np.log(f["loss"].to_numpy())) for f in (a, b)]),
                         np.stack([np.ones(12), np.r_[np.ones(9), np.zeros(3)]]))
    by_arrays = aj.fit_arrays("chinchilla", arrays, starts=CHIN_STARTS)
    by_table = aj.fit("chinchilla", pd.concat([a, b]), group_by="g", starts=CHIN_STARTS)
    np.testing.assert_allclose(by_arrays.estimate, by_table.estimate, rtol=1e-9)
    assert list(by_arrays.n_runs) == [12, 9] and by_arrays.groups == ("a", "b")
    for g, truth in enumerate((CHIN_TRUTH, other)):
        np.testing.assert_allclose(by_arrays.estimate[g], [truth[n] for n in CHINCHILLA.names], rtol=1e-5)


def test_fit_arrays_names_what_is_wrong_with_the_arrays():
    from atlas_jax.engine import GroupedData

    ok = dict(groups=("a",), names=(CHINCHILLA.names,), features={"log_n": np.zeros((1, 8)), "log_d": np.zeros((1, 8))},
              log_y=np.zeros((1, 8)), mask=np.ones((1, 8)))
    with pytest.raises(ValueError, match=r"law 'chinchilla' reads feature 'log_d', got \['log_n', 'tokens'\]"):
        aj.fit_arrays("chinchilla", GroupedData(**{**ok, "features": {"log_n": np.zeros((1, 8)),
                                                                      "tokens": np.zeros((1, 8))}}))
    with pytest.raises(ValueError, match=r"data.log_y: expected finite values of shape \(1, 8\)"):
        aj.fit_arrays("chinchilla", GroupedData(**{**ok, "log_y": np.full((1, 8), np.nan)}))


def test_long_group_screens_on_a_subsample_and_reaches_the_full_optimum():
    """A group of 5,000 runs (past ROW_CHUNK: evaluated in chunks) screens and polishes its starts on 2,048 of
    them, then polishes the best optima on all: the optimum of the full computation (every step on all runs), and
    the generator's truth from noiseless runs (numpy closed form, conftest)."""
    from conftest import CHIN_TRUTH, np_chinchilla

    from atlas_jax.engine.batch import ROW_CHUNK

    rng = np.random.default_rng(3)
    N, D = np.exp(rng.uniform(np.log(4e7), np.log(4e9), 5000)), np.exp(rng.uniform(np.log(1e9), np.log(2e11), 5000))
    clean = pd.DataFrame({"params": N, "tokens": D, "loss": np_chinchilla(N, D, **CHIN_TRUTH)})
    noisy = clean.assign(loss=clean["loss"] * np.exp(0.01 * rng.standard_normal(5000)))
    starts = CHINCHILLA.start_grid()[::40]
    assert len(clean) > ROW_CHUNK and len(starts) > 32
    sub, full = (aj.fit("chinchilla", noisy, starts=starts, screen_rows=m) for m in (2048, None))
    assert (sub.screen_rows, full.screen_rows) == (2048, None) and sub.status == full.status == ("converged",)
    np.testing.assert_allclose(sub.objective, full.objective, rtol=1e-9)
    np.testing.assert_allclose(sub.estimate, full.estimate, rtol=1e-4)
    assert sub.timings["fit_evaluations"] < full.timings["fit_evaluations"] / 2
    exact = aj.fit("chinchilla", clean, starts=starts)
    np.testing.assert_allclose(exact.estimate[0], [CHIN_TRUTH[n] for n in CHINCHILLA.names], rtol=RECOVERY_RTOL)


def test_losses_on_another_scale_give_the_same_fit_scaled():
    """Losses x 1e-8 (or x 1e3) fit to E, A, B x 1e-8 and the same exponents and objective (log residuals do not
    change): the start grid follows the losses' scale, with a note. Unscaled starts stopped at E = A = B = 0."""
    from conftest import np_chinchilla

    rng = np.random.default_rng(5)
    N, D = np.exp(rng.uniform(np.log(5e7), np.log(5e9), 60)), np.exp(rng.uniform(np.log(1e9), np.log(2e11), 60))
    frame = pd.DataFrame({"params": N, "tokens": D, "loss": np_chinchilla(N, D, 1.8, 482.0, 2085.0, 0.35, 0.37)
                          * np.exp(0.01 * rng.standard_normal(60))})
    plain = aj.fit("chinchilla", frame)
    for c in (1e-8, 1e3):
        with expect_warnings(r"the losses are on an unusual scale \(median .*: the starts of E, A, B are scaled"):
            scaled = aj.fit("chinchilla", frame.assign(loss=frame["loss"] * c))
        assert scaled.verdict() == "converged"
        np.testing.assert_allclose(scaled.objective, plain.objective, rtol=1e-8)
        # to the solver's tolerance along the flat A-alpha ridge of 60 runs
        np.testing.assert_allclose(scaled.estimate[0], plain.estimate[0] * [c, c, c, 1, 1], rtol=1e-3)
