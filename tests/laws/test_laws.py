"""Every law's single-run ``log_loss`` against a plain-numpy closed form (conftest.py) at random
parameter and feature points, plus the feature builders' branches and error messages."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import atlas_jax as aj
from atlas_jax.laws import CHINCHILLA, DATA_CONSTRAINED, MSL, atlas_law, transfer_languages
from atlas_jax.laws.atlas import DEFF_FLOOR, saturating_tokens

RTOL = 1e-12  # on log L; the closed forms are evaluated in linear space, the package in log space


def law_log_loss(law, theta, frame):
    """The package's log L of every run of ``frame`` at internal ``theta`` (vmapped single-run law)."""
    x = {k: jnp.asarray(v) for k, v in law.features(frame).items()}
    return np.asarray(jax.vmap(lambda xi: law.log_loss(jnp.asarray(theta, dtype=float), xi))(x))


def random_base(rng):
    return dict(E=rng.uniform(0.5, 3.0), A=np.exp(rng.uniform(3, 9)), B=np.exp(rng.uniform(4, 10)),
                alpha=rng.uniform(0.15, 0.7), beta=rng.uniform(0.15, 0.7))


def base_of(p):
    return {k: p[k] for k in ("E", "A", "B", "alpha", "beta")}


# --------------------------------------------------------------------------- Chinchilla


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chinchilla_log_loss_closed_form(npl, seed):
    rng = np.random.default_rng(seed)
    p = random_base(rng)
    frame = pd.DataFrame({"params": 10 ** rng.uniform(6, 11, 12), "tokens": 10 ** rng.uniform(7, 13, 12)})
    got = law_log_loss(CHINCHILLA, npl.to_internal(CHINCHILLA, p), frame)
    want = np.log(npl.chinchilla(frame["params"], frame["tokens"], **p))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0)


def test_chinchilla_internal_order_and_predict(npl, ref):
    """Internal order is (e, a, b, alpha, beta); agrees with the scipy reference's log prediction too."""
    assert CHINCHILLA.internal_names == ("e", "a", "b", "alpha", "beta")
    p = npl.CHIN_TRUTH
    frame = npl.chinchilla_frame([1e8, 1e9, 1e10], [1e9, 1e11])
    got = aj.predict(CHINCHILLA, frame, p)
    np.testing.assert_allclose(got, npl.chinchilla(frame["params"], frame["tokens"], **p), rtol=1e-13)
    theta_ref = [np.log(p["A"]), np.log(p["B"]), np.log(p["E"]), p["alpha"], p["beta"]]
    np.testing.assert_allclose(np.log(got), ref.chinchilla_log_pred(theta_ref, frame["params"], frame["tokens"]),
                               rtol=1e-13)


# --------------------------------------------------------------------------- data-constrained


def dcsl_points(rng, p):
    """Runs straddling both branches: N below/above N_opt(U), D below/at/above U."""
    alpha, beta = p["alpha"], p["beta"]
    G = (alpha * p["A"] / (beta * p["B"])) ** (1 / (alpha + beta))
    U = 10 ** rng.uniform(8, 11, 8)
    n_opt = G * (G * U) ** (beta / alpha)
    N = n_opt * np.array([0.05, 0.5, 0.99, 1.0001, 2.0, 10.0, 300.0, 0.2])
    D = U * np.array([0.3, 1.0, 1.5, 4.0, 40.0, 1.0, 0.7, 900.0])
    return pd.DataFrame({"params": N, "tokens": D, "unique_tokens": U})


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_data_constrained_log_loss_closed_form(npl, ref, seed):
    rng = np.random.default_rng(seed)
    p = {**random_base(rng), "R_D_star": rng.uniform(1, 60), "R_N_star": rng.uniform(0.5, 20)}
    frame = dcsl_points(rng, p)
    want, above = npl.dcsl(frame["params"], frame["tokens"], frame["unique_tokens"], **p, return_branch=True)
    assert above.any() and (~above).any(), "both U_N branches must be exercised"
    assert (frame["tokens"] < frame["unique_tokens"]).any(), "D < U (U read as min(U, D)) must be exercised"
    got = law_log_loss(DATA_CONSTRAINED, npl.to_internal(DATA_CONSTRAINED, p), frame)
    np.testing.assert_allclose(got, np.log(want), rtol=RTOL, atol=0)
    # and the scipy reference's implementation of the same law
    theta_ref = [np.log(p["A"]), np.log(p["B"]), np.log(p["E"]), p["alpha"], p["beta"], p["R_D_star"], p["R_N_star"]]
    np.testing.assert_allclose(got, ref.dcsl_log_pred(theta_ref, frame["params"], frame["tokens"],
                                                     frame["unique_tokens"]), rtol=RTOL)


