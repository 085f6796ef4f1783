"""Prediction and held-out evaluation (atlas_jax.engine.evaluate): a fitted ATLAS law predicts planned
mixtures with its own helper languages, and the ``model_sizes`` protocol holds out chosen model sizes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

import atlas_jax as aj
from atlas_jax.laws import ATLAS, CHINCHILLA

SIZES = [3e7, 1e8, 3e8, 1e9, 3e9]
TOKENS = [1e9, 4e9, 1.6e10, 6.4e10]
#: Chinchilla starts (internal order e, a, b, alpha, beta): near the truth, and two far away.
CHIN_STARTS = np.array([[0.55, 6.3, 5.7, 0.3, 0.3], [0.5, 5.0, 5.0, 0.5, 0.5], [0.0, 10.0, 10.0, 0.5, 0.5]])


@pytest.fixture(scope="module")
def atlas_fit(npl):
    """ATLAS (transfer, helpers aa bb cc) fitted to the synthetic xx campaign with 1 % noise."""
    frame = npl.atlas_mixture_frame().drop(columns="mixture")
    frame["loss"] = npl.atlas(frame, "xx", ["aa", "bb", "cc"], npl.ATLAS_TRUTH, "transfer")
    frame["loss"] *= np.exp(0.01 * np.random.default_rng(0).standard_normal(len(frame)))
    truth = np.array([p.to_internal(npl.ATLAS_TRUTH[n]) for p, n in zip(ATLAS.params, ATLAS.names_for(frame))])
    return frame, aj.fit(ATLAS, frame, starts=(truth * 1.02 + 0.01)[None])


def planned(mixtures, sizes=(4e8, 5e9), tokens=(2e10, 3e11), unique=None):
    """Planned runs of target xx: every size x tokens x mixture (shares of the tokens)."""
    rows = [{"params": n, "tokens": d, "language": "xx", **{f"tokens_{l}": share * d for l, share in mix.items()}}
            for mix in mixtures for n in sizes for d in tokens]
    frame = pd.DataFrame(rows).fillna(0.0)
    return frame.assign(**{f"unique_{l}": u for l, u in (unique or {}).items()})


def test_predict_planned_mixture_with_the_fitted_helpers(npl, atlas_fit):
    frame, res = atlas_fit
    params = res.params()
    assert list(params) == ["E", "A", "B", "alpha", "beta", "lambda", "tau_aa", "tau_bb", "tau_cc", "tau_other"]
    assert abs(params["tau_aa"] - npl.ATLAS_TRUTH["tau_aa"]) > 1e-4  # noisy: the fit is not the truth
    # the target and two helpers at uniform shares; a mixture with an 'other' language (ee); no tokens_cc column
    new = planned([{"xx": 1 / 3, "aa": 1 / 3, "bb": 1 / 3}, {"xx": 0.5, "bb": 0.25, "ee": 0.25}],
                  unique={"xx": 3e9, "aa": 2e10, "bb": 8e9, "ee": 1e10})
    assert ATLAS.names_for(new)[6:9] == ("tau_bb", "tau_aa", "tau_ee")  # what the planned rows alone would pick
    want = npl.atlas(new.assign(tokens_cc=0.0), "xx", ["aa", "bb", "cc"], params, "transfer")
    np.testing.assert_allclose(aj.predict(ATLAS, new, params), want, rtol=1e-12)
    # the planned mixtures repeat xx (up to 50 epochs) and differ: the test exercises S and the taus
    assert new["tokens_xx"].max() / 3e9 > 30 and np.ptp(want[:4] / want[4:]) > 1e-3
    # the fitted table itself: the same predictions as before (helpers re-derived from its mixtures)
    np.testing.assert_allclose(aj.predict(ATLAS, frame, params),
                               npl.atlas(frame, "xx", ["aa", "bb", "cc"], params, "transfer"), rtol=1e-12)


def test_predict_errors(atlas_fit):
    frame, res = atlas_fit
    params = res.params()
    with pytest.raises(ValueError, match=r"name 2 transfer language\(s\) \(tau_<lang>\) for the 3"):
        aj.predict(ATLAS, frame, {k: v for k, v in params.items() if k != "tau_cc"})
    with pytest.raises(ValueError, match=r"params lack \['lambda'\]"):
        aj.predict(ATLAS, frame, {k: v for k, v in params.items() if k != "lambda"})
    with pytest.raises(ValueError, match=r"params lack \['alpha'\]"):
        aj.predict(CHINCHILLA, frame, {"E": 1.0, "A": 1.0, "B": 1.0, "beta": 0.3})


@pytest.fixture(scope="module")
def two_groups(npl):
    """Group a: 5 sizes x 4 token counts; group b: the 4 smallest sizes; 1 % noise."""
    a = npl.chinchilla_frame(SIZES, TOKENS, noise=0.01, seed=1).assign(group="a")
    b = npl.chinchilla_frame(SIZES[:4], TOKENS, noise=0.01, seed=2).assign(group="b")
    return pd.concat([a, b], ignore_index=True)


def test_holdout_mask_sizes(two_groups):
    f = two_groups
    np.testing.assert_array_equal(aj.holdout_mask(f, "model_sizes", sizes=[1e8, 3e9]),
                                  f["params"].isin([1e8, 3e9]).to_numpy())
    assert set(f["params"][aj.holdout_mask(f, "model_sizes")]) == {1e9, 3e9}  # nearest to 660M and 8B
    assert not aj.holdout_mask(f, "model_sizes", sizes=[]).any()
    with pytest.raises(ValueError) as err:
        aj.holdout_mask(f, "model_sizes", sizes=[1e8, 6.6e8, 8e9])
    assert str(err.value) == ("column 'params': held-out model size(s) [660000000.0, 8000000000.0] not in the "
                              "table; expected sizes of its runs: [30000000.0, 100000000.0, 300000000.0, "
                              "1000000000.0, 3000000000.0]")


def scipy_chinchilla(ref, frame):
    """Best tight L-BFGS-B fit of the reference Huber objective over CHIN_STARTS, as public parameters."""
    args = tuple(frame[c].to_numpy(float) for c in ("params", "tokens", "loss"))
    fits = [minimize(ref.chinchilla_objective, [a, b, e, alpha, beta], args=args, jac=ref.chinchilla_grad,
                     method="L-BFGS-B", options=dict(ftol=1e-15, gtol=1e-12, maxiter=10000, maxfun=100000))
            for e, a, b, alpha, beta in CHIN_STARTS]
    a, b, e, alpha, beta = min(fits, key=lambda r: r.fun).x
    return dict(E=np.exp(e), A=np.exp(a), B=np.exp(b), alpha=alpha, beta=beta)


def test_evaluate_holdout_sizes(ref, npl, two_groups):
    f = two_groups
    out = aj.evaluate_holdout(CHINCHILLA, f, ["model_sizes"], group_by="group", holdout_sizes=[3e8, 3e9],
                              starts=CHIN_STARTS)
    assert out[["group", "n_train", "n_test"]].values.tolist() == [["a", 12, 8], ["b", 12, 4], ["all", 24, 12]]
    held = f["params"].isin([3e8, 3e9]).to_numpy()
    predicted = np.empty(len(f))
    for g in ("a", "b"):  # scipy fit of each group's kept runs; its held-out runs by the closed form
        rows = (f["group"] == g).to_numpy()
        est = scipy_chinchilla(ref, f[rows & ~held])
        predicted[rows] = npl.chinchilla(f["params"][rows], f["tokens"][rows], **est)
    for g, rows in (("a", f["group"] == "a"), ("b", f["group"] == "b"), ("all", np.ones(len(f), bool))):
        test = np.asarray(rows) & held
        y = f["loss"].to_numpy()[test]
        r2 = 1 - np.sum((y - predicted[test]) ** 2) / np.sum((y - y.mean()) ** 2)
        assert out.loc[out["group"] == g, "r2"].item() == pytest.approx(r2, abs=1e-6), g
    with pytest.raises(ValueError, match=r"held-out model size\(s\) \[500000000.0\] not in the table"):
        aj.evaluate_holdout(CHINCHILLA, f, ["model_sizes"], group_by="group", holdout_sizes=[3e8, 5e8])
    table = aj.compare_laws(f, ["chinchilla"], ["model_sizes"], group_by="group", holdout_sizes=[3e8, 3e9],
                            starts=CHIN_STARTS)
    assert table.loc["chinchilla", "model_sizes"] == out.loc[out["group"] == "all", "r2"].item()


def test_mixtures_protocol_reads_only_mixture_columns():
    frame = pd.DataFrame({"params": 1e8, "tokens": 1e9, "loss": 3.0, "language": "xx",
                          "tokens_xx": [1e9, 5e8, 4e8, 2.5e8], "tokens_aa": [0.0, 5e8, 3e8, 2.5e8],
                          "tokens_bb": [0.0, 0.0, 3e8, 2.5e8], "tokens_cc": [0.0, 0.0, 0.0, 2.5e8],
                          "tokens_seen": 1e9, "unique_train_tokens": 1e12})
    np.testing.assert_array_equal(aj.holdout_mask(frame, "mixtures"), [False, False, True, False])
