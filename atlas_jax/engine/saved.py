"""A saved fit: the fitted laws with their bootstrap draws, the rows they were fitted on and the settings, in
one folder that later steps (``atlas-jax plot``, ``plan``, ``predict``) read instead of refitting.

The folder (format ``atlas-jax.fit``, version 1), written atomically by :meth:`SavedFit.save`:

- ``fit.json``: ``format`` (``{"name": "atlas-jax.fit", "version": 1}``); ``settings``, how the fit was made
  (``runs``, ``law``, ``where``, ``group_by``, ``columns``, ``delta``, ``bootstrap``, ``bootstrap_unit``,
  ``seed``, ``level``, ``fixed``, ``ties``, ``shared``, ...); ``languages``, the mixture languages of the rows;
  ``results``, one entry per fitted law (``atlas-jax fit --law atlas`` fits each ATLAS variant its own):
  the :class:`FitResult`'s plain fields, among them ``law`` (a registered law, :func:`~atlas_jax.laws.get_law`)
  and ``names``, the parameter names of each group, whose ``tau_<lang>`` name an ATLAS group's helper
  languages (what rebuilds its features for new rows); beside these, the record its writer adds
  (``atlas-jax fit``: each group's summary, timings, versions, device, command).
- ``fit.npz``: the arrays of result ``i`` as ``<i>.<field>``: ``estimate``, ``objective``, ``steps``,
  ``grad_norm``, ``n_runs``, ``condition`` and, when bootstrapped, ``samples`` [group, resample, parameter],
  ``sample_status`` [group, resample], ``ci_low``, ``ci_high``.
- ``runs.parquet``: the selected, validated rows the fits were made on (every group's).
- ``params.csv``: ``group, param, estimate[, ci_low, ci_high], flags[, law]``, the estimates for people; when
  no group is usable (every one flagged), the same table is ``diagnostics.csv`` instead, and no ``params.csv``
  is written: nothing in the folder looks like an answer.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.runs import RunTable, mixture_languages, validate_runs
from ..data.select import Selection
from ..io import atomic_output_dir, write_json
from ..laws import get_law
from .result import FitResult

__all__ = ["SavedFit", "FORMAT", "VERSION"]

FORMAT, VERSION = "atlas-jax.fit", 1
ROWS = "runs.parquet"
#: the columns of the rows that :meth:`SavedFit.predict` repeats beside its predictions
KEYS = ("run", "language", "params", "tokens", "unique_tokens", "loss")


@dataclass(frozen=True)
class SavedFit:
    """Fits of one table (``results``: several when groups were fitted with different laws), the ``rows`` they
    were fitted on, the ``settings`` that made them (``group_by`` names the column that defined the groups) and
    ``notes`` on the table (rows left out, the data's warnings)."""

    results: tuple[FitResult, ...]
    rows: pd.DataFrame
    settings: dict
    notes: tuple[str, ...] = ()

    @classmethod
    def fit(cls, selection: Selection, *, source: str | None = None, columns: dict | None = None,
            **options) -> SavedFit:
        """Fit the rows of ``selection`` (:func:`~atlas_jax.data.select.select_fit`) as ``atlas-jax fit`` does:
        ``atlas`` fits every group with its ATLAS variant (one result per variant), ``two_stage`` runs Muennighoff
        et al.'s recipe (:func:`~atlas_jax.engine.recipes.fit_data_constrained_two_stage`), any other law one
        :func:`~atlas_jax.engine.batch.fit`, whose ``options`` these are. ``source`` and ``columns`` (the table's
        file and column mapping) are kept in the settings; the selection's notes in :attr:`notes`."""
        from ..laws import atlas_law_name
        from .batch import fit
        from .recipes import MUENNIGHOFF2023_BASE, fit_data_constrained_two_stage

        sel, notes = selection, list(selection.notes)
        if sel.two_stage and options.get("share"):
            raise ValueError("--share and --two-stage cannot be combined")
        if sel.two_stage and (options.get("fix") or options.get("tie")):
            raise ValueError("--two-stage fixes E A B alpha beta itself: drop --fix/--tie")
        if sel.parts is not None:
            if options.get("share") and len(sel.parts) > 1:
                raise ValueError(f"--share fits one law jointly, but the groups support different ATLAS variants "
                                 f"({', '.join(sel.parts)}): force one with --variant, or select groups with --where")
            results, frame = [], sel.table.frame
            for v, groups in sel.parts.items():
                rows = sel.table if len(sel.parts) == 1 else \
                    RunTable(frame[frame[sel.group_by].astype(str).isin(groups)])
                results.append(fit(atlas_law_name(v), rows, group_by=sel.group_by, **options))
                notes.append(f"law atlas: {v} variant for {len(groups)} group(s): {', '.join(groups[:12])}"
                             + (" ..." if len(groups) > 12 else ""))
        elif sel.two_stage:
            options = {k: v for k, v in options.items() if k not in ("fix", "tie", "share")}  # checked empty above
            first, second = fit_data_constrained_two_stage(sel.table, base=sel.base, **options)
            stage1 = first.params() if first is not None else MUENNIGHOFF2023_BASE
            notes.append(f"two-stage recipe: stage 1 "
                         f"{'fitted on the single-epoch runs' if first else 'frozen at ' + sel.base}: "
                         + ", ".join(f"{k} = {v:.6g}" for k, v in stage1.items())
                         + ("" if first is None else "; Muennighoff et al.'s published R_D*, R_N* rest on their C4 "
                            "base (--base muennighoff2023)"))
            results = [second]
        else:
            results = [fit(sel.law, sel.table, group_by=sel.group_by, **options)]
        first = results[0]
        settings = {"runs": source, "law": sel.law, "variant": sel.variant, "two_stage": sel.two_stage,
                    "base": sel.base, "where": sel.where, "group_by": sel.group_by, "columns": dict(columns or {}),
                    "delta": options.get("delta", 1e-3), "bootstrap": options.get("bootstrap", 0),
                    "bootstrap_unit": first.bootstrap_unit, "seed": options.get("seed", 0), "level": first.level,
                    "fixed": first.fixed, "ties": [list(t) for t in first.ties], "shared": list(first.shared)}
        return cls(tuple(results), sel.table.frame, settings, tuple(notes))

    @property
    def usable(self) -> bool:
        """Whether any group's fit is usable (has no flag)."""
        return any(u for r in self.results for u in r.usable)

    @property
    def table_name(self) -> str:
        """``params.csv``, or ``diagnostics.csv`` when no group is usable (module doc)."""
        return "params.csv" if self.usable else "diagnostics.csv"

    @property
    def warnings(self) -> tuple[str, ...]:
        """The notes on the table, then every result's warnings."""
        return self.notes + tuple(w for r in self.results for w in r.warnings)

    def summary(self) -> dict:
        """Every group's summary (:meth:`FitResult.summary`) with its law."""
        return {g: {"law": r.law, **v} for r in self.results for g, v in r.summary().items()}

    def report(self) -> tuple[str, str]:
        """The estimates as a table, and one line: each group's status and objective, how many are usable."""
        with pd.option_context("display.float_format", "{:.6g}".format, "display.width", 140, "display.max_rows", 500):
            table = self.params().to_string(index=False)
        usable = [u for r in self.results for u in r.usable]
        line = "; ".join(f"{g}: {v['status']} (objective {v['objective']:.10g})" for g, v in self.summary().items()
                         if v["status"] != "skipped")
        return table, (f"{line}; {sum(usable)} of {len(usable)} group(s) usable; bootstrap by "
                       f"{self.results[0].bootstrap_unit or '-'}")

    def record(self) -> dict:
        """What ``fit.json`` keeps beside the fits: each group's summary, starts, warnings, timings,
        run-evaluations, versions and devices."""
        import jax

        timings = [r.timings for r in self.results]
        return {"law": self.settings.get("law") if len(self.results) > 1 else self.results[0].law,
                "runs": self.settings.get("runs"), "where": self.settings.get("where"), "groups": self.summary(),
                "n_starts": {r.law: r.n_starts for r in self.results},
                **{k: self.settings.get(k) for k in ("delta", "bootstrap", "bootstrap_unit", "seed", "fixed", "ties")},
                "warnings": list(self.warnings),
                "timings_s": {k: sum(t.get(k, 0.0) for t in timings) for k in timings[0] if k.endswith("_s")},
                "run_evaluations": {k: sum(t.get(k, 0) for t in timings) for k in timings[0]
                                    if k.endswith("_evaluations")},
                "versions": {p: version(p) for p in ("atlas-jax", "jax", "jaxlib", "numpy", "pandas")},
                "device": [str(d) for d in jax.devices()]}

    @property
    def group_by(self) -> str | None:
        return self.settings.get("group_by")

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(g for r in self.results for g in r.groups)

    def result(self, group: str | None = None) -> tuple[FitResult, int]:
        """The result that fitted ``group`` (``None``: the only group) and the group's position in it."""
        if group is None and len(self.groups) == 1:
            group = self.groups[0]
        for r in self.results:
            if group in r.groups:
                return r, r.groups.index(group)
        if group is None:
            raise ValueError(f"the saved fit has {len(self.groups)} groups ({', '.join(self.groups)}): name one")
        if any(group in r.skipped for r in self.results):
            raise ValueError(f"group {group!r} was not fitted: it has fewer runs than the law's free parameters")
        column = f" (column {self.group_by!r})" if self.group_by else ""
        raise ValueError(f"the saved fit has no group {group!r}; its groups{column}: {', '.join(self.groups)}")

    def group_rows(self, group: str) -> pd.DataFrame:
        """The rows ``group`` was fitted on."""
        rows = self.rows if self.group_by is None else self.rows[self.rows[self.group_by].astype(str) == group]
        return rows.reset_index(drop=True)

    def check_rows(self, group: str, frame: pd.DataFrame) -> None:
        """``ValueError`` unless ``frame`` holds the rows ``group`` was fitted on (in any order): the same
        ``params``, ``tokens``, ``loss``, unique tokens and mixture columns, to relative 1e-12."""
        fitted = self.group_rows(group)
        kinds = ("params", "tokens", "loss", "unique_tokens")
        cols = sorted({c for f in (fitted, frame) for c in f.columns
                       if c in kinds or str(c).startswith(("tokens_", "unique_"))})
        problem = None
        if len(frame) != len(fitted):
            problem = f"{len(fitted)} rows were fitted, these are {len(frame)}"
        elif any(c not in f.columns for f in (fitted, frame) for c in cols):
            problem = f"the columns differ ({', '.join(c for c in cols if c not in fitted or c not in frame)})"
        else:
            a, b = (np.sort(f[cols].to_numpy(float), axis=0) for f in (fitted, frame))
            off = [c for j, c in enumerate(cols) if not np.allclose(a[:, j], b[:, j], rtol=1e-12, atol=0)]
            problem = f"column(s) {', '.join(off)} differ" if off else None
        if problem:
            raise ValueError(f"the saved fit of group {group!r} was made on different rows: {problem}; refit "
                             "these rows, or use the fit's own")

    def params(self) -> pd.DataFrame:
        """Every group's estimates (and intervals, flags) in long format; a ``law`` column with several laws."""
        several = len(self.results) > 1
        return pd.concat([r.to_frame().assign(law=r.law) if several else r.to_frame() for r in self.results],
                         ignore_index=True)

    def predict(self, frame: pd.DataFrame, group: str | None = None, *, allow_flagged: bool = False) -> pd.DataFrame:
        """Predicted loss of every row of ``frame`` with its interval over the bootstrap draws (percentile, at
        the fit's level), by :func:`~atlas_jax.engine.evaluate.predict`.

        A row belongs to ``group``, or to the group its ``group_by`` value names (the only group when the fit
        has one). A flagged group's numbers are NaN unless ``allow_flagged``, and each flagged group gets a
        ``UserWarning``.

        Returns one row per row of ``frame``: ``group`` (the fit's), the columns of ``frame`` among
        :data:`KEYS`, ``predicted``, ``ci_low``, ``ci_high`` (NaN without draws) and ``flags`` (the group's
        identification flags, ``;``-separated; empty when usable).
        """
        frame = frame.reset_index(drop=True)
        if group is not None:
            self.result(group)
            labels = np.full(len(frame), group, dtype=object)
            if self.group_by in frame.columns and (frame[self.group_by].astype(str) != group).any():
                raise ValueError(f"group {group!r}: the rows' {self.group_by!r} column names other groups")
        elif len(self.groups) == 1:
            labels = np.full(len(frame), self.groups[0], dtype=object)
        elif self.group_by in frame.columns:
            labels = frame[self.group_by].astype(str).to_numpy(object)
        else:
            raise ValueError(f"the fit has {len(self.groups)} groups ({', '.join(self.groups)}): give a group, or "
                             f"rows with a {self.group_by!r} column")
        out = pd.DataFrame({"group": labels, **{k: frame[k] for k in KEYS if k in frame.columns},
                            "predicted": np.nan, "ci_low": np.nan, "ci_high": np.nan, "flags": ""})
        for name in dict.fromkeys(labels):
            res, g = self.result(name)
            law = get_law(res.law)
            missing = [c for c in law.required if c != "loss" and c not in frame.columns]
            if missing:
                raise ValueError(f"law {law.name!r} needs column(s) {missing} to predict; the rows have "
                                 f"{list(frame.columns)}")
            at = np.flatnonzero(labels == name)
            flags = res.flags[g] if res.flags else {}
            out.loc[at, "flags"] = ";".join(flags)
            if flags:
                what = ("its predictions rest on a fit the data do not determine" if allow_flagged else
                        "its predictions are left empty (allow_flagged, --allow-flagged, gives them, marked)")
                warnings.warn(f"group {name!r} is flagged ({res.verdict(name).removeprefix('flagged: ')}): {what}",
                              UserWarning, stacklevel=2)
                if not allow_flagged:
                    continue
            rows = frame.iloc[at].reset_index(drop=True)
            out.loc[at, "predicted"], interval = res.predicted(rows, name)
            if interval is not None:
                out.loc[at, "ci_low"], out.loc[at, "ci_high"] = interval
        return out

    def save(self, out: str | os.PathLike, record: dict | None = None) -> None:
        """Write the folder (see the module doc) atomically; ``fit.json`` holds :meth:`record` and ``record``'s
        keys (``atlas-jax fit``: the command and its total seconds)."""
        arrays, metas = {}, []
        for i, r in enumerate(self.results):
            a, meta = r.to_record()
            arrays.update({f"{i}.{k}": v for k, v in a.items()})
            metas.append(meta)
        info = {**self.record(), **(record or {}), "usable": self.usable, "format": {"name": FORMAT, "version": VERSION}, "settings": self.settings,
                "notes": list(self.notes), "languages": list(mixture_languages(self.rows)), "results": metas}
        with atomic_output_dir(out) as tmp:
            self.params().to_csv(tmp / self.table_name, index=False)
            np.savez(tmp / "fit.npz", **arrays)
            self.rows.to_parquet(tmp / ROWS, index=False)
            write_json(tmp / "fit.json", info)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> SavedFit:
        """The fit saved in ``folder``; a ``ValueError`` naming the file when it is not a saved fit of this
        format version."""
        folder = Path(folder)
        expected = f"expected a folder written by `atlas-jax fit` (format {FORMAT} version {VERSION})"
        path = folder / "fit.json"
        if not path.is_file():
            raise ValueError(f"{path}: not found; {expected}")
        try:
            info = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not JSON ({err}); {expected}") from None
        form = info.get("format") if isinstance(info, dict) else None
        if not isinstance(form, dict) or form.get("name") != FORMAT:
            raise ValueError(f"{path}: no saved fit (no 'format' {FORMAT!r}: written by an older atlas-jax, or not "
                             f"by `atlas-jax fit`); {expected}: refit")
        if form.get("version") != VERSION:
            raise ValueError(f"{path}: format version {form.get('version')}, which this atlas-jax cannot read; "
                             f"{expected}: refit, or use the atlas-jax that wrote it")
        for name in ("fit.npz", ROWS):
            if not (folder / name).is_file():
                raise ValueError(f"{folder / name}: not found; {expected}")
        try:
            with np.load(folder / "fit.npz", allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            rows = pd.read_parquet(folder / ROWS)
        except (OSError, ValueError) as err:
            raise ValueError(f"{folder}: unreadable fit.npz or {ROWS} ({err}); {expected}") from None
        try:
            results = tuple(FitResult.from_record({k.split(".", 1)[1]: v for k, v in arrays.items()
                                                   if k.split(".", 1)[0] == str(i)}, meta)
                            for i, meta in enumerate(info["results"]))
            settings, languages = info["settings"], info["languages"]
        except (KeyError, TypeError) as err:
            raise ValueError(f"{path}: incomplete saved fit ({type(err).__name__}: {err}); {expected}") from None
        with warnings.catch_warnings():  # the table's warnings were given when it was fitted
            warnings.simplefilter("ignore", UserWarning)
            rows = validate_runs(rows, required=(), languages=languages).frame
        return cls(results, rows, settings, tuple(info.get("notes", ())))
