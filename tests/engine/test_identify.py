"""Identification flags (atlas_jax.engine.identify), groups too small to fit, and the run-level bootstrap.

Every flag is triggered by a constructed table and absent from a well-posed one. The tables are drawn here
from the Chinchilla law written in plain numpy, all with the same number of rows, and fitted as groups of
one call (one compilation).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import atlas_jax as aj
from atlas_jax.cli import app
from atlas_jax.data.checkpoints import CHECKPOINT_TRUTH, checkpointed_campaigns
from atlas_jax.engine.identify import MIN_REFITS, WIDE_RATIO, bootstrap_flags, describe, point_flags

TRUTH = dict(E=1.8, A=400.0, B=2000.0, alpha=0.34, beta=0.37)
N_GRID = np.geomspace(2e7, 2e9, 6)
D_MULT = np.array([5.0, 10.0, 20.0, 40.0, 80.0])
STARTS = np.array(np.meshgrid([0.0, 1.0], [5.0, 8.0], [5.0, 8.0], [0.3, 0.5], [0.3, 0.5],
                              indexing="ij")).reshape(5, -1).T  # internal e, a, b, alpha, beta


def chinchilla(n, d, E, A, B, alpha, beta):
    return E + A / n**alpha + B / d**beta


def table(group, rng, noise=0.001, n=None, **truth):
    """30 runs: 6 sizes x 5 token budgets (or one size ``n``), log-normal noise."""
    p = TRUTH | truth
    sizes = np.repeat(N_GRID if n is None else np.full(6, n), 5)
    tokens = np.tile(D_MULT, 6) * np.repeat(N_GRID, 5)
    loss = chinchilla(sizes, tokens, **p) * np.exp(rng.normal(0.0, noise, sizes.size))
    return pd.DataFrame({"case": group, "params": sizes, "tokens": tokens, "loss": loss})


@pytest.fixture(scope="module")
def cases():
    rng = np.random.default_rng(0)
    frame = pd.concat([
        table("good", rng),
        table("no_E", rng, E=0.0),                                  # E -> 0: collapsed
        table("one_size", rng, n=3e8),                              # N does not vary: A, alpha not identified
        table("five_runs", rng),                                    # 5 runs for 5 parameters (weights below)
    ], ignore_index=True)
    weights = np.where((frame["case"] == "five_runs") & (frame.index % 6 != 0), 0.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = aj.fit("chinchilla", frame, group_by="case", weights=weights, bootstrap=100, starts=STARTS)
        stopped = aj.fit("chinchilla", frame[frame["case"] == "good"], max_steps=2, starts=STARTS)
    return res, stopped


def test_well_posed_table_has_no_flag(cases):
    res, _ = cases
    assert res.flags[res.groups.index("good")] == {}
    assert res.verdict("good") == "converged" and res.usable[res.groups.index("good")]
    assert res.condition[res.groups.index("good")] < 1e10


@pytest.mark.parametrize("group, flag, params", [
    ("no_E", "collapsed", ("E",)),
    ("one_size", "ill_conditioned", None),
    ("five_runs", "no_dof", ()),
])
def test_each_point_flag_is_triggered(cases, group, flag, params):
    res, _ = cases
    g = res.groups.index(group)
    assert flag in res.flags[g], res.flags[g]
    if params is not None:
        assert res.flags[g][flag] == params
    assert not res.usable[g] and res.verdict(group).startswith("flagged: ")
    assert res.summary()[group]["status"] == "flagged" and flag in res.summary()[group]["flags"]
    frame = res.to_frame()
    rows = frame[frame["group"] == group]
    assert rows["flags"].str.contains(flag).any()
    assert any(w.startswith(f"group '{group}': not a trustworthy fit") for w in res.warnings)


def test_one_size_is_ill_conditioned_in_the_size_direction(cases):
    res, _ = cases
    g = res.groups.index("one_size")
    assert res.condition[g] > 1e10
    assert set(res.flags[g]["ill_conditioned"]) <= {"E", "A", "alpha"}  # A/N^alpha merges with E at one N


def test_not_converged_flag(cases):
    _, stopped = cases
    assert stopped.status == ("max_steps",) and "not_converged" in stopped.flags[0]
    assert stopped.summary()["all"]["solver_status"] == "max_steps"


def test_at_bound_flag_names_the_parameter():
    phi = np.array([[0.5, 0.0, 2.0], [0.5, 1.0, 2.0]])
    jac, hess = np.ones((2, 4, 3)) * [1.0, 2.0, 3.0], np.stack([np.diag([1.0, 2.0, 3.0])] * 2)
    flags, condition = point_flags(jac, hess, np.ones((2, 4)), phi, np.zeros(3), np.full(3, 10.0),
                                   np.array([3, 0]), ("E", "alpha", "beta"))
    assert flags == [{"at_bound": ("alpha",)}, {}]
    np.testing.assert_allclose(condition, [3.0, 3.0])


def test_bootstrap_flags_thresholds():
    names = (("E", "A", "tau"),)
    positive = np.array([True, True, False])
    low, high = np.array([[1.0, 1.0, -5.0]]), np.array([[WIDE_RATIO * 0.99, WIDE_RATIO * 1.01, 5.0]])
    ok = np.array([[True] * 9 + [False]])  # 90 % converged: not failed
    assert bootstrap_flags([{}], ok, low, high, positive, names, {"E", "A", "tau"}) == [{"wide_interval": ("A",)}]
    ok = np.array([[True] * 8 + [False] * 2])
    assert MIN_REFITS == 0.9
    assert bootstrap_flags([{}], ok, low, high, positive, names, {"E"}) == [{"refits_failed": ()}]
    assert describe({"refits_failed": (), "wide_interval": ("A",)}, refits=0.8) == \
        "refits-failed (80% converged); wide-interval (A)"


def test_small_groups_are_skipped_with_one_warning():
    rng = np.random.default_rng(1)
    frame = pd.concat([table("big", rng), table("tiny", rng).iloc[:3]], ignore_index=True)
    with pytest.warns(UserWarning, match="group 'tiny' .* every run has the same params"), \
            pytest.warns(UserWarning, match=r"skipped 1 group\(s\) with fewer runs than the 5 free parameters .*tiny"):
        res = aj.fit("chinchilla", frame, group_by="case")
    assert res.groups == ("big",) and res.skipped == ("tiny",)
    assert res.summary()["tiny"]["status"] == "skipped"
    with pytest.raises(ValueError, match="no group has the 5 runs"), pytest.warns(UserWarning, match="same params"):
        aj.fit("chinchilla", frame[frame["case"] == "tiny"], group_by="case")


# --------------------------------------------------------------------------- run-level bootstrap


def coverage(res):
    truth = np.array([CHECKPOINT_TRUTH[n] for n in res.names[0]])
    return float(np.mean((res.ci_low <= truth) & (truth <= res.ci_high)))


def test_run_bootstrap_covers_checkpointed_runs():
    """Nominal 95 % intervals over 60 simulated campaigns x 5 parameters: whole-run resampling covers the truth at
    least 90 % of the time; resampling checkpoints as if independent covers far less. (60 campaigns pin coverage
    to about +-3 %; validation/run_bootstrap.py measures the 90-98 % band on 200 campaigns.)"""
    frame = checkpointed_campaigns(60, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        by_run = aj.fit("chinchilla", frame, group_by="campaign", starts=STARTS, bootstrap=100)
        by_row = aj.fit("chinchilla", frame, group_by="campaign", starts=STARTS, bootstrap=100, bootstrap_unit="row")
    assert by_run.bootstrap_unit == "run" and by_row.bootstrap_unit == "row"
    run_cov, row_cov = coverage(by_run), coverage(by_row)
    assert run_cov >= 0.90, run_cov
    assert row_cov < 0.8 and run_cov - row_cov > 0.2, (run_cov, row_cov)


def test_run_resamples_keep_checkpoints_together():
    from atlas_jax.engine.batch import _bootstrap_weights, group_data

    frame = checkpointed_campaigns(1, seed=0).drop(columns="campaign")
    data = group_data(aj.get_law("chinchilla"), frame, None)
    counts = _bootstrap_weights(data, 50, 0, None, "run")[0]
    run = frame["run"].to_numpy()
    for r in np.unique(run):
        block = counts[:, run == r]
        assert np.all(block == block[:, :1])           # a run's checkpoints are drawn together
    assert np.all(counts.sum(axis=1) == len(frame))   # 24 runs drawn, 10 checkpoints each
    with pytest.raises(ValueError, match="needs a 'run' column"), pytest.warns(UserWarning, match="replicate set"):
        aj.fit("chinchilla", frame.drop(columns="run"), bootstrap=2, bootstrap_unit="run")


# --------------------------------------------------------------------------- the CLI carries the flags


def test_cli_writes_flags_and_exits_3_without_a_usable_group(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "runs.csv"
    table("no_E", rng, E=0.0).drop(columns="case").to_csv(path, index=False)
    result = CliRunner().invoke(app, ["fit", str(path), "--law", "chinchilla", "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 3, result.output
    assert "not a trustworthy fit: collapsed (E)" in result.output
    assert "all: flagged" in result.output and "0 of 1 group(s) usable" in result.output
    params = pd.read_csv(tmp_path / "out" / "diagnostics.csv", keep_default_na=False)
    assert not (tmp_path / "out" / "params.csv").exists() and "wrote " in result.output
    assert params.set_index("param").loc["E", "flags"].split(";")[0] == "collapsed"
    info = json.loads((tmp_path / "out" / "fit.json").read_text())["groups"]["all"]
    assert info["status"] == "flagged" and info["solver_status"] in ("converged", "at_bound")
    assert info["flags"]["collapsed"] == ["E"]
