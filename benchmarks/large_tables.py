"""Large run tables (issue 16, item 5): ``atlas-jax fit`` of one Chinchilla group of 100,000 and 1,000,000 runs as
whole processes (seconds and peak memory, on an empty program cache and again warm), and, side by side in one
process on a smaller table, the subsample screening (``screen_rows=2048``, the default) against the full
computation (``screen_rows=None``: every start screened on every run): same optimum, and the time ratio.

The tables come from numpy alone (L = E + A / N^alpha + B / D^beta, Besiroglu et al. 2024's fit, 1 % lognormal
noise, N and D log-uniform), not from atlas_jax's law code. Writes ``benchmarks/results/large_<date>.json``.

    python benchmarks/large_tables.py [ROWS ...]      # default 100000 1000000; the comparison on 20000
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TRUTH = dict(E=1.82, A=482.0, B=2085.0, alpha=0.35, beta=0.37)
#: Wraps a command and prints its peak resident memory (kB, the largest of its process tree's members).
PEAK = "import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; " \
       "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc, file=sys.stderr)"


def table(rows: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(np.log(5e7), np.log(5e9), rows))
    D = np.exp(rng.uniform(np.log(1e9), np.log(2e11), rows))
    t = TRUTH
    loss = (t["E"] + t["A"] / N ** t["alpha"] + t["B"] / D ** t["beta"]) * np.exp(rng.normal(0, 0.01, rows))
    return pd.DataFrame({"params": N, "tokens": D, "loss": loss})


def cli_fit(path: Path, out: Path, cache: Path) -> dict:
    """One ``atlas-jax fit`` process: wall seconds, peak memory (GiB), exit code, the estimate."""
    env = dict(os.environ, ATLAS_JAX_CACHE_DIR=str(cache))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "atlas_jax.cli", "fit", str(path),
                           "--law", "chinchilla", "--out", str(out)], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    peak_kb, rc = proc.stderr.split()[-2:]
    if rc != "0":
        raise RuntimeError(f"atlas-jax fit {path} failed:\n{proc.stderr}")
    params = pd.read_csv(out / "params.csv")
    return {"seconds": round(seconds, 2), "peak_gib": round(int(peak_kb) / 2**20, 3),
            "estimate": dict(zip(params["param"], params["estimate"]))}


def compare(rows: int) -> dict:
    """Subsample screening against the full computation on one table, in this process (each timed on its second
    call: programs compiled)."""
    import atlas_jax as aj

    frame = table(rows, seed=11)
    out = {}
    for name, screen_rows in (("subsample", 2048), ("full", None)):
        aj.fit("chinchilla", frame, screen_rows=screen_rows)  # compile
        t0 = time.perf_counter()
        r = aj.fit("chinchilla", frame, screen_rows=screen_rows)
        out[name] = {"seconds": round(time.perf_counter() - t0, 2), "objective": float(r.objective[0]),
                     "estimate": dict(zip(r.names[0], r.estimate[0].tolist())), "status": r.status[0],
                     "run_evaluations": int(r.timings["fit_evaluations"])}
    sub, full = out["subsample"], out["full"]
    out["objective_rel_diff"] = abs(sub["objective"] - full["objective"]) / full["objective"]
    out["estimate_max_rel_diff"] = max(abs(sub["estimate"][k] / full["estimate"][k] - 1) for k in sub["estimate"])
    out["speedup"] = round(full["seconds"] / sub["seconds"], 1)
    return out


def main(sizes=(100_000, 1_000_000), compare_rows: int = 20_000) -> dict:
    from atlas_jax.io import machine_record, save_record

    record = {**machine_record(), "truth": TRUTH, "cli": {}}
    with tempfile.TemporaryDirectory(prefix="atlas-jax-large-") as tmp:
        tmp = Path(tmp)
        for rows in sizes:
            path = tmp / f"runs_{rows}.csv"
            table(rows).to_csv(path, index=False)
            cache = tmp / f"cache_{rows}"
            calls = {label: cli_fit(path, tmp / f"out_{rows}_{label}", cache) for label in ("empty_cache", "warm")}
            record["cli"][str(rows)] = calls
            print(f"{rows:>9,} runs: empty cache {calls['empty_cache']['seconds']:.1f} s, warm "
                  f"{calls['warm']['seconds']:.1f} s; peak {calls['warm']['peak_gib']:.2f} GiB", flush=True)
    record["compare"] = {"rows": compare_rows, **compare(compare_rows)}
    c = record["compare"]
    print(f"{compare_rows:,} runs in-process: subsample screening {c['subsample']['seconds']} s, full "
          f"{c['full']['seconds']} s ({c['speedup']}x); objective rel. diff {c['objective_rel_diff']:.1e}, "
          f"estimates {c['estimate_max_rel_diff']:.1e}")
    save_record(ROOT / "benchmarks" / "results", "large", record)
    return record


if __name__ == "__main__":
    main(*([tuple(int(a) for a in sys.argv[1:])] if len(sys.argv) > 1 else []))
