"""Run tables: schema, loading and validation."""

from .runs import (
    CANONICAL_COLUMNS,
    MIXTURE_RTOL,
    NUMERIC_COLUMNS,
    POSITIVE_COLUMNS,
    REGIMES,
    RunTable,
    load_runs,
    parse_column_mapping,
    validate_runs,
)

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
