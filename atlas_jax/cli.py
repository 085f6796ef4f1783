"""Command-line interface: ``atlas-jax fit``, ``plan``, ``predict``, ``posterior``, ``plot`` and ``bench``."""

from __future__ import annotations

import sys
import time
import warnings
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

#: exceptions that mean the user's input or environment is wrong (a file, a value, a permission): one line, exit 2
USER_ERRORS = (ValueError, OSError)


class _OneLineErrors(typer.core.TyperGroup):
    """Every failure ends in one line on stderr: ``error: ...`` and exit 2 for the user's mistakes (Typer's own
    parse errors, bad values, unreadable or unwritable files, :data:`USER_ERRORS`); for anything else, one line
    that says where the full traceback was written, and exit 1; exit 130 when interrupted. The outputs a command
    claimed (:func:`atlas_jax.io.claim_output`) are released when it ends."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except typer.TyperException as err:  # Typer's parse errors (its click's ClickException)
            if type(err).__name__ == "NoArgsIsHelpError":  # `atlas-jax` alone: the help, as --help gives it
                err.show()
                code = 0
            else:
                ctx = getattr(err, "ctx", None)
                hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
                code = _error(err.format_message() + hint, 2)
        except (typer.Abort, KeyboardInterrupt):
            code = _error("interrupted", 130)
        except USER_ERRORS as err:
            code = _error(_describe(err), 2)
        except Exception as err:  # a bug of ours: say so in one line, keep the traceback
            code = _error(f"internal error ({type(err).__name__}: {err}); the traceback is in {_log(err)}; "
                          "please report it", 1)
        finally:  # the outputs a command claimed (atlas_jax.io)
            if "atlas_jax.io" in sys.modules:
                sys.modules["atlas_jax.io"].release_outputs()
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(add_completion=False, no_args_is_help=True, cls=_OneLineErrors,
                  help="Fit scaling laws (Chinchilla, data-constrained, MSL, ATLAS) to training runs, with intervals.")

BUNDLED = {"epoch-chinchilla": "load_chinchilla", "datablations": "load_datablations",
           "atlas-campaign": "load_campaign"}


class BootstrapUnit(str, Enum):
    run = "run"
    row = "row"


class LawName(str, Enum):
    """Every registered law (``atlas_jax.laws.LAWS``, checked by tests/test_cli.py), named here so that ``--help``
    and argument errors need no import of the laws (pandas)."""

    chinchilla = "chinchilla"
    data_constrained = "data_constrained"
    msl = "msl"
    atlas = "atlas"
    atlas_monolingual = "atlas_monolingual"
    atlas_other = "atlas_other"
    curse = "curse"
    scratch_curve = "scratch_curve"
    finetune_curve = "finetune_curve"


def _columns_option(table: str = ""):
    return typer.Option(None, "--columns", help=f"Map a canonical column to the{table} table's own name: "
                                                 "CANONICAL=SOURCE, e.g. params=N (repeatable).")


@app.callback()
def _main():
    """atlas-jax: batched, jit-compiled scaling-law fits on CPU, GPU or TPU."""


@app.command("fit")
def fit_cmd(
    runs: str = typer.Argument(..., help="CSV or Parquet run table, or a bundled dataset: "
                                         + ", ".join(BUNDLED)),
    law: LawName = typer.Option(..., "--law", help="Law family to fit."),
    out: Path = typer.Option(..., "--out", help="Output folder for params.csv, fit.json, fit.npz and runs.parquet."),
    delta: float = typer.Option(1e-3, "--delta", help="Huber threshold on log residuals."),
    bootstrap: int = typer.Option(0, "--bootstrap", help="Bootstrap resamples for 95% percentile intervals."),
    bootstrap_unit: Optional[BootstrapUnit] = typer.Option(
        None, "--bootstrap-unit", help="What a resample draws: whole runs (rows sharing a 'run' id; the default "
                                       "when the table has a 'run' column) or rows."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap resampling."),
    fix: Optional[List[str]] = typer.Option(None, "--fix", help="Hold a parameter fixed: NAME=VALUE (repeatable)."),
    tie: Optional[List[str]] = typer.Option(None, "--tie", help="Tie parameters: LEADER=FOLLOWER, e.g. alpha=beta."),
    group_by: Optional[str] = typer.Option(None, "--group-by", help="Column whose values get separate fits."),
    share: Optional[str] = typer.Option(None, "--share", help="Parameters shared by every group, fitted jointly: "
                                                              "P1,P2,... (e.g. alpha,beta); each group keeps the rest."),
    where: Optional[str] = typer.Option(None, "--where", help="Keep the rows matching a pandas query, e.g. "
                                                              "\"regime == 'pretrain'\"."),
    variant: Optional[str] = typer.Option(None, "--variant", help="atlas: force one variant (monolingual, other, "
                                                                  "transfer) instead of each group's largest."),
    two_stage: bool = typer.Option(False, "--two-stage", help="data_constrained: Muennighoff et al.'s two-stage "
                                                              "recipe (Chinchilla on single-epoch runs, then R_D*, R_N*)."),
    base: Optional[str] = typer.Option(None, "--base", help="--two-stage: freeze a published stage-1 base instead "
                                                            "of fitting it: muennighoff2023 (their C4 base)."),
    columns: Optional[List[str]] = _columns_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
):
    """Fit LAW to RUNS; write DIR/params.csv (group,param,estimate[,ci_low,ci_high],flags), DIR/fit.json and the
    saved fit that plot, plan and predict --fit DIR read (fit.npz: estimates and bootstrap draws; runs.parquet:
    the fitted rows). When no group gives a trustworthy fit (every group flagged) the table is DIR/diagnostics.csv
    instead of params.csv, and the exit code 3."""
    usable = _fit(runs, law.value, out, delta, bootstrap, bootstrap_unit and bootstrap_unit.value, seed,
                  fix or [], tie or [], group_by, share, where, variant, two_stage, base, columns or [], quiet)
    if not usable:
        typer.echo("error: no group gave a trustworthy fit (see the flags above and in diagnostics.csv): add runs "
                   "that vary what is flagged, fix or share parameters, or use a smaller law", err=True)
        raise typer.Exit(code=3)


def _fit(runs, law_name, out, delta, bootstrap, bootstrap_unit, seed, fix, tie, group_by, share, where, variant,
         two_stage, base, columns, quiet=False) -> bool:
    """Fit (:meth:`SavedFit.fit`), write and print; returns whether any group is usable. Options and the table
    are checked before JAX is imported, so a mistake costs no more than reading the table."""
    from atlas_jax.data.runs import parse_column_mapping
    from atlas_jax.data.select import check_fixed, check_settings, select_fit
    from atlas_jax.io import claim_output

    started = time.perf_counter()
    claim_output(out)
    fixed = {}
    for name, value in _assignments(fix, "--fix"):
        try:
            fixed[name] = float(value)
        except ValueError:
            raise ValueError(f"--fix {name}={value}: expected a number") from None
    if bootstrap == 1:
        raise ValueError("--bootstrap 1: one resample gives no interval; expected 0 (none) or at least 2 (e.g. 1000)")
    check_settings(delta=delta, bootstrap=bootstrap)
    check_fixed(law_name, fixed)
    mapping = parse_column_mapping(columns)
    options = dict(delta=delta, fix=fixed, tie=_assignments(tie, "--tie"), bootstrap=bootstrap,
                   bootstrap_unit=bootstrap_unit, seed=seed, progress=_progress(quiet),
                   share=[p.strip() for p in (share or "").split(",") if p.strip()])
    with warnings.catch_warnings():  # every warning is kept in the saved fit and echoed below, once
        warnings.simplefilter("ignore", UserWarning)
        selection = select_fit(_read_runs(runs, mapping, validate=False, group_by=group_by), law_name,
                               group_by=group_by, where=where, variant=variant, two_stage=two_stage, base=base)

        from atlas_jax.engine.saved import SavedFit  # JAX from here on

        saved = SavedFit.fit(selection, source=str(runs), columns=mapping, **options)
    saved.save(out, {"total_s": time.perf_counter() - started, "command": sys.argv})
    table, line = saved.report()
    typer.echo(table)
    for w in saved.warnings:
        typer.echo(f"warning: {w}", err=True)
    typer.echo(f"{line}; wrote {out}/{saved.table_name}, fit.json, fit.npz and runs.parquet")
    return saved.usable


@app.command("plan")
def plan_cmd(
    runs: Optional[str] = typer.Option(None, "--runs", help="Run table (CSV/Parquet) or a bundled dataset: "
                                                            + ", ".join(BUNDLED) + " (default with --fit: its rows)."),
    fit_dir: Optional[Path] = typer.Option(None, "--fit", help="Plan with the fit saved in DIR by `atlas-jax fit` "
                                                               "instead of refitting (refused unless it is the fit "
                                                               "the plan needs: law, rows, draws)."),
    target: Optional[str] = typer.Option(None, "--target", help="Language to plan for (omit for a table of one "
                                                                "language: N*, D*, loss from --law)."),
    law: Optional[LawName] = typer.Option(None, "--law", help="Monolingual tables: the law to plan with (default "
                                                              "chinchilla); a target is planned with ATLAS."),
    languages: Optional[str] = typer.Option(None, "--languages", help="Helper languages trained alongside, L1,L2,..."),
    flops: Optional[float] = typer.Option(None, "--flops", help="Compute budget C = 6 N D in FLOPs."),
    tokens: Optional[float] = typer.Option(None, "--tokens", help="Token budget D."),
    params: Optional[float] = typer.Option(None, "--params", help="Model size N."),
    from_checkpoint: bool = typer.Option(False, "--from-checkpoint", help="A multilingual checkpoint is available."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the plan to DIR/plan.json and DIR/plan.txt."),
    bootstrap: Optional[int] = typer.Option(None, "--bootstrap", help="Bootstrap resamples behind every interval "
                                                                      "(default 200; with --fit, the fit's)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the bootstrap (default 0; with --fit, the "
                                                            "fit's)."),
    columns: Optional[List[str]] = _columns_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
):
    """Recommend N and D for TARGET with intervals: helper languages by tau, finetune-or-pretrain verdict, loss.
    Refuses (exit 2) when the fit it rests on is flagged; flags what is extrapolated."""
    import json

    from atlas_jax.analysis.planner import plan
    from atlas_jax.data.runs import parse_column_mapping
    from atlas_jax.engine.saved import SavedFit
    from atlas_jax.io import claim_output

    if out is not None:
        claim_output(out)
    if runs is None and fit_dir is None:
        raise ValueError("plan needs --runs RUNS, or --fit DIR (a fit saved by `atlas-jax fit`)")
    if columns and runs is None:
        raise ValueError("--columns maps the columns of --runs; a saved fit's rows are already mapped")
    saved = None if fit_dir is None else SavedFit.load(fit_dir)
    with warnings.catch_warnings():  # the plan keeps every warning in its notes
        warnings.simplefilter("ignore", UserWarning)
        frame = saved.rows if runs is None else _read_runs(runs, parse_column_mapping(columns or []))
        result = plan(frame, target, law=law and law.value,
                      languages=[l.strip() for l in (languages or "").split(",") if l.strip()],
                      flops=flops, tokens=tokens, params=params, from_checkpoint=from_checkpoint,
                      bootstrap=bootstrap, seed=seed, progress=_progress(quiet or as_json), fitted=saved)
    if out is not None:
        result.save(out)
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else str(result))
    if out is not None:
        typer.echo(f"wrote {out}/plan.json and plan.txt", err=True)


@app.command("design")
def design_cmd(
    runs: str = typer.Option(..., "--runs", help="Run table (CSV/Parquet) or a bundled dataset: "
                                                  + ", ".join(BUNDLED) + "."),
    law: Optional[LawName] = typer.Option(None, "--law", help="Law to fit (all targets but crossover_tokens)."),
    target: str = typer.Option(..., "--target", help="N_opt, D_opt or loss_opt (with --flops); model_multiplier, "
                                                      "data_multiplier, data_per_language_multiplier or "
                                                      "compute_multiplier (curse law, with --ratio); a parameter "
                                                      "(alpha, tau_en, ...); or crossover_tokens (D* of --language's "
                                                      "pretrain and finetune curves: which to extend, how far)."),
    flops: Optional[float] = typer.Option(None, "--flops", help="Compute budget C of N_opt, D_opt, loss_opt."),
    ratio: float = typer.Option(2.0, "--ratio", help="Factor of languages of the curse multipliers."),
    language: Optional[str] = typer.Option(None, "--language", help="Design for this language (short for "
                                                                    "--group-by language --group L)."),
    params: Optional[float] = typer.Option(None, "--params", help="crossover_tokens: model size N of the curves "
                                                                  "(default the smallest)."),
    group_by: Optional[str] = typer.Option(None, "--group-by", help="Column whose values get their own fit."),
    group: Optional[str] = typer.Option(None, "--group", help="The group to design for (with --group-by)."),
    candidates: Optional[str] = typer.Option(None, "--candidates", help="Candidate runs (CSV/Parquet: params, "
                                                                        "tokens and what the law reads); default "
                                                                        "the --grid around the runs, crossed with "
                                                                        "their mixtures."),
    grid: str = typer.Option("25x40", "--grid", help="Default candidates: N x D log-spaced sizes from half the "
                                                     "smallest to 8 times the largest run."),
    min_flops: Optional[float] = typer.Option(None, "--min-flops", help="Leave out candidates below this compute "
                                                                        "(6 N D): keep the design to sizes where "
                                                                        "you trust the law."),
    distinct: bool = typer.Option(False, "--distinct", help="Pick each candidate at most once (a table of concrete "
                                                            "runs); by default a run may be picked again (another "
                                                            "seed)."),
    k: int = typer.Option(1, "--k", help="Runs to pick (greedily: each pick counts the ones before)."),
    budget: Optional[float] = typer.Option(None, "--budget", help="FLOPs the picked runs may take in all (the picks "
                                                                  "are the better of greedy per FLOP and greedy in "
                                                                  "all)."),
    bootstrap: int = typer.Option(200, "--bootstrap", help="Bootstrap resamples behind the current uncertainty."),
    refit: int = typer.Option(0, "--refit", help="At each pick, score the best N candidates again by refits of "
                                                  "simulated outcomes (default 0: the linearised scores only)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    as_json: bool = typer.Option(False, "--json", help="Print the design as JSON."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write DIR/design.json, picks.csv, candidates.csv "
                                                           "and design.png (candidates on the N-D plane)."),
    columns: Optional[List[str]] = _columns_option(),
):
    """Which runs to train next: rank candidate runs by how much each narrows TARGET's interval per FLOP (a
    linearised Bayesian design over the fit's bootstrap draws; --refit re-scores the best by refits of simulated
    outcomes) and pick K greedily. Refuses (exit 2) when the fit has a flag other than a wide interval."""
    import json

    from atlas_jax.data.runs import parse_column_mapping
    from atlas_jax.io import claim_output

    crossover = target == "crossover_tokens"
    if crossover and (law is not None or language is None):
        raise ValueError("--target crossover_tokens fits --language's pretrain and finetune curves (scratch_curve, "
                         "finetune_curve): give --language and leave out --law")
    if not crossover and law is None:
        raise ValueError(f"--target {target}: give the --law to fit")
    if language is not None and not crossover:
        if group_by not in (None, "language") or group not in (None, language):
            raise ValueError(f"--language {language} designs for the group language = {language}: leave out --group-by "
                  f"{group_by} and --group {group}")
        group_by, group = "language", language
    sizes = grid.lower().split("x")
    if len(sizes) != 2 or not all(v.isdigit() and int(v) >= 2 for v in sizes):
        raise ValueError(f"--grid {grid}: expected two sizes of at least 2, N x D, e.g. 25x40")
    if out is not None:
        claim_output(out)
    mapping = parse_column_mapping(columns or [])
    frame = _read_runs(runs, mapping, validate=False, group_by=group_by)
    cand = None if candidates is None else _read_runs(candidates, mapping, validate=False)
    from atlas_jax.analysis.designer import design, design_crossover  # JAX from here on

    with warnings.catch_warnings():  # the fit's warnings: a flagged fit is refused below
        warnings.simplefilter("ignore", UserWarning)
        if crossover:
            result = design_crossover(frame, language, params, k=k, budget=budget, bootstrap=bootstrap, seed=seed)
        else:
            result = design(law.value, frame, target, cand, flops=flops, group_by=group_by, group=group, k=k,
                            budget=budget, bootstrap=bootstrap, seed=seed, refit=refit, distinct=distinct,
                            ratio=ratio, grid=(int(sizes[0]), int(sizes[1])), min_flops=min_flops)
    if out is not None:
        result.save(out)
    typer.echo(json.dumps(result.to_dict(), indent=2, default=float) if as_json else str(result))
    if out is not None:
        typer.echo(f"wrote {out}/design.json, picks.csv, candidates.csv and design.png", err=True)


@app.command("predict")
def predict_cmd(
    fit_dir: Path = typer.Option(..., "--fit", help="Folder of a fit saved by `atlas-jax fit`."),
    runs: Optional[str] = typer.Option(None, "--runs", help="Rows to predict (CSV/Parquet): params, tokens and what "
                                                            "the law reads (unique_tokens; language and tokens_<lang> "
                                                            "for ATLAS and MSL; the fit's --group-by column)."),
    params: Optional[float] = typer.Option(None, "--params", help="Model size N of one run (with --tokens)."),
    tokens: Optional[float] = typer.Option(None, "--tokens", help="Tokens D of one run (with --params)."),
    group: Optional[str] = typer.Option(None, "--group", help="Group whose fit predicts (default: the rows' "
                                                              "--group-by value, or the only group)."),
    allow_flagged: bool = typer.Option(False, "--allow-flagged", help="Also predict with flagged groups' fits "
                                                                      "(marked in the flags column)."),
    as_json: bool = typer.Option(False, "--json", help="Print the predictions as JSON records."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the predictions to FILE.csv."),
    columns: Optional[List[str]] = _columns_option(" --runs"),
):
    """Predicted loss of each row by a saved fit, with its interval over the fit's bootstrap draws (percentile,
    at the fit's level). Flagged groups give no numbers (unless --allow-flagged) and a warning; exits 3 when no
    row gets one."""
    import json

    table, messages = _predict(fit_dir, runs, params, tokens, group, allow_flagged, out, columns or [])
    if as_json:
        typer.echo(json.dumps(table.astype(object).where(table.notna(), None).to_dict(orient="records"), indent=2))
    else:
        import pandas as pd

        with pd.option_context("display.float_format", "{:.6g}".format, "display.width", 140,
                               "display.max_rows", 500):
            typer.echo(table.to_string(index=False))
    for m in messages:
        typer.echo(f"warning: {m}", err=True)
    if out is not None:
        typer.echo(f"wrote {out}", err=True)
    if table["predicted"].isna().all():
        typer.echo("error: no row got a prediction: every group it needs is flagged (see the warnings); "
                   "--allow-flagged gives them, marked", err=True)
        raise typer.Exit(code=3)


def _predict(fit_dir, runs, params, tokens, group, allow_flagged, out, columns):
    """Predictions of a saved fit for --runs or one (--params, --tokens) run, and the warnings to echo."""
    import pandas as pd

    from atlas_jax.data.runs import parse_column_mapping, validate_runs
    from atlas_jax.engine.saved import SavedFit
    from atlas_jax.io import atomic_output_file, claim_output
    from atlas_jax.laws import get_law

    if out is not None and out.suffix.lower() != ".csv":
        raise ValueError(f"--out {out}: expected a .csv file")
    if out is not None:
        claim_output(out, folder=False)
    one = params is not None or tokens is not None
    if (runs is None) == (not one):
        raise ValueError("predict needs --runs RUNS, or --params N --tokens D (not both)")
    if one and (params is None or tokens is None):
        raise ValueError("--params and --tokens go together: one run of N parameters trained on D tokens")
    if columns and runs is None:
        raise ValueError("--columns maps the columns of --runs")
    saved = SavedFit.load(fit_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore", UserWarning)  # the table's warnings: not the predictions' concern
        if one:
            law = get_law(saved.result(group)[0].law)
            if law.group_names is not None:
                raise ValueError(f"law {law.name!r} is multilingual: a prediction needs the run's mixture; give "
                                 "--runs with language and tokens_<lang> columns (--params/--tokens are not enough)")
            extra = [c for c in law.required if c not in ("params", "tokens", "loss")]
            if extra:
                raise ValueError(f"law {law.name!r} reads column(s) {extra} besides N and D: give --runs with them")
            frame = validate_runs(pd.DataFrame({"params": [params], "tokens": [tokens]}), required=()).frame
        else:
            frame = _read_runs(runs, parse_column_mapping(columns))
        warnings.simplefilter("always", UserWarning)
        table = saved.predict(frame, group, allow_flagged=allow_flagged)
    if out is not None:
        with atomic_output_file(out) as tmp:
            table.to_csv(tmp, index=False)
    return table, [str(w.message) for w in caught]


@app.command("posterior")
def posterior_cmd(
    runs: str = typer.Argument(..., help="CSV or Parquet run table, or a bundled dataset: " + ", ".join(BUNDLED)),
    law: LawName = typer.Option(..., "--law", help="Law family."),
    out: Path = typer.Option(..., "--out", help="Output folder for posterior.nc, summary.csv, derived.csv."),
    group_by: Optional[str] = typer.Option(None, "--group-by", help="Column whose values get their own parameters."),
    hierarchical: bool = typer.Option(False, "--hierarchical", help="Partially pool parameters across groups."),
    chains: int = typer.Option(4, "--chains", help="NUTS chains."),
    draws: int = typer.Option(1000, "--draws", help="Kept draws per chain."),
    warmup: int = typer.Option(1000, "--warmup", help="Warm-up iterations per chain."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampler."),
    columns: Optional[List[str]] = _columns_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
):
    """Sample LAW's posterior on RUNS with NUTS; write DIR/posterior.nc (ArviZ), summary.csv, derived.csv
    and posterior.json (diagnostics, settings, versions)."""
    _posterior(runs, law.value, out, group_by, hierarchical, chains, draws, warmup, seed, columns or [], quiet)


def _posterior(runs, law_name, out, group_by, hierarchical, chains, draws, warmup, seed, columns, quiet=False):
    import pandas as pd

    from atlas_jax.bayes import posterior
    from atlas_jax.data.runs import parse_column_mapping
    from atlas_jax.data.select import atlas_law_for, select_rows
    from atlas_jax.io import claim_output

    started = time.perf_counter()
    claim_output(out)
    frame, notes = select_rows(_read_runs(runs, parse_column_mapping(columns), group_by=group_by), law_name,
                               group_by=group_by)
    if law_name == "atlas":
        law_name = atlas_law_for(frame, group_by)
    with warnings.catch_warnings():  # diagnostics are echoed below, once
        warnings.simplefilter("ignore", UserWarning)
        post = posterior(law_name, frame, group_by=group_by, hierarchical=hierarchical, chains=chains, draws=draws,
                         warmup=warmup, seed=seed, progress=_progress(quiet))
    messages = notes + list(post.warnings)
    post.save(out, {"runs": str(runs), "warnings": messages, "total_s": time.perf_counter() - started,
                    "command": sys.argv})
    with pd.option_context("display.float_format", "{:.6g}".format, "display.width", 140):
        typer.echo(post.summary()[["group", "param", "mean", "sd", "hdi_2.5%", "hdi_97.5%", "ess_bulk", "ess_tail",
                                   "r_hat"]].to_string(index=False))
    for w in messages:
        typer.echo(f"warning: {w}", err=True)
    typer.echo(f"{chains} chains x {draws} draws, {post.diagnostics['divergences']} divergences, "
               f"max r_hat {post.diagnostics['r_hat_max']:.4f}, min bulk ESS {post.diagnostics['ess_min']:.0f}; "
               f"wrote {out}/posterior.nc, summary.csv, derived.csv and posterior.json")


class PlotKind(str, Enum):
    loss = "loss"
    residuals = "residuals"
    transfer = "transfer"
    frontier = "frontier"
    crossover = "crossover"
    posterior_pairs = "posterior-pairs"
    posterior_forest = "posterior-forest"


@app.command("plot")
def plot_cmd(
    kind: PlotKind = typer.Argument(..., help="Figure: loss and residuals (of a fit of RUNS, or of --fit DIR), "
                                              "transfer (matrix), "
                                              "frontier (iso-loss), crossover (of RUNS' curves), posterior-pairs "
                                              "and posterior-forest (of a posterior.nc)."),
    source: Optional[str] = typer.Argument(None, help="RUNS (loss, residuals, crossover; default atlas-campaign for "
                                                      "crossover), a transfer-matrix CSV (transfer; default the "
                                                      "paper's) or a posterior.nc written by `atlas-jax posterior`."),
    out: Path = typer.Option(..., "--out", help="Output file, .png, .svg or .pdf."),
    law: Optional[LawName] = typer.Option(None, "--law", help="Law to fit (loss, residuals)."),
    fit_dir: Optional[Path] = typer.Option(None, "--fit", help="loss, residuals: draw the fit saved in DIR by "
                                                               "`atlas-jax fit` on its rows instead of fitting "
                                                               "(no RUNS, --law, --group-by, --bootstrap)."),
    x: str = typer.Option("params", "--x", help="loss: horizontal axis, params (N) or tokens (D)."),
    group_by: Optional[str] = typer.Option(None, "--group-by", help="Column whose values get separate fits."),
    group: Optional[str] = typer.Option(None, "--group", help="Group (e.g. language) to draw."),
    language: Optional[str] = typer.Option(None, "--language", help="crossover: language of the curves."),
    size: Optional[float] = typer.Option(None, "--params", help="crossover: model size N (default the smallest)."),
    bootstrap: Optional[int] = typer.Option(None, "--bootstrap", help="Bootstrap resamples behind intervals "
                                                                      "(default 200)."),
    exponents: Optional[str] = typer.Option(None, "--exponents", help="frontier: alpha,beta,phi,psi "
                                                                        "(default the paper's 0.453,0.147,0.11,-0.04)."),
    params: Optional[str] = typer.Option(None, "--param-names", help="posterior plots: parameters, P1,P2,..."),
    columns: Optional[List[str]] = _columns_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
):
    """Draw one figure and save it to FILE (PNG or SVG, written atomically)."""
    _plot(kind.value, source, out, law.value if law else None, fit_dir, x, group_by, group, language, size,
          bootstrap, exponents, params, columns or [], _progress(quiet))
    typer.echo(f"wrote {out}")


def _plot(kind, source, out, law, fit_dir, x, group_by, group, language, size, bootstrap, exponents, params, columns,
          progress=False):
    import warnings

    import pandas as pd

    import atlas_jax
    from atlas_jax import figures
    from atlas_jax.data.runs import parse_column_mapping
    from atlas_jax.io import atomic_output_file, claim_output

    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ValueError(f"--out {out}: expected a .png, .svg or .pdf file")
    claim_output(out, folder=False)
    if fit_dir is not None:
        if kind not in ("loss", "residuals"):
            raise ValueError(f"--fit: plot {kind} draws no fit (--fit is for loss and residuals)")
        given = [o for o, v in (("RUNS", source), ("--law", law), ("--group-by", group_by),
                                ("--bootstrap", bootstrap), ("--columns", columns)) if v is not None and v != []]
        if given:
            raise ValueError(f"plot {kind} --fit DIR draws the saved fit on its own rows, groups and draws: "
                             f"drop {', '.join(given)}")
    names = [p.strip() for p in params.split(",")] if params else None
    bootstrap = 200 if bootstrap is None else bootstrap
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if kind in ("loss", "residuals") and fit_dir is not None:
            from atlas_jax.engine.saved import SavedFit

            saved = SavedFit.load(fit_dir)
            result, g = saved.result(group)
            group, group_by = result.groups[g], saved.group_by
            frame = saved.group_rows(group)
        elif kind in ("loss", "residuals"):
            if source is None or law is None:
                raise ValueError(f"plot {kind} needs RUNS and --law, or --fit DIR")
            from atlas_jax.data.select import atlas_law_for, select_rows

            frame, _ = select_rows(_read_runs(source, parse_column_mapping(columns), group_by=group_by), law,
                                   group_by=group_by)
            if law == "atlas":
                law = atlas_law_for(frame, group_by)
            result = atlas_jax.fit(law, frame, group_by=group_by, bootstrap=bootstrap, progress=progress)
        if kind in ("loss", "residuals"):
            fig = figures.loss_fit(result, frame, x=x, group=group, group_by=group_by) if kind == "loss" else \
                figures.residuals(result, frame, group=group, group_by=group_by)
        elif kind == "transfer":
            fig = figures.transfer_heatmap(None if source is None else pd.read_csv(source, index_col=0))
        elif kind == "frontier":
            try:
                values = [float(v) for v in exponents.split(",")] if exponents else []
            except ValueError:
                raise ValueError(f"--exponents {exponents}: expected four numbers alpha,beta,phi,psi") from None
            if exponents and len(values) != 4:
                raise ValueError(f"--exponents {exponents}: expected four numbers alpha,beta,phi,psi")
            fig = figures.frontier(*values)
        elif kind == "crossover":
            from atlas_jax.analysis import crossover_curves, fit_crossovers

            if language is None:
                raise ValueError("plot crossover needs --language")
            curves = crossover_curves(_read_runs(source or "atlas-campaign", parse_column_mapping(columns)), language,
                                      size)
            row = fit_crossovers(curves, bootstrap=bootstrap, progress=progress).iloc[0]
            fig = figures.crossover(row, curves)
        else:
            from atlas_jax.bayes.result import _arviz

            if source is None or not Path(source).exists():
                raise ValueError(f"plot {kind} needs a posterior.nc written by `atlas-jax posterior`, got {source!r}")
            try:
                idata = _arviz().from_netcdf(source)
            except (OSError, ValueError) as err:
                raise ValueError(f"{source}: not a posterior.nc written by `atlas-jax posterior` ({err})") from None
            fig = figures.posterior_pairs(idata, group=group, params=names) if kind == "posterior-pairs" else \
                figures.posterior_forest(idata, params=names)
    with atomic_output_file(out) as tmp:
        fig.savefig(tmp, dpi=120)


@app.command("bench")
def bench_cmd(
    suites: Optional[List[str]] = typer.Argument(None, help="Suites to run (default all): epoch, throughput, "
                                                             "nuts, campaign, targets, shared, cli."),
    out: Path = typer.Option(Path("bench-results"), "--out", help="Folder for bench.json, BENCHMARKS.md and "
                                                                  "throughput.png."),
    dtype: str = typer.Option("float64", "--dtype", help="Solver arithmetic: float64, float32 or mixed (float32 "
                                                         "screening, float64 polish)."),
    quick: bool = typer.Option(False, "--quick", help="Small settings: a smoke test in about a minute."),
    no_reference: bool = typer.Option(False, "--no-reference", help="Skip the scipy/NumPyro reference recipes."),
    resamples: Optional[int] = typer.Option(None, "--targets-resamples",
                                            help="Resamples of the targets suite (x 4,500 starts; default 4000)."),
    max_fits: Optional[int] = typer.Option(None, "--max-fits", help="Largest batch of the throughput curve."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
):
    """Benchmark suites against their reference recipes; print the table and write results and plot to DIR."""
    from atlas_jax.bench import SUITES, run_suites
    from atlas_jax.engine.batch import DTYPES

    options = {"targets": {} if resamples is None else {"resamples": resamples},
               "throughput": {} if max_fits is None else {"max_fits": max_fits}}
    if dtype not in DTYPES:
        raise ValueError(f"--dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    run_suites(suites or list(SUITES), out, dtype=dtype, quick=quick, reference=not no_reference,
               options=options, verbose=not quiet)


@app.command("reference", hidden=True)
def reference_cmd():
    """Print the CLI reference (Markdown) that the README holds."""
    typer.echo(cli_reference())


def cli_reference() -> str:
    """Markdown reference of every visible command: usage line, help, and a table of its arguments and options
    (generated from the app, so that the README cannot drift from it)."""
    import typer.main

    group = typer.main.get_command(app)
    lines = []
    for name, command in group.commands.items():
        if command.hidden:
            continue
        params = [p for p in command.params if not getattr(p, "hidden", False) and p.name != "help"]
        usage = " ".join(_usage(p) for p in params)
        lines += [f"### `atlas-jax {name}`", "", command.help.strip(), "", f"    atlas-jax {name} {usage}", "",
                  "| argument / option | default | description |", "|---|---|---|"]
        for p in params:
            annotation = p.type_descriptor.annotation
            choices = [e.value for e in annotation] if isinstance(annotation, type) and issubclass(annotation, Enum) else []
            flag = ", ".join(f"`{o}`" for o in list(p.opts) + list(p.secondary_opts)) if p.opts[0].startswith("-") \
                else f"`{p.name.upper()}`"
            default = "required" if p.required else "" if p.default is None or p.default is False or p.default == () \
                else f"`{p.default.value if isinstance(p.default, Enum) else p.default}`"
            text = (p.help or "").replace("|", "\\|") + (f" One of: {', '.join(choices)}." if choices else "")
            lines.append(f"| {flag} | {default} | {text} |")
        lines.append("")
    return "\n".join(lines).rstrip()


def _usage(p) -> str:
    """One parameter in a usage line: ARG, [ARG], --opt VALUE, [--opt ...] or [--flag]."""
    if not p.opts[0].startswith("-"):
        return p.name.upper() if p.required else f"[{p.name.upper()}]"
    if p.required:
        return f"{p.opts[0]} {p.name.upper()}"
    return f"[{p.opts[0]}]" if getattr(p, "is_flag", False) else f"[{p.opts[0]} ...]"


def _assignments(items, option: str) -> list[tuple[str, str]]:
    """``["alpha=beta", "E=1.7"]`` -> ``[("alpha", "beta"), ("E", "1.7")]``, or an error naming ``option``."""
    out = []
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"{option}: expected NAME=VALUE, got {item!r}")
        out.append((name.strip(), value.strip()))
    return out


def _progress(quiet: bool) -> bool:
    """Progress bars on stderr when it is a terminal, unless --quiet."""
    return not quiet and sys.stderr.isatty()


def _read_runs(runs: str, mapping, validate: bool = True, group_by: str | None = None):
    """A run table from a file or a bundled dataset name, column mapping applied, lightly validated (unless not
    ``validate``: the rows as read)."""
    import atlas_jax
    from atlas_jax.data.runs import read_table, rename_columns, validate_runs

    if runs in BUNDLED and not Path(runs).exists():
        bundled = getattr(atlas_jax, BUNDLED[runs])()
        frame = rename_columns((bundled[0] if isinstance(bundled, tuple) else bundled).frame, mapping)
    else:
        frame = read_table(runs, mapping, text=(group_by,) if group_by else ())
    return validate_runs(frame, required=()).frame if validate else frame


def _error(message: str, code: int) -> int:
    """Print ``error: message`` as one line on stderr; return the exit code."""
    typer.echo("error: " + " ".join(str(message).split()), err=True)
    return code


def _describe(err: BaseException) -> str:
    """A user error in words: an OS error names its file and what went wrong."""
    if isinstance(err, OSError) and getattr(err, "filename", None):
        return f"{err.filename}: {err.strerror or err}"
    return str(err) or type(err).__name__


def _log(err: BaseException) -> str:
    """Write ``err``'s traceback to a log file (beside the compilation cache, else the temporary folder); its
    path."""
    import tempfile
    import traceback

    from atlas_jax.runtime import cache_dir

    text = "".join(traceback.format_exception(err))
    cache = cache_dir()
    for folder in ([cache.parent / "errors"] if cache else []) + [Path(tempfile.gettempdir())]:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, path = tempfile.mkstemp(prefix=time.strftime("atlas-jax-error-%Y%m%d-%H%M%S-"), suffix=".log",
                                        dir=folder)
            with open(fd, "w") as f:
                f.write(" ".join(sys.argv) + "\n\n" + text)
            return path
        except OSError:
            continue
    return "(nowhere: no writable folder)"


def main():
    app()


if __name__ == "__main__":
    main()
