"""Property-based fuzzing of the run-table loaders (hypothesis): any table, as a file or in memory, is either read
and validated or refused with a ``ValueError`` (``FileNotFoundError`` for a missing file) whose message names a
column, a row, the file or what was expected; nothing else escapes. A bounded number of examples runs here;
``benchmarks/fuzz_tables.py`` records a long run."""

from __future__ import annotations

import math
import warnings

import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from atlas_jax.data.runs import read_table, validate_runs  # noqa: E402

COLUMNS = ["params", "tokens", "loss", "unique_tokens", "language", "run", "regime", "step", "tokens_en",
           "tokens_de", "num_languages", "group"]
CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**12, 10**15), st.booleans(), st.none(),
    st.text(max_size=6), st.sampled_from(["1e9", "2,000", "3.1%", "2024-01-05", "nan", "inf", "", " ", "en", "de",
                                          "pretrain", "finetune", "-1", "0"]),
    st.lists(st.integers(), max_size=2))


@st.composite
def tables(draw):
    names = draw(st.lists(st.sampled_from(COLUMNS + ["x", "params;tokens"]), min_size=0, max_size=7, unique=True))
    rows = draw(st.integers(0, 8))
    return pd.DataFrame({name: [draw(CELLS) for _ in range(rows)] for name in names}, dtype=object)


def _named(message: str) -> bool:
    return any(word in message for word in ("column", "row", "run table", "expected", "group"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(), st.sampled_from([None, "language", "group"]))
def test_validation_refuses_in_one_named_error_or_accepts(frame, group_by):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            table = validate_runs(frame, group_by=group_by)
        except ValueError as err:
            assert _named(str(err)), str(err)
            return
    out = table.frame
    for column in ("params", "tokens", "loss"):
        assert all(math.isfinite(v) and v > 0 for v in out[column])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(tables(), st.sampled_from([".csv", ".csv.gz", ".parquet"]), st.booleans())
def test_files_are_read_or_refused_in_one_named_error(tmp_path, frame, suffix, garble):
    path = tmp_path / f"t{suffix}"
    if garble:  # bytes that are no table of that kind
        path.write_bytes(b"\x82\x00" + str(frame.shape).encode())
    elif suffix == ".parquet":
        frame.astype(str).to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    try:
        read = read_table(path)
    except ValueError as err:
        assert "run table" in str(err), str(err)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            validate_runs(read)
        except ValueError as err:
            assert _named(str(err)), str(err)
