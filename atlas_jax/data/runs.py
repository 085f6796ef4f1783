"""The run table: schema, loading and validation of a table of training runs.

A run table is a tidy :class:`pandas.DataFrame` with one row per run (or per
checkpoint). Canonical columns are ``params`` (N), ``tokens`` (D, tokens seen
including repeats) and ``loss`` (nats/token), and optionally ``unique_tokens``
(U), ``language``, ``group``, ``num_languages`` (K), ``regime`` and ``step``,
plus per-language mixture columns ``tokens_<lang>`` and ``unique_<lang>``.

:func:`validate_runs` turns such a frame into a :class:`RunTable` once, at the
boundary: every hard problem raises a :class:`ValueError` naming the column, the
offending 0-based row positions and what was expected; soft problems become
warnings.

Example:
    >>> import pandas as pd
    >>> raw = pd.DataFrame({"N": [1e8, 4e8, 1e9], "D": [2e9, 8e9, 2e10], "loss": [3.1, 2.8, 2.6]})
    >>> table = validate_runs(raw, {"params": "N", "tokens": "D"})
    >>> list(table.frame.columns)
    ['params', 'tokens', 'loss']
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "CANONICAL_COLUMNS",
    "NUMERIC_COLUMNS",
    "POSITIVE_COLUMNS",
    "REGIMES",
    "MIXTURE_RTOL",
    "RunTable",
    "load_runs",
    "validate_runs",
    "parse_column_mapping",
]

CANONICAL_COLUMNS: tuple[str, ...] = (
    "params", "tokens", "loss", "unique_tokens", "language", "group", "num_languages", "regime", "step",
)
NUMERIC_COLUMNS: tuple[str, ...] = ("params", "tokens", "loss", "unique_tokens", "num_languages", "step")
POSITIVE_COLUMNS: tuple[str, ...] = ("params", "tokens", "loss", "unique_tokens")
REGIMES: tuple[str, ...] = ("pretrain", "finetune")
MIXTURE_RTOL = 1e-6  # relative tolerance of sum(tokens_<lang>) == tokens

_SHOW = 10  # rows (or values, or duplicate sets) listed in an error message
_SUFFIXES = {".csv": pd.read_csv, ".csv.gz": pd.read_csv, ".parquet": pd.read_parquet, ".pq": pd.read_parquet}


@dataclass(frozen=True, eq=False)
class RunTable:
    """A validated run table.

    ``frame`` is a copy with canonical column names, numeric columns as float64
    and index ``0..n-1`` in the input's row order; ``warnings`` holds the soft
    problems found (each also emitted as a ``UserWarning``).
    """

    frame: pd.DataFrame
    warnings: tuple[str, ...] = ()

    @property
    def languages(self) -> tuple[str, ...]:
        """Sorted ``<lang>`` suffixes of the ``tokens_<lang>`` mixture columns."""
        return tuple(sorted(c.removeprefix("tokens_") for c in _mixture(self.frame, "tokens")))


def parse_column_mapping(items: Sequence[str]) -> dict[str, str]:
    """Parses ``["params=N_params", ...]`` into ``{"params": "N_params", ...}``.

    Raises ``ValueError`` on an item that is not ``canonical=source``, a canonical
    name given twice, or a name that is neither canonical nor a mixture column.
    """
    mapping: dict[str, str] = {}
    for item in items:
        canonical, sep, source = (part.strip() for part in item.partition("="))
        if not (sep and canonical and source):
            raise ValueError(f"column mapping {item!r}: expected 'canonical=source', e.g. 'params=N_params'")
        if canonical in mapping:
            raise ValueError(f"column mapping {item!r}: {canonical!r} is mapped more than once")
        _check_canonical(canonical)
        mapping[canonical] = source
    return mapping


def load_runs(
    path: str | os.PathLike[str],
    columns: Mapping[str, str] | None = None,
    *,
    required: Sequence[str] = ("params", "tokens", "loss"),
    group_by: str | None = None,
    n_free: int | None = None,
) -> RunTable:
    """Reads a run table from ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq`` and validates it.

    ``columns`` maps canonical names to column names in the file; the other
    arguments are those of :func:`validate_runs`. Raises ``FileNotFoundError`` if
    ``path`` does not exist and ``ValueError`` for another suffix or any problem
    :func:`validate_runs` finds.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"run table not found: {str(path)!r}")
    name = path.name.lower()
    reader = next((read for suffix, read in _SUFFIXES.items() if name.endswith(suffix)), None)
    if reader is None:
        raise ValueError(f"run table {str(path)!r}: unsupported file type; expected one of {list(_SUFFIXES)}")
    return validate_runs(reader(path), columns, required=required, group_by=group_by, n_free=n_free)


