"""Benchmarks (``atlas-jax bench``): the suites (:mod:`.suites`), the scipy recipes they are compared with
(:mod:`.reference`), the results table and plot (:mod:`.report`)."""

from __future__ import annotations

from ..runtime import setup

setup()  # float64, CPU devices, compilation cache: before any JAX use

import sys
import time
from pathlib import Path

from ..io import atomic_output_dir, machine_record, write_json
from .report import markdown, plot_throughput
from .suites import SUITES

__all__ = ["SUITES", "QUICK", "run_suites"]

#: Settings of ``--quick``: every suite in seconds to a minute on a laptop CPU (a smoke test, not a benchmark).
QUICK = {"epoch": {"resamples": 200, "repeats": 1, "reference": False},
         "throughput": {"max_fits": 1000, "run_counts": (30, 300), "fits_per_count": 100},
         "nuts": {"draws": 200, "chains": 2, "reference": False, "hierarchical": False},
         "campaign": {"resamples": 20, "scipy_fits": 1, "reference": False},
         "targets": {"resamples": 2},
         "shared": {"languages": 20, "runs": (4,), "repeats": 1, "reference": False},
         "cli": {"repeats": 1, "grid_every": 45}}


def run_suites(names, out: str | Path, *, dtype: str = "float64", quick: bool = False, reference: bool = True,
               options: dict | None = None, verbose: bool = True) -> dict:
    """Run the named suites; write ``out/bench.json``, ``out/BENCHMARKS.md`` (the table) and
    ``out/throughput.png`` atomically; return the record. ``options`` maps a suite to keyword arguments;
    ``verbose`` prints each suite's start and duration on stderr."""
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise ValueError(f"unknown suite(s) {', '.join(unknown)}; expected some of {', '.join(SUITES)}")
    record = {**machine_record(), "dtype": dtype, "quick": quick, "suites": {}}
    for name in names:
        kwargs = dict(QUICK[name]) if quick else {}
        if name not in ("nuts", "cli"):  # cli times the CLI's own defaults (float64)
            kwargs["dtype"] = dtype
        if not reference and name in ("epoch", "nuts", "campaign", "shared", "cli"):
            kwargs["reference"] = False
        kwargs.update((options or {}).get(name, {}))
        if verbose:
            print(f"[bench] {name} {kwargs} ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        record["suites"][name] = SUITES[name](**kwargs)
        record["suites"][name]["wall_s"] = time.perf_counter() - t
        if verbose:
            print(f"[bench] {name} done in {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    table = markdown(record)
    with atomic_output_dir(out) as tmp:
        write_json(tmp / "bench.json", record)
        (tmp / "BENCHMARKS.md").write_text(table)
        if "throughput" in record["suites"]:
            plot_throughput(record["suites"]["throughput"], tmp / "throughput.png",
                            f"Chinchilla bootstrap refits, {record['device']}, {dtype}, {record['date']}")
    print(table)
    return record
