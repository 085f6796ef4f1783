"""Bayesian inference (atlas_jax.bayes): agreement with Epoch's published intervals, recovery of known
parameters, ArviZ output, diagnostics as data, hierarchical pooling, LOO, CLI, errors."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize_scalar
from typer.testing import CliRunner

import atlas_jax as aj
from atlas_jax.bayes import posterior, prior_table
from atlas_jax.bayes.sampler import rank_diagnostics
from atlas_jax.cli import app

PUBLISHED_CI = {"alpha": (0.317, 0.373), "beta": (0.331, 0.415), "E": (1.769, 1.871)}  # Besiroglu et al. 2024


def test_epoch_posterior_medians_inside_published_bootstrap_intervals(epoch_posterior):
    for name, (low, high) in PUBLISHED_CI.items():
        assert low < np.median(epoch_posterior.draws(name)) < high, name
    assert epoch_posterior.diagnostics["divergences"] == 0
    assert epoch_posterior.diagnostics["r_hat_max"] < 1.05  # 2 x 400 draws: near, not at, the 1.01 flag


def test_inference_data_groups_dims_and_summary(epoch_posterior):
    """One posterior variable per public parameter, so ArviZ's own summary and plots work by name; 95 % HDIs."""
    import matplotlib.pyplot as plt

    from atlas_jax.bayes.result import _arviz

    az = _arviz()
    idata = epoch_posterior.to_inference_data()
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data", "constant_data",
                  "posterior_predictive"):
        assert hasattr(idata, group), group
    assert idata.posterior.attrs["parameters"].split() == ["E", "A", "B", "alpha", "beta"]
    for name in ("E", "A", "B", "alpha", "beta"):
        assert idata.posterior[name].dims == ("chain", "draw", "group")
    np.testing.assert_array_equal(idata.posterior["alpha"].values[:, :, 0], epoch_posterior.draws("alpha").reshape(2, 400))
    by_name = az.summary(idata, var_names=["alpha"], hdi_prob=0.95, round_to="none")  # ArviZ by parameter name
    assert list(by_name.index) == ["alpha[all]"]
    assert idata.log_likelihood["log_loss"].shape == (2, 400, 240)
    assert idata.sample_stats["diverging"].shape == (2, 400)
    np.testing.assert_allclose(idata.observed_data["log_loss"], np.log(aj.load_chinchilla().frame["loss"]))
    summary = epoch_posterior.summary()
    assert list(summary.columns[:2]) == ["group", "param"]
    for col in ("mean", "sd", "hdi_2.5%", "hdi_97.5%", "ess_bulk", "ess_tail", "r_hat"):  # 95 %, as everywhere
        assert col in summary.columns
    alpha = summary.set_index("param").loc["alpha"]
    assert alpha["hdi_2.5%"] < np.median(epoch_posterior.draws("alpha")) < alpha["hdi_97.5%"]
    assert alpha[["mean", "sd", "ess_bulk"]].tolist() == by_name.loc["alpha[all]", ["mean", "sd", "ess_bulk"]].tolist()
    axes = az.plot_trace(idata, var_names=["alpha", "beta"])
    assert axes.shape == (2, 2)
    plt.close("all")


def test_group_specific_names_are_variables_of_their_groups(epoch_posterior):
    """ATLAS names a helper's tau by its language, per group: `tau_en` is a variable over the groups, NaN where en
    is not a helper; the summary has a row only where the parameter exists."""
    from dataclasses import replace

    public = np.concatenate([epoch_posterior.public, epoch_posterior.public * 2.0], axis=2)  # [C, D, 2, 5]
    two = replace(epoch_posterior, groups=("sw", "yo"), names=(("E", "A", "B", "alpha", "tau_en"),
                                                                ("E", "A", "B", "alpha", "tau_fr")),
                  public=public, samples={"sigma": np.repeat(epoch_posterior.samples["sigma"], 2, axis=2)})
    posterior_ = two.to_inference_data().posterior
    assert posterior_.attrs["parameters"].split() == ["E", "A", "B", "alpha", "tau_en", "tau_fr"]
    tau_en = posterior_["tau_en"].values
    np.testing.assert_array_equal(tau_en[:, :, 0], epoch_posterior.public[:, :, 0, 4])
    assert np.isnan(tau_en[:, :, 1]).all() and np.isnan(posterior_["tau_fr"].values[:, :, 0]).all()
    summary = two.summary()
    assert list(zip(summary["group"], summary["param"]))[3:] == [("sw", "alpha"), ("sw", "tau_en"), ("yo", "E"),
                                                               ("yo", "A"), ("yo", "B"), ("yo", "alpha"),
                                                               ("yo", "tau_fr")]
    assert summary[["mean", "hdi_2.5%", "hdi_97.5%"]].notna().all().all()
    assert summary.set_index(["group", "param"]).loc[("yo", "tau_fr"), "mean"] == pytest.approx(
        2 * np.mean(epoch_posterior.public[:, :, 0, 4]))


