"""How atlas_jax sets JAX up: float64, every CPU core a device, and a persistent compilation cache.

Importing atlas_jax costs no JAX import (``atlas-jax --help`` and argument or table errors answer
without it). :func:`setup` runs when the first part of atlas_jax that computes is imported (the engine,
the laws' arithmetic, posteriors, analyses) and, where JAX was imported before atlas_jax, at once:

- ``jax_enable_x64``: the Chinchilla problem's Hessian has condition number ~1e11, so fits need float64.
- CPU devices (:func:`configure_cpu`): XLA's CPU backend is one device by default, so vectorised NUTS
  chains share one core; every usable core becomes a device, and :func:`atlas_jax.posterior` places blocks
  of chains on separate cores (hierarchical ATLAS benchmark, 2-core machine: NUTS 1.45x faster) and
  :func:`atlas_jax.fit` splits its batch (Epoch grid fit 1.4x, 4,000-resample bootstrap 1.6x faster).
  ``$ATLAS_JAX_CPU_DEVICES`` sets the count (1: JAX's default); a count the user gave JAX (config or
  ``XLA_FLAGS``) is kept. Nothing changes where JAX has already run a computation.
- The persistent compilation cache (:func:`cache_dir`): compiled programs are stored on disk, keyed by
  the program, the JAX version and the device, so a new process reuses them instead of compiling again
  (an ``atlas-jax fit`` of Epoch's 240 runs: BENCHMARKS.md, "cli"). ``$ATLAS_JAX_CACHE_DIR`` moves the
  cache, ``ATLAS_JAX_CACHE_DIR=off`` switches it off, a cache the user gave JAX is kept. The cache is
  size-capped (``CACHE_MAX_BYTES``, least recently used evicted) and file-locked, so concurrent processes
  share it safely.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

__all__ = ["setup", "configure_cpu", "cache_dir", "lazy", "CPU_DEVICES_ENV", "CACHE_ENV", "CACHE_MAX_BYTES"]

CPU_DEVICES_ENV = "ATLAS_JAX_CPU_DEVICES"
CACHE_ENV = "ATLAS_JAX_CACHE_DIR"
CACHE_MAX_BYTES = 2 << 30
_done = False


def setup() -> None:
    """Import JAX with atlas_jax's settings (idempotent; see the module doc)."""
    global _done
    if _done:
        return
    import jax

    _done = True
    jax.config.update("jax_enable_x64", True)
    configure_cpu()
    path = cache_dir()
    if path is not None and jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", str(path))
        jax.config.update("jax_compilation_cache_max_size", CACHE_MAX_BYTES)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def cache_dir() -> Path | None:
    """The persistent compilation cache: ``$ATLAS_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/atlas-jax/xla``
    (default ``~/.cache/atlas-jax/xla``); None when switched off (``off``, ``0`` or empty)."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in ("", "0", "off", "none", "false") else Path(value).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "atlas-jax" / "xla"


def configure_cpu() -> int | None:
    """Expose the usable CPU cores (or ``$ATLAS_JAX_CPU_DEVICES``) as JAX devices; return the count set, or
    None where JAX had started or the user chose the count."""
    import jax

    value = os.environ.get(CPU_DEVICES_ENV)
    if value is not None and (not value.isdigit() or int(value) < 1):
        raise ValueError(f"{CPU_DEVICES_ENV}={value!r}: expected a positive integer (number of CPU devices)")
    chosen = "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
    if chosen or jax.config.jax_num_cpu_devices != -1:
        return None
    n = int(value) if value is not None else \
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # JAX has run something: its devices are fixed
        return None
    return n


class _Lazy:
    """A module imported (after :func:`setup`) at its first attribute access."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr):
        setup()
        module = importlib.import_module(self._name)
        self.__dict__.update(vars(module))
        return getattr(module, attr)


def lazy(name: str):
    """``name`` (e.g. ``"jax.numpy"``) as a module-like object that imports it only when first used: the laws
    are data (names, bounds, columns) that commands read without JAX, and arithmetic run only when traced."""
    return sys.modules[name] if name in sys.modules and _done else _Lazy(name)