def test_data_constrained_reduces_to_chinchilla_without_repetition(npl):
    """R_D = 0 and N <= N_opt(U): N' = N, D' = U = min(U available, D), i.e. Chinchilla at (N, min(U, D)),
    whatever R*: a run that sees fewer tokens than are available is credited with those it sees."""
    p = dict(E=1.8, A=500.0, B=1500.0, alpha=0.35, beta=0.35)
    U = np.array([1e10, 5e10, 2e11])
    frame = pd.DataFrame({"params": [1e7, 3e7, 1e8], "tokens": U * np.array([0.5, 1.0, 0.9]), "unique_tokens": U})
    _, above = npl.dcsl(frame["params"], frame["tokens"], U, **p, R_D_star=7.0, R_N_star=3.0, return_branch=True)
    assert not above.any()
    for r_star in (0.1, 7.0, 1e4):
        got = law_log_loss(DATA_CONSTRAINED, npl.to_internal(DATA_CONSTRAINED, {**p, "R_D_star": r_star,
                                                                                 "R_N_star": r_star}), frame)
        np.testing.assert_allclose(got, np.log(npl.chinchilla(frame["params"], np.minimum(U, frame["tokens"]), **p)),
                                   rtol=RTOL)


def test_data_constrained_published_readme_examples():
    """README of huggingface/datablations: L(6.34e9, 242e9, 25e9) and L(8.67e9, 178e9, 25e9)."""
    p = dict(E=np.exp(0.6254804), A=np.exp(6.255414), B=np.exp(7.3049974), alpha=0.3526596, beta=0.3526596,
             R_D_star=15.387756, R_N_star=5.309743)
    frame = pd.DataFrame({"params": [6.34e9, 8.67e9], "tokens": [242e9, 178e9], "unique_tokens": [25e9, 25e9]})
    got = aj.predict(DATA_CONSTRAINED, frame, p)
    np.testing.assert_allclose(got, [2.2256440889984477, 2.2269634075087867], rtol=1e-6)


# --------------------------------------------------------------------------- MSL


@pytest.mark.parametrize("seed", [0, 1])
def test_msl_log_loss_closed_form(npl, seed):
    rng = np.random.default_rng(seed)
    p = {**random_base(rng), "gamma": rng.uniform(-0.3, 0.8)}
    n = 10
    D = 10 ** rng.uniform(8, 12, n)
    share = rng.uniform(0.05, 1.0, n)
    frame = pd.DataFrame({"params": 10 ** rng.uniform(7, 10, n), "tokens": D, "language": "xx",
                          "tokens_xx": D * share, "tokens_yy": D * (1 - share)})
    got = law_log_loss(MSL, npl.to_internal(MSL, p), frame)
    want = np.log(npl.msl(frame["params"], D, share, **p))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0)
    # without mixture columns p = 1: plain Chinchilla, gamma drops out
    plain = frame[["params", "tokens", "language"]]
    np.testing.assert_allclose(law_log_loss(MSL, npl.to_internal(MSL, p), plain),
                               np.log(npl.chinchilla(plain["params"], D, **base_of(p))), rtol=RTOL)


def test_msl_needs_language():
    frame = pd.DataFrame({"params": [1e8, 2e8, 4e8, 8e8, 1.6e9, 3.2e9, 6.4e9],
                          "tokens": [1e9, 2e9, 4e9, 8e9, 1.6e10, 3.2e10, 6.4e10],
                          "loss": [3.5, 3.2, 3.0, 2.8, 2.6, 2.5, 2.4]})
    with pytest.raises(ValueError, match="language"):
        MSL.features(frame)
    with pytest.raises(ValueError, match="language"):
        aj.fit("msl", frame, starts=MSL.start_grid()[:1])


# --------------------------------------------------------------------------- ATLAS


