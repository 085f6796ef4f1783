"""atlas-jax: batched, jit-compiled scaling-law fitting with bootstrap intervals and NumPyro posteriors.

Importing the package switches JAX to float64: the Chinchilla problem's Hessian
has condition number ~1e11, so fits need double precision. It also turns off asynchronous dispatch on
the CPU (read when the CPU backend starts): with it on, the Laplace step's loop of small jitted calls
hung in 2 of about 15 runs on the 2-core machine, as in jax-ml/jax#25861.
"""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_cpu_enable_async_dispatch", False)

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
