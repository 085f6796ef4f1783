"""Multilingual scaling law (MSL), He et al. 2024, arXiv:2410.12883.

    L_i = (E_i + A_i / N^alpha_i + B_i / D^beta_i) * p_i^(-gamma_i)

for target language (family) i with sampling ratio ``p_i`` in the mixture and
``D`` the total tokens; fitted per target as

    log L = LSE(e, a - alpha log N, b - beta log D) - gamma log p.

``p`` is ``tokens_<language> / tokens`` for the run's ``language`` (1 for runs
without mixture columns, where gamma is not identified).
"""

from __future__ import annotations

import numpy as np

from .chinchilla import chinchilla_log_loss, coarse_chinchilla_params, log_size_features
from .spec import Law, Param

__all__ = ["MSL", "target_share"]


def target_share(frame) -> np.ndarray:
    """Share of each run's tokens that are in its own ``language`` (1 where no mixture columns exist)."""
    if "language" not in frame:
        raise ValueError("law 'msl' needs a 'language' column (the language each loss is measured on)")
    total = frame["tokens"].to_numpy(float)
    share = np.ones(len(frame))
    for i, lang in enumerate(frame["language"].astype(str)):
        col = f"tokens_{lang}"
        if col in frame:
            share[i] = frame[col].iloc[i] / total[i]
    bad = np.flatnonzero(share <= 0)
    if len(bad):
        raise ValueError(f"column 'tokens_<language>': runs {bad[:10].tolist()} put no tokens in the language "
                         "their loss is measured on; expected a positive share")
    return share


def _features(frame):
    return {**log_size_features(frame), "log_p": np.log(target_share(frame))}


def _log_loss(theta, x):
    return chinchilla_log_loss(theta, x["log_n"], x["log_d"]) - theta[5] * x["log_p"]


MSL = Law(
    name="msl",
    params=coarse_chinchilla_params() + (Param("gamma", "gamma", grid=(0.0, 0.5), prior=(0.0, 1.0)),),
    log_loss=_log_loss,
    features=_features,
    required=("params", "tokens", "loss", "language"),
    description="(E + A/N^alpha + B/D^beta) p^-gamma (He et al. 2024)",
)
