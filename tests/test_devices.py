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
    boot = aj.fit("chinchilla", chin, bootstrap=300, seed=1, devices=n)
    atlas = aj.fit("atlas", camp, group_by="language", devices=n)
    out[n] = {"boot": np.asarray(boot.samples).tolist(), "estimate": np.asarray(boot.estimate).tolist(),
              "atlas": np.asarray(atlas.estimate).tolist(), "status": np.asarray(atlas.status).tolist()}
print(json.dumps(out))
"""


def test_fits_split_over_four_host_devices_match_one():
    """4 host devices (XLA_FLAGS): the Chinchilla grid fit and 300 bootstrap refits are bitwise those of one
    device; the ATLAS fits of two languages agree to 1e-4 (last-bit differences of vectorised maths in other
    pool sizes move its flat valleys within the solver's tolerance)."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    env.pop("ATLAS_JAX_CPU_DEVICES", None)
    out = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["devices"] == 4
    one, four = res["1"], res["4"]
    np.testing.assert_array_equal(np.array(four["estimate"]), np.array(one["estimate"]))
    np.testing.assert_array_equal(np.array(four["boot"]), np.array(one["boot"]))
    assert four["status"] == one["status"]
    np.testing.assert_allclose(np.array(four["atlas"]), np.array(one["atlas"]), rtol=1e-4)


def test_devices_argument_is_checked():
    import jax

    import atlas_jax as aj
    with pytest.raises(ValueError, match=f"devices: expected an integer from 1 to {jax.local_device_count()}"):
        aj.fit("chinchilla", aj.load_chinchilla(), devices=jax.local_device_count() + 1)


def test_cpu_devices_env_sets_the_count():
    """$ATLAS_JAX_CPU_DEVICES sets the CPU device count and turns Eigen's pool off; a bad value is an error."""
    code = "import os, jax, atlas_jax; print(jax.local_device_count(), os.environ['XLA_FLAGS'])"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", code], env={**env, "ATLAS_JAX_CPU_DEVICES": "3"},
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["3", "--xla_cpu_multi_thread_eigen=false"], out.stderr[-2000:]
    out = subprocess.run([sys.executable, "-c", code], env={**env, "ATLAS_JAX_CPU_DEVICES": "two"},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "ATLAS_JAX_CPU_DEVICES='two': expected a positive integer" in out.stderr
