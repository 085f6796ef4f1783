"""Which rows a law can use and which ATLAS variant each group's rows support.

A run table from the field mixes what one law describes with what it does not: finetuning curves beside
pretraining runs, many target languages in one file. :func:`select_rows` applies a user's ``where``
filter and leaves out the rows a law cannot use (finetuning rows for every pretraining law), with a note
for each; it warns when languages are pooled into one fit. :func:`atlas_variants` picks, per group, the
largest ATLAS variant (Longpre et al. 2026) the group's mixtures support: ``transfer`` when the target is
co-sampled with at least 3 other languages, ``other`` when some of its runs mix in other languages, else
``monolingual``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from ..laws import atlas_law, atlas_law_name, get_law, transfer_languages
from ..laws.atlas import ATLAS_VARIANTS
from .runs import RunTable, split_groups, validate_runs

__all__ = ["CURVE_LAWS", "Selection", "select_fit", "check_settings", "check_fixed", "select_rows", "atlas_variants", "atlas_variant", "atlas_law_for"]

CURVE_LAWS = ("scratch_curve", "finetune_curve")


def select_rows(frame: pd.DataFrame, law: str, *, where: str | None = None,
                group_by: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Rows of ``frame`` that ``law`` describes, after the pandas query ``where``; and notes on what was left out.

    Finetuning rows (``regime == 'finetune'``) continue another model's training, which no pretraining law
    describes: they are left out of every law but the curve laws. A table with several values in
    ``language`` and no ``group_by`` gets a note that the languages are pooled into one fit.
    """
    notes = []
    if where:
        try:
            kept = frame.query(where, engine="python")
        except Exception as err:  # pandas raises many types for a bad expression
            raise ValueError(f"--where {where!r}: not a valid row filter over columns {list(frame.columns)} "
                             f"({type(err).__name__}: {err})") from None
        if not isinstance(kept, pd.DataFrame) or kept.empty:
            raise ValueError(f"--where {where!r} keeps no row of the {len(frame)}")
        notes.append(f"--where {where!r} keeps {len(kept)} of {len(frame)} rows")
        frame = kept
    if law not in CURVE_LAWS and "regime" in frame.columns:
        finetune = frame["regime"].astype(str) == "finetune"
        if finetune.all():
            raise ValueError(f"every row is a finetuning curve (regime 'finetune'); law {law!r} describes "
                             "pretraining runs")
        if finetune.any():
            notes.append(f"left out {int(finetune.sum())} finetuning row(s) (regime 'finetune'): law {law!r} "
                         "describes pretraining")
            frame = frame[~finetune]
    if group_by is None and "language" in frame.columns:
        langs = sorted(frame["language"].astype(str).unique())
        if len(langs) > 1:
            notes.append(f"the losses are measured on {len(langs)} languages ({', '.join(langs[:8])}"
                         f"{' ...' if len(langs) > 8 else ''}) and are pooled into one fit; "
                         "use --group-by language for one fit per language")
    return frame.reset_index(drop=True), notes


def atlas_variant(frame: pd.DataFrame) -> str:
    """The largest ATLAS variant one target language's rows support."""
    try:
        transfer_languages(frame, 3)
        return "transfer"
    except ValueError:
        pass
    own = f"tokens_{frame['language'].iloc[0]}"
    mixed = own in frame.columns and bool((frame["tokens"] > frame[own] * (1 + 1e-9)).any())
    return "other" if mixed else "monolingual"


def atlas_variants(frame: pd.DataFrame, group_by: str | None, variant: str | None = None) -> dict[str, list[str]]:
    """``{variant: groups}``: every group's largest supported ATLAS variant, or ``variant`` for all.

    A forced ``variant`` a group cannot support raises a ``ValueError`` naming the group.
    """
    if variant is not None and variant not in ATLAS_VARIANTS:
        raise ValueError(f"--variant: expected one of {', '.join(ATLAS_VARIANTS)}, got {variant!r}")
    if "language" not in frame.columns:
        raise ValueError("law 'atlas' needs a 'language' column (the language each loss is measured on)")
    out: dict[str, list[str]] = {}
    for group, rows in zip(*split_groups(frame, group_by)):
        runs = frame.iloc[rows]
        if runs["language"].nunique() > 1:
            raise ValueError(f"group {group!r} mixes target languages {sorted(runs['language'].astype(str).unique())}"
                             ": the ATLAS law fits one target per group; use --group-by language")
        chosen = variant or atlas_variant(runs)
        if variant is not None:
            atlas_law(variant).features(runs)  # raises, naming the language, when the rows cannot support it
        out.setdefault(chosen, []).append(group)
    return out


