"""The planner: compute-optimal N and D against Chinchilla's closed form, budget round trips, verdicts, errors."""

import json

import pytest
from conftest import expect_warnings
from typer.testing import CliRunner

from atlas_jax.analysis.planner import plan
from atlas_jax.cli import app
from atlas_jax.data.synthetic import campaign, crossover_truth


@pytest.fixture(scope="module")
def english():
    """Noiseless monolingual English runs and loss curves (no repetition: U = 2.8T) and the truth."""
    frame, truth = campaign(noise=0.0, curve_noise=0.0, phi=0.0, psi=0.0)
    rows = frame[(frame["language"] == "en") & frame["group"].isin(["monolingual", "scratch", "finetune"])]
    return rows.reset_index(drop=True), truth["languages"]["en"]


def chinchilla_optimum(p, flops):
    """N_opt = G (C/6)^(beta/(alpha+beta)), G = (alpha A / (beta B))^(1/(alpha+beta)) (Hoffmann et al. 2022)."""
    a, b = p["alpha"], p["beta"]
    g = (a * p["A"] / (b * p["B"])) ** (1 / (a + b))
    n = g * (flops / 6) ** (b / (a + b))
    return n, flops / (6 * n)


#: the English runs repeat no data, so lambda (repetition) is not identified: reported by the plan, not refused
LAMBDA_FLAGS = r"group 'all': not a trustworthy fit: at-bound \(lambda\); collapsed \(lambda\)"


@pytest.fixture(scope="module")
def by_flops(english):
    with expect_warnings(LAMBDA_FLAGS):
        return plan(english[0], "en", flops=1e21, bootstrap=0)


def test_flops_budget_matches_the_closed_form_optimum(english, by_flops):
    frame, p = english
    n, d = chinchilla_optimum(p, 1e21)
    assert by_flops.params[0] == pytest.approx(n, rel=0.03)  # the size grid has 80 points per decade
    assert by_flops.tokens[0] == pytest.approx(d, rel=0.03)
    loss = p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]
    assert by_flops.loss[0] == pytest.approx(loss, rel=1e-4)
    assert by_flops.law == "atlas_monolingual"  # en's runs mix in no other language
    assert by_flops.flags == ("no_interval",) and "(no interval)" in str(by_flops) and "nan" not in str(by_flops)


def test_token_and_parameter_budgets_invert_the_frontier(english, by_flops):
    frame, _ = english
    with expect_warnings(LAMBDA_FLAGS):
        by_tokens = plan(frame, "en", tokens=by_flops.tokens[0], bootstrap=0)
        by_params = plan(frame, "en", params=by_flops.params[0], bootstrap=0)
    assert by_tokens.params[0] == pytest.approx(by_flops.params[0], rel=0.03)
    assert by_params.tokens[0] == pytest.approx(by_flops.tokens[0], rel=0.03)


def test_verdict_follows_the_crossover(english):
    """Curves at 5 sizes: D* is read at the planned N from the fitted C* = k N^gamma. A compute-optimal
    2B model (~tens of tokens per parameter) sits below its crossover (finetune); at 1e12 parameters
    D_opt grows as N while D* grows as N^0.65, so pretraining wins."""
    frame, _ = english
    with expect_warnings(LAMBDA_FLAGS):
        small = plan(frame, "en", params=2e9, from_checkpoint=True, bootstrap=10)  # noiseless: few draws suffice
        large = plan(frame, "en", params=1e12, from_checkpoint=True, bootstrap=10)
    for p in (small, large):
        cross = crossover_truth("en", p.params[0])
        assert p.crossover[0] == pytest.approx(cross, rel=0.02)
        assert p.crossover[1] <= cross * (1 + 1e-9) and cross <= p.crossover[2] * (1 + 1e-9)  # noiseless: width ~0
        assert any("C* = " in note and "5 model sizes" in note for note in p.notes)
    assert small.target_tokens[0] < small.crossover[1] and small.verdict.startswith("finetune")
    assert large.target_tokens[0] > large.crossover[2] and large.verdict.startswith("pretrain")
    assert "crossover_extrapolated" not in small.flags
    assert "crossover_extrapolated" in large.flags  # 1e12 parameters, curves at 0.55B-8.5B
    no_curves = frame[frame["regime"] != "finetune"]
    with expect_warnings(LAMBDA_FLAGS):
        assert plan(frame, "en", params=2e9, bootstrap=0).verdict.startswith("pretrain from scratch (no checkpoint")
        assert plan(no_curves, "en", params=2e9, from_checkpoint=True, bootstrap=0).verdict == \
            "cannot tell (no finetune curves for en in the runs)"


