"""Devices (atlas_jax.devices): fits split over the host CPU devices match one device; CPU configuration."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

def test_fits_split_over_host_devices_match_one():
    """Every host device (one per CPU core, atlas_jax.devices): the Chinchilla grid fit and 100 bootstrap refits
    agree with one device to the last bits (XLA vectorises the solver's loops differently for other pool sizes);
    the ATLAS fits of two languages to 1e-4 (those last bits move its flat valleys within the solver's
    tolerance). Fits over the processes of ``jax.distributed``: test_multihost.py."""
    import jax
    import atlas_jax as aj
    n = jax.local_device_count()
    if n < 2:
        pytest.skip("needs 2 local devices (one per CPU core, atlas_jax.devices)")
    chin = aj.load_chinchilla()
    camp = aj.load_campaign()[0].frame
    camp = camp[(camp["regime"] == "pretrain") & camp["language"].isin(["sw", "yo"]) & (camp["group"] != "scratch")]
    fits = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for d in (1, n):
            fits[d] = (aj.fit("chinchilla", chin, bootstrap=100, seed=1, devices=d),
                       aj.fit("atlas", camp, group_by="language", devices=d))
    (one, atlas_one), (split, atlas_split) = fits[1], fits[n]
    np.testing.assert_allclose(split.estimate, one.estimate, rtol=1e-10)
    np.testing.assert_allclose(split.samples, one.samples, rtol=1e-8)
    assert atlas_split.status == atlas_one.status
    np.testing.assert_allclose(atlas_split.estimate, atlas_one.estimate, rtol=1e-4)


def test_devices_argument_is_checked():
    import jax

    import atlas_jax as aj
    with pytest.raises(ValueError, match=f"devices: expected an integer from 1 to {jax.local_device_count()}"):
        aj.fit("chinchilla", aj.load_chinchilla(), devices=jax.local_device_count() + 1)


def test_cpu_devices_env_sets_the_count():
    """$ATLAS_JAX_CPU_DEVICES sets the CPU device count; a bad value is an error naming it."""
    code = "import jax, atlas_jax; print(jax.local_device_count())"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", code], env={**env, "ATLAS_JAX_CPU_DEVICES": "3"},
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["3"], out.stderr[-2000:]
    out = subprocess.run([sys.executable, "-c", code], env={**env, "ATLAS_JAX_CPU_DEVICES": "two"},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "ATLAS_JAX_CPU_DEVICES='two': expected a positive integer" in out.stderr


def test_small_linalg_matches_lapack():
    """atlas_jax.linalg (no LAPACK custom calls) against numpy's Cholesky and solves, and the gradient of
    a solve along a symmetric direction against jnp.linalg.solve's."""
    import jax
    import jax.numpy as jnp
    from scipy.linalg import solve_triangular

    from atlas_jax import linalg

    cholesky, cho_solve, solve_lower, solve_lower_t = (jax.jit(f) for f in (  # one program each, not op by op
        linalg.cholesky, linalg.cho_solve, linalg.solve_lower, linalg.solve_lower_t))
    rng = np.random.default_rng(0)
    m = rng.normal(size=(5, 10, 10))
    a, b = m @ np.swapaxes(m, -1, -2) + 0.1 * np.eye(10), rng.normal(size=(5, 10))
    low = np.asarray(cholesky(jnp.asarray(a)))
    np.testing.assert_allclose(low, np.linalg.cholesky(a), atol=1e-12)
    np.testing.assert_allclose(cho_solve(low, b), np.linalg.solve(a, b[..., None])[..., 0], rtol=1e-9)
    lower, upper = np.asarray(solve_lower(low, b)), np.asarray(solve_lower_t(low, b))
    for g in range(5):
        np.testing.assert_allclose(lower[g], solve_triangular(low[g], b[g], lower=True), rtol=1e-12)
        np.testing.assert_allclose(upper[g], solve_triangular(low[g], b[g], lower=True, trans=1), rtol=1e-12)
    d = rng.normal(size=(5, 10, 10))
    d = jnp.asarray(d + np.swapaxes(d, -1, -2))
    ours = jax.grad(lambda t: linalg.cho_solve(linalg.cholesky(a + t * d), jnp.asarray(b)).sum())
    lapack = jax.grad(lambda t: jnp.linalg.solve(a + t * d, jnp.asarray(b)[..., None]).sum())
    assert float(jax.jit(ours)(0.0)) == pytest.approx(float(jax.jit(lapack)(0.0)), rel=1e-9)
    assert np.isnan(np.asarray(cholesky(jnp.asarray(-np.eye(3))))).any()  # not SPD: NaN
