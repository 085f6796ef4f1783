"""Saved fits: the folder `atlas-jax fit` writes round-trips, and plot, plan and predict --fit reuse it instead of
refitting (same numbers), refuse a fit that is not theirs, and carry flags loudly."""

import json
from dataclasses import fields, replace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import atlas_jax as aj
from atlas_jax.analysis.planner import plan
from atlas_jax.cli import app
from atlas_jax.engine.evaluate import predict
from atlas_jax.engine.result import FitResult
from atlas_jax.engine.saved import SavedFit

B = 20  # bootstrap resamples of the shared fit


def run(*args):
    return CliRunner().invoke(app, list(map(str, args)))


@pytest.fixture(scope="module")
def fitted():
    """Epoch's 240 runs fitted in memory, as `atlas-jax fit epoch-chinchilla --law chinchilla` fits them."""
    frame = aj.load_chinchilla().frame
    return aj.fit("chinchilla", frame, bootstrap=B, seed=0), frame


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("saved") / "fit"
    res = run("fit", "epoch-chinchilla", "--law", "chinchilla", "--bootstrap", B, "--seed", 0, "--out", out, "-q")
    assert res.exit_code == 0, res.output
    return out


def assert_same(a: FitResult, b: FitResult):
    for f in fields(FitResult):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), f.name
        else:
            assert x == y, f.name


def test_round_trip_equals_the_fit(fitted, folder, tmp_path):
    res, frame = fitted
    other = replace(res, law="atlas_monolingual", groups=("b",), flags=({"wide_interval": ("E", "A")},))
    saved = SavedFit((res, other), frame, {"group_by": None, "seed": 0})
    saved.save(tmp_path / "two")
    back = SavedFit.load(tmp_path / "two")
    assert len(back.results) == 2 and back.settings == saved.settings
    for a, b in zip(back.results, saved.results):
        assert_same(a, b)
    pd.testing.assert_frame_equal(back.rows, frame)
    assert back.result("b")[0].law == "atlas_monolingual" and back.groups == ("all", "b")
    assert list(back.params()["law"].unique()) == ["chinchilla", "atlas_monolingual"]
    # the CLI's folder holds the same fit, its settings and rows, beside the fit.json it always wrote
    cli = SavedFit.load(folder)
    assert_same(replace(cli.results[0], warnings=res.warnings, timings=res.timings), res)
    assert cli.settings["bootstrap"] == B and cli.settings["law"] == "chinchilla" and cli.group_by is None
    pd.testing.assert_frame_equal(cli.rows, frame)
    info = json.loads((folder / "fit.json").read_text())
    assert info["format"] == {"name": "atlas-jax.fit", "version": 1} and info["groups"]["all"]["status"] == "converged"
    assert sorted(p.name for p in folder.iterdir()) == [".atlas-jax", "fit.json", "fit.npz", "params.csv", "runs.parquet"]


def test_plan_with_the_saved_fit_equals_plan_refitting(folder, tmp_path):
    reused = run("plan", "--fit", folder, "--flops", 1e23, "--json", "--out", tmp_path / "plan")
    refit = run("plan", "--runs", "epoch-chinchilla", "--flops", 1e23, "--bootstrap", B, "--seed", 0, "--json", "-q")
    assert reused.exit_code == refit.exit_code == 0, reused.output + refit.output
    a = json.loads(reused.stdout)
    b = json.loads(refit.stdout)
    assert a.pop("notes") == ["the chinchilla fit is a saved one (20 bootstrap draws, seed 0), not refitted"]
    assert b.pop("notes") == [] and a == b and a["n_draws"] == B
    assert json.loads((tmp_path / "plan" / "plan.json").read_text()) == json.loads(reused.stdout)
    text = run("plan", "--fit", folder, "--flops", 1e23)
    assert (tmp_path / "plan" / "plan.txt").read_text() == text.stdout


