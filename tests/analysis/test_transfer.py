"""Transfer analysis: the bundled ATLAS matrix against the paper's published statistics, the tau <-> BTS
closed form, and transfer scores recovered from synthetic ATLAS-law curves with a known tau."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import atlas_jax as aj
from atlas_jax.analysis.transfer import (
    LANGUAGES,
    SCRIPTS,
    bts_fitted,
    bts_from_tau,
    bts_interpolated,
    load_transfer_matrix,
    matrix_statistics,
    tau_from_bts,
    transfer_matrix_from_curves,
    transfer_weights,
)
from atlas_jax.laws.curve import SCRATCH_CURVE

# ATLAS law at one model size, no repetition: L = E + A/N^alpha + B/D_eff^beta
TRUTH = dict(E=1.7, A=300.0, B=900.0, alpha=0.32, beta=0.3)
N = 1e9
D_MONO = 4e10


def atlas_loss(d_eff):
    return TRUTH["E"] + TRUTH["A"] / N ** TRUTH["alpha"] + TRUTH["B"] / np.asarray(d_eff, float) ** TRUTH["beta"]


def bilingual_loss(sigma, tau):
    """50/50 bilingual run with sigma total tokens: D_eff = sigma/2 + tau sigma/2."""
    return atlas_loss(np.asarray(sigma, float) / 2 * (1 + tau))


def curves_frame(taus, n, noise=0.0, seed=0, mono_marker=None):
    """Tidy curves: a monolingual curve per target (source = mono_marker[target] or the target) + bilingual ones."""
    rng = np.random.default_rng(seed)
    jitter = lambda size: np.exp(noise * rng.standard_normal(size)) if noise else 1.0
    rows = []
    for t in dict.fromkeys(t for t, _ in taus):
        d = np.geomspace(1e9, 2e11, n)
        src = (mono_marker or {}).get(t, t)
        rows.append(pd.DataFrame({"target": t, "source": [src] * n, "tokens": d, "loss": atlas_loss(d) * jitter(n)}))
    for (t, s), tau in taus.items():
        sigma = np.geomspace(2e9, 4e11, n)
        rows.append(pd.DataFrame({"target": t, "source": s, "tokens": sigma,
                                  "loss": bilingual_loss(sigma, tau) * jitter(n)}))
    return pd.concat(rows, ignore_index=True)


# --------------------------------------------------------------------------- the published matrix


def test_matrix_loads_38x38_with_nan_diagonal():
    m = load_transfer_matrix()
    assert m.shape == (38, 38)
    assert tuple(m.index) == tuple(m.columns) == LANGUAGES
    assert (m.index.name, m.columns.name) == ("target", "source")
    assert all(dt == np.float64 for dt in m.dtypes)
    values = m.to_numpy()
    assert np.isnan(np.diag(values)).all()
    assert np.isfinite(values[~np.eye(38, dtype=bool)]).all()
    # orientation: rows are targets, columns sources (es <- fr 0.4, fr <- es 0.2 in Fig. C.2)
    assert m.loc["es", "fr"] == 0.4 and m.loc["fr", "es"] == 0.2
    m.loc["es", "fr"] = 9.0
    assert load_transfer_matrix().loc["es", "fr"] == 0.4  # callers get a copy


def test_scripts_cover_the_matrix():
    assert set(SCRIPTS) == set(LANGUAGES)
    assert {lang for lang, s in SCRIPTS.items() if s == "Arabic"} == {"ar", "fa", "ps", "ur", "ckb"}
    assert {lang for lang, s in SCRIPTS.items() if s == "Cyrillic"} == {"ru", "kk", "uk"}
    assert (SCRIPTS["mr"], SCRIPTS["ja"], SCRIPTS["zh"], SCRIPTS["ko"]) == ("Devanagari", "Japanese", "Han", "Hangul")


def test_matrix_statistics_reproduce_the_paper():
    st = matrix_statistics(load_transfer_matrix())
    # paper: same-script -0.23 vs different-script -0.39; this 1-d.p. matrix: -0.225 / -0.392
    assert round(st["same_script_mean"], 2) == -0.23 and round(st["different_script_mean"], 2) == -0.39
    assert round(st["same_script_mean"], 3) == -0.225 and round(st["different_script_mean"], 3) == -0.392
    assert st["n_same_script"] + st["n_different_script"] == 38 * 37
    # paper: r = -0.11 on the unrounded scores; the 1-d.p. matrix gives -0.119
    assert st["n_pairs"] == 38 * 37 // 2
    assert round(st["asymmetry_r"], 3) == -0.119
    assert abs(st["asymmetry_r"] - (-0.11)) < 0.01


def test_same_script_mean_by_brute_force_and_japanese_choice():
    m = load_transfer_matrix()
    same = [m.loc[t, s] for t in LANGUAGES for s in LANGUAGES if t != s and SCRIPTS[t] == SCRIPTS[s]]
    assert matrix_statistics()["same_script_mean"] == pytest.approx(np.mean(same), abs=1e-14)
    # counting Japanese as Han moves the same-script mean off the published -0.225
    as_han = matrix_statistics(scripts={**SCRIPTS, "ja": "Han"})
    assert round(as_han["same_script_mean"], 3) == -0.226


def test_helpful_sources_and_strong_pairs():
    st = matrix_statistics()
    sources = st["sources"]
    assert sources["mean"].is_monotonic_decreasing
    m = load_transfer_matrix()  # mean over the targets (rows) of each source column
    col_mean = dict(zip(LANGUAGES, np.nanmean(m.to_numpy(), axis=0)))
    np.testing.assert_allclose(sources["mean"], [col_mean[s] for s in sources.index], atol=1e-12)
    assert sources.loc["en", "mean"] == pytest.approx(-9.9 / 37, abs=1e-12)
    assert {"en", "fr", "es"} <= set(sources.index[:10])
    assert list(sources["n_nonnegative"].sort_values(ascending=False, kind="stable").index[:2]) == ["en", "fr"]
    assert sources.loc["en", "n_nonnegative"] == 23
    pairs = st["strong_pairs"].set_index(["target", "source"])["bts"]
    want = {("no", "sv"): 0.3, ("ms", "id"): 0.4, ("ca", "es"): 0.4, ("pt", "es"): 0.5}
    for pair, score in want.items():
        assert pairs[pair] == score >= 0.3
    assert pairs.max() == 0.5 and (pairs >= 0.3).all()


# --------------------------------------------------------------------------- tau <-> BTS


def test_tau_bts_closed_form_and_round_trip():
    np.testing.assert_allclose(bts_from_tau([0.0, 1.0, -0.5, 3.0]), [0.0, 1.0, -2.0, 1.5], rtol=1e-15)
    np.testing.assert_allclose(tau_from_bts([0.0, 1.0, -2.0, 1.5]), [0.0, 1.0, -0.5, 3.0], rtol=1e-15)
    tau = np.random.default_rng(0).uniform(-0.95, 5.0, 100)
    np.testing.assert_allclose(tau_from_bts(bts_from_tau(tau)), tau, rtol=1e-12)
    with pytest.raises(ValueError, match="tau must be > -1"):
        bts_from_tau(-1.0)
    with pytest.raises(ValueError, match="BTS must be < 2"):
        tau_from_bts([0.1, 2.0])


def test_transfer_weights_from_matrix():
    # pt <- es 0.5, pt <- en 0.1
    np.testing.assert_allclose(transfer_weights("pt", ["es", "en"]), [0.5 / 1.5, 0.1 / 1.9], rtol=1e-15)
    np.testing.assert_allclose(transfer_weights("pt", "es"), [1 / 3], rtol=1e-15)
    with pytest.raises(ValueError, match=r"unknown language 'xx'; known languages: en, ru, es"):
        transfer_weights("pt", ["es", "xx"])
    with pytest.raises(ValueError, match="unknown language 'qq'"):
        transfer_weights("qq", ["es"])
    with pytest.raises(ValueError, match="not its own source"):
        transfer_weights("pt", ["pt"])


# --------------------------------------------------------------------------- BTS from curves


@pytest.mark.parametrize("tau", [-0.4, 0.0, 0.25, 1.5])
def test_bts_interpolated_matches_closed_form(tau):
    d = np.geomspace(1e9, 2e11, 400)
    sigma = np.geomspace(1e9, 1e12, 400)
    got = bts_interpolated(d, atlas_loss(d), sigma, bilingual_loss(sigma, tau), D_MONO)
    assert got == pytest.approx(2 * tau / (1 + tau), abs=1e-3)


def test_bts_interpolated_uses_first_crossing_of_a_noisy_curve():
    tau = 0.5
    d = np.geomspace(1e9, 2e11, 200)
    sigma = np.geomspace(1e9, 1e12, 200)
    loss = bilingual_loss(sigma, tau)
    clean = bts_interpolated(d, atlas_loss(d), sigma, loss, D_MONO)
    bumped = loss.copy()
    bumped[150:] += 0.05  # later checkpoints that are worse than the best so far must not move sigma_bi
    assert bts_interpolated(d, atlas_loss(d), sigma[::-1], bumped[::-1], D_MONO) == clean


def test_bts_interpolated_errors():
    d = np.geomspace(1e9, 2e11, 50)
    sigma = np.geomspace(1e9, 1e12, 50)
    good = bilingual_loss(sigma, 0.3)
    with pytest.raises(ValueError, match="outside the monolingual curve"):
        bts_interpolated(d, atlas_loss(d), sigma, good, 5e11)
    short = np.geomspace(1e9, 2e10, 50)
    with pytest.raises(ValueError, match=r"does not reach loss .*; extend the bilingual run"):
        bts_interpolated(d, atlas_loss(d), short, bilingual_loss(short, 0.3), D_MONO)
    late = np.geomspace(1e11, 1e12, 50)
    with pytest.raises(ValueError, match="add earlier checkpoints"):
        bts_interpolated(d, atlas_loss(d), late, bilingual_loss(late, 0.3), D_MONO)
    with pytest.raises(ValueError, match="same length"):
        bts_interpolated(d, atlas_loss(d), sigma, good[:-1], D_MONO)


def test_bts_fitted_exact_parameters_vectorised():
    e = TRUTH["E"] + TRUTH["A"] / N ** TRUTH["alpha"]
    beta = TRUTH["beta"]
    tau = np.array([-0.6, 0.0, 0.3, 2.0])
    mono = {"E": e, "B": TRUTH["B"], "beta": beta}
    bi = {"E": np.full(4, e), "B": TRUTH["B"] * ((1 + tau) / 2) ** -beta, "beta": np.full(4, beta)}
    np.testing.assert_allclose(bts_fitted(mono, bi, D_MONO), 2 * tau / (1 + tau), rtol=1e-12, atol=1e-12)
    # a bilingual curve whose floor lies above the target loss never reaches it
    assert bts_fitted(mono, {**mono, "E": e + 1.0}, D_MONO) == -np.inf
    with pytest.raises(ValueError, match=r"\['beta'\] missing"):
        bts_fitted(mono, {"E": e, "B": 1.0}, D_MONO)


def test_bts_fitted_from_noiseless_fits():
    """The curves of the noiseless transfer-matrix test below (30 checkpoints: mono, tau 0.35, tau -0.3) fitted in
    one batched call, as transfer_matrix_from_curves does (so both share one compiled program); bts_fitted on the
    single-group results."""
    taus = {("aa", "bb"): 0.35, ("aa", "cc"): -0.3}
    curves = curves_frame(taus, 30)
    curves["curve"] = curves["target"] + "|" + curves["source"]
    res = aj.fit(SCRATCH_CURVE, curves[["curve", "tokens", "loss"]], group_by="curve")
    mono = res.select("aa|aa")
    for (t, s), tau in taus.items():
        assert bts_fitted(mono, res.select(f"{t}|{s}"), D_MONO) == pytest.approx(2 * tau / (1 + tau), abs=1e-6)


def test_transfer_matrix_from_curves_noiseless_without_bootstrap():
    taus = {("aa", "bb"): 0.35, ("aa", "cc"): -0.3}
    curves = curves_frame(taus, 30)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # d_mono and sigma_bi inside the runs: no warning
        out = transfer_matrix_from_curves(curves, D_MONO, bootstrap=0)
    assert list(out.columns) == ["target", "source", "bts", "ci_low", "ci_high"]
    assert list(zip(out["target"], out["source"])) == list(taus)
    np.testing.assert_allclose(out["bts"], bts_from_tau(list(taus.values())), atol=1e-6)
    assert out[["ci_low", "ci_high"]].isna().all().all()
    with pytest.warns(UserWarning) as record:
        far = transfer_matrix_from_curves(curves, 3e11, bootstrap=0)  # beyond the 2e11-token monolingual run
    assert [str(w.message).split(":")[0] for w in record] == [
        f"BTS({s}->{t}) extrapolates a fitted curve" for t, s in taus]
    assert "d_mono = 3e+11 (monolingual run up to 2e+11 tokens)" in str(record[0].message)
    np.testing.assert_allclose(far["bts"], out["bts"], atol=1e-6)  # BTS does not depend on d under this law


def test_transfer_matrix_from_curves_bootstrap_covers_truth():
    taus = {("aa", "bb"): 0.4, ("aa", "cc"): -0.3, ("bb", "aa"): 0.1}
    curves = curves_frame(taus, 40, noise=0.01, seed=1, mono_marker={"aa": np.nan, "bb": ""})
    out = transfer_matrix_from_curves(curves, D_MONO, bootstrap=200, seed=0)
    truth = bts_from_tau([taus[p] for p in zip(out["target"], out["source"])])
    assert len(out) == 3
    assert ((out["ci_low"] <= truth) & (truth <= out["ci_high"])).all()
    assert ((out["ci_low"] <= out["bts"]) & (out["bts"] <= out["ci_high"])).all()
    assert ((out["ci_high"] - out["ci_low"]) < 1.0).all()  # informative, not vacuous


def test_transfer_matrix_from_curves_errors():
    curves = curves_frame({("aa", "bb"): 0.2, ("cc", "bb"): 0.1}, 5)
    with pytest.raises(ValueError, match=r"target\(s\) \['cc'\] have bilingual curves but no monolingual curve"):
        transfer_matrix_from_curves(curves[curves["target"] != "cc"].pipe(
            lambda f: pd.concat([f, curves[(curves["target"] == "cc") & (curves["source"] == "bb")]])), D_MONO)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['source'\]"):
        transfer_matrix_from_curves(curves.drop(columns="source"), D_MONO)
    with pytest.raises(ValueError, match="no bilingual curve"):
        transfer_matrix_from_curves(curves[curves["source"] == curves["target"]], D_MONO)


def test_bts_interpolated_is_linear_in_log_tokens():
    # two-point curves: L_t(sqrt(1e10 1e11)) = 2.5 and the bilingual curve reaches 2.5 at sqrt(1e10 1e12) = 1e11
    d_mono = np.sqrt(1e10 * 1e11)
    got = bts_interpolated([1e10, 1e11], [3.0, 2.0], [1e10, 1e12], [3.0, 2.0], d_mono)
    assert got == pytest.approx(-(1e11 - 2 * d_mono) / d_mono, rel=1e-12)
