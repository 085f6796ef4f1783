"""The suites of ``atlas-jax bench``. Each returns a JSON-able record whose ``rows`` feed the results table.

- :func:`epoch`: Epoch AI's Chinchilla recipe, the 4,500-start grid fit and the 4,000-resample bootstrap,
  against the scipy recipe (:mod:`atlas_jax.bench.reference`) in the same process (Besiroglu et al. 2024).
- :func:`throughput`: fits/s and run-evaluations/s against batch size and against runs per fit, beside the
  arithmetic floor (XLA's flop count per evaluation over the machine's measured peak).
- :func:`nuts`: effective samples per second of :func:`atlas_jax.posterior` against NumPyro's NUTS with its
  defaults on the same model, and the hierarchical ATLAS posterior of the campaign.
- :func:`campaign`: every law x the campaign's 7 target languages x B resamples against a scipy loop.
- :func:`targets`: the accelerator target, B resamples x 4,500 starts (each resample refitted by the full
  multi-start).
- :func:`shared`: 200 languages x 3-4 runs with alpha, beta shared (the block-arrow joint fit) against scipy's
  L-BFGS-B with an analytic gradient on the same Huber objective.
- :func:`cli`: whole processes, side by side: ``atlas-jax fit`` (first call on an empty compilation cache,
  second call on the warm one), ``plan``, ``--help`` and a user error, against bare ``python -c "import ..."``
  processes and the scipy recipes' processes, as ratios against targets.

A run-evaluation is the law's log-loss and its Jacobian at one run for one fit (one solver step evaluates
every run of its fit once). Cold times include compilation; warm times are the best of later calls.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .. import datasets
from ..bayes.model import flat_data, law_model, prior_table
from ..bayes.sampler import posterior, rank_diagnostics
from ..engine.batch import fit
from ..engine.evaluate import predict
from ..engine.robust import huber
from ..engine.solver import Config, Status, _evaluate
from ..laws import get_law
from . import reference as ref

__all__ = ["SUITES", "epoch", "throughput", "nuts", "campaign", "targets", "shared", "cli", "measured_peak",
           "flops_per_evaluation", "five_run_table", "CLI_TARGETS"]

CAMPAIGN_LAWS = ("chinchilla", "msl", "atlas_monolingual", "atlas_other", "atlas")
CAMPAIGN_TARGETS = ("en", "fr", "ru", "zh", "bn", "sw", "yo")


def _timed(fn: Callable, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def _row(benchmark: str, atlas_s: float, reference_s: float | None = None, note: str = "", **extra) -> dict:
    return {"benchmark": benchmark, "atlas_s": atlas_s, "reference_s": reference_s,
            "ratio": None if reference_s is None or atlas_s is None else reference_s / atlas_s, "note": note, **extra}


def epoch(resamples: int = 4000, repeats: int = 3, reference: bool | str = True, dtype: str = "float64") -> dict:
    """Grid fit (4,500 starts x 240 points) and bootstrap (Epoch's seed-42 resamples) against scipy:
    L-BFGS-B with finite differences from every start (70 s on a 2-core EPYC), and sequential BFGS per
    resample (25 s). ``reference="bootstrap"`` times the second only."""
    runs = datasets.load_chinchilla()
    N, D, L = (runs.frame[c].to_numpy(float) for c in ("params", "tokens", "loss"))
    ours, cold = _timed(fit, "chinchilla", runs, dtype=dtype)
    warm = min(_timed(fit, "chinchilla", runs, dtype=dtype)[1] for _ in range(repeats))
    rec = {"grid": {"n_starts": ours.n_starts, "n_points": len(N), "atlas_cold_s": cold, "atlas_warm_s": warm,
                    "atlas_objective": float(ours.objective[0]), "atlas_params": ours.params()}}
    grid_ref = ref.epoch_grid_fit(N, D, L) if reference is True else None
    if grid_ref:
        rec["grid"].update(scipy_s=grid_ref["seconds"], scipy_objective=float(grid_ref["objective"]))
    idx = ref.bootstrap_indices(len(N), resamples, seed=42)
    boot_cold = _timed(fit, "chinchilla", runs, resample_indices=idx, dtype=dtype)[1]
    boots = [fit("chinchilla", runs, resample_indices=idx, dtype=dtype) for _ in range(repeats)]
    boot_warm = min(b.timings["bootstrap_s"] for b in boots)
    rec["bootstrap"] = {"n_resamples": resamples, "atlas_warm_s": boot_warm, "atlas_cold_call_s": boot_cold,
                        "atlas_alpha_ci": boots[0].interval("alpha")}
    if reference:
        theta, ref_s = _timed(ref.epoch_bootstrap, N, D, L, indices=idx)
        rec["bootstrap"].update(scipy_s=ref_s, scipy_alpha_ci=np.percentile(theta[:, 3], [2.5, 97.5]).tolist())
    g, b = rec["grid"], rec["bootstrap"]
    rec["rows"] = [
        _row(f"Epoch grid fit, {g['n_starts']:,} starts x {g['n_points']} runs (warm)", warm, g.get("scipy_s"),
             "scipy: L-BFGS-B, finite differences, every start"),
        _row("Epoch grid fit (cold: compilation included)", cold, g.get("scipy_s")),
        _row(f"bootstrap, {resamples:,} resamples (warm)", boot_warm, b.get("scipy_s"),
             "scipy: sequential BFGS per resample, analytic gradient"),
    ]
    return rec


def measured_peak(dtype: str = "float64", repeats: int = 3) -> dict:
    """The machine's measured arithmetic peak over all local devices: fused multiply-adds and exponentials per
    second, each element running 8 independent chains (32 FMAs or 8 exponentials long), so the kernel is
    bound by arithmetic throughput, neither by memory nor by the latency of one chain."""
    devices = jax.local_devices()
    n = (1 << 16 if devices[0].platform == "cpu" else 1 << 22) * len(devices)
    mesh = jax.make_mesh((len(devices),), ("d",), devices=devices)
    x = jax.device_put(jnp.linspace(0.1, 0.2, n, dtype=dtype), jax.NamedSharding(mesh, jax.P("d")))

    def chains(op, length):
        def run(x):
            xs = [x + 0.01 * i for i in range(8)]
            for _ in range(length):
                xs = [op(v) for v in xs]
            return sum(xs)
        return run

    out = {}
    for name, fn, ops in (("fma_flops_per_s", chains(lambda v: v * 0.999 + 0.001, 32), 2 * 8 * 32),
                          ("exp_per_s", chains(lambda v: jnp.exp(-v), 8), 8 * 8)):
        f = jax.jit(fn)
        f(x).block_until_ready()
        best = min(_timed(lambda f=f: f(x).block_until_ready())[1] for _ in range(repeats))
        out[name] = ops * n / best
    return out


def flops_per_evaluation(law_name: str = "chinchilla", n: int = 240, dtype: str = "float64") -> dict:
    """XLA's cost analysis of one solver evaluation (law, Jacobian by forward mode, Huber reductions) over
    256 fits x ``n`` runs, per run-evaluation: flops and transcendentals."""
    law = get_law(law_name)
    frame = epoch_like_runs(n, seed=0)
    x = {k: jnp.asarray(v, dtype) for k, v in law.features(frame).items()}
    log_y = jnp.log(jnp.asarray(frame["loss"].to_numpy(), dtype))
    q = len(law.params)
    cfg = Config(jnp.full(q, -jnp.inf, dtype), jnp.full(q, jnp.inf, dtype))
    residual = lambda phi: jax.vmap(lambda xi: law.log_loss(phi, xi))(x) - log_y
    phi = jnp.tile(jnp.asarray(law.start_grid()[0], dtype), (256, 1))
    w = jnp.ones((256, n), dtype)
    compiled = jax.jit(jax.vmap(lambda p, wi: _evaluate(residual, wi, p, cfg))).lower(phi, w).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return {"flops": float(cost.get("flops", np.nan)) / (256 * n),
            "transcendentals": float(cost.get("transcendentals", np.nan)) / (256 * n)}


EPOCH_FIT = {"E": 1.8172, "A": 477.83, "B": 2143.4, "alpha": 0.34731, "beta": 0.36717}


def epoch_like_runs(n: int, seed: int = 0, noise: float = 0.01) -> pd.DataFrame:
    """``n`` runs of the Chinchilla law at Epoch's fit, log-uniform N in [7e7, 1.6e10] and tokens per parameter
    in [5, 100], with lognormal noise ``noise`` (throughput against runs per fit)."""
    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(np.log(7e7), np.log(1.6e10), n))
    frame = pd.DataFrame({"params": N, "tokens": N * np.exp(rng.uniform(np.log(5), np.log(100), n))})
    return frame.assign(loss=predict("chinchilla", frame, EPOCH_FIT) * np.exp(noise * rng.standard_normal(n)))


def _bootstrap_rate(runs, resamples: int, dtype: str, **kwargs) -> dict:
    """Warm bootstrap of ``resamples`` refits (second call): seconds, fits/s and run-evaluations/s."""
    fit("chinchilla", runs, bootstrap=resamples, dtype=dtype, **kwargs)
    res = fit("chinchilla", runs, bootstrap=resamples, dtype=dtype, **kwargs)
    s = res.timings["bootstrap_s"]
    evals = res.timings["bootstrap_evaluations"]
    return {"fits": resamples, "runs": int(res.n_runs[0]), "seconds": s, "fits_per_s": resamples / s,
            "run_evaluations": evals, "run_evaluations_per_s": evals / s}


def throughput(max_fits: int = 100_000, run_counts=(30, 100, 300, 1000, 3000), fits_per_count: int = 1000,
               dtype: str = "float64") -> dict:
    """Bootstrap refits of the Chinchilla law: against batch size (1 to ``max_fits`` resamples of Epoch's 240
    runs) and against runs per fit (``fits_per_count`` resamples of synthetic tables of ``run_counts`` runs),
    with the arithmetic floor: measured peak / flops per evaluation."""
    runs = datasets.load_chinchilla()
    sizes = [b for b in (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000) if b <= max_fits]
    batch = [_bootstrap_rate(runs, b, dtype) for b in sizes]
    by_runs = [_bootstrap_rate(epoch_like_runs(n, seed=n), fits_per_count, dtype) for n in run_counts]
    peak, cost = measured_peak(dtype), flops_per_evaluation("chinchilla", 240, dtype)
    seconds_per_eval = cost["flops"] / peak["fma_flops_per_s"] + cost["transcendentals"] / peak["exp_per_s"]
    floor = 1.0 / seconds_per_eval
    best = max(batch + by_runs, key=lambda r: r["run_evaluations_per_s"])
    rows = [_row(f"bootstrap refits, batch {r['fits']:,} x {r['runs']} runs", r["seconds"],
                 note=f"{r['fits_per_s']:.3g} fits/s, {r['run_evaluations_per_s']:.3g} run-evaluations/s")
            for r in batch + by_runs]
    rows.append(_row("arithmetic floor (measured peak / XLA's flops per run-evaluation)", float("nan"),
                     note=f"{cost['flops']:.0f} flops + {cost['transcendentals']:.0f} transcendentals per "
                          f"evaluation; peak {peak['fma_flops_per_s']:.3g} FMA-flops/s, {peak['exp_per_s']:.3g} exp/s: "
                          f"{floor:.3g} run-evaluations/s; best measured {best['run_evaluations_per_s']:.3g} "
                          f"({best['run_evaluations_per_s'] / floor:.1%} of the floor)"))
    return {"dtype": dtype, "batch": batch, "runs_per_fit": by_runs, "peak": peak, "cost_per_evaluation": cost,
            "floor_run_evaluations_per_s": floor, "rows": rows}


def _plain_nuts(law, frame, chains: int, draws: int, warmup: int, seed: int = 0) -> dict:
    """NumPyro's NUTS with its defaults (diagonal mass, uniform init, target 0.8) on the same model and
    priors as :func:`atlas_jax.posterior`; wall time includes compilation, as atlas-jax's sampling time does."""
    from numpyro.infer import MCMC, NUTS

    data, prior = flat_data(law, frame, None), prior_table(law)
    model = lambda log_y: law_model(law, {k: jnp.asarray(v) for k, v in data.features.items()},
                                    jnp.asarray(data.group), 1, prior["loc"].to_numpy(), prior["scale"].to_numpy(),
                                    log_y)
    method, _ = _chain_method(chains, jax.local_device_count())
    mcmc = MCMC(NUTS(model), num_warmup=warmup, num_samples=draws, num_chains=chains, chain_method=method,
                progress_bar=False)
    t = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(seed), jnp.asarray(data.log_y), extra_fields=("diverging",))
    samples = mcmc.get_samples(group_by_chain=True)
    seconds = time.perf_counter() - t
    x = np.concatenate([np.asarray(samples["theta"]).reshape(chains, draws, -1),
                        np.asarray(samples["sigma"]).reshape(chains, draws, -1)], axis=-1)
    rhat, ess = rank_diagnostics(x)
    return {"seconds": seconds, "ess_min": float(np.min(ess)), "r_hat_max": float(np.max(rhat)),
            "divergences": int(np.sum(mcmc.get_extra_fields()["diverging"]))}


