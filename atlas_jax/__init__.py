"""atlas-jax: batched, jit-compiled scaling-law fitting with bootstrap intervals and NumPyro posteriors.

Importing the package switches JAX to float64: the Chinchilla problem's Hessian
has condition number ~1e11, so fits need double precision. If JAX has not started yet, it also makes
every CPU core a JAX device (:mod:`atlas_jax.devices`).
"""

import jax

jax.config.update("jax_enable_x64", True)

from .devices import configure_cpu  # noqa: E402

configure_cpu()

from .data import RunTable, load_runs, validate_runs  # noqa: E402
from .datasets import load_campaign, load_chinchilla, load_datablations  # noqa: E402
from .engine import (  # noqa: E402
    FitResult,
    compare_laws,
    evaluate_holdout,
    fit,
    fit_data_constrained_two_stage,
    holdout_mask,
    predict,
    r_squared,
)
from .laws import LAWS, Law, Param, get_law  # noqa: E402
from .bayes import Posterior, posterior  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "fit",
    "FitResult",
    "fit_data_constrained_two_stage",
    "evaluate_holdout",
    "compare_laws",
    "holdout_mask",
    "predict",
    "r_squared",
    "posterior",
    "Posterior",
    "load_runs",
    "validate_runs",
    "RunTable",
    "load_chinchilla",
    "load_datablations",
    "load_campaign",
    "Law",
    "Param",
    "LAWS",
    "get_law",
]
