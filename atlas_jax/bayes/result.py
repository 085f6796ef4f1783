"""The outcome of NUTS: draws in internal and public space, log-likelihoods, predictive draws, diagnostics.

Arrays are ``[chain, draw, ...]``. ArviZ is imported only by :meth:`Posterior.to_inference_data` and
the methods built on it (the output layer), so sampling works where ArviZ is not installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..engine.result import group_index

__all__ = ["Posterior", "HDI_PROB"]


def _arviz():
    """ArviZ, imported on first use without its refactor banner (a FutureWarning)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz

HDI_PROB = 0.95  # highest-density intervals, as every other interval of atlas_jax (ArviZ's default is 0.94)


@dataclass(frozen=True)
class Posterior:
    """Posterior draws of one law over groups (see :func:`atlas_jax.bayes.posterior`)."""

    law: str
    group_by: str
    groups: tuple[str, ...]
    names: tuple[tuple[str, ...], ...]   # public names per group (ATLAS: tau_<helper>)
    internal_names: tuple[str, ...]
    public_names: tuple[str, ...]
    hierarchical: bool
    samples: dict                        # sampled sites: theta [C, D, G, P] (or z), mu/sd [C, D, P]; sigma [C, D, G]
    public: np.ndarray                   # [C, D, G, P] public parameters
    log_likelihood: np.ndarray           # [C, D, n]
    predictive: np.ndarray               # [C, D, n] replicated log losses
    sample_stats: dict                   # diverging, energy, num_steps, accept_prob: [C, D]
    log_y: np.ndarray                    # [n] observed log losses
    run_group: np.ndarray                # [n] group index of every run
    features: dict                       # [n] arrays
    point: np.ndarray                    # [G, P] point fit (public)
    priors: pd.DataFrame
    diagnostics: dict
    warnings: tuple[str, ...] = ()
    settings: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    def draws(self, name: str, group: str | None = None) -> np.ndarray:
        """Flattened draws [chain * draw] of one public parameter (by law name, e.g. ``tau_1``, or group name)."""
        g = group_index(self.groups, group)
        names = self.names[g]
        j = names.index(name) if name in names else self.public_names.index(name)
        return self.public[:, :, g, j].reshape(-1)

    def interval(self, name: str, group: str | None = None, level: float = 0.95) -> tuple[float, float]:
        """Equal-tailed ``level`` credible interval of a public parameter."""
        tail = 50.0 * (1.0 - level)
        low, high = np.percentile(self.draws(name, group), [tail, 100.0 - tail])
        return float(low), float(high)

    def parameters(self) -> dict[str, np.ndarray]:
        """One array [chain, draw, group] per public parameter, named as the groups name them (ATLAS:
        ``tau_en``); NaN for the groups that do not have it (a helper language of other targets)."""
        out = {}
        for g, names in enumerate(self.names):
            for j, name in enumerate(names):
                if name not in out:
                    out[name] = np.full(self.public.shape[:3], np.nan)
                out[name][:, :, g] = self.public[:, :, g, j]
        return out

    def to_inference_data(self):
        """ArviZ InferenceData: posterior (one variable per public parameter, ``E``, ``alpha``, ``tau_en`` ...
        with the group dimension, ``sigma``, and the sampled internal sites), sample_stats, log_likelihood,
        posterior_predictive, observed_data and constant_data, with dims (chain, draw, <group_by>, internal,
        run). ``posterior.attrs["parameters"]`` lists the public parameters (space-separated), so
        ``az.summary(idata, var_names=["alpha"])``, ``az.plot_trace`` and ``az.plot_forest`` work by name."""
        az = _arviz()

        gdim = self.group_by
        coords = {gdim: list(self.groups), "internal": list(self.internal_names), "run": np.arange(len(self.log_y))}
        public = self.parameters()
        posterior = {**public, "sigma": self.samples["sigma"]}
        dims = {**{name: [gdim] for name in public}, "sigma": [gdim], "log_loss": ["run"]}
        for site, site_dims in (("mu", ["internal"]), ("sd", ["internal"]), ("w", ["internal"]),
                                ("u", [gdim, "internal"]), ("theta", [gdim, "internal"])):
            if site in self.samples:
                posterior[site], dims[site] = self.samples[site], site_dims
        stats = {"diverging": self.sample_stats["diverging"], "energy": self.sample_stats["energy"],
                 "n_steps": self.sample_stats["num_steps"], "acceptance_rate": self.sample_stats["accept_prob"]}
        constant = {**{k: np.asarray(v) for k, v in self.features.items()}, "group_index": self.run_group}
        dims.update({k: ["run"] for k in constant})
        idata = az.from_dict(posterior=posterior, sample_stats=stats, log_likelihood={"log_loss": self.log_likelihood},
                             posterior_predictive={"log_loss": self.predictive}, observed_data={"log_loss": self.log_y},
                             constant_data=constant, coords=coords, dims=dims)
        idata.posterior.attrs["parameters"] = " ".join(public)
        return idata

    def save(self, out, record: dict | None = None) -> None:
        """Write the folder ``out`` atomically: ``posterior.nc`` (:meth:`to_inference_data`), ``summary.csv``,
        ``derived.csv`` and ``posterior.json`` (law, groups, settings, diagnostics, warnings, priors, timings,
        versions, devices, which digits are reproducible, and ``record``'s keys)."""
        from importlib.metadata import version

        import jax

        from ..io import atomic_output_dir, write_json

        info = {"law": self.law, "groups": list(self.groups), "hierarchical": self.hierarchical,
                "settings": self.settings, "diagnostics": self.diagnostics, "warnings": list(self.warnings),
                "priors": self.priors.to_dict(orient="records"), "timings_s": dict(self.timings),
                "versions": {p: version(p) for p in ("atlas-jax", "jax", "numpyro", "arviz", "numpy", "pandas")},
                "device": [str(d) for d in jax.devices()],
                "reproducibility": f"bitwise for the same table, settings, seed and device count ({jax.device_count()} "
                                   "here); with another device count the draws differ in their last digits (at "
                                   "most 3e-10 relative in BENCHMARKS.md's check, 1 against 2 CPU devices)",
                **(record or {})}
        with atomic_output_dir(out) as tmp:
            self.to_inference_data().to_netcdf(str(tmp / "posterior.nc"))
            self.summary().to_csv(tmp / "summary.csv", index=False)
            self.derived().to_csv(tmp / "derived.csv", index=False)
            write_json(tmp / "posterior.json", info)

    def summary(self, hdi_prob: float = HDI_PROB) -> pd.DataFrame:
        """One row per group and public parameter: mean, sd, ``hdi_prob`` HDI (columns ``hdi_2.5%``,
        ``hdi_97.5%`` at 95 %), ess_bulk, ess_tail, r_hat (ArviZ), in the groups' parameter order."""
        az = _arviz()

        rows = [(g, group, j, name) for g, (group, names) in enumerate(zip(self.groups, self.names))
                for j, name in enumerate(names)]
        draws = {f"{name}[{group}]": self.public[:, :, g, j] for g, group, j, name in rows}  # only what exists
        table = az.summary(az.from_dict(posterior=draws), hdi_prob=hdi_prob, kind="all", round_to="none")
        table.insert(0, "param", [name for *_, name in rows])
        table.insert(0, "group", [group for _, group, *_ in rows])
        return table.reset_index(drop=True)

    def derived(self, flops=(1e21, 1e23, 1e25), r_values=(2, 4), level: float = 0.95) -> pd.DataFrame:
        """Planning quantities per draw, summarised per group: columns ``group, quantity, at, median, mean,
        ci_low, ci_high`` (equal-tailed ``level``).

        For laws with ``A B alpha beta`` (data not repeated, D_eff = D), at every compute C in ``flops``:
        N* = G (C/6)^(beta/(alpha+beta)), G = (alpha A / (beta B))^(1/(alpha+beta)), D* = C / (6 N*) and
        D*/N* (Hoffmann et al. 2022, appendix D). For laws with ``phi psi`` (curse), at every r in
        ``r_values``: the compute-optimal multipliers of model, tokens and compute for r times the
        languages (:func:`atlas_jax.analysis.expansion_multipliers`). Crossover tokens per draw come from
        two curve posteriors: :func:`atlas_jax.analysis.posterior_crossovers`.
        """
        from ..analysis.curse import expansion_multipliers
        from ..laws.chinchilla import compute_optimal

        names = self.public_names
        if any(n not in names for n in ("A", "B", "alpha", "beta")):
            raise ValueError(f"law {self.law!r} has no A, B, alpha, beta: no compute-optimal sizes to derive")
        col = {n: self.public[..., names.index(n)].reshape(-1, len(self.groups)) for n in names}
        a, b = col["alpha"], col["beta"]
        values = []
        for c in np.atleast_1d(np.asarray(flops, float)):
            with np.errstate(all="ignore"):
                n_opt, d_opt = compute_optimal(col["A"], col["B"], a, b, c)
            values += [("N_opt", c, n_opt), ("D_opt", c, d_opt), ("tokens_per_param", c, d_opt / n_opt)]
        if "phi" in names and "psi" in names:
            for r in np.atleast_1d(np.asarray(r_values, float)):
                m = expansion_multipliers(r, a, b, col["phi"], col["psi"])
                values += [(f"{k}_multiplier", r, m[k]) for k in ("model", "data", "compute")]
        tail = 50.0 * (1.0 - level)
        rows = []
        for quantity, at, v in values:
            for g, group in enumerate(self.groups):
                low, high = np.nanpercentile(v[:, g], [tail, 100.0 - tail])
                rows.append({"group": group, "quantity": quantity, "at": float(at), "median": float(np.nanmedian(v[:, g])),
                             "mean": float(np.nanmean(v[:, g])), "ci_low": float(low), "ci_high": float(high)})
        return pd.DataFrame(rows)
