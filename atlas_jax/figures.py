"""Figures (matplotlib). Every function takes ``ax=`` (an Axes to draw into; a new figure by default) and
returns the Figure; none calls ``plt.show()``.

- :func:`loss_fit`: observed loss against N or D with the fitted loss and its bootstrap interval at every run.
- :func:`residuals`: log residuals against fitted loss, with the Huber threshold.
- :func:`transfer_heatmap`: the cross-lingual transfer matrix (target rows x source columns).
- :func:`frontier`: iso-loss frontiers for r times the languages (Longpre et al. 2026, section 4).
- :func:`crossover`: pretrain-from-scratch and finetune curves with the crossover D* and its interval.
- :func:`posterior_pairs`, :func:`posterior_forest`: posterior pair and forest plots through ArviZ.
- :func:`design_map`: candidate runs on the N-D plane coloured by value per FLOP, the runs so far and the picks.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .analysis.curse import expansion_multipliers, iso_loss_frontier
from .analysis.transfer import load_transfer_matrix
from .engine.evaluate import predict
from .engine.result import FitResult, group_index
from .laws import get_law
from .laws.curve import curve_loss

__all__ = ["loss_fit", "residuals", "transfer_heatmap", "frontier", "crossover", "posterior_pairs",
           "posterior_forest", "design_map"]

AXIS_LABELS = {"params": "N (parameters)", "tokens": "D (training tokens)"}


def _axes(ax, figsize=(6.4, 4.4)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
        return fig, ax
    return ax.figure, ax


def _group_frame(result: FitResult, runs, group: str | None, group_by: str | None) -> tuple[int, pd.DataFrame]:
    frame = runs.frame if hasattr(runs, "frame") else runs
    g = group_index(result.groups, group)
    if len(result.groups) > 1:
        if group_by is None or group_by not in frame.columns:
            raise ValueError(f"the fit has {len(result.groups)} groups: give group_by, the column that defined them "
                             f"(columns: {', '.join(map(str, frame.columns))})")
        frame = frame[frame[group_by].astype(str) == result.groups[g]]
    return g, frame.reset_index(drop=True)


def _flagged(result: FitResult, g: int) -> str:
    """A second title line naming the group's identification flags: a flagged fit is drawn, and says so."""
    verdict = result.verdict(result.groups[g])
    return f"\n{verdict}" if verdict.startswith("flagged") else ""


def _series(values: np.ndarray, most: int = 10) -> np.ndarray:
    """Each run's series: its value when there are at most ``most`` distinct ones (model sizes of a sweep), else the
    geometric centre of its bin among ``most - 2`` log-spaced bins."""
    distinct = np.unique(values)
    if len(distinct) <= most:
        return values
    edges = np.geomspace(distinct[0], distinct[-1], most - 1)
    k = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, most - 3)
    return np.sqrt(edges[k] * edges[k + 1])


