"""NumPyro models built from a law spec: the same ``law.log_loss`` as the point fit, priors in internal space.

For runs i of groups g (e.g. languages), with theta_g the law's parameters in internal space (logs of
E, A, B, ...; exponents and transfer weights as they are)::

    theta_g,j ~ Normal(m_j, s_j)                                   (independent groups), or
    theta_g,j ~ Normal(mu_j, sd_j),  mu_j ~ Normal(m_j, s_j),  sd_j ~ HalfNormal(pool_j)
                                                                   (hierarchical: partial pooling)
    sigma_g ~ HalfNormal(0.05)
    log L_i ~ StudentT(nu, log_loss(theta_g(i), x_i), sigma_g(i))  (nu = 4: heavy tails, robust like Huber)

(m_j, s_j) is the parameter's ``Param.prior`` unless overridden; the hierarchical scale pool_j is
``s_j / 2``.

The hierarchy is sampled in coordinates whitened by each group's approximate conditional posterior. With
the group's estimate t_g and Fisher information F_g (:func:`group_information`), a Gaussian likelihood
N(t_g, F_g^-1) and the prior N(mu, diag(sd^2)) give theta_g | mu, sd ~ N(m_g, P_g^-1) with
P_g = F_g + diag(sd^-2) = L_g L_g^T and m_g = P_g^-1 (F_g t_g + mu / sd^2). NUTS samples u_g in

    theta_g = m_g + L_g^-T u_g,   density N(theta_g; mu, sd^2) |det L_g|^-1   (u_g ~ N(0, I) if exact)

so the group parameters neither funnel with sd (as the centred form does where the runs say little, e.g.
one repetition rate lambda shared by every language) nor pin z = (theta - mu) / sd ever tighter as sd grows
(as the non-centred form does where the runs say much). F_g = 0 is the non-centred form; large F_g acts
like the centred one, direction by direction (Papaspiliopoulos, Roberts & Skold 2007 for the scalar case).
The pooled mean funnels in sd too (its spread given sd is ~ sd / sqrt(G) where the runs pin every group),
so it is sampled as mu = centre(sd) + spread(sd) w, its approximate conditional posterior given sd
(:func:`pooled_mean`; on the hierarchical ATLAS benchmark: divergences 1-3 -> 0, leapfrog steps per draw
31 -> 22).
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd

from ..data.runs import split_groups
from ..linalg import cho_solve, cholesky, solve_lower_t
from ..laws.spec import Law

__all__ = ["FlatData", "flat_data", "prior_table", "law_model", "likelihood", "group_conditional",
           "group_information", "group_variance", "pooled_mean", "hierarchy_start", "NU", "SIGMA_SCALE"]

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
              estimate=None, fisher=None, variance=None, nu: float = NU, sigma_scale: float = SIGMA_SCALE):
    """The NumPyro model (module doc); ``loc``/``scale`` are the priors' arrays in ``law.params`` order; of
    ``law`` it reads ``log_loss`` only. Hierarchical models take the groups' ``estimate`` [G, P] and ``fisher``
    [G, P, P] (default: none, the non-centred form) and ``variance`` (:func:`group_variance`, computed from them
    unless given: given, the arrays may be traced)."""
    P = len(loc)
    if hierarchical:
        fisher = jnp.zeros((n_groups, P, P)) if fisher is None else jnp.asarray(fisher)
        estimate = jnp.zeros((n_groups, P)) if estimate is None else jnp.asarray(estimate)
        variance = group_variance(fisher, scale) if variance is None else variance
        loc, scale = jnp.asarray(loc), jnp.asarray(scale)
        sd = numpyro.sample("sd", dist.HalfNormal(scale / 2.0).to_event(1))
        centre, spread = pooled_mean(estimate, variance, loc, scale, sd)
        w = numpyro.sample("w", dist.ImproperUniform(dist.constraints.real, (), (P,)))
        mu = numpyro.deterministic("mu", centre + spread * w)
        numpyro.factor("pool", dist.Normal(loc, scale).log_prob(mu).sum() + jnp.log(spread).sum())
        chol, mean = group_conditional(fisher, estimate, mu, sd)
        with numpyro.plate("groups", n_groups):
            u = numpyro.sample("u", dist.ImproperUniform(dist.constraints.real, (), (P,)))
            theta = mean + solve_lower_t(chol, u)
            numpyro.factor("hierarchy", dist.Normal(mu, sd).log_prob(theta).sum(-1)
                           - jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)).sum(-1))
        theta = numpyro.deterministic("theta", theta)
    else:
        with numpyro.plate("groups", n_groups):
            theta = numpyro.sample("theta", dist.Normal(jnp.asarray(loc), jnp.asarray(scale)).to_event(1))
    with numpyro.plate("groups", n_groups):
        sigma = numpyro.sample("sigma", dist.HalfNormal(sigma_scale))
    with numpyro.plate("runs", group.shape[0]):
        numpyro.sample("log_loss", likelihood(law, theta, sigma, features, group, nu), obs=log_y)


def likelihood(law: Law, theta, sigma, features, group, nu: float = NU) -> dist.StudentT:
    """Distribution of every run's log loss given the groups' ``theta`` [G, P] and noise ``sigma`` [G]."""
    return dist.StudentT(nu, jax.vmap(law.log_loss)(theta[group], features), sigma[group])


def group_conditional(fisher, estimate, mu, sd):
    """Cholesky factor L_g [G, P, P] of P_g = F_g + diag(sd^-2) and the conditional mean m_g [G, P] of the
    groups' parameters given the hierarchy's ``mu`` and ``sd`` (module doc)."""
    chol = cholesky(fisher + jnp.diag(sd ** -2.0))
    return chol, cho_solve(chol, (fisher @ estimate[..., None])[..., 0] + mu / sd ** 2)


def group_information(law: Law, theta, features, group, sigma, nu: float = NU) -> np.ndarray:
    """Fisher information [G, P, P] of each group's runs at its estimate ``theta`` [G, P] under the
    Student-t likelihood: F_g = (nu + 1) / ((nu + 3) sigma_g^2) sum_i J_i J_i^T, J_i the gradient of run
    i's log loss."""
    jac = np.asarray(jax.jit(jax.vmap(jax.grad(law.log_loss)))(jnp.asarray(theta)[group], features))  # [n, P]
    group = np.asarray(group)
    return np.stack([(nu + 1.0) / ((nu + 3.0) * sigma[g] ** 2) * jac[group == g].T @ jac[group == g]
                     for g in range(len(sigma))])


