"""NumPyro models built from a law spec: the same ``law.log_loss`` as the point fit, priors in internal space.

For runs i of groups g (e.g. languages), with theta_g the law's parameters in internal space (logs of
E, A, B, ...; exponents and transfer weights as they are)::

    theta_g,j ~ Normal(m_j, s_j)                                   (independent groups), or
    theta_g,j ~ Normal(mu_j, sd_j),  mu_j ~ Normal(m_j, s_j),  sd_j ~ HalfNormal(pool_j)
                                                                   (hierarchical: partial pooling)
    sigma_g ~ HalfNormal(0.05)
    log L_i ~ StudentT(nu, log_loss(theta_g(i), x_i), sigma_g(i))  (nu = 4: heavy tails, robust like Huber)

(m_j, s_j) is the parameter's ``Param.prior`` unless overridden; the hierarchical scale pool_j is
``s_j / 2``. The hierarchy is centred by default: each group's runs pin its parameters well, where the
centred form mixes better; ``centred=False`` samples theta = mu + sd z with z ~ Normal(0, 1), the form
for weakly informed groups (Betancourt & Girolami 2015). On three campaign languages (20 runs each,
Chinchilla law, 2 x 500 draws) the centred form reached r-hat 1.02 where the non-centred one stayed at 1.6.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd

from ..engine.batch import split_groups
from ..laws.spec import Law

__all__ = ["FlatData", "flat_data", "prior_table", "law_model", "NU", "SIGMA_SCALE"]

NU = 4.0           # Student-t degrees of freedom of the likelihood
SIGMA_SCALE = 0.05  # half-normal scale of the noise sd on log loss (5 %)


class FlatData(NamedTuple):
    """Runs of every group one after another: features [n], ``group`` index [n], ``log_y`` [n]."""

    groups: tuple[str, ...]
    names: tuple[tuple[str, ...], ...]
    features: dict[str, np.ndarray]
    group: np.ndarray
    log_y: np.ndarray


def flat_data(law: Law, frame: pd.DataFrame, group_by: str | None) -> FlatData:
    """Each group's features (``law.features`` of its rows) concatenated, with the group index of every run."""
    groups, rows = split_groups(frame, group_by)
    frames = [frame.iloc[r].reset_index(drop=True) for r in rows]
    feats = [law.features(f) for f in frames]
    features = {k: np.concatenate([np.asarray(fe[k], float) for fe in feats]) for k in feats[0]}
    group = np.concatenate([np.full(len(f), g) for g, f in enumerate(frames)])
    log_y = np.concatenate([np.log(f["loss"].to_numpy(float)) for f in frames])
    return FlatData(groups, tuple(law.names_for(f) for f in frames), features, group, log_y)


def prior_table(law: Law, priors: Mapping[str, tuple[float, float]] | None = None) -> pd.DataFrame:
    """The Normal(loc, scale) prior of every internal parameter: the law's defaults, updated by ``priors``
    (keyed by public or internal name)."""
    priors = dict(priors or {})
    rows = []
    for p in law.params:
        loc, scale = p.prior
        for key in (p.name, p.internal):
            if key in priors:
                loc, scale = map(float, priors.pop(key))
        if not scale > 0:
            raise ValueError(f"prior of {p.name!r}: expected a positive scale, got {scale}")
        rows.append({"param": p.name, "internal": p.internal, "loc": loc, "scale": scale,
                     "space": "log" if p.log else "linear"})
    if priors:
        raise ValueError(f"priors for unknown parameter(s) {sorted(priors)}; law {law.name!r} has "
                         f"{', '.join(law.names)}")
    return pd.DataFrame(rows)


def law_model(law: Law, features, group, n_groups: int, loc, scale, log_y=None, *, hierarchical: bool = False,
              centred: bool = True, nu: float = NU, sigma_scale: float = SIGMA_SCALE):
    """The NumPyro model (module doc); ``loc``/``scale`` are the priors' arrays in ``law.params`` order."""
    loc, scale = jnp.asarray(loc), jnp.asarray(scale)
    P = loc.shape[0]
    if hierarchical:
        mu = numpyro.sample("mu", dist.Normal(loc, scale).to_event(1))
        sd = numpyro.sample("sd", dist.HalfNormal(scale / 2.0).to_event(1))
        with numpyro.plate("groups", n_groups):
            if centred:
                theta = numpyro.sample("theta", dist.Normal(mu, sd).to_event(1))
            else:
                z = numpyro.sample("z", dist.Normal(jnp.zeros(P), 1.0).to_event(1))
                theta = numpyro.deterministic("theta", mu + sd * z)
    else:
        with numpyro.plate("groups", n_groups):
            theta = numpyro.sample("theta", dist.Normal(loc, scale).to_event(1))
    with numpyro.plate("groups", n_groups):
        sigma = numpyro.sample("sigma", dist.HalfNormal(sigma_scale))
    pred = jax.vmap(law.log_loss)(theta[group], features)
    with numpyro.plate("runs", group.shape[0]):
        numpyro.sample("log_loss", dist.StudentT(nu, pred, sigma[group]), obs=log_y)
