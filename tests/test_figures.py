"""Every figure renders to a non-empty PNG with the expected titles and labels, and draws the numbers it
should (predictions against ``predict``, the transfer matrix, the published 2x-language multipliers)."""


import matplotlib
import numpy as np
import pytest
from conftest import expect_warnings
from typer.testing import CliRunner

import atlas_jax as aj
from atlas_jax import analysis as an
from atlas_jax import figures as F
from atlas_jax.cli import app

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def chin():
    runs = aj.load_chinchilla()
    return runs.frame, aj.fit("chinchilla", runs, bootstrap=50, seed=1)


def _png(fig, tmp_path, name):
    path = tmp_path / f"{name}.png"
    fig.savefig(path)
    assert path.stat().st_size > 15_000
    return path


def _observed(ax):
    from matplotlib.collections import PathCollection

    return next(c for c in ax.collections if isinstance(c, PathCollection)).get_offsets()


def test_loss_fit_draws_the_fit_and_its_interval(chin, tmp_path):
    """One fitted curve per token count (binned: Epoch's runs have 240) against N, and per model size against D,
    each the closed form at the fitted parameters; the runs coloured by the other axis; a band of the refits."""
    from conftest import np_chinchilla

    frame, res = chin
    for x, other in (("params", "tokens"), ("tokens", "params")):
        fig = F.loss_fit(res, frame, x=x)
        ax = fig.axes[0]
        assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == (
            f"chinchilla: loss vs {'N' if x == 'params' else 'D'}", F.AXIS_LABELS[x], "loss (nats/token)")
        curves = [line for line in ax.get_lines() if line.get_label().startswith(f"_{other}=")]
        assert 5 <= len(curves) <= 10
        for line in curves:
            value = float(line.get_label().split("=")[1])
            n, d = (line.get_xdata(), value) if x == "params" else (value, line.get_xdata())
            np.testing.assert_allclose(line.get_ydata(), np_chinchilla(n, d, **res.params()), rtol=1e-9)
        np.testing.assert_allclose(_observed(ax), frame[[x, "loss"]].to_numpy())
        assert fig.axes[1].get_ylabel() == F.AXIS_LABELS[other]  # the colour bar
        legend = [t.get_text() for t in fig.legends[0].get_texts()]  # outside the axes
        assert "95% bootstrap band (50 refits)" in legend and ax.get_legend() is None
        assert f"fitted law, one curve per {'D' if x == 'params' else 'N'} bin" in legend  # 240 values, binned
        _png(fig, tmp_path, f"loss_{x}")
    with pytest.warns(UserWarning, match="no-dof"):
        five = aj.fit("chinchilla", frame.iloc[::48].reset_index(drop=True))  # 5 runs, 5 parameters
    for fig in (F.loss_fit(five, frame.iloc[::48]), F.residuals(five, frame.iloc[::48])):  # drawn, and said
        assert fig.axes[0].get_title().splitlines()[1].startswith("flagged: ") and "no-dof" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="x: expected 'params' or 'tokens'"):
        F.loss_fit(res, frame, x="flops")


def test_residuals_are_log_observed_over_fitted(chin, tmp_path):
    frame, res = chin
    fig = F.residuals(res, frame)
    ax = fig.axes[0]
    r = np.log(frame["loss"]) - np.log(aj.predict("chinchilla", frame, res.params()))
    np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 1], r, rtol=1e-9, atol=1e-12)
    assert ax.get_title() == f"chinchilla: residuals (RMS {np.sqrt(np.mean(r ** 2)):.2e})"
    assert ax.get_ylabel() == "log residual (observed / fitted)"
    _png(fig, tmp_path, "residuals")


def test_grouped_fit_needs_group_by(tmp_path):
    frame = aj.load_campaign()[0].frame
    runs = frame[(frame["regime"] == "pretrain") & frame["language"].isin(["sw", "yo"]) & (frame["group"] != "scratch")]
    res = aj.fit("atlas_monolingual", runs, group_by="language")
    with pytest.raises(ValueError, match="the fit has 2 groups: give group_by"):
        F.loss_fit(res, runs, group="sw")
    fig = F.loss_fit(res, runs, group="sw", group_by="language")
    assert fig.axes[0].get_title() == "atlas_monolingual: loss vs N, sw"
    assert len(_observed(fig.axes[0])) == (runs["language"] == "sw").sum()
    assert fig.axes[0].get_xlabel() == "N (parameters)"
    fig = F.loss_fit(res, runs, x="tokens", group="sw", group_by="language")  # mixtures: against sw's own tokens
    sw = runs[runs["language"] == "sw"]
    np.testing.assert_allclose(_observed(fig.axes[0]), sw[["tokens_sw", "loss"]].to_numpy())
    assert fig.axes[0].get_xlabel() == "D in sw (tokens of the target language)"