def test_plan_refuses_a_fit_that_is_not_the_one_it_needs(folder):
    saved = SavedFit.load(folder)
    rows, res = saved.rows, saved.results[0]
    refused = {
        "uses law 'chinchilla', but the plan needs 'data_constrained'": dict(runs=rows, law="data_constrained"),
        "made on different rows: 240 rows were fitted, these are 239": dict(runs=rows.iloc[:-1]),
        r"made on different rows: column\(s\) loss differ": dict(runs=rows.assign(loss=rows["loss"] * 1.01)),
        "the saved fit has 20 bootstrap draws": dict(runs=rows, bootstrap=200),
        "draws come from seed 0": dict(runs=rows, seed=1),
    }
    for message, kwargs in refused.items():
        with pytest.raises(ValueError, match=message):
            plan(flops=1e23, fitted=saved, **kwargs)
    bare = SavedFit((replace(res, samples=None, sample_status=None, ci_low=None, ci_high=None),), rows, saved.settings)
    with pytest.raises(ValueError, match="no bootstrap draws, which the plan's intervals need"):
        plan(rows, flops=1e23, fitted=bare)
    assert plan(rows, flops=1e23, fitted=bare, bootstrap=0).flags == ("no_interval",)
    # a fit by language: no group for the target, or another law than the target's ATLAS variant
    two = pd.concat([rows.assign(language="en"), rows.assign(language="fr")], ignore_index=True)
    by_language = SavedFit((replace(res, groups=("en",)),), two, {**saved.settings, "group_by": "language"})
    with pytest.raises(ValueError, match=r"no group 'fr'; its groups \(column 'language'\): en"):
        plan(two, "fr", flops=1e23, fitted=by_language)
    with pytest.raises(ValueError, match="the plan needs 'atlas_monolingual' .en's runs support the ATLAS monolingual"):
        plan(two, "en", flops=1e23, fitted=by_language)
    cli = run("plan", "--fit", folder, "--flops", 1e23, "--bootstrap", 200)
    assert cli.exit_code == 2 and cli.output.count("\n") == 1 and cli.output.startswith("error: bootstrap 200")


def test_predict_equals_the_law_at_the_estimate_and_a_closed_form(folder, npl, tmp_path):
    saved = SavedFit.load(folder)
    res = saved.results[0]
    ok = np.isin(res.sample_status[0], (0, 3))
    draws = dict(zip(res.names[0], res.samples[0][ok].T))
    one = run("predict", "--fit", folder, "--params", 1e9, "--tokens", 2e10, "--json")
    assert one.exit_code == 0, one.output
    (row,) = json.loads(one.stdout)
    assert row["predicted"] == predict("chinchilla", pd.DataFrame({"params": [1e9], "tokens": [2e10]}),
                                       res.params())[0]
    assert row["predicted"] == pytest.approx(npl.chinchilla(1e9, 2e10, **res.params()), rel=1e-12)
    low, high = np.percentile(npl.chinchilla(1e9, 2e10, **draws), [2.5, 97.5])
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high), rel=1e-12) and row["flags"] == ""
    runs = pd.DataFrame({"params": [1e8, 1e9, 1e10], "tokens": [2e9, 2e10, 2e11]})
    runs.to_csv(tmp_path / "new.csv", index=False)
    many = run("predict", "--fit", folder, "--runs", tmp_path / "new.csv", "--out", tmp_path / "pred.csv")
    assert many.exit_code == 0, many.output
    table = pd.read_csv(tmp_path / "pred.csv")
    assert list(table.columns) == ["group", "params", "tokens", "predicted", "ci_low", "ci_high", "flags"]
    np.testing.assert_allclose(table["predicted"], npl.chinchilla(runs["params"], runs["tokens"], **res.params()),
                               rtol=1e-12)
    per_draw = npl.chinchilla(runs["params"].to_numpy()[None], runs["tokens"].to_numpy()[None],
                              **{k: v[:, None] for k, v in draws.items()})
    np.testing.assert_allclose(table[["ci_low", "ci_high"]].T, np.percentile(per_draw, [2.5, 97.5], axis=0),
                               rtol=1e-12)


def test_a_flagged_group_predicts_nothing_silently(folder, tmp_path):
    saved = SavedFit.load(folder)
    flagged = SavedFit((replace(saved.results[0], flags=({"wide_interval": ("E",)},)),), saved.rows, saved.settings)
    flagged.save(tmp_path / "flagged")
    refused = run("predict", "--fit", tmp_path / "flagged", "--params", 1e9, "--tokens", 2e10, "--json")
    assert refused.exit_code == 3
    assert "warning: group 'all' is flagged (wide-interval (E))" in refused.stderr
    (row,) = json.loads(refused.stdout)
    assert row["predicted"] is None and row["flags"] == "wide_interval"
    marked = run("predict", "--fit", tmp_path / "flagged", "--params", 1e9, "--tokens", 2e10, "--json",
                 "--allow-flagged")
    plain = run("predict", "--fit", folder, "--params", 1e9, "--tokens", 2e10, "--json")
    assert marked.exit_code == 0 and "rest on a fit the data do not determine" in marked.stderr
    (row,) = json.loads(marked.stdout)
    assert row["flags"] == "wide_interval" and row["predicted"] == json.loads(plain.stdout)[0]["predicted"]


