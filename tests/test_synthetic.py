"""The synthetic ATLAS campaign: design, ground truth reproduced by closed forms, recovery, bundled copy."""

import numpy as np
import pandas as pd
import pytest

import atlas_jax as aj
from atlas_jax.data.synthetic import CROSSOVER_TOKENS, MODEL_SIZES, TARGETS, UNIQUE_TOKENS, campaign
from atlas_jax.laws import transfer_languages


@pytest.fixture(scope="module")
def exact():
    return campaign(noise=0.0, curve_noise=0.0, phi=0.0, psi=0.0)


def test_design_counts_and_validation(exact):
    frame, truth = exact
    sizes = frame.groupby("group")["run"].nunique()
    assert sizes["monolingual"] == 7 * 20 and sizes["unimax"] == 20 and sizes["bilingual"] == 7 * 3 * 10 * 2
    assert sizes["scratch"] == sizes["finetune"] == len(CROSSOVER_TOKENS)
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
    frame, truth = exact
    for lang, cross in CROSSOVER_TOKENS.items():
        p = truth["languages"][lang]
        ft = p["finetune"]
        n = frame.loc[(frame["group"] == "scratch") & (frame["language"] == lang), "params"].iloc[0]
        scratch = p["E"] + p["A"] / n ** p["alpha"] + p["B"] / cross ** p["beta"]
        tuned = p["E"] + ft["capacity_factor"] * p["A"] / n ** p["alpha"] + p["B"] / (cross + ft["D0"]) ** p["beta"]
        assert tuned == pytest.approx(scratch, rel=1e-12) and ft["capacity_factor"] > 1


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
