"""Chinchilla scaling law (CSL), Hoffmann et al. 2022, arXiv:2203.15556.

    L(N, D) = E + A / N^alpha + B / D^beta

fitted in log space with a = log A, b = log B, e = log E:

    log L = LSE(e, a - alpha log N, b - beta log D).

Default starts: Hoffmann et al.'s 4,500-point grid, alpha, beta in {0, 0.5, ..., 2},
e in {-1, -0.5, ..., 1}, a, b in {0, 5, ..., 25}.
"""

from __future__ import annotations

import numpy as np

from .spec import Law, Param, lse

__all__ = ["CHINCHILLA", "chinchilla_params", "coarse_chinchilla_params", "chinchilla_log_loss", "log_size_features",
           "compute_optimal"]

_EXPONENT = (0.0, 0.5, 1.0, 1.5, 2.0)


def chinchilla_params() -> tuple[Param, ...]:
    """E A B alpha beta with Hoffmann's grid; shared by every law built on the Chinchilla form."""
    return (
        Param("E", "e", log=True, grid=(-1.0, -0.5, 0.0, 0.5, 1.0), prior=(0.0, 1.0)),
        Param("A", "a", log=True, grid=(0.0, 5.0, 10.0, 15.0, 20.0, 25.0), prior=(7.0, 5.0)),
        Param("B", "b", log=True, grid=(0.0, 5.0, 10.0, 15.0, 20.0, 25.0), prior=(7.0, 5.0)),
        Param("alpha", "alpha", grid=_EXPONENT, bounds=(0.0, 10.0), prior=(0.5, 0.5)),
        Param("beta", "beta", grid=_EXPONENT, bounds=(0.0, 10.0), prior=(0.5, 0.5)),
    )


_COARSE = {"E": (-0.5, 0.5), "A": (0.0, 5.0, 10.0, 15.0, 20.0), "B": (0.0, 5.0, 10.0, 15.0, 20.0),
           "alpha": (0.25, 0.5, 1.0), "beta": (0.25, 0.5, 1.0)}


def coarse_chinchilla_params() -> tuple[Param, ...]:
    """Chinchilla parameters with a coarser start grid (450 points) for laws that add parameters.

    Exponents are kept away from 0, where laws using alpha/beta ratios are undefined.
    """
    return tuple(Param(p.name, p.internal, p.log, _COARSE[p.name],
                       (1e-3, p.bounds[1]) if p.name in ("alpha", "beta") else p.bounds, p.prior)
                 for p in chinchilla_params())


def chinchilla_log_loss(theta, log_n, log_d):
    """log L for internal theta = (e, a, b, alpha, beta) at log N, log D (one run)."""
    e, a, b, alpha, beta = theta[0], theta[1], theta[2], theta[3], theta[4]
    return lse(e, a - alpha * log_n, b - beta * log_d)


def compute_optimal(A, B, alpha, beta, flops):
    """(N*, D*) minimising E + A/N^alpha + B/D^beta at C = 6 N D (Hoffmann et al. 2022, appendix D):
    N* = G (C/6)^(beta/(alpha+beta)), G = (alpha A / (beta B))^(1/(alpha+beta)), D* = C / (6 N*). NumPy or JAX
    arrays alike."""
    n_opt = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta)) * (flops / 6.0) ** (beta / (alpha + beta))
    return n_opt, flops / (6.0 * n_opt)


def log_size_features(frame) -> dict[str, np.ndarray]:
    return {
        "log_n": np.log(frame["params"].to_numpy(float)),
        "log_d": np.log(frame["tokens"].to_numpy(float)),
    }


def _log_loss(theta, x):
    return chinchilla_log_loss(theta, x["log_n"], x["log_d"])


CHINCHILLA = Law(
    name="chinchilla",
    params=chinchilla_params(),
    log_loss=_log_loss,
    features=log_size_features,
    description="L = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022)",
)