def test_derived_compute_optimum_matches_brute_force(epoch_posterior):
    """N*(C) of the posterior median draw equals the minimiser of E + A/N^a + B/(C/6N)^b over N."""
    table = epoch_posterior.derived(flops=[1e22]).set_index("quantity")
    p = {n: epoch_posterior.draws(n) for n in ("E", "A", "B", "alpha", "beta")}
    i = np.argsort(p["alpha"])[len(p["alpha"]) // 2]
    loss = lambda log_n: p["A"][i] / np.exp(log_n) ** p["alpha"][i] + p["B"][i] / (1e22 / 6 / np.exp(log_n)) ** p["beta"][i]
    n_star = np.exp(minimize_scalar(loss, bounds=(np.log(1e6), np.log(1e14)), method="bounded",
                                    options={"xatol": 1e-10}).x)
    a, b = p["alpha"][i], p["beta"][i]
    closed = (a * p["A"][i] / (b * p["B"][i])) ** (1 / (a + b)) * (1e22 / 6) ** (b / (a + b))
    assert closed == pytest.approx(n_star, rel=1e-6)
    row = table.loc["N_opt"]
    assert row["ci_low"] < row["median"] < row["ci_high"]
    assert table.loc["tokens_per_param", "median"] == pytest.approx(
        table.loc["D_opt", "median"] / table.loc["N_opt", "median"], rel=0.1)


def synthetic_runs(seed=0, noise=0.01):
    """Chinchilla-form runs with known parameters: 6 sizes x 6 token counts."""
    truth = {"E": 1.7, "A": 400.0, "B": 1500.0, "alpha": 0.34, "beta": 0.30}
    n, d = np.meshgrid(np.geomspace(1e7, 3e9, 6), np.geomspace(1e9, 3e11, 6))
    loss = truth["E"] + truth["A"] / n**truth["alpha"] + truth["B"] / d**truth["beta"]
    loss = loss * np.exp(noise * np.random.default_rng(seed).standard_normal(loss.shape))
    return pd.DataFrame({"params": n.ravel(), "tokens": d.ravel(), "loss": loss.ravel()}), truth


def test_recovers_known_parameters():
    runs, truth = synthetic_runs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        post = posterior("chinchilla", runs, chains=2, draws=1000, warmup=500, seed=1)  # truth near the 2.5 % tail of E
    assert post.diagnostics["divergences"] == 0 and post.diagnostics["flags"] == []  # mixed, before coverage
    for name, value in truth.items():
        low, high = post.interval(name)
        assert low < value < high, (name, low, value, high)
    # Student-t(nu = 4, scale sigma) has sd sigma sqrt(nu / (nu - 2)): the noise sd on log loss is 0.01
    assert np.median(post.samples["sigma"]) * np.sqrt(4 / 2) == pytest.approx(0.01, rel=0.3)


# A run far too short to trust, on the synthetic runs. NUTS compiles once per data set and setting (the
# potential holds the runs), so the CLI test below samples the same runs with the same settings and seed,
# and finds the programs in JAX's persistent compilation cache (atlas_jax.runtime) where it is on.
SHORT = dict(chains=2, draws=15, warmup=30, seed=0)


def test_diagnostics_are_flagged_never_silent():
    runs, _ = synthetic_runs()
    with pytest.warns(UserWarning, match="bulk ESS down to"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="r_hat up to")
        post = posterior("chinchilla", runs, **SHORT)
    assert post.diagnostics["ess_min"] < 400 and any("ESS" in f for f in post.diagnostics["flags"])
    assert post.warnings == tuple(post.diagnostics["flags"])


def test_rank_diagnostics_match_arviz():
    az = pytest.importorskip("arviz")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 300, 3))
    x[1, :, 0] += 0.3                                        # one chain off: r-hat > 1
    x[:, :, 2] = np.cumsum(x[:, :, 2], axis=1) * 0.1          # random walk: tiny ESS
    r_hat, ess = rank_diagnostics(x)
    ds = az.convert_to_dataset({"x": x})
    np.testing.assert_allclose(r_hat, az.rhat(ds)["x"].values, rtol=1e-10)
    np.testing.assert_allclose(ess, az.ess(ds, method="bulk")["x"].values, rtol=0.03)
    assert r_hat[2] > 1.5 and ess[2] < 20


