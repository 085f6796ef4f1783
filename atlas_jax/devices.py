"""JAX on the CPU: every core as a device, so chains and batches run in parallel on a CPU-only machine.

XLA's CPU backend is one device by default, so vectorised NUTS chains share one core. ``configure_cpu``,
run when atlas_jax is imported (before JAX starts; if JAX has started, it changes nothing), sets
``jax_num_cpu_devices`` to the cores this process may use. :func:`atlas_jax.posterior` then places
blocks of chains on separate cores (hierarchical ATLAS benchmark, 2-core machine: NUTS 1.45x faster) and
:func:`atlas_jax.fit` splits its batch (Epoch grid fit 1.4x, 4,000-resample bootstrap 1.6x faster).

With one computation per core, nothing may wait on XLA's intra-op thread pool from inside it: jaxlib's
LAPACK kernels do, and deadlocked the 2-core machine, so no computation in atlas_jax calls them
(:mod:`atlas_jax.linalg`). ``--xla_cpu_multi_thread_eigen=false``, which others report cures similar hangs
(PyAutoLabs/PyAutoFit#1528), changed nothing here: a 3000 x 3000 matmul used both cores with it too.

``$ATLAS_JAX_CPU_DEVICES`` sets the number of CPU devices (1: JAX's default); a count the user gave JAX
(config or ``XLA_FLAGS``) is kept. Accelerators are unaffected.

Several processes (hosts) join one computation through ``jax.distributed.initialize`` (README, "Multi-host");
:func:`batch_mesh` then spans every process's devices and :func:`replicated` builds global arrays from
each process's own copy of the data.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["configure_cpu", "CPU_DEVICES_ENV", "batch_mesh", "replicated"]

CPU_DEVICES_ENV = "ATLAS_JAX_CPU_DEVICES"


def configure_cpu() -> int | None:
    """Expose the usable CPU cores (or ``$ATLAS_JAX_CPU_DEVICES``) as JAX devices; return the count set, or
    None where JAX had started or the user chose the count."""
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


def batch_mesh(n: int) -> jax.sharding.Mesh:
    """A one-axis mesh ``batch`` over the first ``n`` devices of all processes."""
    return jax.make_mesh((n,), ("batch",), devices=jax.devices()[:n])


def replicated(a, n: int, dtype=None) -> jax.Array:
    """``a`` for a computation over the first ``n`` devices: a device array in a single process; under
    ``jax.distributed``, a global array replicated over the mesh, built from this process's copy of ``a``
    (every process must pass the same values)."""
    a = np.asarray(a, dtype)
    if jax.process_count() == 1:
        return jnp.asarray(a)
    return jax.make_array_from_callback(a.shape, jax.NamedSharding(batch_mesh(n), jax.P()), lambda idx: a[idx])
