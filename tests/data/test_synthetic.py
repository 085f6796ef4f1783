"""The synthetic ATLAS campaign: design, ground truth reproduced by closed forms and by the ATLAS law,
recovery of the truth by per-language ATLAS fits with bootstrap intervals, bundled copy."""

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
from atlas_jax.laws import ATLAS, transfer_languages

PRETRAIN = ["monolingual", "bilingual", "unimax", "capacity"]  # every pretraining run but the scratch curves


def truth_params(truth, lang) -> dict[str, float]:
    """Public ATLAS parameters of ``lang`` (``tau_<helper>`` named by the generator's helpers)."""
    p = truth["languages"][lang]
    return {"E": p["E"], "A": p["A"], "B": p["B"], "alpha": p["alpha"], "beta": p["beta"], "lambda": truth["lambda"],
            **{f"tau_{h}": p["tau"][h] for h in p["helpers"]}, "tau_other": p["tau_other"]}


@pytest.fixture(scope="module")
def exact():
    return campaign(noise=0.0, curve_noise=0.0)


def test_design_counts_and_validation(exact):
    frame, truth = exact
    sizes = frame.groupby("group")["run"].nunique()
    assert sizes["monolingual"] == 7 * 20 and sizes["unimax"] == 20 and sizes["bilingual"] == 7 * 3 * 10 * 2
    # a target and its K - 1 best sources, 9 K x 10 sizes per target; the 38-language runs are shared
    assert sizes["capacity"] == 7 * 8 * 10 + 10 and (frame["group"] == "capacity").sum() == 7 * 9 * 10
    assert sizes["scratch"] == sizes["finetune"] == len(CROSSOVER_TOKENS) * len(CURVE_SIZES)
    assert sorted(frame["params"].unique())[:3] == [float(n) for n in MODEL_SIZES[:3]]
    assert set(frame.loc[frame["group"] == "monolingual", "language"]) == set(TARGETS)
    table = aj.validate_runs(frame)  # mixture tokens add up, no duplicates, all positive
    assert len(table.frame) == truth["n_rows"]


def test_pretraining_losses_are_the_atlas_law_and_its_helpers_the_co_sampled(exact):
    """phi = psi = 0: every pretraining loss of every target is what ``atlas_jax.laws.ATLAS`` predicts at the
    truth, and the helpers the generator uses are the 3 languages the fitted law picks (most co-sampled)."""
    frame, truth = exact
    assert truth["phi"] == truth["psi"] == 0 and truth["law"].startswith("ATLAS, transfer variant with 3 helpers")
    for lang in TARGETS:
        rows = frame[frame["group"].isin(PRETRAIN) & (frame["language"] == lang)].reset_index(drop=True)
        assert sorted(transfer_languages(rows, 3)) == sorted(truth["languages"][lang]["helpers"]), lang
        np.testing.assert_allclose(aj.predict(ATLAS, rows, truth_params(truth, lang)), rows["loss"], rtol=1e-12,
                                   err_msg=lang)


def test_curse_factors_multiply_the_a_and_b_terms(exact):
    """campaign(phi, psi): L = E + A K^phi / N^alpha + B K^psi / D_eff^beta on the same runs, D_eff unchanged."""
    frame, truth = exact
    curse, truth_c = campaign(noise=0.0, curve_noise=0.0, phi=0.11, psi=-0.04)
    assert truth_c["law"].startswith("ATLAS with curse factors (not atlas_jax.laws.ATLAS)")
    rows = (frame["regime"] == "pretrain") & frame["group"].isin(PRETRAIN)
    pd.testing.assert_frame_equal(curse.drop(columns="loss"), frame.drop(columns="loss"))
    p = pd.DataFrame(truth["languages"]).T.loc[frame.loc[rows, "language"]]
    k, n = frame.loc[rows, "num_languages"].to_numpy(float), frame.loc[rows, "params"].to_numpy(float)
    a_term = p["A"].to_numpy(float) / n ** p["alpha"].to_numpy(float)
    b_term = frame.loc[rows, "loss"].to_numpy() - p["E"].to_numpy(float) - a_term  # B / D_eff^beta
    expected = p["E"].to_numpy(float) + a_term * k ** 0.11 + b_term * k ** -0.04
    np.testing.assert_allclose(curse.loc[rows, "loss"], expected, rtol=1e-12)
    assert (k > 1).any()
    np.testing.assert_array_equal(curse.loc[~rows, "loss"], frame.loc[~rows, "loss"])  # curves: no curse


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


