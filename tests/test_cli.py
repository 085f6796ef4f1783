"""The CLI contract: files written, their columns, atomicity, and one-line errors with exit code 2."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from atlas_jax.cli import app

BASE = {"E": np.exp(0.6254804), "A": np.exp(6.255414), "B": np.exp(7.3049974), "alpha": 0.3526596, "beta": 0.3526596}
FIX = [arg for k, v in BASE.items() for arg in ("--fix", f"{k}={float(v)!r}")]


def run(*args):
    return CliRunner().invoke(app, list(map(str, args)))


def test_fit_writes_params_and_json(tmp_path):
    out = tmp_path / "dcsl"
    res = run("fit", "datablations", "--law", "data_constrained", "--out", out, "--bootstrap", 20, "--seed", 3, *FIX)
    assert res.exit_code == 3, res.output  # R_D*, R_N* intervals span decades: flagged, written, no usable group
    assert "not a trustworthy fit: wide-interval (R_D_star, R_N_star)" in res.output
    params = pd.read_csv(out / "diagnostics.csv", keep_default_na=False)  # no usable group: not params.csv
    assert not (out / "params.csv").exists() and json.loads((out / "fit.json").read_text())["usable"] is False
    assert params.set_index("param").loc["R_N_star", "flags"] == "wide_interval"
    assert list(params.columns) == ["group", "param", "estimate", "ci_low", "ci_high", "flags"]
    est = params.set_index("param")["estimate"]
    assert est["alpha"] == pytest.approx(BASE["alpha"], rel=1e-12)
    info = json.loads((out / "fit.json").read_text())
    assert info["law"] == "data_constrained" and info["seed"] == 3 and info["bootstrap"] == 20
    assert info["groups"]["all"]["objective"] <= 0.0158259354  # the published optimum or a lower one
    assert info["groups"]["all"]["status"] == "flagged" and info["groups"]["all"]["flags"]["wide_interval"]
    assert {"jax", "atlas-jax"} <= set(info["versions"]) and info["device"] and info["n_starts"] == {"data_constrained": 9}
    assert all(k.endswith("_s") for k in info["timings_s"]) and info["run_evaluations"]["bootstrap_evaluations"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dcsl"]  # no temporary folder left behind


def test_columns_mapping_group_by_and_tie(tmp_path):
    rng = np.random.default_rng(0)
    n, d = np.meshgrid(np.geomspace(1e7, 1e9, 5), np.geomspace(1e9, 1e11, 5))
    frames = []
    for lang, e in (("xx", 1.5), ("yy", 2.0)):
        loss = e + 400 / n.ravel() ** 0.33 + 900 / d.ravel() ** 0.33
        frames.append(pd.DataFrame({"N": n.ravel(), "D": d.ravel(), "L": loss * np.exp(rng.normal(0, 1e-3, 25)),
                                    "lang": lang}))
    path = tmp_path / "runs.csv"
    pd.concat(frames).to_csv(path, index=False)
    out = tmp_path / "out"
    res = run("fit", path, "--law", "chinchilla", "--out", out, "--group-by", "language", "--tie", "alpha=beta",
              "--columns", "params=N", "--columns", "tokens=D", "--columns", "loss=L", "--columns", "language=lang")
    assert res.exit_code == 0, res.output
    params = pd.read_csv(out / "params.csv").pivot(index="param", columns="group", values="estimate")
    assert list(params.columns) == ["xx", "yy"]
    np.testing.assert_allclose(params.loc["alpha"], params.loc["beta"], rtol=0)
    np.testing.assert_allclose(params.loc["E"], [1.5, 2.0], rtol=0.05)


@pytest.mark.parametrize("args, message", [
    (("missing.csv",), "not found"),
    (("datablations", "--fix", "gamma=1"), "no parameter 'gamma'"),
    (("datablations", "--fix", "alpha"), "expected NAME=VALUE"),
    (("datablations", "--group-by", "nope"), "nope"),
])
def test_user_errors_exit_2_without_output(tmp_path, args, message):
    out = tmp_path / "out"
    res = run("fit", args[0], "--law", "data_constrained", "--out", out, *args[1:])
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_progress_bars_on_a_terminal_and_quiet(tmp_path, monkeypatch):
    """On a terminal the fit shows progress bars (finished fits per stage; here for batches of any size);
    --quiet silences them."""
    import sys
    from types import SimpleNamespace

    import atlas_jax.cli as cli
    from atlas_jax.engine import batch

    monkeypatch.setattr(batch, "PROGRESS_MIN", 0)
    monkeypatch.setattr(cli, "sys", SimpleNamespace(stderr=SimpleNamespace(isatty=lambda: True), argv=sys.argv,
                                                    modules=sys.modules, exit=sys.exit))
    loud = run("fit", "epoch-chinchilla", "--law", "chinchilla", "--out", tmp_path / "a", "--bootstrap", 20)
    quiet = run("fit", "epoch-chinchilla", "--law", "chinchilla", "--out", tmp_path / "b", "--bootstrap", 20, "--quiet")
    assert loud.exit_code == quiet.exit_code == 0
    assert "screening starts" in loud.output and "bootstrap" in loud.output
    assert "screening starts" not in quiet.output and "fit/s" not in quiet.output


def test_readme_cli_reference_is_generated_from_the_app():
    """The README's CLI reference is `atlas-jax reference` verbatim (regenerate it after changing an option)."""
    from pathlib import Path

    from atlas_jax.cli import cli_reference

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("-->\n", readme.index("<!-- cli-reference")) + 4
    assert readme[start:readme.index("\n<!-- /cli-reference -->")] == cli_reference()
    assert "### `atlas-jax plot`" in readme and "`--quiet`, `-q`" in readme