def test_atlas_predictions_read_the_mixture_with_the_groups_helpers(npl, tmp_path):
    """An ATLAS group's tau_<lang> name its helpers: predictions of its rows are the closed form's; N and D alone
    are refused."""
    frame = npl.atlas_mixture_frame().iloc[::7].reset_index(drop=True)
    truth = npl.ATLAS_TRUTH
    names = tuple(truth)
    res = FitResult(law="atlas", groups=("xx",), names=(names,), estimate=np.array([list(truth.values())]),
                    objective=np.zeros(1), status=("converged",), steps=np.zeros(1, int), grad_norm=np.zeros(1),
                    n_runs=np.array([len(frame)]), n_starts=1, delta=1e-3, flags=({},))
    saved = SavedFit((res,), frame, {"group_by": "language"})
    table = saved.predict(frame)
    np.testing.assert_allclose(table["predicted"], npl.atlas(frame, "xx", ["aa", "bb", "cc"], truth, "transfer"),
                               rtol=1e-12)
    saved.save(tmp_path / "atlas")
    res = run("predict", "--fit", tmp_path / "atlas", "--params", 1e9, "--tokens", 2e10)
    assert res.exit_code == 2 and "give --runs with language and tokens_<lang> columns" in res.output


def test_plot_draws_the_saved_fit(folder, tmp_path):
    res = run("plot", "loss", "--fit", folder, "--out", tmp_path / "loss.png")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    both = run("plot", "residuals", "epoch-chinchilla", "--law", "chinchilla", "--fit", folder,
               "--out", tmp_path / "r.png")
    assert both.exit_code == 2 and "drop RUNS, --law" in both.output and not (tmp_path / "r.png").exists()


@pytest.mark.parametrize("make, message", [
    (None, "fit.json: not found; expected a folder written by `atlas-jax fit` (format atlas-jax.fit version 1)"),
    ({"law": "chinchilla", "groups": {}}, "fit.json: no saved fit (no 'format' 'atlas-jax.fit': written by an older"),
    ({"format": {"name": "atlas-jax.fit", "version": 99}}, "fit.json: format version 99, which this atlas-jax cannot"),
    ("{not json", "fit.json: not JSON"),
])
def test_a_folder_that_is_not_a_saved_fit_is_one_error(tmp_path, make, message):
    bad = tmp_path / "bad"
    bad.mkdir()
    if make is not None:
        (bad / "fit.json").write_text(make if isinstance(make, str) else json.dumps(make))
    for args in (("predict", "--fit", bad, "--params", 1e9, "--tokens", 2e10),
                 ("plan", "--fit", bad, "--flops", 1e21),
                 ("plot", "loss", "--fit", bad, "--out", tmp_path / "x.png")):
        res = run(*args)
        assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
        assert res.output.startswith(f"error: {bad / 'fit.json'}") and message in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]


def test_a_fit_job_validates_once_and_warns_once(monkeypatch):
    """`atlas-jax fit`'s job (select_fit, then SavedFit.fit) validates the table once and gives each warning once,
    keeping it in the saved fit; the rows a --where drops are neither validated nor warned about."""
    from conftest import expect_warnings

    import atlas_jax.data.select as select

    calls = []
    monkeypatch.setattr(select, "validate_runs", lambda *a, **k: calls.append(1) or aj.validate_runs(*a, **k))
    frame = aj.load_chinchilla().frame
    frame = pd.concat([frame, frame.iloc[:1].assign(loss=np.nan)], ignore_index=True)  # a bad row ...
    frame = pd.concat([frame, frame.iloc[:2]], ignore_index=True)                         # ... and 2 replicates
    with expect_warnings("--where 'loss > 0' keeps 242 of 243 rows", "2 replicate set") as caught:
        saved = SavedFit.fit(aj.select_fit(frame, "chinchilla", where="loss > 0"))
    assert len(caught) == 2 and calls == [1]
    assert [w for w in saved.warnings if "replicate" in w] == [str(caught[1].message)]
    assert saved.rows.shape[0] == 242 and saved.settings["where"] == "loss > 0"