def validate_runs(
    frame: pd.DataFrame,
    columns: Mapping[str, str] | None = None,
    *,
    required: Sequence[str] = ("params", "tokens", "loss"),
    group_by: str | None = None,
    n_free: int | None = None,
) -> RunTable:
    """Validates a run table and returns a canonical copy; the input is not mutated.

    Args:
      frame: one row per run (or checkpoint).
      columns: optional mapping ``canonical name -> source column name``.
      required: canonical columns that must be present.
      group_by: column (name after mapping) whose values define the groups of the
        ``n_free`` check and of the identifiability warnings; ``None`` makes the
        whole table one group.
      n_free: if given, every group must have at least this many runs (e.g. the
        number of free parameters of the law to be fitted).

    Raises:
      ValueError: naming the column, the 0-based rows and what was expected, for
        a bad mapping; missing required columns; non-numeric, NaN or infinite
        numbers; non-positive ``params``/``tokens``/``loss``/``unique_tokens``;
        negative mixture tokens; ``num_languages`` not an integer >= 1; ``step``
        not an integer >= 0; ``regime`` not in :data:`REGIMES`; ``unique_<lang>``
        without ``tokens_<lang>``; mixture tokens not adding up to ``tokens``;
        duplicate runs; a group with fewer than ``n_free`` runs.

    Warns:
      UserWarning: when every run of a group has the same ``params`` (N is not
        identifiable) or the same ``tokens`` (D is not identifiable).
    """
    frame = _rename(frame, columns or {})
    available = f"available columns: {list(frame.columns)}"
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"missing required column(s) {missing}; {available} (map names with columns=...)")
    if group_by is not None and group_by not in frame.columns:
        raise ValueError(f"group_by column {group_by!r} not found; {available}")
    token_mix, unique_mix = _mixture(frame, "tokens"), _mixture(frame, "unique")
    orphans = [c for c in unique_mix if "tokens_" + c.removeprefix("unique_") not in frame.columns]
    if orphans:
        raise ValueError(f"column(s) {orphans}: unique_<lang> without a matching tokens_<lang> column")

    for column in [c for c in NUMERIC_COLUMNS if c in frame.columns] + token_mix + unique_mix:
        frame[column] = _numeric(frame[column])
    for column in POSITIVE_COLUMNS:
        if column in frame.columns:
            _check(frame[column], frame[column] <= 0, "non-positive value(s)", "numbers > 0")
    for column in token_mix + unique_mix:
        _check(frame[column], frame[column] < 0, "negative value(s)", "numbers >= 0")
    for column, low in (("num_languages", 1), ("step", 0)):
        if column in frame.columns:
            values = frame[column]
            _check(values, (values < low) | (values != np.floor(values)), "invalid value(s)", f"integers >= {low}")
    if "regime" in frame.columns:
        _check(frame["regime"], ~frame["regime"].isin(REGIMES), "unknown value(s)", f"one of {list(REGIMES)}")
    if token_mix and "tokens" in frame.columns:
        tokens = frame["tokens"]
        _check(tokens, (frame[token_mix].sum(axis=1) - tokens).abs() > MIXTURE_RTOL * tokens,
               f"mixture tokens do not add up to 'tokens' (sum of {token_mix})",
               f"the sum to match within relative {MIXTURE_RTOL:g}")
    _check_duplicates(frame, [group_by] if group_by else [], token_mix + unique_mix)

    groups = frame.groupby(group_by, dropna=False, sort=False) if group_by else [(None, frame)]
    notes = []
    for key, runs in groups:
        label = f"group '{key}' (column {group_by!r})" if group_by else "group 'all runs'"
        if n_free is not None and len(runs) < n_free:
            raise ValueError(f"{label} has {len(runs)} run(s); expected at least n_free={n_free}")
        for column, symbol in (("params", "N"), ("tokens", "D")):
            if column in runs.columns and runs[column].nunique() == 1:
                value = runs[column].iloc[0]
                notes.append(f"{label}: every run has the same {column} ({value:g}); {symbol} is not identifiable")
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    return RunTable(frame, tuple(notes))