def test_transfer_heatmap_is_the_matrix(tmp_path):
    matrix = an.load_transfer_matrix()
    fig = F.transfer_heatmap()
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), matrix.to_numpy(float))
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("source language", "target language")
    assert [t.get_text() for t in ax.get_yticklabels()] == list(matrix.index)
    _png(fig, tmp_path, "transfer")


def test_frontier_marks_the_published_multipliers(tmp_path):
    """r = 2 with the paper's exponents: model x1.18, total data x1.66 (per language 0.83)."""
    fig = F.frontier(r_values=(2, 4))
    ax = fig.axes[0]
    dot = ax.lines[1].get_xydata()[0]
    assert dot[0] == pytest.approx(1.18, abs=0.005) and 2 * dot[1] == pytest.approx(1.66, abs=0.005)
    s, t = ax.lines[0].get_xydata().T  # on the frontier, the loss is unchanged
    w = 0.147 / (0.453 + 0.147)
    np.testing.assert_allclose(2 ** 0.11 * w * s ** -0.453 + 2 ** -0.04 * (1 - w) * t ** -0.147, 1.0, rtol=1e-9)
    assert ax.get_xlabel() == "model multiplier N'/N" and ax.get_title() == "iso-loss frontier for r x languages"
    _png(fig, tmp_path, "frontier")


def test_crossover_plot_marks_d_star(tmp_path):
    frame = aj.load_campaign()[0].frame
    curves = frame[frame["group"].isin(["scratch", "finetune"]) & (frame["language"] == "zh")]
    curves = curves[curves["params"] == curves["params"].min()]
    with expect_warnings(r"group 'zh at N = .*wide-interval \(B\)"):  # 20 draws of one size's curves
        row = an.fit_crossovers(curves, bootstrap=20).iloc[0]
    fig = F.crossover(row, curves)
    ax = fig.axes[0]
    vline = next(l for l in ax.lines if l.get_label().startswith("crossover D*"))
    assert vline.get_xdata()[0] == pytest.approx(row["crossover_tokens"])
    assert ax.get_title() == f"pretrain vs finetune, zh at N = {row['params']:.3g}"
    _png(fig, tmp_path, "crossover")
    labels = lambda fig: [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert f"95 % interval of D*: {row['ci_low']:.3g} - {row['ci_high']:.3g}" in labels(fig)
    open_ended = F.crossover({**row, "ci_high": np.inf}, curves)  # refits that never cross: one-sided, and said
    assert f"95 % interval of D*: > {row['ci_low']:.3g} (no upper end)" in labels(open_ended)
    span = next(p for p in open_ended.axes[0].patches if "no upper end" in p.get_label())
    assert span.get_x() == pytest.approx(row["ci_low"]) and span.get_x() + span.get_width() > 10 * row["ci_low"]
    assert f"< {row['ci_high']:.3g} (no lower end)" in labels(F.crossover({**row, "ci_low": 0.0}, curves))[-1]


def test_posterior_pair_and_forest(epoch_posterior, tmp_path):
    fig = F.posterior_pairs(epoch_posterior, params=["E", "alpha", "beta"])
    assert fig._suptitle.get_text() == "posterior pairs, group all"
    assert len([a for a in fig.axes if a.get_visible()]) >= 3
    _png(fig, tmp_path, "pairs")
    fig = F.posterior_forest(epoch_posterior)
    assert [a.get_title() for a in fig.axes] == ["E", "A", "B", "alpha", "beta"]
    _png(fig, tmp_path, "forest")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['gamma'\]"):
        F.posterior_forest(epoch_posterior, params=["gamma"])


def test_plot_cli(epoch_posterior, tmp_path):
    run = lambda *args: CliRunner().invoke(app, ["plot", *map(str, args)])
    out = run("frontier", "--exponents", "0.453,0.147,0.11,-0.04", "--out", tmp_path / "f.svg")
    assert out.exit_code == 0, out.output
    assert (tmp_path / "f.svg").read_text().lstrip().startswith("<?xml")
    nc = tmp_path / "posterior.nc"
    epoch_posterior.to_inference_data().to_netcdf(str(nc))
    out = run("posterior-forest", nc, "--out", tmp_path / "forest.png")
    assert out.exit_code == 0, out.output
    assert (tmp_path / "forest.png").stat().st_size > 15_000
    for args, message in ((("frontier", "--out", tmp_path / "f.jpg"), "expected a .png, .svg or .pdf file"),
                          (("loss", "epoch-chinchilla", "--out", tmp_path / "l.png"), "needs RUNS and --law"),
                          (("frontier", "--exponents", "1,2", "--out", tmp_path / "g.png"), "expected four numbers")):
        out = run(*args)
        assert out.exit_code == 2 and message in out.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.svg", "forest.png", "posterior.nc"]
