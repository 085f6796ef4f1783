"""Bayesian inference for scaling laws: NumPyro models from the law specs, NUTS, ArviZ output."""

from ..runtime import setup

setup()  # float64, CPU devices, compilation cache: before any JAX use

from .model import NU, SIGMA_SCALE, flat_data, law_model, prior_table
from .result import HDI_PROB, Posterior
from .sampler import ESS_MIN, RHAT_MAX, posterior, rank_diagnostics
from .compare import compare_posteriors

__all__ = [
    "posterior",
    "Posterior",
    "compare_posteriors",
    "law_model",
    "flat_data",
    "prior_table",
    "rank_diagnostics",
    "NU",
    "SIGMA_SCALE",
    "HDI_PROB",
    "RHAT_MAX",
    "ESS_MIN",
]
