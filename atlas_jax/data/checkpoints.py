"""Synthetic checkpointed training runs, for validating the run-level bootstrap.

A real run table often logs every training run at several checkpoints. Their losses are not independent
observations: a run's seed, data order and learning-rate schedule move all its checkpoints together.
:func:`checkpointed_campaigns` draws such tables from the Chinchilla law (Hoffmann et al. 2022),

    log L_rk = log(E + A / N_r^alpha + B / D_rk^beta) + u_r + e_rk,   u_r ~ N(0, sd_run^2), e_rk ~ N(0, sd_checkpoint^2)

written here in plain numpy (independent of :mod:`atlas_jax.laws`): 24 runs per campaign (6 sizes from 2e7 to
2e9 parameters x 4 budgets of 5-40 tokens per parameter), each logged at 10 checkpoints (10 %, 20 %, ... of
its budget).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["CHECKPOINT_TRUTH", "checkpointed_campaigns"]

CHECKPOINT_TRUTH = {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.37}
_SIZES = np.geomspace(2e7, 2e9, 6)
_TOKENS_PER_PARAM = (5.0, 10.0, 20.0, 40.0)


def checkpointed_campaigns(n_campaigns: int, seed: int = 0, sd_run: float = 0.01,
                           sd_checkpoint: float = 0.002) -> pd.DataFrame:
    """Columns ``campaign, run, params, tokens, loss``: ``n_campaigns`` independent campaigns of 24 runs x 10
    checkpoints drawn with :data:`CHECKPOINT_TRUTH`."""
    rng = np.random.default_rng(seed)
    p = CHECKPOINT_TRUTH
    fraction = np.arange(1, 11) / 10
    frames = []
    for m in range(n_campaigns):
        for i, n in enumerate(_SIZES):
            for j, k in enumerate(_TOKENS_PER_PARAM):
                d = k * n * fraction
                mean = p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]
                loss = mean * np.exp(rng.normal(0.0, sd_run) + rng.normal(0.0, sd_checkpoint, d.size))
                frames.append(pd.DataFrame({"campaign": f"c{m}", "run": f"{i}-{j}", "params": n, "tokens": d,
                                            "loss": loss}))
    return pd.concat(frames, ignore_index=True)
