"""Devices (atlas_jax.devices): fits split over 4 host CPU devices match one device; CPU configuration."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

SHARDED = """
import json, warnings; warnings.simplefilter("ignore")
import jax, numpy as np, atlas_jax as aj
chin = aj.load_chinchilla()
camp = aj.load_campaign()[0].frame
camp = camp[(camp["regime"] == "pretrain") & camp["language"].isin(["sw", "yo"]) & (camp["group"] != "scratch")]
out = {"devices": jax.local_device_count()}
for n in (1, 4):
    boot = aj.fit("chinchilla", chin, bootstrap=100, seed=1, devices=n)
    atlas = aj.fit("atlas", camp, group_by="language", devices=n)
    out[n] = {"boot": np.asarray(boot.samples).tolist(), "estimate": np.asarray(boot.estimate).tolist(),
              "atlas": np.asarray(atlas.estimate).tolist(), "status": np.asarray(atlas.status).tolist()}
print(json.dumps(out))
"""


def test_fits_split_over_four_host_devices_match_one():
    """4 host devices (XLA_FLAGS): the Chinchilla grid fit and 100 bootstrap refits agree with one device to
    the last bits (XLA vectorises the solver's loops differently for other pool sizes); the ATLAS fits of two
    languages to 1e-4 (those last bits move its flat valleys within the solver's tolerance)."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    env.pop("ATLAS_JAX_CPU_DEVICES", None)
    out = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["devices"] == 4
    one, four = res["1"], res["4"]
    np.testing.assert_allclose(np.array(four["estimate"]), np.array(one["estimate"]), rtol=1e-10)
    np.testing.assert_allclose(np.array(four["boot"]), np.array(one["boot"]), rtol=1e-8)
    assert four["status"] == one["status"]
    np.testing.assert_allclose(np.array(four["atlas"]), np.array(one["atlas"]), rtol=1e-4)


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