@pytest.mark.filterwarnings("ignore:group .* not a trustworthy fit")
def test_bundled_curves_recover_crossovers_and_their_compute_law():
    """Bundled campaign (0.05 % curve noise, 20 checkpoints a curve): the 95 % intervals hold at least 90 %
    of the 40 true crossovers (measured: 36); at least 30 point estimates cross in the bracket (40: the
    curves meet at a shallow angle, so a point fit may miss the crossing and its draws be censored)
    and those lie within 20 % of the truth (max 18 %); each language's C* = k N^gamma fitted to its 5 sizes
    has gamma within 0.1 of the true 1.65 (max 0.061) and an interval that holds it, as does the
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


def test_transfer_weights_come_from_the_matrix(exact):
    """H_t: the 3 best sources in the matrix; tau = BTS / (2 - BTS), negative scores clipped to 0."""
    frame, truth = exact
    p = truth["languages"]["fr"]
    assert p["helpers"] == ["es", "pt", "el"] and p["tau"]["es"] == pytest.approx(0.2 / 1.8)  # BTS 0.2 -> 1/9
    assert truth["languages"]["en"]["tau"] == pytest.approx({"id": 0.3 / 1.7, "ms": 0.3 / 1.7, "he": 0.3 / 1.7})
    assert truth["languages"]["zh"]["tau"] == {"ckb": 0.0, "ps": 0.0, "ko": 0.0}  # BTS -0.4, -0.4, -0.5


def test_bundled_campaign_is_the_seed_0_campaign():
    table, truth = aj.load_campaign()
    frame, truth0 = campaign(seed=0, noise=0.01)
    assert truth["seed"] == 0 and truth["noise"] == 0.01
    assert truth["languages"]["en"]["A"] == pytest.approx(truth0["languages"]["en"]["A"], rel=1e-15)
    np.testing.assert_allclose(table.frame["loss"], frame["loss"], rtol=1e-9)
    pd.testing.assert_series_equal(table.frame["language"], frame["language"], check_names=False)


@pytest.fixture(scope="session")
def bundled_atlas_fit():
    """``--law atlas --group-by language`` on the bundled campaign's pretraining runs (no scratch curves):
    each target's own fit from the law's start grid, 100 bootstrap resamples (the coverage below measured 27-28 of
    28 with 100 and with 200 or 400; 100 halves the refits)."""
    table, truth = aj.load_campaign()
    frame = table.frame
    runs = frame[frame["group"].isin(PRETRAIN)].reset_index(drop=True)
    return aj.fit(ATLAS, runs, group_by="language", bootstrap=100, seed=0), truth


@pytest.mark.filterwarnings("ignore:group .* not a trustworthy fit")
def test_bundled_campaign_atlas_fits_recover_the_truth(bundled_atlas_fit):
    """1 % noise, 190 runs a target. The 95 % intervals hold the true tau in at least 90 % of the 7 targets x
    (3 helpers + tau_other) = 28 cases (measured: 28 with 200 or 400 resamples and bootstrap seeds 0-2; with
    100 resamples 27-28, with 50 27: the misses are true zeros just outside an interval's end) and tell the
    nonzero weights (en 3/17, fr 1/9, ru: uk 3/17) from 0. Point estimates: E within 3 % (measured max
    2.3 %), alpha and beta within 0.035 (0.032), B within 25 % (19 %), A within a factor 2 (1.70: A trades
    off against alpha, N^0.03 ~ 1.9 at N = 1e9) and the A term A / N^alpha at N = 3e8 within 15 % (9 %).
    lambda is identified where the target's own data repeat for many epochs: within 25 % for bn, sw, yo
    (19 %), and the narrow intervals of sw and yo hold it; not for en, fr, ru (no repetition; lambda at its
    bound) nor zh (at most 5 epochs)."""
    res, truth = bundled_atlas_fit
    assert sorted(res.groups) == sorted(TARGETS)
    covered = []
    for lang in TARGETS:
        true, est = truth_params(truth, lang), res.params(lang)
        assert set(est) == set(true), lang
        for name in (n for n in est if n.startswith("tau_")):
            low, high = res.interval(name, lang)
            covered.append(low <= true[name] <= high)
            if true[name] > 0.1:
                assert low > 0, (lang, name, low)
        assert est["E"] == pytest.approx(true["E"], rel=0.03), lang
        for name in ("alpha", "beta"):
            assert est[name] == pytest.approx(true[name], abs=0.035), (lang, name)
        assert est["B"] == pytest.approx(true["B"], rel=0.25), lang
        assert abs(np.log(est["A"] / true["A"])) < np.log(2), lang
        assert est["A"] / 3e8 ** est["alpha"] == pytest.approx(true["A"] / 3e8 ** true["alpha"], rel=0.15), lang
        if lang in ("bn", "sw", "yo"):
            assert est["lambda"] == pytest.approx(true["lambda"], rel=0.25), lang
        if lang in ("sw", "yo"):
            low, high = res.interval("lambda", lang)
            assert low < true["lambda"] < high and high - low < 0.5 * true["lambda"], (lang, low, high)
    assert len(covered) == 28 and sum(covered) >= 0.9 * 28, sum(covered)