def atlas_law_for(frame: pd.DataFrame, group_by: str | None) -> str:
    """The registered ATLAS law of a table whose groups all support the same largest variant; a ``ValueError``
    counting the groups of each variant otherwise."""
    parts = atlas_variants(frame, group_by)
    if len(parts) > 1:
        counts = ", ".join(f"{v}: {len(g)}" for v, g in parts.items())
        raise ValueError(f"the groups support different ATLAS variants ({counts}): give a table whose groups are "
                         "all of one kind (atlas-jax fit --law atlas fits each its own)")
    return atlas_law_name(next(iter(parts)))


@dataclass(frozen=True, eq=False)
class Selection:
    """The rows of a table that one fit uses, validated once (``table``; its warnings are in ``notes``), with how
    they are fitted: ``law`` (``atlas``: each group with the ATLAS variant ``parts`` gives it), ``group_by``,
    ``where``, ``variant``, ``two_stage`` and ``base`` (:meth:`~atlas_jax.engine.saved.SavedFit.fit`)."""

    law: str
    table: RunTable
    notes: tuple[str, ...]
    parts: dict[str, list[str]] | None = None
    group_by: str | None = None
    where: str | None = None
    variant: str | None = None
    two_stage: bool = False
    base: str | None = None


def select_fit(frame: pd.DataFrame, law: str, *, group_by: str | None = None, where: str | None = None,
               variant: str | None = None, two_stage: bool = False, base: str | None = None) -> Selection:
    """The :class:`Selection` of ``frame`` (canonical column names) for a fit of ``law``: the options checked
    together, the rows chosen (:func:`select_rows`), validated once (:func:`~atlas_jax.data.runs.validate_runs`;
    its warnings are given once and kept in ``notes``, as are the selection's notes) and, for ``atlas``, every
    group's variant (:func:`atlas_variants`). Needs no JAX, so a mistake costs no more than reading the table."""
    if variant is not None and law != "atlas":
        raise ValueError("--variant applies to --law atlas only")
    if two_stage and law != "data_constrained":
        raise ValueError("--two-stage applies to --law data_constrained only")
    if base is not None and (not two_stage or base != "muennighoff2023"):
        raise ValueError(f"--base {base}: expected muennighoff2023, with --two-stage")
    frame, notes = select_rows(frame, law, where=where, group_by=group_by)
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    table = validate_runs(frame, required=get_law(law).required, group_by=group_by)
    parts = atlas_variants(table.frame, group_by, variant) if law == "atlas" else None
    return Selection(law, RunTable(table.frame), tuple(notes) + table.warnings, parts, group_by, where, variant,
                     two_stage, base)


def check_settings(**settings) -> None:
    """``ValueError`` listing every fit setting (:func:`~atlas_jax.fit_arrays`) outside its domain: ``delta``
    finite > 0, ``level`` in (0, 1), ``bootstrap`` and ``screen_steps`` integers >= 0, ``keep``, ``max_steps`` and ``screen_rows`` (or None)
    integers >= 1, ``memory_budget`` > 0."""
    rules = {"delta": (lambda v: np.isfinite(v) and v > 0, "a finite number > 0 (the Huber threshold on log "
                                                            "residuals, e.g. 1e-3)"),
             "level": (lambda v: 0 < v < 1, "a number in (0, 1), e.g. 0.95"),
             "bootstrap": (lambda v: int(v) == v and v >= 0, "an integer >= 0"),
             "screen_steps": (lambda v: int(v) == v and v >= 0, "an integer >= 0"),
             "keep": (lambda v: int(v) == v and v >= 1, "an integer >= 1"),
             "max_steps": (lambda v: int(v) == v and v >= 1, "an integer >= 1"),
             "screen_rows": (lambda v: int(v) == v and v >= 1, "an integer >= 1, or None (all runs)"),
             "memory_budget": (lambda v: v > 0, "a number of bytes > 0")}
    bad = []
    for name, value in settings.items():
        if value is None and name == "screen_rows":
            continue
        ok, expected = rules[name]
        try:
            good = bool(ok(float(value)))
        except (TypeError, ValueError, OverflowError):
            good = False
        if not good:
            bad.append(f"{name} = {value!r}: expected {expected}")
    if bad:
        raise ValueError("; ".join(bad))


def check_fixed(law: str, fix: Mapping[str, float]) -> None:
    """``ValueError`` when a value ``fix`` holds for a parameter of ``law`` is not finite or outside the parameter's
    domain; names the law gives per group (``tau_en``) are checked by the fit."""
    spec = get_law(law)
    for name, value in fix.items():
        if name in spec.names:
            spec.params[spec.index(name)].internal_value(value)
