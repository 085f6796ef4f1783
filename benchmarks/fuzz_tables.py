"""Long fuzz run of the run-table loaders and of ``fit`` (issue 16): N generated tables (tests/data/test_fuzz.py's
strategy) through ``validate_runs`` in memory and M through ``read_table`` + ``validate_runs`` as files, counting
accepted, refused with a named ``ValueError``, refused with an unnamed one, and anything else (a crash); and F
fits of tests/engine/test_fuzz_fit.py's cases, counting refused, usable, flagged (every group named in a
warning), dishonest (its property failed) and crashes. Writes ``benchmarks/results/fuzz_<date>.json``.

    python benchmarks/fuzz_tables.py [N] [M] [F]
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "data"), str(ROOT / "tests" / "engine")]
from test_fuzz import _named, tables  # noqa: E402
from test_fuzz_fit import fit_cases, outcome  # noqa: E402

from atlas_jax.data.runs import read_table, validate_runs  # noqa: E402
from atlas_jax.io import save_record  # noqa: E402


def main(n_memory: int = 10_000, n_files: int = 2_000, n_fits: int = 1_000) -> dict:
    counts = {"memory": collections.Counter(), "files": collections.Counter(), "fits": collections.Counter()}
    crashes = []

    def judge(kind, call):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                call()
                counts[kind]["accepted"] += 1
            except ValueError as err:
                counts[kind]["refused, named" if _named(str(err)) or "run table" in str(err)
                            else "refused, unnamed"] += 1
            except Exception:  # noqa: BLE001 - what the fuzz run is for
                counts[kind]["crash"] += 1
                crashes.append(traceback.format_exc(limit=3))

    @settings(max_examples=n_memory, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(tables(), st.sampled_from([None, "language", "group"]))
    def memory(frame, group_by):
        judge("memory", lambda: validate_runs(frame, group_by=group_by))

    folder = Path(tempfile.mkdtemp(prefix="atlas-jax-fuzz-"))

    @settings(max_examples=n_files, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(tables(), st.sampled_from([".csv", ".csv.gz", ".parquet"]), st.booleans())
    def files(frame, suffix, garble):
        path = folder / f"t{suffix}"
        if garble:
            path.write_bytes(b"\x82\x00" + str(frame.shape).encode())
        elif suffix == ".parquet":
            frame.astype(str).to_parquet(path)
        else:
            frame.to_csv(path, index=False)
        judge("files", lambda: validate_runs(read_table(path)))

    @settings(max_examples=n_fits, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(fit_cases())
    def fits(case):
        try:
            counts["fits"][outcome(case)] += 1
        except AssertionError:
            counts["fits"]["dishonest"] += 1
            crashes.append(traceback.format_exc(limit=3))
        except Exception:  # noqa: BLE001 - what the fuzz run is for
            counts["fits"]["crash"] += 1
            crashes.append(traceback.format_exc(limit=3))

    t0 = time.perf_counter()
    memory()
    files()
    fits()
    record = {"date": dt.date.today().isoformat(), "tables_in_memory": n_memory, "tables_as_files": n_files,
              "fits": n_fits,
              "counts": {k: dict(v) for k, v in counts.items()}, "crashes": crashes[:20],
              "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps({k: v for k, v in record.items() if k != "crashes"}, indent=2))
    save_record(ROOT / "benchmarks" / "results", "fuzz", record)
    return record


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