@pytest.mark.parametrize("args, message", [
    (("posterior", "missing.csv", "--law", "chinchilla", "--out", "{tmp}/p"), "not found"),
    (("posterior", "atlas-campaign", "--law", "chinchilla", "--out", "{tmp}/p", "--hierarchical"), "give group_by"),
    (("plan", "--runs", "atlas-campaign", "--target", "xx", "--flops", "1e21"), "unknown target language 'xx'"),
    (("plot", "crossover", "--out", "{tmp}/c.png"), "needs --language"),
    (("plot", "posterior-pairs", "{tmp}/none.nc", "--out", "{tmp}/c.png"), "needs a posterior.nc"),
    (("bench", "nope", "--out", "{tmp}/b"), "unknown suite(s) nope"),
    (("bench", "--dtype", "float16", "--out", "{tmp}/b"), "--dtype: expected one of float64, float32, mixed"),
])
def test_every_command_reports_user_errors_in_one_line(tmp_path, args, message):
    res = run(*(a.format(tmp=tmp_path) for a in args))
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert list(tmp_path.iterdir()) == []


def test_every_registered_law_is_a_cli_choice(tmp_path):
    """--law offers every law of atlas_jax.laws.LAWS; a curve law fits per language and is not warned about N,
    which it does not read."""
    from atlas_jax.cli import LawName
    from atlas_jax.laws import LAWS

    assert {law.value for law in LawName} == set(LAWS)
    res = run("fit", "atlas-campaign", "--law", "scratch_curve", "--where", "group == 'scratch' and params > 8e9",
              "--group-by", "language", "--out", tmp_path / "o", "--quiet")
    assert res.exit_code == 0, res.output
    assert "8 of 8 group(s) usable" in res.output and "not identifiable" not in res.output
    assert set(pd.read_csv(tmp_path / "o" / "params.csv")["param"]) == {"E", "B", "beta"}


def test_design_writes_picks_and_flags_an_extrapolated_budget(tmp_path):
    """`atlas-jax design` on the Chinchilla runs for N* at 1e25 FLOPs (770x the largest run before the picks):
    2 picks of at least 1e20 FLOPs, printed and written (design.json, picks.csv, candidates.csv, design.png),
    flagged ``extrapolated`` in every output."""
    out = tmp_path / "d"
    res = run("design", "--runs", "epoch-chinchilla", "--law", "chinchilla", "--target", "N_opt", "--flops", 1e25,
              "--k", 2, "--grid", "10x12", "--min-flops", 1e20, "--out", out)
    assert res.exit_code == 0, res.output
    assert "[FLAGGED: extrapolated]" in res.output and re.search(r"is \d+x the largest run, picks included", res.output)
    info = json.loads((out / "design.json").read_text())
    assert info["flags"] == ["extrapolated"] and info["target"] == "N_opt" and len(info["picks"]) == 2
    picks, cands = pd.read_csv(out / "picks.csv"), pd.read_csv(out / "candidates.csv")
    assert len(picks) == 2 and (picks["width"] < info["width"]).all() and 0 < len(cands) < 120
    assert cands["flops"].min() >= 1e20 and picks["flops"].min() >= 1e20
    assert (out / "design.png").stat().st_size > 10_000
