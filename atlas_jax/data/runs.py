"""The run table: schema, loading and validation of a table of training runs.

A run table is a tidy :class:`pandas.DataFrame` with one row per run (or per
checkpoint). Canonical columns are ``params`` (N), ``tokens`` (D, tokens seen
including repeats) and ``loss`` (nats/token), and optionally ``unique_tokens``
(U, the unique tokens available: a run sees min(U, D) of them), ``language``, ``group``, ``num_languages`` (K), ``regime``, ``step`` and
``run`` (the id of a training run, kept as text: rows sharing it are checkpoints
of one run), plus per-language mixture columns ``tokens_<lang>`` and
``unique_<lang>``.

Mixture columns are the ``tokens_<x>``/``unique_<x>`` columns whose ``x`` is a
language of the table (:func:`mixture_languages`): a value of ``language``, a
language passed as ``languages=``, or a language code (:data:`LANGUAGE_CODE`,
e.g. ``en``, ``ckb``, ``zh_Hans``, ``ace_arab``: helper languages that are never
evaluated). Other ``tokens_*``/``unique_*`` columns (``unique_train_tokens``) are
ordinary columns.

Rows that differ in any design column (:data:`DESIGN_COLUMNS`, the mixture
columns and the ``group_by`` column) are distinct runs; rows equal in all of
them are replicates of one design, kept (with a warning).

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
import re
import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "CANONICAL_COLUMNS",
    "NUMERIC_COLUMNS",
    "POSITIVE_COLUMNS",
    "DESIGN_COLUMNS",
    "REGIMES",
    "MIXTURE_RTOL",
    "LANGUAGE_CODE",
    "RunTable",
    "load_runs",
    "read_table",
    "rename_columns",
    "validate_runs",
    "parse_column_mapping",
    "mixture_languages",
    "mixture_columns",
    "split_groups",
    "ALL",
]

ALL = "all"  #: the one group's name when a table is not grouped

CANONICAL_COLUMNS: tuple[str, ...] = (
    "params", "tokens", "loss", "unique_tokens", "language", "group", "num_languages", "regime", "step", "run",
)
NUMERIC_COLUMNS: tuple[str, ...] = ("params", "tokens", "loss", "unique_tokens", "num_languages", "step")
POSITIVE_COLUMNS: tuple[str, ...] = ("params", "tokens", "loss", "unique_tokens")
#: Columns that tell runs apart (with the mixture columns and the ``group_by`` column); ``seed`` is not
#: canonical but is respected when present.
DESIGN_COLUMNS: tuple[str, ...] = (
    "group", "language", "num_languages", "run", "seed", "regime", "step", "params", "tokens", "unique_tokens",
)
REGIMES: tuple[str, ...] = ("pretrain", "finetune")
MIXTURE_RTOL = 1e-6  # relative tolerance of sum(tokens_<lang>) == tokens
#: A language code: 2-3 lowercase letters (ISO 639), optionally ``_`` and a 4-letter script (ISO 15924).
LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(?:_[A-Za-z][a-z]{3})?")

_SHOW = 10  # rows (or values, or replicate sets) listed in a message
_LANGUAGES = "languages"  # key of a validated frame's attrs holding its mixture languages
_SUFFIXES = {".csv": pd.read_csv, ".csv.gz": pd.read_csv, ".parquet": pd.read_parquet, ".pq": pd.read_parquet}


@dataclass(frozen=True, eq=False)
class RunTable:
    """A validated run table.

    ``frame`` is a copy with canonical column names, numeric columns as float64, ``run`` as text
    and index ``0..n-1`` in the input's row order; ``frame.attrs["languages"]`` holds its mixture
    languages. ``warnings`` holds the soft problems found (each also emitted as a ``UserWarning``).
    """

    frame: pd.DataFrame
    warnings: tuple[str, ...] = ()

    @property
    def languages(self) -> tuple[str, ...]:
        """Sorted languages of the mixture columns (:func:`mixture_languages`)."""
        return tuple(sorted(mixture_languages(self.frame)))


def mixture_languages(frame: pd.DataFrame, languages: Sequence[str] = ()) -> tuple[str, ...]:
    """The languages ``x`` whose ``tokens_<x>`` columns are mixture columns, in column order.

    ``x`` is a language of the table when it is a value of the ``language`` column, one of
    ``languages`` or of ``frame.attrs["languages"]`` (set by :func:`validate_runs`), or matches
    :data:`LANGUAGE_CODE`. Columns found by the code's shape alone are dropped when the mixture
    adds up to ``tokens`` without them but not with them (``tokens_per_step`` beside a full
    ``tokens_en`` + ``tokens_de``).
    """
    return _resolve(frame, languages)[0]


def mixture_columns(frame: pd.DataFrame, kind: str, languages: Sequence[str] = ()) -> list[str]:
    """The mixture columns ``<kind>_<lang>`` (kind ``"tokens"`` or ``"unique"``) of ``frame``, in language order."""
    if kind not in ("tokens", "unique"):
        raise ValueError(f"mixture column kind {kind!r}: expected 'tokens' or 'unique'")
    return [c for c in (f"{kind}_{x}" for x in mixture_languages(frame, languages)) if c in frame.columns]


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
    languages: Sequence[str] = (),
) -> RunTable:
    """Reads a run table (:func:`read_table`) and validates it (:func:`validate_runs`, whose arguments these are)."""
    return validate_runs(read_table(path, columns), required=required, group_by=group_by, n_free=n_free,
                         languages=languages)


def read_table(path: str | os.PathLike[str], columns: Mapping[str, str] | None = None,
               text: Sequence[str] = ()) -> pd.DataFrame:
    """The rows of a ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq`` file with canonical column names
    (:func:`rename_columns`), not yet validated. Run ids and the columns ``text`` (canonical names, e.g. the
    ``group_by`` column) are read as text (``01`` stays ``01``, apart from ``1``); a UTF-8
    byte-order mark and empty rows at the end are dropped. Raises
    ``FileNotFoundError`` if ``path`` does not exist and ``ValueError`` for another suffix."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"run table not found: {str(path)!r}")
    if not path.is_file():
        raise ValueError(f"run table {str(path)!r}: not a file; expected a CSV or Parquet file")
    name = path.name.lower()
    reader = next((read for suffix, read in _SUFFIXES.items() if name.endswith(suffix)), None)
    if reader is None:
        raise ValueError(f"run table {str(path)!r}: unsupported file type; expected one of {list(_SUFFIXES)}")
    kind = "CSV" if reader is pd.read_csv else "Parquet"
    where = f"run table {str(path)!r}"
    try:
        as_text = {(columns or {}).get(c, c): str for c in ("run", *text)}
        raw = pd.read_csv(path, dtype=as_text, encoding="utf-8-sig") \
            if kind == "CSV" else reader(path)  # utf-8-sig: a byte-order mark (Excel's UTF-8 CSV) is not a name
    except UnicodeDecodeError as err:
        raise ValueError(f"{where}: not UTF-8 text (byte {err.object[err.start:err.start + 1]!r} at position "
                         f"{err.start}); save it as UTF-8 CSV") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{where}: empty; expected a header row, then one row per run") from None
    except pd.errors.ParserError as err:
        raise ValueError(f"{where}: not a readable CSV ({' '.join(str(err).split())})") from None
    except (OSError, EOFError, zlib.error) as err:  # a .gz that is not gzip, a truncated or foreign file
        raise ValueError(f"{where}: not a readable {kind}{' (gzip)' if name.endswith('.gz') else ''} file "
                         f"({type(err).__name__}: {err})") from None
    except Exception as err:  # Parquet readers (pyarrow) raise their own types
        if kind == "CSV":
            raise
        raise ValueError(f"{where}: not a readable Parquet file ({type(err).__name__}: {err})") from None
    filled = np.flatnonzero(raw.notna().any(axis=1).to_numpy())
    raw = raw.iloc[: filled[-1] + 1 if len(filled) else 0]  # empty trailing rows of a spreadsheet export
    if raw.shape[1] == 0 or raw.empty:
        raise ValueError(f"{where}: no rows; expected a header row, then one row per run")
    separator = next((sep for sep in (";", "\t", "|") if raw.shape[1] == 1 and sep in str(raw.columns[0])), None)
    if separator is not None:
        raise ValueError(f"{where}: one column named {str(raw.columns[0])[:60]!r}: the file is separated by "
                         f"{separator!r}; expected commas (save it as comma-separated CSV)")
    return rename_columns(raw, columns or {})


