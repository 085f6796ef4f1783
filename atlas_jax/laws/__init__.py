"""The law library: one module per family, each a parameter spec plus a single-run log-loss prediction."""

from .atlas import ATLAS, ATLAS_VARIANTS, atlas_law, atlas_law_name, transfer_languages
from .chinchilla import CHINCHILLA
from .curse import CURSE
from .curve import FINETUNE_CURVE, SCRATCH_CURVE
from .data_constrained import DATA_CONSTRAINED
from .msl import MSL
from .spec import Law, Param

__all__ = ["Law", "Param", "CHINCHILLA", "DATA_CONSTRAINED", "MSL", "ATLAS", "ATLAS_VARIANTS", "atlas_law",
           "atlas_law_name", "transfer_languages", "CURSE", "SCRATCH_CURVE", "FINETUNE_CURVE", "LAWS", "get_law"]

LAWS: dict[str, Law] = {law.name: law for law in (
    CHINCHILLA, DATA_CONSTRAINED, MSL, ATLAS, atlas_law("monolingual"), atlas_law("other"), CURSE, SCRATCH_CURVE,
    FINETUNE_CURVE)}


def get_law(name: str) -> Law:
    """A registered law by name (see ``LAWS``)."""
    try:
        return LAWS[name]
    except KeyError:
        raise ValueError(f"unknown law {name!r}; choose one of: {', '.join(LAWS)}") from None
