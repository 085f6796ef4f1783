"""Loss-vs-tokens curves of one model (N fixed), for transfer scores and pretrain/finetune crossovers.

Pretraining from scratch (Chinchilla at fixed N, with A/N^alpha folded into E):

    L(D) = E + B / D^beta                          log L = LSE(e, b - beta log D)

Continuing from a checkpoint worth D0 tokens of the target (finetuning):

    L(D) = E + B / (D + D0)^beta                   log L = LSE(e, b - beta log(D + D0))

D is the ``tokens`` column (tokens of this curve so far). Parameters ``E B beta`` and ``D0``
(fitted as logs; ``D0`` as log D0).
"""

from __future__ import annotations

import numpy as np

from ..runtime import lazy
from .spec import Law, Param, lse

jnp = lazy("jax.numpy")  # imported when a law is first evaluated: laws are read without JAX

__all__ = ["SCRATCH_CURVE", "FINETUNE_CURVE", "curve_loss", "tokens_to_loss"]

_CURVE_PARAMS = (
    Param("E", "e", log=True, grid=(-1.0, 0.0, 1.0), prior=(0.0, 1.0)),
    Param("B", "b", log=True, grid=(0.0, 5.0, 10.0, 15.0, 20.0), prior=(7.0, 5.0)),
    Param("beta", "beta", grid=(0.1, 0.3, 0.6, 1.0), bounds=(1e-3, 5.0), prior=(0.5, 0.5)),
)


def _features(frame):
    return {"d": frame["tokens"].to_numpy(float)}


def curve_loss(d, E, B, beta, D0=0.0):
    """L(D) = E + B / (D + D0)^beta (numpy; broadcasts over parameter draws)."""
    return E + B / (np.asarray(d, float) + D0) ** beta


def tokens_to_loss(loss, E, B, beta, D0=0.0):
    """Inverse of :func:`curve_loss`: tokens D at which the curve reaches ``loss`` (inf if loss <= E)."""
    gap = np.asarray(loss, float) - E
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(gap > 0, (B / np.where(gap > 0, gap, 1.0)) ** (1.0 / beta) - D0, np.inf)
    return d


def _scratch_log_loss(theta, x):
    return lse(theta[0], theta[1] - theta[2] * jnp.log(x["d"]))


def _finetune_log_loss(theta, x):
    return lse(theta[0], theta[1] - theta[2] * jnp.log(x["d"] + jnp.exp(theta[3])))


SCRATCH_CURVE = Law(
    name="scratch_curve",
    params=_CURVE_PARAMS,
    log_loss=_scratch_log_loss,
    features=_features,
    required=("tokens", "loss"),
    description="L(D) = E + B/D^beta for one model trained from scratch",
)

FINETUNE_CURVE = Law(
    name="finetune_curve",
    params=_CURVE_PARAMS + (Param("D0", "log_D0", log=True, grid=tuple(np.log([1e8, 1e9, 1e10, 1e11])),
                                  bounds=(np.log(1e3), np.log(1e15)), prior=(np.log(1e10), 3.0)),),
    log_loss=_finetune_log_loss,
    features=_features,
    required=("tokens", "loss"),
    description="L(D) = E + B/(D + D0)^beta for one model continued from a checkpoint",
)
