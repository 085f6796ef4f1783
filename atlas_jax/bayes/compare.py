"""LOO comparison of law families fitted to the same runs (Vehtari, Gelman & Gabry 2017, PSIS-LOO)."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from .result import Posterior, _arviz

__all__ = ["compare_posteriors"]


def compare_posteriors(posteriors: Mapping[str, Posterior]) -> pd.DataFrame:
    """ArviZ's ``compare`` (PSIS-LOO, log scale) of posteriors of different laws on the same runs."""
    az = _arviz()

    ys = [p.log_y for p in posteriors.values()]
    if len(ys) < 2 or any(y.shape != ys[0].shape or not np.allclose(y, ys[0]) for y in ys[1:]):
        raise ValueError("compare_posteriors needs two or more posteriors of the same runs (same observed losses)")
    return az.compare({name: p.to_inference_data() for name, p in posteriors.items()}, ic="loo", scale="log")