def loss_fit(result: FitResult, runs, *, x: str = "params", group: str | None = None, group_by: str | None = None,
             level: float = 0.95, ax=None):
    """Observed loss against ``x`` (``params`` N or ``tokens`` D), coloured by the other axis, with the fitted law
    as one curve per value of the other axis (per model size, or per token count; binned when they are many) and,
    when ``result`` is bootstrapped, its ``level`` band over the refits. Laws that read only N and D are drawn as
    smooth curves; the others (their runs differ in more than N and D: unique tokens, mixtures) as their fitted
    loss at every run (a tick, with its interval as a bar), against the target language's own tokens when ``x`` is
    ``tokens``."""
    from matplotlib.colors import LogNorm
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if x not in AXIS_LABELS:
        raise ValueError(f"x: expected 'params' or 'tokens', got {x!r}")
    other = "tokens" if x == "params" else "params"
    g, frame = _group_frame(result, runs, group, group_by)
    series = _series(frame[other].to_numpy(float))
    norm, cmap = LogNorm(series.min(), max(series.max(), series.min() * 1.01)), plt.get_cmap("viridis")
    smooth = set(get_law(result.law).required) <= {"params", "tokens", "loss"}
    fig, ax = _axes(ax, figsize=(7.2, 4.8))
    column, label = x, AXIS_LABELS[x]
    target = str(frame["language"].iloc[0]) if "language" in frame.columns else None
    if not smooth and x == "tokens" and f"tokens_{target}" in frame.columns:
        column, label = f"tokens_{target}", f"D in {target} (tokens of the target language)"
    for value in np.unique(series):
        rows, color = frame[series == value].sort_values(column), cmap(norm(value))
        if smooth:
            grid = np.geomspace(rows[x].min() / 1.5, rows[x].max() * 1.5, 60)
            rows = pd.DataFrame({**{c: rows[c].iloc[len(rows) // 2] for c in rows.columns}, x: grid, other: value})
        point, band = result.predicted(rows, result.groups[g], level)
        if smooth:
            ax.plot(rows[x], point, color=color, lw=1.4, zorder=2, label=f"_{other}={float(value)!r}")
            if band is not None:
                ax.fill_between(rows[x], band[0], band[1], color=color, alpha=0.2, lw=0, zorder=1)
        else:
            ax.errorbar(rows[column], point, yerr=None if band is None else np.abs(band - point), fmt="_", ms=9,
                        mew=1.6, color=color, elinewidth=1, alpha=0.9, zorder=2)
    ax.scatter(frame[column], frame["loss"], c=frame[other].to_numpy(float), cmap=cmap, norm=norm, s=18,
               edgecolors="k", linewidths=0.4, zorder=3)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=AXIS_LABELS[other])
    ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("loss (nats/token)")
    where = "" if len(result.groups) == 1 else f", {result.groups[g]}"
    ax.set_title(f"{result.law}: loss vs {'N' if x == 'params' else 'D'}{where}{_flagged(result, g)}")
    per = ("D" if x == "params" else "N") + (" bin" if len(np.unique(frame[other])) > len(np.unique(series)) else "")
    fitted = (Line2D([], [], c="0.3", label=f"fitted law, one curve per {per}") if smooth
              else Line2D([], [], marker="_", ms=9, mew=1.6, ls="", c="0.3", label="fitted loss of the run"))
    handles = [Line2D([], [], marker="o", ls="", mfc="0.6", mec="k", label="observed run"), fitted]
    if result.samples is not None:
        kind = "band" if smooth else "interval"
        handles.append(Patch(color="0.3", alpha=0.25, label=f"{level:.0%} bootstrap {kind} "
                                                            f"({result.samples.shape[1]} refits)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)
    return fig


def residuals(result: FitResult, runs, *, group: str | None = None, group_by: str | None = None, ax=None):
    """Log residuals log L - log L_hat of every run against the fitted loss; dashed lines at the Huber
    threshold +-delta (residuals beyond it count linearly in the objective)."""
    g, frame = _group_frame(result, runs, group, group_by)
    point = predict(result.law, frame, result.params(result.groups[g]))
    r = np.log(frame["loss"].to_numpy(float)) - np.log(point)
    fig, ax = _axes(ax)
    ax.scatter(point, r, s=14, c="k", alpha=0.7)
    ax.axhline(0.0, c="C0", lw=1)
    for s in (-1, 1):
        ax.axhline(s * result.delta, c="C3", ls="--", lw=1, label=f"Huber delta = {result.delta:g}" if s > 0 else None)
    ax.set_xlabel("fitted loss (nats/token)")
    ax.set_ylabel("log residual (observed / fitted)")
    where = "" if len(result.groups) == 1 else f", {result.groups[g]}"
    ax.set_title(f"{result.law}: residuals{where} (RMS {np.sqrt(np.mean(r ** 2)):.2e}){_flagged(result, g)}")
    ax.legend(fontsize=8)
    return fig


def transfer_heatmap(matrix: pd.DataFrame | None = None, *, ax=None):
    """The transfer matrix (bilingual transfer score of source on target; default the paper's 38 x 38, Fig. C2)
    as a heatmap, target languages as rows and sources as columns, diverging around 0."""
    matrix = load_transfer_matrix() if matrix is None else matrix
    values = matrix.to_numpy(float)
    fig, ax = _axes(ax, figsize=(9, 8))
    lim = np.nanmax(np.abs(values))
    image = ax.imshow(values, cmap="RdBu", vmin=-lim, vmax=lim)
    ax.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(matrix.shape[0]), matrix.index, fontsize=7)
    ax.set_xlabel("source language")
    ax.set_ylabel("target language")
    ax.set_title("cross-lingual transfer (bilingual transfer score)")
    fig.colorbar(image, ax=ax, shrink=0.8, label="transfer score")
    return fig


def frontier(alpha: float = 0.453, beta: float = 0.147, phi: float = 0.11, psi: float = -0.04,
             r_values: Sequence[float] = (2, 4, 8, 16), *, ax=None):
    """Iso-loss frontiers: the data multiplier per language t = D'/D against the model multiplier s = N'/N
    that keep the loss when going from K to rK languages (compute-optimal baseline), with the
    compute-optimal point of each r marked. Defaults: the paper's fit (alpha 0.453, beta 0.147,
    phi 0.11, psi -0.04)."""
    fig, ax = _axes(ax)
    for k, r in enumerate(r_values):
        opt = expansion_multipliers(r, alpha, beta, phi, psi)
        s_opt = float(opt["model"])
        s = np.geomspace(s_opt / 3, s_opt * 6, 300)
        t = iso_loss_frontier(r, None, alpha, beta, phi, psi, s)
        ax.plot(s, t, c=f"C{k}", label=f"r = {r:g}")
        ax.plot([s_opt], [float(opt["data_per_language"])], "o", c=f"C{k}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("model multiplier N'/N")
    ax.set_ylabel("data multiplier per language D'/D")
    ax.set_title("iso-loss frontier for r x languages")
    ax.legend(fontsize=8, title=f"alpha {alpha:g}, beta {beta:g}, phi {phi:g}, psi {psi:g}\ndots: compute-optimal",
              title_fontsize=8)
    return fig


def crossover(row: pd.Series | dict, curves: pd.DataFrame | None = None, *, tokens=None, ax=None):
    """Pretrain-from-scratch and finetune loss curves of one language (a row of
    :func:`atlas_jax.analysis.fit_crossovers`), with the crossover D* and its interval shaded (one-sided, and
    labelled so, when the refits put one end at 0 or infinity: no crossing in the searched range); ``curves``
    (the checkpoints) are drawn as points."""
    row = dict(row)
    d_star, low, high = (float(row[k]) for k in ("crossover_tokens", "ci_low", "ci_high"))
    finite = [v for v in (d_star, low, high) if np.isfinite(v) and v > 0]
    span = (min(finite + [1e9]) / 10, max(finite + [1e11]) * 10)
    d = np.geomspace(*span, 300) if tokens is None else np.asarray(tokens, float)
    scratch = curve_loss(d, row["E_pretrain"], row["B_pretrain"], row["beta_pretrain"])
    tune = curve_loss(d, row["E_finetune"], row["B_finetune"], row["beta_finetune"], row["D0_finetune"])
    fig, ax = _axes(ax, figsize=(6.4, 5.0))
    ax.plot(d, scratch, c="C0", label="pretrain from scratch")
    ax.plot(d, tune, c="C1", label="finetune the multilingual checkpoint")
    if curves is not None:
        for regime, c in (("pretrain", "C0"), ("finetune", "C1")):
            pts = curves[curves["regime"] == regime]
            ax.scatter(pts["tokens"], pts["loss"], s=10, c=c, alpha=0.6)
    if np.isfinite(d_star) and d_star > 0:
        ax.axvline(d_star, c="k", lw=1, label=f"crossover D* = {d_star:.3g} tokens")
    has_low, has_high = np.isfinite(low) and low > 0, np.isfinite(high) and high > 0
    if has_low or has_high:
        label = (f"95 % interval of D*: {low:.3g} - {high:.3g}" if has_low and has_high else
                 f"95 % interval of D*: > {low:.3g} (no upper end)" if has_low else
                 f"95 % interval of D*: < {high:.3g} (no lower end)")
        ax.axvspan(low if has_low else span[0], high if has_high else span[1], color="0.8", alpha=0.6, label=label)
    ax.set_xscale("log")
    ax.set_xlabel(AXIS_LABELS["tokens"])
    ax.set_ylabel("loss (nats/token)")
    size = f" at N = {row['params']:.3g}" if "params" in row else ""
    ax.set_title(f"pretrain vs finetune, {row['language']}{size}")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2, frameon=False)  # below the data
    return fig


def _inference_data(post):
    return post.to_inference_data() if hasattr(post, "to_inference_data") else post


def _posterior_params(idata, params, group=None):
    """The public parameters asked for (default all; of ``group`` only, when given), checked against the posterior's
    (``posterior.attrs["parameters"]``, :meth:`~atlas_jax.bayes.Posterior.to_inference_data`)."""
    if "parameters" not in idata.posterior.attrs:
        raise ValueError("the posterior has no public parameters listed (posterior.attrs['parameters']): expected one "
                         "written by atlas_jax.posterior or `atlas-jax posterior`")
    names = idata.posterior.attrs["parameters"].split()
    if group is not None:
        gdim, value = group
        names = [n for n in names if not bool(idata.posterior[n].sel({gdim: value}).isnull().all())]
    unknown = [p for p in params or () if p not in names]
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; the posterior has {', '.join(names)}")
    return list(params or names)


def _name_only(az):
    """An ArviZ labeller that writes the variable's name alone (``alpha``, not ``alpha\\nall``)."""

    class NameOnly(az.labels.BaseLabeller):
        def sel_to_str(self, sel, isel):
            return ""

    return NameOnly()


def _group_dim(idata) -> str:
    return next(d for d in idata.posterior["sigma"].dims if d not in ("chain", "draw"))


def posterior_pairs(post, *, group: str | None = None, params: Sequence[str] | None = None, ax=None):
    """Pairwise posterior draws (ArviZ ``plot_pair``, divergences marked) of one group's public parameters;
    ``post`` is a :class:`~atlas_jax.bayes.Posterior` or its InferenceData (e.g. ``posterior.nc``); ``ax``
    a (P - 1) x (P - 1) array of Axes."""
    from .bayes.result import _arviz

    az, idata = _arviz(), _inference_data(post)
    gdim = _group_dim(idata)
    groups = [str(v) for v in idata.posterior[gdim].values]
    g = groups[group_index(tuple(groups), group)]
    names = _posterior_params(idata, params, (gdim, g))
    size = min(2.2 * len(names), 12)
    axes = az.plot_pair(idata, var_names=names, coords={gdim: [g]}, divergences=True, ax=ax,
                        labeller=_name_only(az),  # the group is in the title
                        figsize=(size, size), scatter_kwargs={"alpha": 0.3, "s": 4})
    fig = np.ravel(axes)[0].figure
    fig.suptitle(f"posterior pairs, {gdim} {g}")
    return fig


def posterior_forest(post, *, params: Sequence[str] | None = None, ax=None):
    """95 % HDI of every group's public parameters, one panel per parameter (ArviZ ``plot_forest``, chains
    combined); ``ax``: one Axes per parameter."""
    from .bayes.result import HDI_PROB, _arviz

    az, idata = _arviz(), _inference_data(post)
    names = _posterior_params(idata, params)
    if ax is None:
        height = 1.2 + 0.35 * idata.posterior.sizes[_group_dim(idata)]
        fig, ax = plt.subplots(1, len(names), figsize=(2.6 * len(names), height), squeeze=False, layout="constrained")
    axes = np.ravel(ax)
    if len(axes) != len(names):
        raise ValueError(f"ax: expected {len(names)} Axes, one per parameter, got {len(axes)}")
    for a, name in zip(axes, names):
        az.plot_forest(idata, var_names=[name], combined=True, hdi_prob=HDI_PROB, ax=a,
                       labeller=az.labels.NoVarLabeller())  # rows: the groups; the parameter is the title
        a.set_title(name)
        a.xaxis.set_major_locator(plt.MaxNLocator(3))  # neighbouring panels' tick labels do not run together
        a.tick_params(labelsize=8)
    fig = axes[0].figure
    fig.suptitle(f"posterior forest ({100 * HDI_PROB:.0f} % HDI)")
    return fig


def _pick_labels(picks: pd.DataFrame, x: str, y: str) -> list[tuple[str, float, float]]:
    """One label per place picked, listing the picks' numbers there (a run picked again is another seed)."""
    places: dict[tuple[float, float], list[str]] = {}
    for i, (a, b) in enumerate(zip(picks[x], picks[y])):
        places.setdefault((float(a), float(b)), []).append(str(i + 1))
    return [(",".join(n), a, b) for (a, b), n in places.items()]


def design_map(design, *, ax=None):
    """Candidate runs of a :class:`~atlas_jax.analysis.Design` on the N-D plane, coloured by how much each
    alone narrows the target's interval per PFLOP (log scale), the runs so far (black) and the picks (numbered).
    A crossover design (:func:`~atlas_jax.analysis.design_crossover`) shows instead the expected width after
    extending each curve to D, the current width and D*."""
    fig, ax = _axes(ax)
    c = design.candidates
    flagged = f" [flagged: {', '.join(design.flags)}]" if design.flags else ""
    if "regime" in c.columns:
        for (regime, g), color in zip(c.groupby("regime"), ("tab:orange", "tab:blue")):
            g = g.sort_values("tokens")
            ax.plot(g["tokens"], g["width"], "o-", color=color, label=f"extend the {regime} curve to D")
        ax.axhline(design.width, color="gray", ls="--", label="width now")
        ax.axvline(design.estimate, color="black", ls=":", label=f"D* = {design.estimate:.3g}")
        for label, x, y in _pick_labels(design.picks, "tokens", "width"):
            ax.annotate(label, (x, y), color="red", weight="bold", ha="center", va="bottom")
        ax.set(xscale="log", xlabel=AXIS_LABELS["tokens"], ylabel=f"expected {design.level:.0%} width of D*",
               title=f"which curve to extend: {design.group}{flagged}")
        ax.legend(loc="best", fontsize=8)
        return fig
    value = np.maximum(c["value_per_pflop"].to_numpy(float), np.nanmax(c["value_per_pflop"]) * 1e-6)
    dots = ax.scatter(c["params"], c["tokens"], c=np.log10(value), s=14, cmap="viridis", marker="s")
    fig.colorbar(dots, ax=ax, label="log10 width reduction per PFLOP (alone)")
    ax.scatter(design.runs["params"], design.runs["tokens"], s=10, c="black", label="runs so far")
    for label, x, y in _pick_labels(design.picks, "params", "tokens"):
        ax.annotate(label, (x, y), color="red", weight="bold", ha="center", va="center")
    ax.set(xscale="log", yscale="log", xlabel=AXIS_LABELS["params"], ylabel=AXIS_LABELS["tokens"],
           title=f"next runs for {design.target}" + (f" at {design.flops:.2g} FLOPs" if design.flops else "")
           + flagged)
    ax.legend(loc="lower right")
    return fig