def group_variance(fisher, scale) -> np.ndarray:
    """Each group's estimate variance per parameter [G, P]: diag((F_g + diag(scale^-2))^-1), the Fisher
    information regularised by the prior scale (a parameter the runs do not inform keeps the prior's)."""
    scale = np.asarray(scale, float)
    return np.diagonal(np.linalg.inv(np.asarray(fisher, float) + np.diag(scale ** -2.0)), axis1=1, axis2=2)


def pooled_mean(estimate, variance, loc, scale, sd):
    """Centre and spread [P] of the hierarchy's mean given its scale ``sd``, per parameter: the group
    estimates t_g ~ N(mu, v_g + sd^2) and the prior mu ~ N(loc, scale^2) give mu | sd ~ N(centre, spread^2),
    spread^-2 = scale^-2 + sum_g 1 / (v_g + sd^2). The model samples w with mu = centre + spread w, which
    removes the funnel of mu in sd (spread shrinks with sd where the groups' runs pin their parameters)."""
    weight = 1.0 / (variance + sd ** 2)
    precision = scale ** -2.0 + weight.sum(0)
    return (loc * scale ** -2.0 + (weight * estimate).sum(0)) / precision, precision ** -0.5


def hierarchy_start(theta, fisher, scale) -> tuple[np.ndarray, np.ndarray]:
    """Start values of the hierarchy's ``mu`` and ``sd`` [P] from group estimates ``theta`` [G, P]: the
    random-effects (DerSimonian & Laird 1986) between-group spread, floored at 0.05 ``scale``, and the
    matching weighted mean, with each estimate's variance from :func:`group_variance`."""
    theta, scale = np.asarray(theta, float), np.asarray(scale, float)
    var = group_variance(fisher, scale)
    w = 1.0 / var
    mean = (w * theta).sum(0) / w.sum(0)
    q = (w * (theta - mean) ** 2).sum(0)
    tau2 = np.maximum(q - (theta.shape[0] - 1), 0.0) / (w.sum(0) - (w ** 2).sum(0) / w.sum(0))
    sd = np.maximum(np.sqrt(tau2), 0.05 * scale)
    w = 1.0 / (var + sd ** 2)
    return (w * theta).sum(0) / w.sum(0), sd
