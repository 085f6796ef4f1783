"""Bundled reference datasets, shipped inside the package (each folder's SOURCE.md gives origin, licence and
published fits)."""

from __future__ import annotations

import json
from pathlib import Path

from ..data.runs import RunTable, load_runs

__all__ = ["DATA_DIR", "load_chinchilla", "load_datablations", "load_campaign"]

DATA_DIR = Path(__file__).resolve().parent


def load_chinchilla(all_points: bool = False) -> RunTable:
    """Hoffmann et al. (2022) Fig. 4 points digitised by Epoch AI (Besiroglu et al. 2024).

    By default the 240 points Epoch fitted (the 5 highest losses dropped); ``all_points`` gives all 245.
    """
    table = load_runs(DATA_DIR / "epoch_chinchilla" / "chinchilla_tidy.csv",
                      {"params": "N_params", "tokens": "D_tokens"})
    frame = table.frame if all_points else table.frame[table.frame["in_epoch_fit"] == 1].reset_index(drop=True)
    return RunTable(frame, table.warnings)


def load_datablations() -> RunTable:
    """Muennighoff et al. (2023) C4 runs: the 182 rows of the published data-constrained fit."""
    return load_runs(DATA_DIR / "datablations" / "c4_runs_fit182.csv",
                     {"params": "N_params", "tokens": "D_tokens", "unique_tokens": "U_unique_tokens",
                      "loss": "val_loss"})


def load_campaign() -> tuple[RunTable, dict]:
    """The default synthetic ATLAS campaign (seed 0, 1 % noise) and its ground truth; see
    :mod:`atlas_jax.data.synthetic` (regenerate with ``write_campaign``)."""
    folder = DATA_DIR / "campaign"
    return load_runs(folder / "campaign.csv"), json.loads((folder / "campaign_truth.json").read_text())
