"""atlas-jax: batched, jit-compiled scaling-law fitting with bootstrap intervals and NumPyro posteriors.

Names are imported on first use, so ``import atlas_jax`` (and ``atlas-jax --help``) costs no JAX, NumPyro,
ArviZ or matplotlib import. JAX is set up (float64, every CPU core a device, a persistent compilation
cache: :mod:`atlas_jax.runtime`) before atlas_jax first computes with it, and at once if it is already
imported.
"""

import importlib
import sys

from . import runtime

__version__ = "0.1.0"

_EXPORTS = {
    "fit": "engine", "fit_arrays": "engine", "group_data": "engine", "FitResult": "engine", "SavedFit": "engine", "fit_data_constrained_two_stage": "engine",
    "evaluate_holdout": "engine", "compare_laws": "engine", "holdout_mask": "engine", "predict": "engine",
    "r_squared": "engine", "Status": "engine",
    "posterior": "bayes", "Posterior": "bayes", "design": "analysis", "Design": "analysis",
    "load_runs": "data", "validate_runs": "data", "RunTable": "data", "select_fit": "data.select",
    "load_chinchilla": "datasets", "load_datablations": "datasets", "load_campaign": "datasets",
    "Law": "laws", "Param": "laws", "LAWS": "laws", "get_law": "laws",
}
__all__ = list(_EXPORTS)

if "jax" in sys.modules:  # JAX is already paid for: set it up before the user computes more with it
    runtime.setup()


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'atlas_jax' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
