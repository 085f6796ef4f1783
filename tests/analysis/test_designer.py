"""Experimental design (atlas_jax.analysis.designer): the rank-one updates against numpy's inverses, a simulated
campaign in which the design's picks narrow the target's interval at a fraction of random runs' compute, and
refusals."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import CHIN_TRUTH, np_chinchilla

import atlas_jax as aj
from atlas_jax.analysis.designer import _expected_width, _updated, candidate_grid, design


def test_rank_one_updates_match_the_inverse_of_the_information():
    """Var(T | x) = g' (Sigma^-1 + j j' / s2)^-1 g and the updated covariance, per draw, by numpy's inverses; the
    expected width averages the per-draw ratios sqrt(Var_b(T | x) / Var_b(T))."""
    rng = np.random.default_rng(0)
    B, C, P, s2 = 3, 4, 5, 0.01
    root = rng.normal(size=(B, P, P))
    sigma = root @ np.swapaxes(root, 1, 2) + 0.1 * np.eye(P)
    g, j = rng.normal(size=(B, P)), rng.normal(size=(B, C, P))
    v0 = np.array([g[b] @ sigma[b] @ g[b] for b in range(B)])
    want = [np.mean([np.sqrt(g[b] @ np.linalg.inv(np.linalg.inv(sigma[b]) + np.outer(j[b, c], j[b, c]) / s2) @ g[b]
                             / v0[b]) for b in range(B)]) for c in range(C)]
    np.testing.assert_allclose(_expected_width(g, sigma, j, s2, 2.0, v0), 2.0 * np.array(want), rtol=1e-10)
    np.testing.assert_allclose(_updated(sigma, j[:, 1], s2),
                               [np.linalg.inv(np.linalg.inv(sigma[b]) + np.outer(j[b, 1], j[b, 1]) / s2)
                                for b in range(B)], rtol=1e-8, atol=1e-12)


def runs_at(N, D, seed):
    """Runs of the Chinchilla truth (numpy closed form, conftest) with 1 % lognormal noise."""
    N, D = np.asarray(N, float), np.asarray(D, float)
    noise = np.exp(0.01 * np.random.default_rng(seed).standard_normal(len(N)))
    return pd.DataFrame({"params": N, "tokens": D, "loss": np_chinchilla(N, D, **CHIN_TRUTH) * noise})


def n_opt_width(frame) -> float:
    """Width of the 95 % bootstrap interval of N* at 1e22 FLOPs (closed form on the draws)."""
    s = aj.fit("chinchilla", frame, bootstrap=200).samples[0]
    A, B, a, b = s[:, 1], s[:, 2], s[:, 3], s[:, 4]
    n_opt = (a * A / (b * B)) ** (1 / (a + b)) * (1e22 / 6) ** (b / (a + b))
    return float(np.diff(np.percentile(n_opt, [2.5, 97.5]))[0])


def test_design_narrows_n_opt_at_a_fraction_of_the_compute_of_random_runs():
    """One simulated campaign: a 4 x 4 lattice of runs (N 5e7-1.35e9, D 1e9-2.7e10) leaves N*'s interval at 1e22
    FLOPs wide (A and B flagged). The 12 runs the design picks (each narrowing the expected width further, under
    2e19 FLOPs in all), simulated from the truth and refitted, narrow it; per FLOP more than 100x as much as 3
    random runs of the same candidate grid (median of 4 draws). Within a budget of 1e21 FLOPs the design picks
    larger runs and narrows it further. Over 5 campaigns the outcome varies (benchmarks/design_campaign.py,
    README "Which runs to train next")."""
    N, D = (a.ravel() for a in np.meshgrid([5e7, 1.5e8, 4.5e8, 1.35e9], [1e9, 3e9, 9e9, 2.7e10], indexing="ij"))
    base = runs_at(N, D, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the lattice's fit is flagged wide: what the design narrows
        picked = design("chinchilla", base, "N_opt", flops=1e22, k=12)
        assert picked.notes[0].startswith("the fit is flagged: wide-interval")
        chosen = picked.picks
        now = n_opt_width(base)
        designed = n_opt_width(pd.concat([base, runs_at(chosen["params"], chosen["tokens"], 2)]))
        grid, widths, compute = candidate_grid(base), [], []
        assert (grid["params"] * grid["tokens"]).min() >= (base["params"] * base["tokens"]).min() * (1 - 1e-12)
        for s in range(4):
            c = grid.iloc[np.random.default_rng(10 + s).choice(len(grid), 3, replace=False)]
            widths.append(n_opt_width(pd.concat([base, runs_at(c["params"], c["tokens"], 20 + s)])))
            compute.append(float((6 * c["params"] * c["tokens"]).sum()))
        budgeted = design("chinchilla", base, "N_opt", flops=1e22, k=12, budget=1e21)
        spent = budgeted.picks
        within = n_opt_width(pd.concat([base, runs_at(spent["params"], spent["tokens"], 3)]))
    assert len(chosen) == 12 and np.all(np.diff(chosen["width"]) < 0) and chosen["flops"].sum() < 2e19
    assert designed < now
    per_flop = (now - designed) / chosen["flops"].sum()
    assert per_flop > 100 * (now - np.median(widths)) / np.median(compute)
    # within 1e21 FLOPs, larger runs that narrow the interval the most in all beat the cheap ones per FLOP
    assert spent["flops"].sum() <= 1e21 and spent["flops"].max() > chosen["flops"].max()
    assert any("in all (not per FLOP)" in n for n in budgeted.notes)
    assert spent["width"].iloc[-1] < chosen["width"].iloc[-1]
    assert within < designed


def test_design_refuses_unidentified_fits_and_unknown_targets():
    flat = runs_at(np.full(12, 1e8), np.geomspace(1e9, 1e11, 12), 0)  # one N: A, alpha not identified
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(ValueError, match="cannot design runs: the chinchilla fit of 'all' is flagged"):
            design("chinchilla", flat, "alpha")
        good = runs_at(*(a.ravel() for a in np.meshgrid(np.geomspace(5e7, 5e9, 4), np.geomspace(1e9, 1e11, 4))), 3)
        with pytest.raises(ValueError, match="unknown target 'gamma'"):
            design("chinchilla", good, "gamma")
        with pytest.raises(ValueError, match="give the compute budget"):
            design("chinchilla", good, "N_opt")


def test_simulated_replicates_without_new_runs_reproduce_the_bootstrap_width():
    """The refit scheme with no new run is the bootstrap itself: its width of N* agrees with the fit's bootstrap
    width to Monte Carlo error (200 replicates each, other resamples: within 25 %)."""
    import jax.numpy as jnp

    from atlas_jax.analysis.designer import _Simulation, _target
    from atlas_jax.laws import CHINCHILLA

    runs = runs_at(*(a.ravel() for a in np.meshgrid(np.geomspace(5e7, 5e9, 5), np.geomspace(1e9, 1e11, 5))), 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # flags of this small design: the widths are compared
        res = aj.fit("chinchilla", runs, bootstrap=200)
    value = _target(CHINCHILLA, CHINCHILLA.names, "N_opt", 1e22)
    theta = np.array([[p.to_internal(v) for p, v in zip(CHINCHILLA.params, row)] for row in res.samples[0]])
    sim = _Simulation(CHINCHILLA, runs, theta, res.estimate[0], CHINCHILLA.features(runs.iloc[:2]), 0.01, value,
                      0.95, seed=0)
    values = np.array([float(value(jnp.asarray(t))) for t in theta])
    fitted = np.diff(np.percentile(values, [2.5, 97.5]))[0]
    assert sim.widths()[0] == pytest.approx(fitted, rel=0.25)


CURSE_TRUTH = dict(E=1.7, A=2000.0, B=40.0, alpha=0.45, beta=0.15, phi=0.11, psi=-0.04)
MIXTURE = ("sw", "en", "fr", "de", "es", "pt", "ru", "zh", "ja", "ko", "vi", "tr", "fa", "id", "it", "nl")


def cursed_runs(K, N, D_t, seed, truth=CURSE_TRUTH) -> pd.DataFrame:
    """L = E + A K^phi / N^alpha + B K^psi / D_t^beta (numpy, literally), 1 % lognormal noise; uniform mixtures of
    K languages of MIXTURE measured on its first, sw (also benchmarks/design_multilingual.py's)."""
    K, N, D_t = (np.asarray(v, float) for v in (K, N, D_t))
    t = truth
    loss = t["E"] + t["A"] * K ** t["phi"] / N ** t["alpha"] + t["B"] * K ** t["psi"] / D_t ** t["beta"]
    frame = pd.DataFrame({"params": N, "tokens": K * D_t, "num_languages": K, "language": "sw",
                          "loss": loss * np.exp(0.01 * np.random.default_rng(seed).standard_normal(len(K)))})
    return frame.join(pd.DataFrame({f"tokens_{l}": np.where(i < K, D_t, 0.0) for i, l in enumerate(MIXTURE)}))


def test_design_for_a_curse_multiplier_narrows_it_over_the_runs_mixtures():
    """Target: the compute-optimal data multiplier for 4x the languages, r^(1 + psi/beta) (closed form on the fit's
    estimate and bootstrap draws). Candidates are the default grid crossed with the runs' mixtures (K = 1, 2, 4,
    8; tokens_<lang> scaled to each candidate's tokens). The 12 picks, simulated from the truth (4 outcome draws)
    and refitted, narrow the interval on average (one draw's width varies by +-15 % here); per FLOP more than 3
    random candidates do (median of 3 draws)."""
    K, N, D = (a.ravel() for a in np.meshgrid([1, 2, 4, 8], np.geomspace(1e7, 4e9, 3), [1e9, 1e10, 1e11],
                                               indexing="ij"))
    base = cursed_runs(K, N, D, 5)

    def width(frame=None, fitted=None):
        s = (fitted or aj.fit("curse", frame, bootstrap=200)).samples[0]
        return float(np.diff(np.percentile(4.0 ** (1 + s[:, 6] / s[:, 4]), [2.5, 97.5]))[0])

    def outcome(rows, seed):
        return cursed_runs(rows["num_languages"], rows["params"], rows["tokens_sw"], seed)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the flags of small refits: their widths are compared
        fitted = aj.fit("curse", base, bootstrap=200)
        got = design("curse", base, "data_multiplier", k=12, ratio=4.0)
        e = fitted.estimate[0]
        assert got.estimate == pytest.approx(4.0 ** (1 + e[6] / e[4]), rel=1e-9)
        assert got.width == pytest.approx(width(fitted=fitted), rel=1e-9) and got.ratio == 4.0 and got.flags == ()
        picks = got.picks
        assert set(picks["num_languages"]) <= {1, 2, 4, 8} and set(picks["language"]) == {"sw"}
        np.testing.assert_allclose(picks["tokens_sw"] * picks["num_languages"], picks["tokens"], rtol=1e-6)
        assert len(picks) == 12 and np.all(np.diff(picks["width"]) < 0)
        now, designed = got.width, np.mean([width(pd.concat([base, outcome(picks, s)])) for s in range(6, 10)])
        grid = candidate_grid(base, aj.get_law("curse"))
        random = [grid.iloc[np.random.default_rng(40 + s).choice(len(grid), 3, replace=False)] for s in range(3)]
        gains = [(now - width(pd.concat([base, outcome(r, 50 + s)]))) / r["params"].mul(r["tokens"]).sum()
                 for s, r in enumerate(random)]
    assert designed < now
    assert (now - designed) / picks["params"].mul(picks["tokens"]).sum() > np.median(gains)


SCRATCH = dict(E=1.9, B=400.0, beta=0.3)            # L_s(D) = E + B / D^beta
FINETUNE = dict(E=2.0, B=57.2, beta=0.25, D0=5e9)   # L_f(D) = E + B / (D + D0)^beta: they cross at D* = 1.0e11


def curve(regime, tokens, seed, scratch=SCRATCH, finetune=FINETUNE) -> pd.DataFrame:
    """Checkpoints of one 5e8-parameter model's curve (numpy closed forms, 0.05 % lognormal noise; also
    benchmarks/design_multilingual.py's)."""
    d, s, f = np.asarray(tokens, float), scratch, finetune
    loss = s["E"] + s["B"] / d ** s["beta"] if regime == "pretrain" else f["E"] + f["B"] / (d + f["D0"]) ** f["beta"]
    return pd.DataFrame({"language": "sw", "regime": regime, "params": 5e8, "tokens": d,
                         "loss": loss * np.exp(0.0005 * np.random.default_rng(seed).standard_normal(len(d)))})


def test_crossover_design_extends_the_curve_that_pins_d_star():
    """Curves observed to 5e10 tokens, D* near 1e11 beyond them (flagged extrapolated). The design's estimate and
    width are fit_crossovers'; d log D* / d theta (implicit function theorem) agrees with central differences of
    scipy's brentq root of the fitted closed forms; the 3 picked extensions, simulated from the truth and
    refitted, narrow D*'s interval by more than half, and 4x as much as extending the other curve as far; within
    5e20 FLOPs a longer extension is expected to narrow it further."""
    from scipy.optimize import brentq

    from atlas_jax.analysis import fit_crossovers
    from atlas_jax.analysis.designer import _log_crossover_gradient, design_crossover
    from atlas_jax.laws import FINETUNE_CURVE, SCRATCH_CURVE

    tokens = np.exp(np.arange(np.log(5e8), np.log(6e10), 0.33))
    curves = pd.concat([curve("pretrain", tokens, 1), curve("finetune", tokens, 2)])
    got = design_crossover(curves, "sw", k=3)
    assert any("wide-interval" in n for n in got.notes)  # what the extensions should narrow
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the same flags, from fit_crossovers
        now = fit_crossovers(curves, bootstrap=200).iloc[0]
    assert got.estimate == pytest.approx(now["crossover_tokens"], rel=1e-9) and got.flags == ("extrapolated",)
    assert got.width == pytest.approx(now["ci_high"] - now["ci_low"], rel=1e-12)

    def log_root(theta):  # internal (log E_s, log B_s, beta_s, log E_f, log B_f, beta_f, log D0)
        e_s, b_s, beta_s, e_f, b_f, beta_f, d0 = theta
        gap = lambda ld: (np.exp(e_s) + np.exp(b_s - beta_s * ld)) - (np.exp(e_f) + np.exp(b_f) / (
            np.exp(ld) + np.exp(d0)) ** beta_f)
        return brentq(gap, np.log(1e9), np.log(1e13), xtol=1e-14)

    theta = np.concatenate([[p.to_internal(now[f"{p.name}_{r}"]) for p in law.params]
                            for r, law in (("pretrain", SCRATCH_CURVE), ("finetune", FINETUNE_CURVE))])
    h = 1e-5
    numeric = [(log_root(theta + h * e) - log_root(theta - h * e)) / (2 * h) for e in np.eye(7)]
    np.testing.assert_allclose(np.asarray(_log_crossover_gradient(theta, log_root(theta))), numeric, rtol=1e-4,
                               atol=1e-8)

    picks = got.picks
    other = "pretrain" if picks["regime"].iloc[0] == "finetune" else "finetune"
    extended = pd.concat([curves, *(curve(p.regime, [p.tokens], 10 + i) for i, p in enumerate(picks.itertuples()))])
    instead = pd.concat([curves, curve(other, picks["tokens"], 20)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        after, alternative = (float(np.subtract(*fit_crossovers(c, bootstrap=200).iloc[0][["ci_high", "ci_low"]]))
                              for c in (extended, instead))
    assert after < 0.5 * got.width and got.width - after > 4 * (got.width - alternative)
    budgeted = design_crossover(curves, "sw", k=3, budget=5e20).picks  # a longer extension, within 5e20 FLOPs
    assert budgeted["flops"].sum() <= 5e20 and budgeted["width"].iloc[-1] < picks["width"].iloc[-1]


def test_crossover_design_on_an_open_interval_closes_it():
    """A few draws of curves stopped at 6e10 tokens never cross (D* = 9.8e10 in truth; benchmarks/
    design_multilingual.py's campaign 6): the interval is open, the design says so (flag unbounded_interval,
    widths of the draws that cross), and its 3 extensions, simulated and refitted, close it around the truth."""
    from atlas_jax.analysis import fit_crossovers
    from atlas_jax.analysis.designer import design_crossover

    s, f = dict(E=1.8673, B=420.17, beta=0.2879), dict(E=1.9516, B=181.43, beta=0.268, D0=3.424e9)
    tokens = np.exp(np.arange(np.log(5e8), np.log(6e10), 0.33))
    curves = pd.concat([curve("pretrain", tokens, 60, s, f), curve("finetune", tokens, 61, s, f)])
    got = design_crossover(curves, "sw", k=3)
    assert got.flags == ("extrapolated", "unbounded_interval") and np.isfinite(got.width)
    assert any(n.startswith("unbounded interval:") and ", inf]" in n for n in got.notes)
    extended = pd.concat([curves, *(curve(p.regime, [p.tokens], 70 + i, s, f)
                                    for i, p in enumerate(got.picks.itertuples()))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        after = fit_crossovers(extended, bootstrap=200).iloc[0]
    assert after["ci_low"] < 9.78e10 < after["ci_high"] < 2 * after["ci_low"]


def test_design_for_a_transfer_weight_crosses_the_grid_with_the_languages_mixtures():
    """Target tau_fr of Swahili's ATLAS fit on the bundled campaign: the design fits that group alone (its estimate
    and width are those of aj.fit on Swahili's runs, the same bootstrap), its default candidates are the grid
    crossed with Swahili's mixtures (token shares scaled to each candidate), and each pick narrows the
    expected width; an unknown group is named with the known ones."""
    table, _ = aj.load_campaign()
    runs = table.frame[~table.frame["group"].isin(["scratch", "finetune"])]
    sw = runs[runs["language"] == "sw"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        got = design("atlas", runs, "tau_fr", group_by="language", group="sw", k=3, bootstrap=50)
        fitted = aj.fit("atlas", sw, group_by="language", bootstrap=50)
        with pytest.raises(ValueError, match="unknown group 'xx'; groups: en, fr"):
            design("atlas", runs, "tau_fr", group_by="language", group="xx")
    j = fitted.names[0].index("tau_fr")
    assert got.estimate == pytest.approx(fitted.estimate[0, j], rel=1e-9)
    assert got.width == pytest.approx(np.diff(np.percentile(fitted.samples[0][:, j], [2.5, 97.5]))[0], rel=1e-9)
    shares = sw.filter(like="tokens_").div(sw["tokens"], axis=0).round(9).drop_duplicates()
    cand = got.candidates
    assert set(cand["language"]) == {"sw"} and len(cand) % len(shares) == 0
    np.testing.assert_allclose(cand.filter(like="tokens_").sum(axis=1), cand["tokens"], rtol=1e-9)
    assert len(got.picks) == 3 and np.all(np.diff(np.r_[got.width, got.picks["width"]]) < 0)
