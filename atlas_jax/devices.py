"""Devices: one computation split over every device, within one process or across several.

On a CPU every usable core is a JAX device (:func:`atlas_jax.runtime.configure_cpu`). With one computation per
core, nothing may wait on XLA's intra-op thread pool from inside it: jaxlib's LAPACK kernels do, and deadlocked
the 2-core machine, so no computation in atlas_jax calls them (:mod:`atlas_jax.linalg`).
``--xla_cpu_multi_thread_eigen=false``, which others report cures similar hangs (PyAutoLabs/PyAutoFit#1528),
changed nothing here: a 3000 x 3000 matmul used both cores with it too.

Several processes (hosts) join one computation through ``jax.distributed.initialize`` (README, "Multi-host");
:func:`batch_mesh` then spans every process's devices and :func:`replicated` builds global arrays from
each process's own copy of the data.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .runtime import setup

setup()

__all__ = ["batch_mesh", "replicated"]


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
