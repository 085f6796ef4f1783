"""The benchmark suite's accounting and outputs (``atlas-jax bench``), not its timings."""

import json

import numpy as np
import pytest

import atlas_jax as aj
from atlas_jax.bench import run_suites
from atlas_jax.bench.report import markdown, plot_throughput
from atlas_jax.bench.suites import flops_per_evaluation, measured_peak
from atlas_jax.engine.solver import Status


def test_run_evaluations_count_every_run_at_every_step():
    """10 far starts, no screening (keep=10), 3 steps each: every fit evaluates its start and 3 trials at all
    240 runs, 10 x 4 x 240 run-evaluations; 5 resamples refitted for 3 steps add 5 x 4 x 240."""
    runs = aj.load_chinchilla()
    starts = aj.get_law("chinchilla").start_grid()[::450]
    with pytest.warns(UserWarning, match="not a trustworthy fit: not-converged"):
        res = aj.fit("chinchilla", runs, starts=starts, keep=10, max_steps=3, bootstrap=5)
    assert res.status == ("max_steps",) and np.all(res.sample_status == Status.MAX_STEPS)
    assert res.timings["fit_evaluations"] == 10 * 4 * 240
    assert res.timings["bootstrap_evaluations"] == 5 * 4 * 240


def test_flop_count_and_peak_are_plausible():
    """XLA counts ~200-260 flops and 4 transcendentals (exp of the two power terms, log of the sum, and one
    more) per Chinchilla run-evaluation; the measured FMA peak is positive and below 1e15 flops/s."""
    cost = flops_per_evaluation("chinchilla", 240)
    assert 150 < cost["flops"] < 400 and 2 <= cost["transcendentals"] <= 8
    peak = measured_peak(repeats=1)
    assert 1e8 < peak["fma_flops_per_s"] < 1e15 and 1e6 < peak["exp_per_s"] < 1e14


def test_targets_suite_writes_json_table_atomically(tmp_path):
    rec = run_suites(["targets"], tmp_path / "out", quick=True)
    t = rec["suites"]["targets"]
    assert t["fits"] == 2 * 4500 and t["converged_share"] == 1.0
    assert t["run_evaluations"] > t["fits"] * 11 * 240 * 0.9  # 10 screening steps + the start, most fits
    saved = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert saved["suites"]["targets"]["fits"] == 9000 and saved["dtype"] == "float64"
    table = (tmp_path / "out" / "BENCHMARKS.md").read_text()
    assert "multi-start bootstrap, 2 resamples x 4,500 starts" in table and saved["date"] in table
    with pytest.raises(ValueError, match="unknown suite"):
        run_suites(["nope"], tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_markdown_and_plot(tmp_path):
    row = lambda b, a, r: {"benchmark": b, "atlas_s": a, "reference_s": r, "ratio": r / a if r else None, "note": "n"}
    batch = [{"fits": f, "runs": 240, "fits_per_s": 10.0 * f, "run_evaluations_per_s": 2400.0 * f} for f in (1, 10)]
    record = {"date": "2026-11-26", "device": "cpu:0", "machine": "test", "jax": "0", "dtype": "float64",
              "suites": {"epoch": {"rows": [row("grid", 0.5, 50.0, ), row("cold", 2.0, None)]},
                         "throughput": {"batch": batch, "runs_per_fit": batch, "floor_run_evaluations_per_s": 1e6,
                                        "rows": []}}}
    table = markdown(record)
    assert "| epoch | grid | 50 s | 0.5 s | 100.0x | n |" in table and "| epoch | cold | - | 2 s | - | n |" in table
    plot_throughput(record["suites"]["throughput"], tmp_path / "t.png", "title")
    assert (tmp_path / "t.png").stat().st_size > 10_000


def test_cli_suite_rows_targets_and_exit_codes(tmp_path):
    """The cli suite on its cheapest processes (one repeat; the scipy grid on 5 of its 4,500 starts): each
    process timed with its exit code, targets as ratios with a verdict, unmeasured targets listed as such; the
    scipy recipes' processes import no JAX and find Epoch's optimum region and the 5-run table's truth."""
    only = ("import_pandas", "help", "user_error", "scipy_curve_fit", "scipy_grid")
    rec = run_suites(["cli"], tmp_path / "out", quick=True, options={"cli": {"only": only, "grid_every": 900}},
                     verbose=False)["suites"]["cli"]
    procs = rec["processes"]
    assert set(procs) == set(only) and all(len(p["seconds"]) == 1 and p["exit_ok"] for p in procs.values())
    assert procs["user_error"]["exits"] == [2] and procs["help"]["exits"] == [0]
    curve = procs["scipy_curve_fit"]["result"]
    assert not curve["jax_imported"] and curve["n_starts"] == 128
    assert np.allclose(curve["theta"][3:], [0.34, 0.28], atol=1e-6)
    assert not procs["scipy_grid"]["result"]["jax_imported"] and procs["scipy_grid"]["result"]["n_starts"] == 5
    targets = {t["process"]: t for t in rec["targets"]}
    for key in ("help", "user_error"):
        t = targets[key]
        assert t["reference"] == "import_pandas" and t["bound"] == 1.5 and isinstance(t["met"], bool)
        assert t["ratio"] == pytest.approx(procs[key]["median_s"] / procs["import_pandas"]["median_s"])
    assert targets["epoch_first"]["note"] == "not measured" and targets["epoch_first"]["met"] is None
    table = (tmp_path / "out" / "BENCHMARKS.md").read_text()
    assert "target: `atlas-jax --help` vs bare `import pandas` process" in table and "x the time" in table
    assert "| cli | target: Epoch fit, first call (empty cache) vs scipy grid-fit process | - | - | - | not measured |" \
        in table and "machine load" in table


def test_five_run_table_is_the_closed_form(tmp_path):
    from atlas_jax.bench.suites import HOFFMANN_ROUNDED as h, five_run_table

    frame = aj.load_runs(five_run_table(tmp_path / "five.csv")).frame
    n, d = frame["params"].to_numpy(), frame["tokens"].to_numpy()
    assert len(frame) == 5 and len(set(n)) == 5 and len(set(d)) == 5 and len(set(d / n)) == 5
    closed = h["E"] + h["A"] / n ** h["alpha"] + h["B"] / d ** h["beta"]
    assert np.allclose(frame["loss"].to_numpy(), closed, rtol=1e-15)


def test_reference_nuts_chain_blocks_keep_their_order():
    """The reference NUTS's chain method (NumPyro's MCMC): 4 chains on 2 devices, 2 a block, give what one
    vectorised call gives, in order."""
    import jax
    import jax.numpy as jnp

    from atlas_jax.bench.suites import _chain_method

    if jax.local_device_count() < 2:
        pytest.skip("needs 2 local devices (one per CPU core, atlas_jax.devices)")
    one_chain = lambda args: (jax.random.normal(args[0], (3,)) + jnp.sin(args[1]) @ args[1], args[1][::-1])
    keys, x = jax.random.split(jax.random.PRNGKey(0), 4), jnp.arange(20.0).reshape(4, 5)
    method, label = _chain_method(4, 2)
    assert label == "2 devices x 2 vectorized" and _chain_method(4, 1)[1] == "vectorized"
    for got, want in zip(method(one_chain)((keys, x)), jax.vmap(one_chain)((keys, x))):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-12)