def nuts(chains: int = 4, draws: int = 1000, reference: bool = True, hierarchical: bool = True) -> dict:
    """Bulk effective samples per second (smallest over parameters): the Chinchilla posterior on Epoch's data,
    atlas-jax against plain NumPyro NUTS; and the hierarchical ATLAS posterior of the campaign (issue 4)."""
    runs = datasets.load_chinchilla().frame
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = posterior("chinchilla", runs, chains=chains, draws=draws, warmup=draws, seed=0)
    d, s = post.diagnostics, post.timings["sampling_s"]
    rec = {"chinchilla": {"seconds": s, "total_s": sum(post.timings.values()), "ess_min": d["ess_min"],
                          "r_hat_max": d["r_hat_max"], "divergences": d["divergences"]}}
    rows = [_row(f"NUTS, Chinchilla on Epoch's 240 runs, {chains} x {draws} draws", s, note=
                 f"min bulk ESS {d['ess_min']:.0f} ({d['ess_min'] / s:.0f}/s), r-hat {d['r_hat_max']:.3f}, "
                 f"{d['divergences']} divergences")]
    if reference:
        plain = _plain_nuts(get_law("chinchilla"), runs, chains, draws, draws)
        rec["chinchilla_numpyro_defaults"] = plain
        ratio = (d["ess_min"] / s) / (plain["ess_min"] / plain["seconds"])
        rows[0].update(reference_s=plain["seconds"], ratio=ratio, note=rows[0]["note"] +
                       f"; NumPyro defaults: ESS {plain['ess_min']:.0f} ({plain['ess_min'] / plain['seconds']:.1f}/s), "
                       f"r-hat {plain['r_hat_max']:.3f}, {plain['divergences']} divergences; ratio of ESS/s")
    if hierarchical:
        campaign_table = campaign_runs()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hp, wall = _timed(posterior, "atlas", campaign_table, group_by="language", hierarchical=True, chains=chains,
                              draws=draws, warmup=draws, seed=0)
        hd = hp.diagnostics
        rec["hierarchical_atlas"] = {"wall_s": wall, "timings": hp.timings, "ess_min": hd["ess_min"],
                                     "r_hat_max": hd["r_hat_max"], "divergences": hd["divergences"],
                                     "languages": list(hp.groups)}
        rows.append(_row(f"NUTS, hierarchical ATLAS, {len(hp.groups)} languages, {len(campaign_table)} runs, "
                         f"{chains} x {draws} draws (all steps)", wall, note=
                         f"target 60 s on 2 CPU cores; min bulk ESS {hd['ess_min']:.0f} "
                         f"({hd['ess_min'] / hp.timings['sampling_s']:.0f}/s of sampling), r-hat {hd['r_hat_max']:.3f}, "
                         f"{hd['divergences']} divergences"))
    rec["rows"] = rows
    return rec