def validate_runs(
    frame: pd.DataFrame,
    columns: Mapping[str, str] | None = None,
    *,
    required: Sequence[str] = ("params", "tokens", "loss"),
    group_by: str | None = None,
    n_free: int | None = None,
    languages: Sequence[str] = (),
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
      languages: languages of the mixtures besides the ``language`` values and the
        language codes (:func:`mixture_languages`); each needs a ``tokens_<lang>`` column.

    Raises:
      ValueError: naming the column, the 0-based rows and what was expected, for
        a bad mapping; missing required columns; missing run ids; non-numeric,
        NaN or infinite numbers; non-positive ``params``/``tokens``/``loss``/``unique_tokens``;
        negative mixture tokens; ``num_languages`` not an integer >= 1; ``step``
        not an integer >= 0; ``regime`` not in :data:`REGIMES`; a language of
        ``languages`` without ``tokens_<lang>``; ``unique_<lang>`` of a language
        without ``tokens_<lang>``; mixture tokens not adding up to ``tokens``; a
        group with fewer than ``n_free`` runs.

    Warns:
      UserWarning: when ``tokens_*``/``unique_*`` columns are not mixture columns
        (kept as ordinary columns); when rows are replicates (equal in every
        design column); when every run of a group has the same ``params`` (N is
        not identifiable) or the same ``tokens`` (D is not identifiable), of the ``required`` columns.
    """
    frame = rename_columns(frame, columns or {})
    available = f"available columns: {list(frame.columns)}"
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"missing required column(s) {missing}; {available} (map your names: columns={{'params': "
                         "'N'} in Python, --columns params=N on the command line)")
    if group_by is not None and group_by not in frame.columns:
        raise ValueError(f"group_by column {group_by!r} not found; {available}")
    if frame.empty:
        raise ValueError("the run table has no rows; expected one row per run (or checkpoint)")
    languages = [str(lang) for lang in languages]
    absent = [f"tokens_{lang}" for lang in languages if f"tokens_{lang}" not in frame.columns]
    if absent:
        raise ValueError(f"languages={languages}: no mixture column(s) {absent}; {available}")
    problems: list[str] = []
    if group_by is not None:
        _check(problems, frame[group_by], frame[group_by].isna(), "missing group label(s)", "a label on every row")
    for column in dict.fromkeys(c for c in ("language", "run", "regime", group_by) if c in frame.columns):
        _check(problems, frame[column], frame[column].map(lambda v: isinstance(v, (list, dict, set, tuple,
                                                                                   np.ndarray))),
               "label(s) that are not text or numbers", "one label per row")
    if "run" in frame.columns:
        _check(problems, frame["run"], frame["run"].isna(), "missing run id(s)", "an id on every row")
        frame["run"] = frame["run"].astype(str)
    _raise(problems)  # the group labels and run ids are used below
    mix, orphans, ordinary = _resolve(frame, languages)
    if orphans:
        raise ValueError(f"column(s) {orphans}: unique_<lang> without a matching tokens_<lang> column")
    token_mix = [f"tokens_{x}" for x in mix]
    unique_mix = [c for c in (f"unique_{x}" for x in mix) if c in frame.columns]

    for column in [c for c in NUMERIC_COLUMNS if c in frame.columns] + token_mix + unique_mix:
        frame[column] = _numeric(frame[column], problems)
    for column in POSITIVE_COLUMNS:
        if column in frame.columns:
            _check(problems, frame[column], frame[column] <= 0, "non-positive value(s)", "numbers > 0")
    for column in token_mix + unique_mix:
        _check(problems, frame[column], frame[column] < 0, "negative value(s)", "numbers >= 0")
    for column, low in (("num_languages", 1), ("step", 0)):
        if column in frame.columns:
            values = frame[column]
            _check(problems, values, (values < low) | (values != np.floor(values)), "invalid value(s)",
                   f"integers >= {low}")
    if "regime" in frame.columns:
        _check(problems, frame["regime"], ~frame["regime"].isin(REGIMES), "unknown value(s)",
               f"one of {list(REGIMES)}")
    if token_mix and "tokens" in frame.columns:
        tokens = frame["tokens"]
        _check(problems, tokens, (frame[token_mix].sum(axis=1) - tokens).abs() > MIXTURE_RTOL * tokens,
               f"mixture tokens do not add up to 'tokens' (sum of {token_mix}; tokens_<x> is a mixture column "
               "when x is a 'language' value, one of languages= or a language code)",
               f"the sum to match within relative {MIXTURE_RTOL:g}")
    _raise(problems)
    frame.attrs[_LANGUAGES] = mix

    notes = []
    if ordinary:
        notes.append(f"column(s) {_listing(list(map(repr, ordinary)))} are not mixture columns (their suffix is "
                     "not a language of the table, or the mixture adds up to 'tokens' without them): "
                     "kept as ordinary columns")
    design = [*DESIGN_COLUMNS, *token_mix, *unique_mix, *([group_by] if group_by else [])]
    notes += _replicates(frame, list(dict.fromkeys(c for c in design if c in frame.columns)))
    groups = frame.groupby(group_by, dropna=False, sort=False) if group_by else [(None, frame)]
    for key, runs in groups:
        label = f"group '{key}' (column {group_by!r})" if group_by else "group 'all runs'"
        if n_free is not None and len(runs) < n_free:
            raise ValueError(f"{label} has {len(runs)} run(s); expected at least n_free={n_free}")
        for column, symbol in (("params", "N"), ("tokens", "D")):
            if column in required and column in runs.columns and runs[column].nunique() == 1:  # what the law reads
                value = runs[column].iloc[0]
                notes.append(f"{label}: every run has the same {column} ({value:g}); {symbol} is not identifiable")
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    return RunTable(frame, tuple(notes))


def _listing(items: Sequence[object]) -> str:
    """``[a, b, c]``, or the first ``_SHOW`` items then ``... and K more``."""
    head = "[" + ", ".join(map(str, items[:_SHOW])) + "]"
    return head + (f" ... and {len(items) - _SHOW} more" if len(items) > _SHOW else "")


def _check(problems: list[str], values: pd.Series, bad: pd.Series, problem: str, expected: str) -> None:
    """Add a problem to ``problems`` if any row is ``bad``, naming the column, the rows and their values."""
    rows = np.flatnonzero(np.asarray(bad, dtype=bool))
    if rows.size:
        shown = _listing([repr(v) for v in values.iloc[rows[:_SHOW]].tolist()])
        problems.append(f"column {values.name!r}: {problem} at rows {_listing(rows.tolist())}: {shown}; "
                        f"expected {expected}")


def _raise(problems: list[str]) -> None:
    """One ``ValueError`` naming every problem found (the first ``_SHOW``, then how many more)."""
    if problems:
        head = "; ".join(problems[:_SHOW]) + (f"; and {len(problems) - _SHOW} more" if len(problems) > _SHOW else "")
        raise ValueError(head if len(problems) == 1 else f"{len(problems)} problems in the run table: {head}")


def _suffix(name: object, kind: str) -> str | None:
    """``x`` if ``name`` is ``<kind>_<x>`` (``unique_tokens`` is canonical, not a mixture column), else None."""
    prefix = kind + "_"
    if isinstance(name, str) and name.startswith(prefix) and name != prefix and name not in CANONICAL_COLUMNS:
        return name[len(prefix):]
    return None


def _adds_up(frame: pd.DataFrame, langs: Sequence[str]) -> bool:
    """Whether ``tokens_<lang>`` summed over ``langs`` matches ``tokens`` on every row (False on non-numbers)."""
    total = sum((_floats(frame[f"tokens_{x}"]) for x in langs), np.zeros(len(frame)))
    tokens = _floats(frame["tokens"])
    with np.errstate(invalid="ignore"):
        return bool(np.all(np.abs(total - tokens) <= MIXTURE_RTOL * tokens))


def _resolve(frame: pd.DataFrame, languages: Sequence[str]) -> tuple[tuple[str, ...], list[str], list[str]]:
    """Mixture languages (column order), orphan ``unique_<lang>`` columns and ordinary ``tokens_*``/``unique_*``."""
    named = {str(x) for x in (*languages, *frame.attrs.get(_LANGUAGES, ()))}
    if "language" in frame.columns:
        named.update(str(x) for x in frame["language"].dropna().unique())

    def is_language(x: str) -> bool:
        return x in named or LANGUAGE_CODE.fullmatch(x) is not None

    found = [x for x in (_suffix(c, "tokens") for c in frame.columns) if x is not None and is_language(x)]
    known = [x for x in found if x in named]
    if len(known) < len(found) and known and "tokens" in frame.columns \
            and not _adds_up(frame, found) and _adds_up(frame, known):
        found = known
    orphans, ordinary = [], []
    for column in frame.columns:
        x = _suffix(column, "tokens") or _suffix(column, "unique")
        if x is not None and x not in found:
            (orphans if column.startswith("unique_") and is_language(x) and f"tokens_{x}" not in frame.columns
             else ordinary).append(column)
    return tuple(found), orphans, ordinary


def _replicates(frame: pd.DataFrame, keys: list[str]) -> list[str]:
    """One note listing the sets of rows equal in every design column of ``keys`` (none if there are none)."""
    repeated = frame[frame.duplicated(keys, keep=False)] if keys else frame.iloc[:0]
    if not len(repeated):
        return []
    sets = [_listing(rows.tolist()) for rows in repeated.groupby(keys, dropna=False, sort=False).groups.values()]
    return [f"{len(sets)} replicate set(s), {len(repeated)} rows equal in every design column "
            f"({', '.join(map(repr, keys))}), at rows {_listing(sets)}: kept as replicates of one design"]


def _check_canonical(name: str) -> None:
    if name not in CANONICAL_COLUMNS and _suffix(name, "tokens") is None and _suffix(name, "unique") is None:
        raise ValueError(
            f"unknown canonical column {name!r}; "
            f"expected one of {list(CANONICAL_COLUMNS)} or tokens_<lang>/unique_<lang>"
        )


def rename_columns(frame: pd.DataFrame, columns: Mapping[str, str]) -> pd.DataFrame:
    """A copy of ``frame`` with canonical column names (``columns``: canonical name -> the table's own) and index
    ``0..n-1``; a ``ValueError`` for an unknown canonical name, a missing source column or a clash."""
    for canonical, source in columns.items():
        _check_canonical(canonical)
        if source not in frame.columns:
            raise ValueError(
                f"column mapping {canonical}={source}: source column {source!r} not in the table; "
                f"available columns: {list(frame.columns)}"
            )
    targets: dict[str, list[str]] = {}
    for canonical, source in columns.items():
        targets.setdefault(source, []).append(canonical)
    twice = {source: names for source, names in targets.items() if len(names) > 1}
    if twice:
        source, names = next(iter(twice.items()))
        raise ValueError(f"column mapping: source column {source!r} is mapped to {' and '.join(names)}; "
                         "expected one canonical name per source column")
    renamed = frame.rename(columns={source: canonical for canonical, source in columns.items()})
    clashes = renamed.columns[renamed.columns.duplicated()].unique().tolist()
    if clashes:
        raise ValueError(f"column(s) {clashes} appear more than once after mapping {dict(columns)}")
    return renamed.reset_index(drop=True)


def _floats(values: pd.Series) -> np.ndarray:
    """``values`` as a float64 array, NaN where not a number (a list or dict cell among them)."""
    try:
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    except TypeError:  # cells pandas cannot even try (lists, dicts)
        scalar = values.map(lambda v: np.ndim(v) == 0 and not isinstance(v, dict))
        return pd.to_numeric(values.where(scalar, np.nan), errors="coerce").to_numpy(dtype="float64",
                                                                                   na_value=np.nan)


def _numeric(values: pd.Series, problems: list[str]) -> pd.Series:
    """``values`` as float64; non-numeric (True and False among them), NaN or infinite entries are added to
    ``problems``."""
    out = pd.Series(_floats(values), name=values.name)
    flags = values.map(lambda v: isinstance(v, (bool, np.bool_)))  # True is not 1 run or 1 token
    text = (out.isna() & values.notna()) | flags
    _check(problems, values, text, "non-numeric value(s)", "numbers")
    _check(problems, out, ~np.isfinite(out) & ~text, "NaN or infinite value(s)", "finite numbers")
    return out


def split_groups(frame: pd.DataFrame, group_by: str | None) -> tuple[tuple[str, ...], list[np.ndarray]]:
    """Group names (in order of first appearance; ``all`` without ``group_by``) and each group's row positions."""
    if group_by is None:
        return (ALL,), [np.arange(len(frame))]
    keys = list(dict.fromkeys(frame[group_by]))
    return tuple(str(k) for k in keys), [np.flatnonzero((frame[group_by] == k).to_numpy()) for k in keys]
