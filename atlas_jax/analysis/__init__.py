"""Analyses built on fitted laws: cross-lingual transfer, the curse of multilinguality, and the
pretrain-from-scratch vs finetune crossover, and the planner (Longpre et al. 2026, arXiv:2510.22037, sections 3-5);
which runs to train next (the designer)."""

from ..runtime import setup

setup()  # float64, CPU devices, compilation cache: before any JAX use

from .crossover import (
    crossover_curves,
    crossover_at,
    crossover_check_published,
    crossover_tokens,
    fit_crossover_compute,
    fit_crossovers,
    posterior_crossovers,
)
from .planner import Plan, plan
from .designer import Design, candidate_grid, design, design_crossover
from .curse import expansion_multipliers, fit_curse_joint, iso_loss_frontier, loss_share, multipliers_with_intervals
from .transfer import (
    LANGUAGES,
    SCRIPTS,
    bts_fitted,
    bts_from_tau,
    bts_interpolated,
    load_transfer_matrix,
    matrix_statistics,
    tau_from_bts,
    transfer_matrix_from_curves,
    transfer_weights,
)

__all__ = [
    "design",
    "design_crossover",
    "Design",
    "candidate_grid",
    "load_transfer_matrix",
    "matrix_statistics",
    "LANGUAGES",
    "SCRIPTS",
    "tau_from_bts",
    "bts_from_tau",
    "transfer_weights",
    "bts_interpolated",
    "bts_fitted",
    "transfer_matrix_from_curves",
    "expansion_multipliers",
    "iso_loss_frontier",
    "loss_share",
    "multipliers_with_intervals",
    "fit_curse_joint",
    "crossover_tokens",
    "fit_crossovers",
    "crossover_curves",
    "posterior_crossovers",
    "fit_crossover_compute",
    "crossover_at",
    "crossover_check_published",
    "plan",
    "Plan",
]