def campaign_runs() -> pd.DataFrame:
    """The bundled campaign's pretraining rows of its 7 target languages (1,070 runs)."""
    frame = datasets.load_campaign()[0].frame
    keep = (frame["regime"] == "pretrain") & frame["language"].isin(CAMPAIGN_TARGETS) & (frame["group"] != "scratch")
    return frame[keep].reset_index(drop=True)


def _scipy_seconds_per_fit(law, runs, result, n_fits: int, seed: int = 0) -> dict:
    """Mean wall time of one scipy L-BFGS-B fit (objective and gradient compiled by ``jax.jit``), from grid
    starts (all runs) and as bootstrap refits (from the estimate)."""
    import scipy.optimize

    rng = np.random.default_rng(seed)
    times = {"grid": [], "bootstrap": []}
    grid = law.start_grid()
    for g, lang in enumerate(result.groups):
        sub = runs[runs["language"] == lang].reset_index(drop=True)
        x = {k: jnp.asarray(v) for k, v in law.features(sub).items()}
        log_y = jnp.log(jnp.asarray(sub["loss"].to_numpy(float)))
        theta0 = np.array([p.to_internal(v) for p, v in zip(law.params, result.estimate[g])])

        @jax.jit
        def value_and_grad(theta, w, x=x, log_y=log_y):
            f = lambda th: jnp.sum(w * huber(jax.vmap(lambda xi: law.log_loss(th, xi))(x) - log_y, 1e-3))
            return jax.value_and_grad(f)(theta)

        value_and_grad(jnp.asarray(theta0), jnp.ones(len(sub)))  # compiled once per language, not timed
        bounds = [p.bounds for p in law.params]
        for kind in times:
            for _ in range(n_fits):
                if kind == "grid":
                    w, start = jnp.ones(len(sub)), grid[rng.integers(len(grid))]
                else:
                    w = jnp.asarray(np.bincount(rng.integers(0, len(sub), len(sub)), minlength=len(sub)), float)
                    start = theta0
                fun = lambda th, w=w, vg=value_and_grad: tuple(np.asarray(a, float) for a in vg(jnp.asarray(th), w))
                t = time.perf_counter()
                scipy.optimize.minimize(fun, start, jac=True, method="L-BFGS-B", bounds=bounds)
                times[kind].append(time.perf_counter() - t)
    return {k: float(np.mean(v)) for k, v in times.items()}