def test_saturating_tokens_branches_and_limit(npl):
    U = 2e9
    D = np.array([1e8, 1e9, U, U * (1 + 1e-9), 3e9, 2e10, 1e12, 1e15, 1e30])
    for lam in (0.01, 0.08, 1.0, 7.0):
        rep = np.maximum(D / U - 1, 0)
        got = np.asarray(saturating_tokens(jnp.asarray(D), U, jnp.asarray(rep), lam))
        np.testing.assert_allclose(got, npl.saturating(D, U, lam), rtol=1e-13)
        assert np.all(got[D <= U] == D[D <= U])                 # at most one epoch: S = D exactly
        limit = U * (1 + 1 / lam)
        assert np.all(got < limit * (1 + 1e-15))              # saturates from below...
        np.testing.assert_allclose(got[-1], limit, rtol=1e-14)   # ...to U (1 + 1/lambda)
        # small-repetition expansion: S ~ D when D/U - 1 << 1/lambda (continuity at D = U)
        np.testing.assert_allclose(got[3], D[3], rtol=1e-12)


def test_transfer_languages_most_co_sampled(npl):
    frame = npl.atlas_mixture_frame()
    # co-sampling counts with xx over the 6 mixtures: aa 5, bb 4, cc 3, dd 2, ee 2
    assert transfer_languages(frame, 3) == ["aa", "bb", "cc"]
    # dd and ee tie on counts (2 mixtures each); the tie is broken by total tokens
    assert frame["tokens_dd"].sum() > frame["tokens_ee"].sum()
    assert transfer_languages(frame, 4) == ["aa", "bb", "cc", "dd"]
    swapped = frame.rename(columns={"tokens_dd": "tokens_ee", "tokens_ee": "tokens_dd",
                                    "unique_dd": "unique_ee", "unique_ee": "unique_dd"})
    assert transfer_languages(swapped, 4) == ["aa", "bb", "cc", "ee"]
    assert aj.get_law("atlas").names_for(frame) == (
        "E", "A", "B", "alpha", "beta", "lambda", "tau_aa", "tau_bb", "tau_cc", "tau_other")
    with pytest.raises(ValueError, match="co-sampled"):
        transfer_languages(frame, 6)


def atlas_random_params(rng, helpers):
    p = {**random_base(rng), "lambda": np.exp(rng.uniform(np.log(0.02), np.log(2.0)))}
    for h in helpers:
        p[f"tau_{h}"] = rng.uniform(-0.2, 0.8)
    p["tau_other"] = rng.uniform(-0.1, 0.5)
    return p


@pytest.mark.parametrize("variant", ["monolingual", "other", "transfer"])
@pytest.mark.parametrize("seed", [0, 1])
def test_atlas_log_loss_closed_form(npl, variant, seed):
    rng = np.random.default_rng(seed)
    frame = npl.atlas_mixture_frame().sample(40, random_state=seed).reset_index(drop=True)
    full = npl.atlas_mixture_frame()
    helpers = ["aa", "bb", "cc"]
    law = atlas_law(variant)
    # K_t is chosen on the group the frame holds; make sure the sample keeps the full design's order
    if variant == "transfer":
        assert transfer_languages(frame, 3) == transfer_languages(full, 3) == helpers
    p = atlas_random_params(rng, helpers)
    names = law.names_for(frame)
    theta = np.array([prm.to_internal(p[name]) for prm, name in zip(law.params, names)])
    want = npl.atlas(frame, "xx", helpers, p, variant)
    # both S branches are exercised: some sources within one epoch, some repeated
    d_t, u_t = frame["tokens_xx"], frame["unique_xx"]
    assert (d_t <= u_t).any() and (d_t > u_t).any()
    np.testing.assert_allclose(law_log_loss(law, theta, frame), np.log(want), rtol=RTOL, atol=0)
    np.testing.assert_allclose(aj.predict(law, frame, {n: p[n] for n in names}), want, rtol=1e-12)


