"""Results of ``atlas-jax bench``: the Markdown table (BENCHMARKS.md) and the throughput plot."""

from __future__ import annotations

import math
from pathlib import Path

__all__ = ["markdown", "plot_throughput"]


def _seconds(s) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "-"
    return f"{s:.3g} s" if s < 100 else f"{s:,.0f} s"


def markdown(record: dict) -> str:
    """One table of every suite's rows, headed by the machine, device, JAX version, dtype and date."""
    lines = [f"### {record['date']}: {record['device']} ({record['machine']}), JAX {record['jax']}, "
             f"{record['dtype']}", "",
             "| suite | benchmark | reference | atlas-jax | ratio | notes |", "|---|---|---|---|---|---|"]
    for suite, rec in record["suites"].items():
        for row in rec.get("rows", []):
            ratio = row.get("ratio_text") or (
                "-" if row["ratio"] is None or math.isnan(row["ratio"]) else f"{row['ratio']:,.1f}x")
            lines.append(f"| {suite} | {row['benchmark']} | {_seconds(row['reference_s'])} | "
                         f"{_seconds(row['atlas_s'])} | {ratio} | {row['note']} |")
    return "\n".join(lines) + "\n"


def plot_throughput(rec: dict, path: Path, title: str) -> None:
    """Two panels: fits/s and run-evaluations/s against batch size; run-evaluations/s against runs per fit;
    the arithmetic floor as a dashed line on the run-evaluation axes. A bare ``Figure`` (no pyplot): the caller's
    backend (a notebook's inline one) is left alone."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2)
    batch, by_runs, floor = rec["batch"], rec["runs_per_fit"], rec["floor_run_evaluations_per_s"]
    x = [r["fits"] for r in batch]
    left.loglog(x, [r["run_evaluations_per_s"] for r in batch], "o-", label="run-evaluations/s")
    left.loglog(x, [r["fits_per_s"] for r in batch], "s-", label="fits/s")
    left.axhline(floor, ls="--", c="k", lw=1, label="arithmetic floor (run-evaluations/s)")
    left.set(xlabel="batch size (bootstrap refits, 240 runs each)", ylabel="rate per second",
             title="against batch size")
    right.loglog([r["runs"] for r in by_runs], [r["run_evaluations_per_s"] for r in by_runs], "o-",
                 label=f"run-evaluations/s ({by_runs[0]['fits']:,} refits)")
    right.axhline(floor, ls="--", c="k", lw=1, label="arithmetic floor")
    right.set(xlabel="runs per fit", ylabel="run-evaluations per second", title="against runs per fit")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