def campaign(resamples: int = 1000, scipy_fits: int = 5, reference: bool = True, dtype: str = "float64") -> dict:
    """Each law is one ``fit(law, runs, group_by="language", bootstrap=B)`` (warm: the second call). The
    reference is the loop one would write with scipy, L-BFGS-B per law, language, start and resample with
    a jit-compiled objective and gradient; its time per fit is measured on ``scipy_fits`` grid starts and
    resamples per law and language and multiplied by the number of fits."""
    runs = campaign_runs()
    rec, rows = {"rows_in_table": len(runs), "resamples": resamples, "laws": {}}, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in CAMPAIGN_LAWS:
            law = get_law(name)
            cold = _timed(fit, law, runs, group_by="language", bootstrap=resamples, dtype=dtype)[1]
            result = fit(law, runs, group_by="language", bootstrap=resamples, dtype=dtype)
            G = len(result.groups)
            row = {"atlas_cold_s": cold, "n_starts": result.n_starts, "n_groups": G,
                   "atlas_grid_s": result.timings["fit_s"], "atlas_bootstrap_s": result.timings["bootstrap_s"]}
            if reference:
                per_fit = _scipy_seconds_per_fit(law, runs, result, scipy_fits)
                row.update(scipy_grid_s=per_fit["grid"] * result.n_starts * G,
                           scipy_bootstrap_s=per_fit["bootstrap"] * resamples * G)
            rec["laws"][name] = row
            rows += [_row(f"campaign {name}: grid, {G} languages x {result.n_starts:,} starts", row["atlas_grid_s"],
                          row.get("scipy_grid_s"), f"cold call {cold:.1f} s"),
                     _row(f"campaign {name}: bootstrap, {G} x {resamples:,} refits", row["atlas_bootstrap_s"],
                          row.get("scipy_bootstrap_s"), f"scipy time per fit from {scipy_fits} fits per language"
                          if reference else "")]
    total = sum(r["atlas_grid_s"] + r["atlas_bootstrap_s"] for r in rec["laws"].values())
    ref_total = sum(r.get("scipy_grid_s", np.nan) + r.get("scipy_bootstrap_s", np.nan) for r in rec["laws"].values())
    rows.append(_row(f"campaign, all {len(CAMPAIGN_LAWS)} laws", total, ref_total if reference else None))
    rec["rows"] = rows
    return rec


def targets(resamples: int = 4000, dtype: str = "float64", repeats: int = 1) -> dict:
    """``resamples`` x 4,500 starts of the Chinchilla fit on Epoch's data: every resample refitted by the full
    screen-then-polish multi-start (``fit(..., bootstrap_multistart=True)``). Target on one H100/H200: 4,000 x
    4,500 (18 million fits) in at most 60 s, at least 1e9 run-evaluations/s."""
    runs = datasets.load_chinchilla()
    cold = fit("chinchilla", runs, bootstrap=resamples, bootstrap_multistart=True, dtype=dtype)
    warm = [fit("chinchilla", runs, bootstrap=resamples, bootstrap_multistart=True, dtype=dtype)
            for _ in range(repeats)]
    res = min(warm, key=lambda r: r.timings["bootstrap_s"])
    s, evals = res.timings["bootstrap_s"], res.timings["bootstrap_evaluations"]
    fits = resamples * res.n_starts
    ok = Status.usable(res.sample_status).mean()
    rec = {"dtype": dtype, "resamples": resamples, "starts": res.n_starts, "fits": fits, "seconds": s,
           "cold_s": cold.timings["bootstrap_s"], "run_evaluations": evals, "run_evaluations_per_s": evals / s,
           "fits_per_s": fits / s, "converged_share": float(ok),
           "intervals": {p: res.interval(p) for p in res.names[0]}, "estimate": res.params(),
           "target": {"fits": 18_000_000, "seconds": 60.0, "run_evaluations_per_s": 1e9}}
    rec["rows"] = [_row(f"multi-start bootstrap, {resamples:,} resamples x {res.n_starts:,} starts "
                        f"({fits / 1e6:.3g} million fits, {dtype})", s, note=
                        f"{evals / s:.3g} run-evaluations/s, {fits / s:.3g} fits/s; cold {rec['cold_s']:.1f} s; "
                        f"target (H100/H200): 18 million fits in 60 s, 1e9 run-evaluations/s")]
    return rec