@pytest.mark.parametrize("kwargs, message", [
    (dict(target="xx", flops=1e21), "unknown target language 'xx'"),
    (dict(target="en", flops=1e21, tokens=1e11), "exactly one budget"),
    (dict(target="en", flops=-1.0), "positive"),
    (dict(target="en", flops=1e21, languages=["qq"]), "no tokens_<lang> column"),
])
def test_errors(english, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan(english[0], bootstrap=0, **kwargs)


def test_cli_plan_json(english, tmp_path):
    path = tmp_path / "en.csv"
    english[0].to_csv(path, index=False)
    res = CliRunner().invoke(app, ["plan", "--runs", str(path), "--target", "en", "--flops", "1e21", "--json",
                                   "--bootstrap", "0"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    n, _ = chinchilla_optimum(english[1], 1e21)
    assert out["params"][0] == pytest.approx(n, rel=0.03) and out["target"] == "en"
    bad = CliRunner().invoke(app, ["plan", "--runs", str(path), "--target", "xx", "--flops", "1e21"])
    assert bad.exit_code == 2 and "unknown target" in bad.output


def test_monolingual_table_plans_from_the_fitted_law():
    """No language column: N*, D* of the fitted Chinchilla law (closed form at the estimate), with intervals."""
    import atlas_jax as aj

    runs = aj.load_chinchilla().frame
    p = plan(runs, flops=1e23, bootstrap=20)
    est = aj.fit("chinchilla", runs).params()
    n, d = chinchilla_optimum(est, 1e23)
    assert p.params[0] == pytest.approx(n, rel=0.03) and p.tokens[0] == pytest.approx(d, rel=0.03)
    assert p.params[1] <= p.params[0] <= p.params[2] and p.flags == () and p.law == "chinchilla"
    assert p.target is None and p.verdict.startswith("pretrain") and "nan" not in str(p).lower()


def test_plan_refuses_a_flagged_fit(english, tmp_path):
    """One model size: N is not identified, so the planner refuses (exit 2) instead of recommending the search
    bound."""
    frame, _ = english
    scratch = frame[frame["group"] == "scratch"]
    one = scratch[scratch["params"] == scratch["params"].iloc[0]]  # one loss curve: 20 checkpoints of one size
    one = one.drop(columns=[c for c in one.columns if c.startswith(("tokens_", "unique_")) or c == "language"])
    assert one["params"].nunique() == 1 and len(one) >= 5
    with pytest.raises(ValueError, match=r"cannot plan: the chinchilla fit is flagged \(.*ill-conditioned"), \
            expect_warnings("every run has the same params", "not a trustworthy fit"):
        plan(one, flops=1e21, bootstrap=0)
    path = tmp_path / "one.csv"
    one.to_csv(path, index=False)
    res = CliRunner().invoke(app, ["plan", "--runs", str(path), "--flops", "1e21", "--bootstrap", "0"])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and res.output.startswith("error: cannot plan")


@pytest.fixture(scope="module")
def zh_plan():
    import atlas_jax as aj

    table, truth = aj.load_campaign()
    with expect_warnings(r"group 'all': not a trustworthy fit: ill-conditioned .*lambda", "group 'zh at N = "):
        return plan(table, "zh", flops=1e21, from_checkpoint=True, bootstrap=20), truth


def test_campaign_plan_ranks_only_identified_helpers(zh_plan):
    p, truth = zh_plan
    assert p.law == "atlas" and len(p.helpers) == 3
    for row in p.helpers.itertuples():
        identified = (row.ci_low > 0 or row.ci_high < 0) and row.ci_high - row.ci_low <= 1
        assert row.status == ("ranked" if identified else "not identified")
    ranked = p.helpers[p.helpers["status"] == "ranked"]
    assert list(ranked["tau"]) == sorted(ranked["tau"], reverse=True)
    text, data = str(p), json.dumps(p.to_dict())
    assert "nan" not in text.lower() and "NaN" not in data