def test_laplace_mode_and_covariance_of_a_known_potential():
    """Quadratic plus quartic potential: mode m and inverse Hessian exactly; with one coordinate held, the
    conditional mode of the quadratic in closed form."""
    import jax.numpy as jnp
    from atlas_jax.bayes.laplace import laplace
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 4))
    prec, m = a @ a.T + 4.0 * np.eye(4), rng.normal(size=4)
    approx = laplace(lambda x: 0.5 * (x - m) @ prec @ (x - m) + 0.3 * jnp.sum((x - m) ** 4), np.zeros(4))
    assert approx.converged and approx.clipped == 0
    np.testing.assert_allclose(approx.mode, m, atol=1e-6)
    np.testing.assert_allclose(approx.scale @ approx.scale.T, np.linalg.inv(prec), rtol=1e-6)
    x0 = np.zeros(4)
    held = laplace(lambda x: 0.5 * (x - m) @ prec @ (x - m), x0, fixed=np.array([True, False, False, False]))
    free = slice(1, None)
    expected = m[free] - np.linalg.solve(prec[free, free], prec[free, 0] * (x0[0] - m[0]))
    np.testing.assert_allclose(held.mode[free], expected, atol=1e-8)
    assert held.mode[0] == 0.0


def test_priors_override_and_errors():
    table = prior_table(aj.get_law("chinchilla"), {"alpha": (0.3, 0.1), "b": (8.0, 2.0)})
    assert table.set_index("param").loc["alpha", ["loc", "scale"]].tolist() == [0.3, 0.1]
    assert table.set_index("param").loc["B", ["loc", "scale"]].tolist() == [8.0, 2.0]
    with pytest.raises(ValueError, match="unknown parameter"):
        prior_table(aj.get_law("chinchilla"), {"gamma": (0.0, 1.0)})
    with pytest.raises(ValueError, match="positive scale"):
        prior_table(aj.get_law("chinchilla"), {"alpha": (0.3, 0.0)})
    runs, _ = synthetic_runs()
    with pytest.raises(ValueError, match="give group_by"):
        posterior("chinchilla", runs, hierarchical=True)
    with pytest.raises(ValueError, match="draws: expected a positive integer"):
        posterior("chinchilla", runs, draws=0)


def test_cli_posterior_writes_outputs(tmp_path):
    runs, _ = synthetic_runs()
    path = tmp_path / "runs.csv"
    runs.to_csv(path, index=False)
    out = tmp_path / "post"
    # the settings of test_diagnostics_are_flagged_never_silent (SHORT): its compiled programs are reused
    res = CliRunner().invoke(app, ["posterior", str(path), "--law", "chinchilla", "--out", str(out), "--quiet",
                                   *[a for k, v in SHORT.items() for a in (f"--{k}", str(v))]])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == [".atlas-jax", "derived.csv", "posterior.json", "posterior.nc", "summary.csv"]
    info = json.loads((out / "posterior.json").read_text())
    assert info["settings"]["chains"] == 2 and "divergences" in info["diagnostics"]
    assert set(pd.read_csv(out / "summary.csv")["param"]) == {"E", "A", "B", "alpha", "beta"}
    az = pytest.importorskip("arviz")
    stored = az.from_netcdf(str(out / "posterior.nc")).posterior  # read back: one variable per parameter
    assert stored.attrs["parameters"] == "E A B alpha beta" and stored["beta"].shape == (2, SHORT["draws"], 1)
    bad = CliRunner().invoke(app, ["posterior", str(path), "--law", "chinchilla", "--out", str(tmp_path / "x"),
                                   "--hierarchical"])
    assert bad.exit_code == 2 and "give group_by" in bad.output and not (tmp_path / "x").exists()


def test_chain_blocks_over_devices_match_one_device():
    """NUTS with one chain per device (chains in blocks over devices, vectorised within a block) gives the same
    draws as both chains on one device (to the last bits of the point fit they start from, which is split over
    the devices as well; the 2-device run is test_diagnostics_are_flagged_never_silent's, so it reuses its
    compiled programs)."""
    import jax
    if jax.local_device_count() < 2:
        pytest.skip("needs 2 local devices (one per CPU core, atlas_jax.devices)")
    runs, _ = synthetic_runs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        posts = {n: posterior("chinchilla", runs, **SHORT, devices=n) for n in (1, 2)}
    assert [posts[n].settings["chain_method"] for n in (1, 2)] == ["vectorized", "2 devices x 1 vectorized"]
    alpha = {n: p.samples["theta"][:, :, 0, 3] for n, p in posts.items()}
    np.testing.assert_allclose(alpha[2], alpha[1], rtol=1e-6)  # starts: the point fit, split too
    assert np.median(alpha[2]) == pytest.approx(0.34, abs=0.03)  # the synthetic truth
    with pytest.raises(ValueError, match="devices: expected 1 to"):
        posterior("chinchilla", runs, devices=jax.local_device_count() + 1)


def test_student_t_draws_match_scipy():
    """Posterior-predictive noise: the normal-ratio sampler (integer nu) and the gamma one (other nu)."""
    import jax
    from scipy import stats
    from atlas_jax.bayes.sampler import _student_t
    for nu in (4.0, 3.5):
        x = np.asarray(_student_t(jax.random.PRNGKey(1), nu, (100_000,)))
        assert stats.kstest(x, stats.t(nu).cdf).pvalue > 0.01, nu