def many_languages(n_languages: int, runs: int, seed: int = 0, noise: float = 0.003) -> pd.DataFrame:
    """``runs`` runs (sizes 5e7-1e10, 5-80 tokens per parameter) of each of ``n_languages`` languages with their
    own E, A, B and shared alpha = 0.34, beta = 0.37 (Chinchilla, in plain numpy), log-normal noise."""
    rng = np.random.default_rng(seed)
    sizes = np.array([5e7, 3e8, 2e9, 1e10])[:runs]
    frames = []
    for g in range(n_languages):
        e, a, b = 1.5 + 0.5 * rng.random(), 300 + 300 * rng.random(), 1000 + 2000 * rng.random()
        d = sizes * rng.permutation([5.0, 10.0, 40.0, 80.0])[:runs]
        loss = (e + a / sizes**0.34 + b / d**0.37) * np.exp(rng.normal(0.0, noise, runs))
        frames.append(pd.DataFrame({"language": f"l{g}", "params": sizes, "tokens": d, "loss": loss}))
    return pd.concat(frames, ignore_index=True)


def _scipy_shared(frame: pd.DataFrame, start: np.ndarray, delta: float = 1e-3):
    """The recipe one would write with scipy: L-BFGS-B on the joint Huber objective of log residuals with its
    analytic gradient (numpy); ``start`` = [alpha, beta, (e, a, b) per language]."""
    from scipy.optimize import minimize

    idx = pd.factorize(frame["language"])[0]
    log_n, log_d, log_y = (np.log(frame[c].to_numpy(float)) for c in ("params", "tokens", "loss"))
    G = idx.max() + 1

    def objective(x):
        own = x[2:].reshape(G, 3)[idx]
        terms = np.stack([own[:, 0], own[:, 1] - x[0] * log_n, own[:, 2] - x[1] * log_d])
        top = terms.max(0)
        p = np.exp(terms - top)
        total = p.sum(0)
        r = top + np.log(total) - log_y
        p /= total
        a = np.abs(r)
        psi = np.clip(r, -delta, delta)
        grad_own = np.zeros((G, 3))
        np.add.at(grad_own, idx, (psi * p).T)
        grad = np.concatenate([[-np.sum(psi * p[1] * log_n), -np.sum(psi * p[2] * log_d)], grad_own.ravel()])
        return np.sum(np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))), grad

    return minimize(objective, start, jac=True, method="L-BFGS-B",
                    options=dict(maxiter=20000, maxfun=40000, ftol=1e-15, gtol=1e-10))


def shared(languages: int = 200, runs: tuple[int, ...] = (3, 4), repeats: int = 3, reference: bool = True,
           dtype: str = "float64") -> dict:
    """Joint fits of ``languages`` languages x ``runs`` runs with alpha and beta shared (``fit(..., share=)``), from
    one common start, against scipy's L-BFGS-B from the same start (same objective)."""
    law = get_law("chinchilla")
    start = np.array([[0.5, 6.0, 7.0, 0.3, 0.3]])  # internal e, a, b, alpha, beta
    rows, rec = [], {"languages": languages, "runs": list(runs)}
    with warnings.catch_warnings():  # 3 runs per language: every group is flagged no_dof, as it should be
        warnings.simplefilter("ignore", UserWarning)
        for r in runs:
            frame = many_languages(languages, r)
            cold = _timed(fit, law, frame, group_by="language", share=["alpha", "beta"], starts=start)[1]
            res, warm = min((_timed(fit, law, frame, group_by="language", share=["alpha", "beta"], starts=start)
                             for _ in range(repeats)), key=lambda t: t[1])
            entry = {"cold_s": cold, "warm_s": warm, "objective": float(res.objective[0]),
                     "alpha": float(res.estimate[0, 3]), "beta": float(res.estimate[0, 4]),
                     "usable_groups": int(sum(res.usable))}
            ref_s = None
            if reference:
                x0 = np.concatenate([[0.3, 0.3], np.tile([0.5, 6.0, 7.0], languages)])
                sp, ref_s = _timed(_scipy_shared, frame, x0)
                entry.update(scipy_s=ref_s, scipy_objective=float(sp.fun), scipy_iterations=int(sp.nit))
            rec[f"runs_{r}"] = entry
            rows.append(_row(f"shared alpha, beta: {languages} languages x {r} runs ({2 + 3 * languages} parameters)",
                             warm, ref_s, note=f"cold {cold:.1f} s; objective {entry['objective']:.6g}"
                             + (f" (scipy {entry['scipy_objective']:.6g})" if reference else "")
                             + f"; {entry['usable_groups']} of {languages} groups unflagged"))
    rec["rows"] = rows
    return rec


HOFFMANN_ROUNDED = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
#: The 5-run table of the ``cli`` suite: model sizes and tokens per parameter (both N and D vary).
FIVE_RUNS = ((7e7, 20.0), (2e8, 5.0), (6e8, 40.0), (2e9, 10.0), (6e9, 80.0))


def five_run_table(path: str | Path) -> Path:
    """Write ``params,tokens,loss`` for :data:`FIVE_RUNS`, losses from the plain numpy closed form
    ``E + A / N**alpha + B / D**beta`` at Hoffmann et al.'s rounded fit (no noise); return the path."""
    p = HOFFMANN_ROUNDED
    n = np.array([r[0] for r in FIVE_RUNS])
    d = n * np.array([r[1] for r in FIVE_RUNS])
    loss = p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]
    path = Path(path)
    pd.DataFrame({"params": n, "tokens": d, "loss": loss}).to_csv(path, index=False, float_format="%.17g")
    return path


