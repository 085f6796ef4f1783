"""The synthetic ATLAS campaign: design, ground truth reproduced by closed forms, recovery, bundled copy."""

import numpy as np
import pandas as pd
import pytest

import atlas_jax as aj
from atlas_jax.data.synthetic import (
    CROSSOVER_GAMMA,
    CROSSOVER_TOKENS,
    CURVE_SIZES,
    MODEL_SIZES,
    TARGETS,
    UNIQUE_TOKENS,
    campaign,
    crossover_truth,
)
from atlas_jax.analysis import crossover_at, fit_crossover_compute, fit_crossovers
from atlas_jax.laws import transfer_languages


@pytest.fixture(scope="module")
def exact():
    return campaign(noise=0.0, curve_noise=0.0, phi=0.0, psi=0.0)


def test_design_counts_and_validation(exact):
    frame, truth = exact
    sizes = frame.groupby("group")["run"].nunique()
    assert sizes["monolingual"] == 7 * 20 and sizes["unimax"] == 20 and sizes["bilingual"] == 7 * 3 * 10 * 2
    assert sizes["scratch"] == sizes["finetune"] == len(CROSSOVER_TOKENS) * len(CURVE_SIZES)
    assert sorted(frame["params"].unique())[:3] == [float(n) for n in MODEL_SIZES[:3]]
    assert set(frame.loc[frame["group"] == "monolingual", "language"]) == set(TARGETS)
    table = aj.validate_runs(frame)  # mixture tokens add up, no duplicates, all positive
    assert len(table.frame) == truth["n_rows"]


def test_monolingual_losses_follow_chinchilla_with_saturating_repeats(exact):
    frame, truth = exact
    mono = frame[frame["group"] == "monolingual"]
    for lang in ("en", "sw"):
        p, rows = truth["languages"][lang], mono[mono["language"] == lang]
        d, u, lam = rows["tokens"].to_numpy(), UNIQUE_TOKENS[lang], truth["lambda"]
        s = np.where(d > u, u * (1 + (1 - np.exp(-lam * (d / u - 1))) / lam), d)
        expected = p["E"] + p["A"] / rows["params"] ** p["alpha"] + p["B"] / s ** p["beta"]
        np.testing.assert_allclose(rows["loss"], expected, rtol=1e-12)
    assert (mono.loc[mono["language"] == "sw", "tokens"] > UNIQUE_TOKENS["sw"]).any()  # repetition happens


def test_curves_cross_at_the_published_tokens(exact):
    """At 2B the curves cross at the paper's crossovers; across sizes C* = 6 N D* grows as N^1.65."""
    frame, truth = exact
    for lang, cross_2b in CROSSOVER_TOKENS.items():
        p = truth["languages"][lang]
        ft = p["finetune"]
        assert crossover_truth(lang, 2_034_422_912) == cross_2b
        for n in CURVE_SIZES:
            cross, c = ft["sizes"][str(n)]["crossover_tokens"], ft["sizes"][str(n)]["capacity_factor"]
            assert cross == pytest.approx(cross_2b * (n / 2_034_422_912) ** (CROSSOVER_GAMMA - 1), rel=1e-12)
            scratch = p["E"] + p["A"] / n ** p["alpha"] + p["B"] / cross ** p["beta"]
            tuned = p["E"] + c * p["A"] / n ** p["alpha"] + p["B"] / (cross + ft["D0"]) ** p["beta"]
            assert tuned == pytest.approx(scratch, rel=1e-12) and c > 1
            d = frame.loc[(frame["group"] == "scratch") & (frame["language"] == lang) & (frame["params"] == n), "tokens"]
            assert d.min() < cross < d.max()  # the crossing lies inside the curve


