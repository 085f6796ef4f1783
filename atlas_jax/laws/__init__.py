"""The law library: one module per family, each a parameter spec plus a single-run log-loss prediction."""

from .chinchilla import CHINCHILLA
from .spec import Law, Param

__all__ = ["Law", "Param", "CHINCHILLA", "LAWS", "get_law"]

LAWS: dict[str, Law] = {law.name: law for law in (CHINCHILLA,)}


def get_law(name: str) -> Law:
    """A registered law by name."""
    try:
        return LAWS[name]
    except KeyError:
        raise ValueError(f"unknown law {name!r}; choose one of: {', '.join(LAWS)}") from None