#: The ``cli`` suite's targets on a 2-core CPU: (process, reference process, kind, bound, what). ``at_most``:
#: the process takes at most ``bound`` times the reference's time; ``faster``: the reference takes at least
#: ``bound`` times the process's.
CLI_TARGETS = (
    ("epoch_second", "import_jax_pandas", "at_most", 3.0, "Epoch fit, second call (warm cache)"),
    ("five_second", "scipy_curve_fit", "at_most", 2.0, "5-run fit, second call (warm cache)"),
    ("help", "import_pandas", "at_most", 1.5, "`atlas-jax --help`"),
    ("user_error", "import_pandas", "at_most", 1.5, "user error (`--law chinchila`)"),
    ("epoch_first", "scipy_grid", "faster", 40.0, "Epoch fit, first call (empty cache)"),
)
#: Comparisons printed without a target.
CLI_INFO = (
    ("epoch_second", "scipy_grid", "faster", "Epoch fit, second call (warm cache)"),
    ("five_first", "scipy_curve_fit", "at_most", "5-run fit, first call (empty cache)"),
    ("plan_second", "import_jax_pandas", "at_most", "plan, second call (warm cache)"),
)
#: Exit codes the processes should end with (the 5-run fit is flagged: 5 runs for 5 parameters).
CLI_EXITS = {"five_first": 3, "five_second": 3, "user_error": 2}

_LOAD_REFERENCE = ("import importlib.util as u, json, sys\n"
                   "import numpy as np\n"
                   "spec = u.spec_from_file_location('reference', sys.argv[1])\n"
                   "ref = u.module_from_spec(spec)\n"
                   "spec.loader.exec_module(ref)\n")
_SCIPY_GRID = _LOAD_REFERENCE + (
    "N, D, L = ref.load_chinchilla_240()\n"
    "r = ref.epoch_grid_fit(N, D, L, starts=ref.hoffmann_grid()[::int(sys.argv[2])])\n"
    "print(json.dumps({'objective': r['objective'], 'n_starts': r['n_starts'], 'n_success': r['n_success'],\n"
    "                  'jax_imported': 'jax' in sys.modules}))\n")
_SCIPY_CURVE_FIT = _LOAD_REFERENCE + (
    "N, D, L = np.loadtxt(sys.argv[2], delimiter=',', skiprows=1, unpack=True)\n"
    "r = ref.curve_fit_multistart(N, D, L, n_starts=128)\n"
    "print(json.dumps({'objective': r['objective'], 'n_starts': r['n_starts'], 'n_success': r['n_success'],\n"
    "                  'theta': r['theta'].tolist(), 'jax_imported': 'jax' in sys.modules}))\n")


def _atlas_jax_command() -> list[str]:
    """The installed ``atlas-jax`` entry point beside this interpreter (else on PATH, else ``python -m``)."""
    beside = Path(sys.executable).with_name("atlas-jax")
    found = str(beside) if beside.exists() else shutil.which("atlas-jax")
    return [found] if found else [sys.executable, "-m", "atlas_jax.cli"]


#: Environment of the scipy recipes' processes: one BLAS thread. scipy 1.17's L-BFGS-B calls BLAS on its
#: 5 x 5 problems, and OpenBLAS's thread pool made one Epoch start 4.5x slower on the 2-core machine while a
#: test run loaded it (1.9 s against 0.42 s for 3 starts); one thread is never slower here, so the reference
#: is the faster (conservative) one.
REFERENCE_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _time_process(argv: list[str], cache: Path | None, timeout: float, env: dict | None = None) -> dict:
    """Wall time of one whole process (start to exit), its exit code and the ends of its output; ``cache`` is
    its ``ATLAS_JAX_CACHE_DIR`` (None: off), ``env`` added to this process's environment."""
    env = {**os.environ, **(env or {})}
    env["ATLAS_JAX_CACHE_DIR"] = str(cache) if cache is not None else "off"
    t = time.perf_counter()
    try:
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
        code, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        code, out, err = "timeout", "", ""
    return {"seconds": time.perf_counter() - t, "exit": code, "stdout_tail": out[-400:], "stderr_tail": err[-400:]}


def _compare(kind: str, ours: float, theirs: float, bound: float | None = None) -> tuple[float, str, bool | None]:
    """(ratio, its text, met): ``at_most``: ours / theirs ("N x the time"); ``faster``: theirs / ours."""
    if kind == "at_most":
        ratio = ours / theirs
        return ratio, f"{ratio:.2f}x the time", None if bound is None else ratio <= bound
    ratio = theirs / ours
    return ratio, f"{ratio:.1f}x faster", None if bound is None else ratio >= bound


