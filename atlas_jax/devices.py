"""JAX on the CPU: every core as a device, and XLA's multi-threaded Eigen pool off.

``configure_cpu`` runs when atlas_jax is imported, before JAX starts (if JAX has started, it changes
nothing):

- XLA's CPU backend is one device, so vectorised NUTS chains share one core. Setting
  ``jax_num_cpu_devices`` to the usable cores lets :func:`atlas_jax.posterior` place blocks of chains on
  separate cores (hierarchical ATLAS benchmark, 2-core machine: NUTS 1.45x faster) and
  :func:`atlas_jax.fit` split its batch (Epoch grid fit 1.4x, 4,000-resample bootstrap 1.6x faster).
- ``--xla_cpu_multi_thread_eigen=false``, a precaution: others report computations on vmapped graphs
  waiting forever in Eigen's intra-op pool, cured by this flag (PyAutoLabs/PyAutoFit#1528). The hangs
  seen here were jaxlib's LAPACK kernels starving that pool once every core ran a device; no computation
  in atlas_jax calls them now (:mod:`atlas_jax.linalg`).

``$ATLAS_JAX_CPU_DEVICES`` sets the number of CPU devices (1: JAX's default); a count the user gave JAX
(config or ``XLA_FLAGS``) is kept, and so is an explicit ``xla_cpu_multi_thread_eigen`` flag.
Accelerators are unaffected.
"""

from __future__ import annotations

import os

import jax

__all__ = ["configure_cpu", "CPU_DEVICES_ENV"]

CPU_DEVICES_ENV = "ATLAS_JAX_CPU_DEVICES"


def configure_cpu() -> int | None:
    """Expose the usable CPU cores (or ``$ATLAS_JAX_CPU_DEVICES``) as JAX devices and turn Eigen's thread
    pool off; return the device count set, or None where JAX had started or the user chose the count."""
    flags = os.environ.get("XLA_FLAGS", "")
    value = os.environ.get(CPU_DEVICES_ENV)
    if value is not None and (not value.isdigit() or int(value) < 1):
        raise ValueError(f"{CPU_DEVICES_ENV}={value!r}: expected a positive integer (number of CPU devices)")
    n = int(value) if value is not None else \
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        if jax.config.jax_num_cpu_devices == -1 and "xla_force_host_platform_device_count" not in flags:
            jax.config.update("jax_num_cpu_devices", n)
        else:
            n = None
    except RuntimeError:  # JAX has run something: its devices and flags are fixed
        return None
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
    return n
