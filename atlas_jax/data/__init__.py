"""Run tables: schema, loading and validation."""

from .runs import (
    CANONICAL_COLUMNS,
    DESIGN_COLUMNS,
    LANGUAGE_CODE,
    MIXTURE_RTOL,
    NUMERIC_COLUMNS,
    POSITIVE_COLUMNS,
    REGIMES,
    RunTable,
    load_runs,
    mixture_columns,
    mixture_languages,
    parse_column_mapping,
    read_table,
    rename_columns,
    validate_runs,
)

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
]