def cli(repeats: int = 3, reference: bool = True, grid_every: int = 1, only=None, timeout: float = 1800.0,
        verbose: bool = True) -> dict:
    """Whole processes side by side, each run ``repeats`` times in turn (round robin, so that a change of load
    on the machine touches every process alike); the median of each is compared with its reference process.

    atlas-jax processes: ``fit epoch-chinchilla --law chinchilla`` and the same on a 5-run table
    (:func:`five_run_table`; flagged, exit 3), each as a first call on a fresh empty compilation cache
    (``ATLAS_JAX_CACHE_DIR``, a new one per repeat) and a second call on that cache; ``plan --runs
    epoch-chinchilla --flops 1e22`` on a cache warmed by one earlier plan (its time kept, one sample);
    ``--help``; a user error (a misspelt law, exit 2). Reference processes: ``python -c "import jax, pandas"``,
    ``python -c "import pandas"``, and (``reference``) the scipy recipes run from
    :mod:`atlas_jax.bench.reference`, loaded by file path so that they import neither JAX nor atlas_jax:
    Epoch's grid fit (every ``grid_every``-th of the 4,500 starts; 1: all, as the target assumes) and
    :func:`~atlas_jax.bench.reference.curve_fit_multistart` (128 starts) on the 5-run table. ``only`` limits the
    run to some process keys. Every process's exit code is kept; an unexpected one fails its target. The scipy
    processes run with one BLAS thread (:data:`REFERENCE_ENV`), every other process with this one's
    environment."""
    aj = _atlas_jax_command()
    grid_starts = len(range(0, 4500, grid_every))
    keys = ["import_jax_pandas", "import_pandas", "help", "user_error", "epoch_first", "epoch_second",
            "five_first", "five_second", "plan_first", "plan_second"]
    if reference:
        keys += ["scipy_curve_fit", "scipy_grid"]
    if only is not None:
        unknown = set(only) - set(keys)
        if unknown:
            raise ValueError(f"cli: unknown process(es) {', '.join(sorted(unknown))}; "
                             f"expected some of {', '.join(keys)}")
        keys = [k for k in keys if k in only]
    load_before = os.getloadavg()
    times, five_csv = _cli_times(aj, keys, repeats, grid_every, timeout, verbose)
    load_after = os.getloadavg()
    processes, rows = _cli_processes(times, grid_every, grid_starts)
    targets_out, target_rows = _cli_targets(processes, grid_every, grid_starts)
    rows += target_rows
    rows.append(_row("machine load (1, 5, 15 min load average)", None, note=
                     f"before {', '.join(f'{x:.2f}' for x in load_before)}; after "
                     f"{', '.join(f'{x:.2f}' for x in load_after)}; {os.cpu_count()} CPUs"))
    return {"repeats": repeats, "grid_every": grid_every, "reference": reference, "command": aj,
            "reference_env": REFERENCE_ENV,
            "load_before": list(load_before), "load_after": list(load_after), "five_run_table": five_csv,
            "processes": processes, "targets": targets_out, "rows": rows}


def _cli_times(aj, keys, repeats, grid_every, timeout, verbose) -> tuple[dict[str, list[dict]], str]:
    """Run the processes of ``keys`` (:func:`cli`) round robin: each one's records, and the 5-run table."""
    py = sys.executable
    ref_path = str(Path(ref.__file__).resolve())
    times: dict[str, list[dict]] = {k: [] for k in keys}
    with tempfile.TemporaryDirectory(prefix="atlas-jax-bench-cli-") as tmp:
        tmp = Path(tmp)
        table = five_run_table(tmp / "five_runs.csv")
        fit_epoch = lambda out: aj + ["fit", "epoch-chinchilla", "--law", "chinchilla", "--out", str(out), "-q"]
        fit_five = lambda out: aj + ["fit", str(table), "--law", "chinchilla", "--out", str(out), "-q"]
        plan = aj + ["plan", "--runs", "epoch-chinchilla", "--flops", "1e22", "-q"]

        def run(key, argv, cache=None, r=0):
            if key in times:
                rec = _time_process(argv, cache, timeout, REFERENCE_ENV if key.startswith("scipy") else None)
                times[key].append(rec)
                if verbose:
                    print(f"[bench cli] {key} #{r + 1}: {rec['seconds']:.2f} s, exit {rec['exit']}", file=sys.stderr,
                          flush=True)

        run("plan_first", plan, tmp / "cache_plan")
        for r in range(repeats):
            run("import_jax_pandas", [py, "-c", "import jax, pandas"], r=r)
            run("import_pandas", [py, "-c", "import pandas"], r=r)
            run("help", aj + ["--help"], tmp / f"cache_help{r}", r)
            run("user_error", aj + ["fit", "epoch-chinchilla", "--law", "chinchila", "--out", str(tmp / f"err{r}")],
                tmp / f"cache_err{r}", r)
            run("epoch_first", fit_epoch(tmp / f"epoch{r}a"), tmp / f"cache_epoch{r}", r)
            run("epoch_second", fit_epoch(tmp / f"epoch{r}b"), tmp / f"cache_epoch{r}", r)
            run("five_first", fit_five(tmp / f"five{r}a"), tmp / f"cache_five{r}", r)
            run("five_second", fit_five(tmp / f"five{r}b"), tmp / f"cache_five{r}", r)
            run("plan_second", plan, tmp / "cache_plan", r)
            run("scipy_curve_fit", [py, "-c", _SCIPY_CURVE_FIT, ref_path, str(table)], r=r)
            run("scipy_grid", [py, "-c", _SCIPY_GRID, ref_path, str(grid_every)], r=r)
        five_csv = table.read_text()
    return times, five_csv