def _listing(items: Sequence[object]) -> str:
    """``[a, b, c]``, or the first ``_SHOW`` items then ``... and K more``."""
    head = "[" + ", ".join(map(str, items[:_SHOW])) + "]"
    return head + (f" ... and {len(items) - _SHOW} more" if len(items) > _SHOW else "")


def _check(values: pd.Series, bad: pd.Series, problem: str, expected: str) -> None:
    """Raises if any row is ``bad``, naming the column, the rows and their values."""
    rows = np.flatnonzero(np.asarray(bad, dtype=bool))
    if rows.size:
        shown = _listing([repr(v) for v in values.iloc[rows[:_SHOW]].tolist()])
        raise ValueError(
            f"column {values.name!r}: {problem} at rows {_listing(rows.tolist())}: {shown}; expected {expected}"
        )


def _is_mixture(name: object, kind: str) -> bool:
    """Whether ``name`` is ``<kind>_<lang>`` (``unique_tokens`` is canonical, not a mixture column)."""
    prefix = kind + "_"
    return isinstance(name, str) and name.startswith(prefix) and name != prefix and name not in CANONICAL_COLUMNS


def _mixture(frame: pd.DataFrame, kind: str) -> list[str]:
    return [c for c in frame.columns if _is_mixture(c, kind)]


def _check_canonical(name: str) -> None:
    if name not in CANONICAL_COLUMNS and not (_is_mixture(name, "tokens") or _is_mixture(name, "unique")):
        raise ValueError(
            f"unknown canonical column {name!r}; "
            f"expected one of {list(CANONICAL_COLUMNS)} or tokens_<lang>/unique_<lang>"
        )


def _rename(frame: pd.DataFrame, columns: Mapping[str, str]) -> pd.DataFrame:
    """A copy of ``frame`` with canonical column names and index ``0..n-1``."""
    for canonical, source in columns.items():
        _check_canonical(canonical)
        if source not in frame.columns:
            raise ValueError(
                f"column mapping {canonical}={source}: source column {source!r} not in the table; "
                f"available columns: {list(frame.columns)}"
            )
    renamed = frame.rename(columns={source: canonical for canonical, source in columns.items()})
    clashes = renamed.columns[renamed.columns.duplicated()].unique().tolist()
    if clashes:
        raise ValueError(f"column(s) {clashes} appear more than once after mapping {dict(columns)}")
    return renamed.reset_index(drop=True)


def _numeric(values: pd.Series) -> pd.Series:
    """``values`` as float64; raises on non-numeric, NaN or infinite entries."""
    coerced = pd.to_numeric(values, errors="coerce")
    _check(values, coerced.isna() & values.notna(), "non-numeric value(s)", "numbers")
    out = pd.Series(coerced.to_numpy(dtype="float64", na_value=np.nan), name=values.name)
    _check(out, ~np.isfinite(out), "NaN or infinite value(s)", "finite numbers")
    return out


def _check_duplicates(frame: pd.DataFrame, extra: list[str], mixture: list[str]) -> None:
    """Raises if two rows describe the same run (rows differing only in loss are the same run)."""
    names = ("group", "language", *extra, "params", "tokens", "unique_tokens", *mixture, "regime", "step")
    keys = list(dict.fromkeys(c for c in names if c in frame.columns))
    if not keys:
        return
    repeated = frame[frame.duplicated(keys, keep=False)]
    if len(repeated):
        sets = [_listing(rows.tolist()) for rows in repeated.groupby(keys, dropna=False, sort=False).groups.values()]
        raise ValueError(
            f"duplicate runs (same {', '.join(map(repr, keys))}) at rows {_listing(sets)}; "
            "expected each run once (rows differing only in loss are the same run listed twice)"
        )
