"""Data-constrained scaling law (DCSL), Muennighoff et al. 2023, arXiv:2305.16264.

    U   = min(U_available, D)                  the unique tokens a run sees
    R_D = D/U - 1                              repeated epochs beyond the first
    U_N = min(N, N_opt(U)),  N_opt(U) = G (G U)^(beta/alpha),  G = (alpha A / (beta B))^(1/(alpha+beta))
    R_N = max(N/U_N - 1, 0)
    D'  = U + U R_D* (1 - exp(-R_D/R_D*))       effective data
    N'  = U_N + U_N R_N* (1 - exp(-R_N/R_N*))   effective parameters
    L   = E + A/N'^alpha + B/D'^beta

(``N_opt(U)`` is Chinchilla's compute-optimal size at the compute for which U
tokens are optimal.) Parameters ``E A B alpha beta R_D_star R_N_star``; R* are
fitted as logs. The published two-stage recipe lives in
:func:`atlas_jax.engine.recipes.fit_data_constrained_two_stage`.
"""

from __future__ import annotations

import numpy as np

from ..runtime import lazy
from .chinchilla import coarse_chinchilla_params
from .spec import Law, Param, lse

jnp = lazy("jax.numpy")  # imported when a law is first evaluated: laws are read without JAX

__all__ = ["DATA_CONSTRAINED", "effective_units", "log_effective"]

def log_effective(log_u, repeats, log_r_star):
    """log of U (1 + R* (1 - exp(-R/R*))): repeated units saturate at U (1 + R*)."""
    r_star = jnp.exp(log_r_star)
    return log_u + jnp.log1p(r_star * -jnp.expm1(-repeats / r_star))


def effective_units(units, repeats, r_star):
    """U (1 + R* (1 - exp(-R/R*))) in linear space (numpy), for reporting."""
    return units * (1.0 + r_star * -np.expm1(-repeats / r_star))


def _log_loss(theta, x):
    e, a, b, alpha, beta, log_rd, log_rn = (theta[i] for i in range(7))
    log_g = (jnp.log(alpha) + a - jnp.log(beta) - b) / (alpha + beta)
    log_n_opt = log_g + (beta / alpha) * (log_g + x["log_u"])
    log_un = jnp.minimum(x["log_n"], log_n_opt)
    r_n = jnp.maximum(jnp.expm1(x["log_n"] - log_un), 0.0)
    log_n_eff = log_effective(log_un, r_n, log_rn)
    log_d_eff = log_effective(x["log_u"], x["r_d"], log_rd)
    return lse(e, a - alpha * log_n_eff, b - beta * log_d_eff)


def _features(frame) -> dict[str, np.ndarray]:
    d = frame["tokens"].to_numpy(float)
    u = np.minimum(frame["unique_tokens"].to_numpy(float), d)  # a run sees at most D of the U tokens available
    return {"log_n": np.log(frame["params"].to_numpy(float)), "log_u": np.log(u),
            "r_d": np.maximum(d / u - 1.0, 0.0)}


_R_GRID = tuple(np.log([1.0, 5.0, 20.0]))

DATA_CONSTRAINED = Law(
    name="data_constrained",
    params=coarse_chinchilla_params() + (
        Param("R_D_star", "log_R_D_star", log=True, grid=_R_GRID, bounds=(np.log(1e-3), np.log(1e6)),
              prior=(np.log(15.0), 2.0)),
        Param("R_N_star", "log_R_N_star", log=True, grid=_R_GRID, bounds=(np.log(1e-3), np.log(1e6)),
              prior=(np.log(15.0), 2.0)),
    ),
    log_loss=_log_loss,
    features=_features,
    required=("params", "tokens", "loss", "unique_tokens"),
    description="Chinchilla with saturating effective data and parameters (Muennighoff et al. 2023)",
)
