"""Coverage check of the posterior intervals on synthetic Chinchilla campaigns with known parameters.

Each dataset draws true parameters around Chinchilla's (E ~ U(1.5, 2), A ~ logU(200, 800),
B ~ logU(500, 3000), alpha ~ U(0.28, 0.42), beta ~ U(0.25, 0.40)), evaluates the law on 6 model sizes
(1e7-3e9) x 6 token counts (1e9-3e11) and multiplies by log-normal noise; NUTS then samples the
posterior of :mod:`atlas_jax.bayes.model` and the equal-tailed ``level`` interval of every parameter is
checked against the truth. One compiled sampler serves every dataset (the data are arguments of the
model), started at each dataset's point fit (all fitted in one batched call).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from numpyro.infer import MCMC, NUTS

from ..engine.batch import fit
from ..laws import get_law
from .model import flat_data, law_model, prior_table

__all__ = ["synthetic_chinchilla", "interval_coverage"]

_SIZES, _TOKENS = np.geomspace(1e7, 3e9, 6), np.geomspace(1e9, 3e11, 6)


def synthetic_chinchilla(n_datasets: int, noise: float = 0.01, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs of ``n_datasets`` campaigns (column ``dataset``) and their true parameters (one row each)."""
    rng = np.random.default_rng(seed)
    truth = pd.DataFrame({"E": rng.uniform(1.5, 2.0, n_datasets), "A": np.exp(rng.uniform(np.log(200), np.log(800), n_datasets)),
                          "B": np.exp(rng.uniform(np.log(500), np.log(3000), n_datasets)),
                          "alpha": rng.uniform(0.28, 0.42, n_datasets), "beta": rng.uniform(0.25, 0.40, n_datasets)})
    n, d = (a.ravel() for a in np.meshgrid(_SIZES, _TOKENS))
    frames = []
    for i, p in truth.iterrows():
        loss = p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]
        frames.append(pd.DataFrame({"dataset": f"d{i:04d}", "params": n, "tokens": d,
                                    "loss": loss * np.exp(noise * rng.standard_normal(len(n)))}))
    return pd.concat(frames, ignore_index=True), truth


def interval_coverage(n_datasets: int = 200, level: float = 0.9, noise: float = 0.01, chains: int = 2,
                      draws: int = 500, warmup: int = 500, seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """One row per dataset and parameter: ``dataset, param, truth, low, high, covered`` plus the dataset's
    divergences and worst split r-hat (``numpyro.diagnostics``)."""
    from numpyro.diagnostics import split_gelman_rubin

    law = get_law("chinchilla")
    runs, truth = synthetic_chinchilla(n_datasets, noise, seed)
    point = fit(law, runs, group_by="dataset")
    prior = prior_table(law)
    model = partial(law_model, law, n_groups=1)
    kernel = NUTS(lambda features, group, log_y=None: model(features, group, loc=prior["loc"].to_numpy(),
                                                            scale=prior["scale"].to_numpy(), log_y=log_y),
                  dense_mass=True, target_accept_prob=0.9)
    mcmc = MCMC(kernel, num_warmup=warmup, num_samples=draws, num_chains=chains, chain_method="vectorized",
                progress_bar=False, jit_model_args=True)
    tail = 50.0 * (1.0 - level)
    rows = []
    iterator = range(n_datasets)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="calibration", unit="dataset")
    for i in iterator:
        data = flat_data(law, runs[runs["dataset"] == f"d{i:04d}"].reset_index(drop=True), None)
        theta0 = np.array([p.to_internal(v) for p, v in zip(law.params, point.estimate[i])])
        init = {"theta": jnp.broadcast_to(jnp.asarray(theta0), (chains, 1, len(theta0))),
                "sigma": jnp.full((chains, 1), np.log(noise))}  # unconstrained: log sigma
        mcmc.run(jax.random.PRNGKey(seed + i), {k: jnp.asarray(v) for k, v in data.features.items()},
                 jnp.asarray(data.group), log_y=jnp.asarray(data.log_y), init_params=init,
                 extra_fields=("diverging",))
        theta = np.asarray(mcmc.get_samples(group_by_chain=True)["theta"])[:, :, 0, :]
        r_hat = float(np.max(split_gelman_rubin(theta)))
        divergences = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
        for j, p in enumerate(law.params):
            values = p.to_public(theta[..., j]).ravel()
            low, high = np.percentile(values, [tail, 100.0 - tail])
            value = float(truth.loc[i, p.name])
            rows.append({"dataset": i, "param": p.name, "truth": value, "low": float(low), "high": float(high),
                         "covered": bool(low <= value <= high), "divergences": divergences, "r_hat": r_hat})
    return pd.DataFrame(rows)