def _cli_processes(times, grid_every, grid_starts) -> tuple[dict, list[dict]]:
    """Each process's median, exits and (scipy) result, and a table row each."""
    labels = {"import_jax_pandas": 'python -c "import jax, pandas"', "import_pandas": 'python -c "import pandas"',
              "help": "atlas-jax --help", "user_error": "atlas-jax fit epoch-chinchilla --law chinchila (user error)",
              "epoch_first": "atlas-jax fit epoch-chinchilla --law chinchilla, first call (empty cache)",
              "epoch_second": "atlas-jax fit epoch-chinchilla --law chinchilla, second call (warm cache)",
              "five_first": "atlas-jax fit on a 5-run table, first call (empty cache)",
              "five_second": "atlas-jax fit on a 5-run table, second call (warm cache)",
              "plan_first": "atlas-jax plan --runs epoch-chinchilla --flops 1e22, first call (empty cache)",
              "plan_second": "atlas-jax plan --runs epoch-chinchilla --flops 1e22, second call (warm cache)",
              "scipy_curve_fit": "scipy recipe process: curve_fit on log loss, 128 starts, 5-run table",
              "scipy_grid": "scipy recipe process: Epoch grid fit, L-BFGS-B, finite differences, "
                            + ("4,500 starts" if grid_every == 1 else f"{grid_starts} of the 4,500 starts (1 in "
                                                                      f"{grid_every}, --quick)")}
    processes, rows = {}, []
    for key, recs in times.items():
        secs = [x["seconds"] for x in recs]
        codes = sorted({x["exit"] for x in recs}, key=str)
        expected = CLI_EXITS.get(key, 0)
        entry = {"label": labels[key], "seconds": secs, "median_s": statistics.median(secs), "exits": codes,
                 "expected_exit": expected, "exit_ok": codes == [expected]}
        if key.startswith("scipy") and recs and recs[-1]["exit"] == 0:
            entry["result"] = json.loads(recs[-1]["stdout_tail"].strip().splitlines()[-1])
        if not entry["exit_ok"]:
            entry["stderr_tail"] = recs[-1]["stderr_tail"]
        processes[key] = entry
        note = (f"median of {len(secs)}" + (f" ({min(secs):.3g}-{max(secs):.3g} s)" if len(secs) > 1 else "")
                + f"; exit {', '.join(map(str, codes))}"
                + ("" if entry["exit_ok"] else f" (UNEXPECTED: expected {expected})"))
        if "result" in entry:
            res = entry["result"]
            note += (f"; objective {res['objective']:.10g}, {res['n_success']} of {res['n_starts']} starts succeeded"
                     + (", JAX imported" if res["jax_imported"] else ", no JAX imported") + ", one BLAS thread")
        is_reference = key.startswith(("scipy", "import"))
        rows.append(_row(labels[key], None if is_reference else entry["median_s"],
                         entry["median_s"] if is_reference else None, note, key=key))

    return processes, rows


def _cli_targets(processes, grid_every, grid_starts) -> tuple[list[dict], list[dict]]:
    """The ratios of :data:`CLI_TARGETS` (met or missed) and :data:`CLI_INFO`, and their table rows."""
    rows = []
    short = {"import_jax_pandas": "bare `import jax, pandas` process", "import_pandas": "bare `import pandas` process",
             "scipy_grid": "scipy grid-fit process", "scipy_curve_fit": "scipy curve_fit process"}
    targets_out = []
    for spec in [(*t, True) for t in CLI_TARGETS] + [(a, b, k, None, w, False) for a, b, k, w in CLI_INFO]:
        key, ref_key, kind, bound, what, is_target = spec
        if key not in processes or ref_key not in processes:
            if is_target:
                targets_out.append({"process": key, "reference": ref_key, "kind": kind, "bound": bound,
                                    "met": None, "ratio": None, "note": "not measured"})
                rows.append(_row(f"target: {what} vs {short[ref_key]}", None, note="not measured", target=bound,
                                 met=None))
            continue
        ours, theirs = processes[key]["median_s"], processes[ref_key]["median_s"]
        ratio, text, met = _compare(kind, ours, theirs, bound)
        if bound is not None:
            bad_exit = not (processes[key]["exit_ok"] and processes[ref_key]["exit_ok"])
            quick_grid = ref_key == "scipy_grid" and grid_every != 1
            met = False if bad_exit else None if quick_grid else met
            want = f"<= {bound:g}x the time" if kind == "at_most" else f">= {bound:g}x faster"
            verdict = (f"not comparable: scipy ran {grid_starts} of the 4,500 starts (--quick)" if quick_grid
                       else "MISSED (unexpected exit code)" if bad_exit else "met" if met else "MISSED")
            note = f"target {want}: {verdict}"
            targets_out.append({"process": key, "reference": ref_key, "kind": kind, "bound": bound, "ratio": ratio,
                                "met": met, "note": note})
            name = f"target: {what} vs {short[ref_key]}"
        else:
            note, name = "no target", f"{what} vs {short[ref_key]}"
            if ref_key == "scipy_grid" and grid_every != 1:
                note += f" (scipy ran {grid_starts} of the 4,500 starts)"
        row = _row(name, ours, theirs, note, ratio_text=text, target=bound, met=met)
        row["ratio"] = ratio
        rows.append(row)
    return targets_out, rows



SUITES: dict[str, Callable[..., dict]] = {"epoch": epoch, "throughput": throughput, "nuts": nuts,
                                          "campaign": campaign, "targets": targets, "shared": shared, "cli": cli}


def _chain_method(chains: int, devices: int):
    """NumPyro's ``chain_method``: chains split into equal blocks over as many of the first ``devices`` local
    devices as divide them, pmapped over the blocks and vectorised within each (``vectorized`` on one device);
    and its label."""
    n = max(d for d in range(1, min(chains, devices) + 1) if chains % d == 0)
    if n == 1:
        return "vectorized", "vectorized"

    def method(one_chain):
        run = jax.pmap(jax.vmap(one_chain), devices=jax.local_devices()[:n])

        def blocks(args):
            out = jax.device_get(run(jax.tree.map(lambda x: np.reshape(x, (n, -1) + x.shape[1:]), args)))
            return jax.tree.map(lambda x: jnp.asarray(x.reshape((-1,) + x.shape[2:])), out)
        return blocks
    return method, f"{n} devices x {chains // n} vectorized"
