"""Posteriors of richer models: the hierarchy's start and pooled mean, partial pooling across languages, LOO
comparison of two laws, interval coverage and the curse law (split from test_sampler.py so that the two files
run on separate test workers)."""

import warnings

import numpy as np
import pytest

import atlas_jax as aj
from atlas_jax.bayes import compare_posteriors, posterior


def test_hierarchy_start_is_dersimonian_laird():
    """Equal variances v: the DerSimonian-Laird spread reduces to sqrt(sample variance - v), the mean to the
    plain mean; a spread below the noise gives the floor (0.05 of the prior scale)."""
    from atlas_jax.bayes.model import hierarchy_start
    rng = np.random.default_rng(2)
    v, scale = np.array([0.01, 0.04]), np.array([1.0, 1.0])
    theta = np.column_stack([rng.normal(0.0, 0.5, 8), rng.normal(0.0, 0.01, 8)])
    fisher = np.broadcast_to(np.diag(1.0 / v - scale ** -2.0), (8, 2, 2))
    mu, sd = hierarchy_start(theta, fisher, scale)
    assert sd[0] == pytest.approx(np.sqrt(theta[:, 0].var(ddof=1) - v[0]), rel=1e-9)
    assert sd[1] == pytest.approx(0.05)
    np.testing.assert_allclose(mu, theta.mean(axis=0), rtol=1e-9)


def test_pooled_mean_is_the_conditional_posterior_of_mu():
    """mu | sd from estimates t_g ~ N(mu, v_g + sd^2) and the prior N(loc, scale^2), against quadrature."""
    from atlas_jax.bayes.model import pooled_mean
    t, v = np.array([[0.3], [0.5], [0.1], [0.45]]), np.array([[0.01], [0.04], [0.02], [0.09]])
    loc, scale, sd = np.array([0.0]), np.array([0.5]), np.array([0.2])
    centre, spread = pooled_mean(t, v, loc, scale, sd)
    grid = np.linspace(-3.0, 3.0, 200_001)
    logp = -0.5 * ((grid - loc) / scale) ** 2 - 0.5 * (((t - grid) ** 2) / (v + sd ** 2)).sum(0)
    p = np.exp(logp - logp.max())
    p /= p.sum()
    mean = (grid * p).sum()
    assert centre[0] == pytest.approx(mean, abs=1e-9)
    assert spread[0] == pytest.approx(np.sqrt(((grid - mean) ** 2 * p).sum()), rel=1e-6)


@pytest.fixture(scope="module")
def hierarchical():
    """Monolingual English, French and Swahili runs of the campaign, Chinchilla law per language, pooled."""
    frame = aj.load_campaign()[0].frame
    runs = frame[(frame["group"] == "monolingual") & frame["language"].isin(["en", "fr", "sw"])]
    runs = runs[["params", "tokens", "loss", "language"]].reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return posterior("chinchilla", runs, group_by="language", hierarchical=True, chains=2, draws=300,
                         warmup=300, seed=0), runs


def test_hierarchical_structure_and_partial_pooling(hierarchical):
    post, runs = hierarchical
    truth = aj.load_campaign()[1]["languages"]
    assert post.groups == ("en", "fr", "sw") and post.hierarchical
    assert post.samples["theta"].shape == (2, 300, 3, 5) and post.samples["mu"].shape == (2, 300, 5)
    idata = post.to_inference_data()
    assert idata.posterior["theta"].dims == ("chain", "draw", "language", "internal")
    assert list(idata.posterior["language"].values) == ["en", "fr", "sw"]
    assert post.diagnostics["r_hat_max"] < 1.1  # 2 x 300 draws, 3 groups: sd mixes slowly; flagged, not failed
    for lang in post.groups:  # 20 runs a language, 1 % noise: the true exponent lies in the 95 % interval
        low, high = post.interval("alpha", lang)
        assert low < truth[lang]["alpha"] < high, lang
    # partial pooling pulls the outlying independent fit (sw: alpha 0.51, repeated data) towards the others
    point = aj.fit("chinchilla", runs, group_by="language")
    mu = np.median(post.samples["mu"][..., 3])
    g = post.groups.index("sw")
    assert abs(np.median(post.draws("alpha", "sw")) - mu) < abs(point.estimate[g, 3] - mu)


def test_loo_comparison_of_two_laws():
    runs = aj.load_datablations()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        posts = {name: posterior(name, runs, chains=2, draws=200, warmup=200, seed=0)
                 for name in ("chinchilla", "data_constrained")}
        table = compare_posteriors(posts)
    assert set(table.index) == {"chinchilla", "data_constrained"}
    assert table["rank"].min() == 0 and "elpd_loo" in table.columns
    # repeated data: the data-constrained law predicts the held-out runs better (its R^2 0.77 vs Chinchilla's)
    assert table.index[0] == "data_constrained"
    with pytest.raises(ValueError, match="same runs"):
        compare_posteriors({"only": posts["chinchilla"]})


def test_interval_coverage_reduced():
    """Reduced simulation check (the full one: validation/calibration.py, 200 datasets): 90 % intervals of
    the 5 parameters over 8 synthetic campaigns with known truth."""
    from atlas_jax.bayes.calibration import interval_coverage, synthetic_chinchilla

    runs, truth = synthetic_chinchilla(3, noise=0.0)
    first = runs[runs["dataset"] == "d0000"]
    p = truth.iloc[0]
    np.testing.assert_allclose(first["loss"], p["E"] + p["A"] / first["params"] ** p["alpha"]
                               + p["B"] / first["tokens"] ** p["beta"], rtol=1e-12)
    table = interval_coverage(n_datasets=8, draws=300, warmup=300, seed=0)
    assert len(table) == 8 * 5 and set(table["param"]) == {"E", "A", "B", "alpha", "beta"}
    assert (table["low"] < table["high"]).all()
    # the sampler's own diagnostics first: coverage of chains that did not mix would test nothing (r-hat: the worst
    # of the batch's 8 datasets x 5 parameters at 2 x 300 draws, measured 1.051)
    assert (table["divergences"] == 0).all() and (table["r_hat"] < 1.1).all(), table[["divergences", "r_hat"]]
    assert table["covered"].mean() >= 0.7


def test_curse_posterior_derives_language_multipliers():
    """Curse law on English capacity + monolingual runs of a transfer-free campaign (1 % noise): the 95 %
    interval of the 2x-languages model and data multipliers holds the truth's r^(phi/alpha), r^(1+psi/beta)."""
    from atlas_jax.analysis import expansion_multipliers
    from atlas_jax.data.synthetic import campaign

    frame, truth = campaign(seed=0, noise=0.01, transfer=False, phi=0.11, psi=-0.04)
    runs = frame[frame["group"].isin(["capacity", "monolingual"]) & (frame["language"] == "en")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        post = posterior("curse", runs.reset_index(drop=True), chains=2, draws=300, warmup=300, seed=0)
    assert post.diagnostics["divergences"] == 0 and post.diagnostics["r_hat_max"] < 1.05, post.diagnostics  # mixed
    table = post.derived(flops=[1e21], r_values=[2]).set_index("quantity")
    p = truth["languages"]["en"]
    true = expansion_multipliers(2.0, p["alpha"], p["beta"], truth["phi"], truth["psi"])
    for key in ("model", "data"):
        row = table.loc[f"{key}_multiplier"]
        assert row["at"] == 2.0 and row["ci_low"] < true[key] < row["ci_high"], (key, row.to_dict(), float(true[key]))