@pytest.mark.filterwarnings("ignore:group .* pinned at a bound")
def test_bundled_curves_recover_crossovers_and_their_compute_law():
    """Bundled campaign (0.05 % curve noise, 20 checkpoints a curve): the 95 % intervals hold at least 90 %
    of the 40 true crossovers (measured: 39); at least 30 point estimates cross in the bracket (34: the
    curves meet at a shallow angle, so a few point fits miss the crossing and their draws are censored)
    and those lie within 20 % of the truth (max 17 %); each language's C* = k N^gamma fitted to its 5 sizes
    has gamma within 0.1 of the true 1.65 (max 0.07) and an interval that holds it, as does the
    interval of D* read off it at N = 1e9."""
    frame = aj.load_campaign()[0].frame
    curves = frame[frame["group"].isin(["scratch", "finetune"])]
    table = fit_crossovers(curves[["language", "params", "regime", "tokens", "loss"]], bootstrap=100)
    assert len(table) == len(CROSSOVER_TOKENS) * len(CURVE_SIZES)
    truth = np.array([crossover_truth(l, n) for l, n in zip(table["language"], table["params"])])
    assert np.mean((table["ci_low"] <= truth) & (truth <= table["ci_high"])) >= 0.9
    found = np.isfinite(table["crossover_tokens"])
    assert found.sum() >= 30 and np.all(np.abs(table["crossover_tokens"][found] / truth[found] - 1) < 0.2)
    for lang, rows in table.groupby("language"):
        law = fit_crossover_compute(rows["params"], rows["draws"], bootstrap=500)
        assert law["gamma_ci"][0] < CROSSOVER_GAMMA < law["gamma_ci"][1], (lang, law["gamma_ci"])
        assert abs(law["gamma"] - CROSSOVER_GAMMA) < 0.1, lang
        low, high = crossover_at(law, 1e9)[1:]
        assert low < crossover_truth(lang, 1e9) < high, lang


def test_transfer_weights_come_from_the_matrix_and_are_recovered(exact):
    frame, truth = exact
    p = truth["languages"]["fr"]
    assert p["helpers"] == ["es", "pt", "el"] and p["tau"]["es"] == pytest.approx(0.2 / 1.8)  # BTS 0.2 -> 1/9
    runs = frame[frame["group"].isin(["monolingual", "bilingual", "unimax"]) & (frame["language"] == "fr")]
    runs = runs.reset_index(drop=True)
    assert sorted(transfer_languages(runs, 3)) == sorted(p["helpers"])  # co-sampling finds the helpers
    law = aj.get_law("atlas")
    names = law.names_for(runs)
    public = {"E": p["E"], "A": p["A"], "B": p["B"], "alpha": p["alpha"], "beta": p["beta"],
              "lambda": truth["lambda"], **{f"tau_{h}": p["tau"][h] for h in p["helpers"]},
              "tau_other": p["tau_other"]}
    truth_internal = np.array([prm.to_internal(public[name]) for prm, name in zip(law.params, names)])
    start = truth_internal * 1.03 + 0.01
    res = aj.fit(law, runs, starts=start[None])
    assert res.objective[0] < 1e-20
    for name, value in res.params().items():
        assert value == pytest.approx(public[name], rel=1e-6, abs=1e-8), name


def test_bundled_campaign_is_the_seed_0_campaign():
    table, truth = aj.load_campaign()
    frame, truth0 = campaign(seed=0, noise=0.01)
    assert truth["seed"] == 0 and truth["noise"] == 0.01
    assert truth["languages"]["en"]["A"] == pytest.approx(truth0["languages"]["en"]["A"], rel=1e-15)
    np.testing.assert_allclose(table.frame["loss"], frame["loss"], rtol=1e-9)
    pd.testing.assert_series_equal(table.frame["language"], frame["language"], check_names=False)


@pytest.mark.parametrize("lang, checked", [("fr", "tau"), ("sw", "lambda")])
def test_transfer_weights_and_lambda_inside_bootstrap_intervals(lang, checked):
    """1 % noise, pure ATLAS truth: 95 % intervals cover the true transfer weights (fr: tau_es = tau_pt =
    tau_el = 1/9) and the repetition rate lambda (sw, whose 770M unique tokens are repeated; fr never repeats,
    so its lambda is not identified)."""
    frame, truth = campaign(seed=1, noise=0.01, curve_noise=0.0, phi=0.0, psi=0.0)
    p = truth["languages"][lang]
    runs = frame[frame["group"].isin(["monolingual", "bilingual", "unimax"]) & (frame["language"] == lang)]
    runs = runs.reset_index(drop=True)
    law = aj.get_law("atlas")
    names = law.names_for(runs)
    public = {"E": p["E"], "A": p["A"], "B": p["B"], "alpha": p["alpha"], "beta": p["beta"],
              "lambda": truth["lambda"], **{f"tau_{h}": p["tau"][h] for h in p["helpers"]},
              "tau_other": p["tau_other"]}
    start = np.array([prm.to_internal(public[name]) for prm, name in zip(law.params, names)]) * 1.03 + 0.01
    res = aj.fit(law, runs, starts=start[None], bootstrap=200, seed=2)
    for name in [n for n in names if n.startswith(checked)]:
        low, high = res.interval(name)
        assert low <= public[name] <= high, (name, low, public[name], high)
        assert high - low < (0.5 if checked == "tau" else public[name])  # informative, not bound to bound