def test_atlas_monolingual_without_mixture_columns(npl):
    """Monolingual runs given as tokens/unique_tokens: D_eff = S(D; U); no unique_tokens: no repetition."""
    rng = np.random.default_rng(7)
    p = atlas_random_params(rng, [])
    law = atlas_law("monolingual")
    U = 10 ** rng.uniform(8, 10, 10)
    D = U * np.array([0.1, 0.9, 1.0, 1.3, 2.0, 5.0, 20.0, 100.0, 1e3, 1e5])
    N = 10 ** rng.uniform(7, 10, 10)
    frame = pd.DataFrame({"params": N, "tokens": D, "unique_tokens": U, "language": "xx"})
    theta = npl.to_internal(law, p)
    want = p["E"] + p["A"] / N ** p["alpha"] + p["B"] / npl.saturating(D, U, p["lambda"]) ** p["beta"]
    np.testing.assert_allclose(law_log_loss(law, theta, frame), np.log(want), rtol=RTOL)
    no_u = frame.drop(columns="unique_tokens")
    np.testing.assert_allclose(law_log_loss(law, theta, no_u), np.log(npl.chinchilla(N, D, **base_of(p))), rtol=RTOL)


def test_atlas_limit_of_infinite_repetition(npl):
    """As D -> inf with U fixed the loss tends to E + A/N^alpha + B/(U (1 + 1/lambda))^beta."""
    law = atlas_law("monolingual")
    p = dict(E=1.7, A=300.0, B=900.0, alpha=0.32, beta=0.3, **{"lambda": 0.08})
    U, N = 1e9, 3e8
    D = np.array([2e9, 1e10, 1e11, 1e12, 1e14, 1e40])
    frame = pd.DataFrame({"params": N, "tokens": D, "unique_tokens": U, "language": "xx"})
    got = np.exp(law_log_loss(law, npl.to_internal(law, p), frame))
    limit = p["E"] + p["A"] / N ** p["alpha"] + p["B"] / (U * (1 + 1 / p["lambda"])) ** p["beta"]
    assert np.all(np.diff(got[:4]) < 0) and np.all(got[:3] > limit)
    np.testing.assert_allclose(got[-1], limit, rtol=1e-14)
    # the gap closes like exp(-lambda (D/U - 1)): first order in the gap, still visible at 99 epochs, gone at 999
    gap = lambda d: p["B"] * p["beta"] * (U * (1 + 1 / p["lambda"])) ** (-p["beta"] - 1) * U / p["lambda"] \
        * np.exp(-p["lambda"] * (d / U - 1))
    np.testing.assert_allclose(got[2] - limit, gap(D[2]), rtol=1e-3)
    assert abs(got[3] - limit) < 1e-13


def test_atlas_errors():
    base = pd.DataFrame({"params": [1e8, 2e8, 4e8, 8e8, 1e8, 2e8, 4e8, 8e8],
                         "tokens": [1e9, 1e9, 1e9, 1e9, 4e9, 4e9, 4e9, 4e9],
                         "loss": [3.4, 3.2, 3.0, 2.9, 3.1, 2.9, 2.8, 2.7]})
    for variant in ("monolingual", "other", "transfer"):
        with pytest.raises(ValueError, match="language"):
            atlas_law(variant).features(base)
    with pytest.raises(ValueError, match="language"):
        aj.fit("atlas_monolingual", base, starts=atlas_law("monolingual").start_grid()[:1])
    two = base.assign(language=["xx", "yy"] * 4)
    with pytest.raises(ValueError, match="one target language"):
        atlas_law("monolingual").features(two)
    with pytest.raises(ValueError, match="one target language"):
        aj.fit("atlas_monolingual", two, starts=atlas_law("monolingual").start_grid()[:1])
    with pytest.raises(ValueError, match="tokens_xx"):
        atlas_law("other").features(base.assign(language="xx"))
    with pytest.raises(ValueError, match="variant"):
        atlas_law("bilingual")
    with pytest.raises(ValueError, match="unknown law"):
        aj.get_law("nope")


def test_atlas_effective_data_floor():
    """A strongly negative transfer weight leaves DEFF_FLOOR of the target's own effective data."""
    law = atlas_law("other")
    frame = pd.DataFrame({"params": [1e9], "tokens": [2e10], "loss": [2.0], "language": ["xx"],
                          "tokens_xx": [1e10], "tokens_yy": [1e10]})
    x = {k: jnp.asarray(v[0]) for k, v in law.features(frame).items()}
    E, A, B, alpha, beta = 1.7, 400.0, 900.0, 0.33, 0.3
    theta = jnp.array([np.log(E), np.log(A), np.log(B), alpha, beta, np.log(0.05), -5.0])
    expected = E + A / 1e9 ** alpha + B / (DEFF_FLOOR * 1e10) ** beta
    assert float(jnp.exp(law.log_loss(theta, x))) == pytest.approx(expected, rel=1e-12)
