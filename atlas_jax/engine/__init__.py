"""Robust objective, batched solver, multi-start, bootstrap and held-out evaluation."""

from ..runtime import setup

setup()  # float64, CPU devices, compilation cache: before any JAX use

from .evaluate import PROTOCOLS, compare_laws, evaluate_holdout, holdout_mask, predict, r_squared
from .batch import GroupedData, fit, fit_arrays, group_data
from .recipes import fit_data_constrained_two_stage
from .result import FitResult
from .saved import SavedFit
from .robust import huber
from .solver import Config, Status, Solution, levenberg_marquardt, solve_many

__all__ = [
    "fit",
    "fit_arrays",
    "group_data",
    "GroupedData",
    "FitResult",
    "SavedFit",
    "fit_data_constrained_two_stage",
    "evaluate_holdout",
    "compare_laws",
    "holdout_mask",
    "predict",
    "r_squared",
    "PROTOCOLS",
    "huber",
    "levenberg_marquardt",
    "solve_many",
    "Config",
    "Solution",
    "Status",
]
