"""The package as a user installs it: a wheel, built from the repo and installed into a fresh virtual
environment outside it, runs the default job, `plan` and every loader of the bundled data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LOADERS = """
import json, atlas_jax as aj
from atlas_jax.analysis import load_transfer_matrix, matrix_statistics
campaign, truth = aj.load_campaign()
print(json.dumps({"file": aj.__file__, "chinchilla": len(aj.load_chinchilla().frame),
                  "all_points": len(aj.load_chinchilla(all_points=True).frame),
                  "datablations": len(aj.load_datablations().frame), "campaign": len(campaign.frame),
                  "truth": sorted(truth)[:1], "matrix": list(load_transfer_matrix().shape),
                  "statistics": sorted(matrix_statistics())[:1]}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh environment with only the wheel installed; the dependencies come from this environment's
    site-packages (appended to sys.path by a .pth file, which runs no editable-install hook)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy: setuptools writes build/ and egg-info into the tree it builds
    shutil.copytree(ROOT / "atlas_jax", source / "atlas_jax", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next((tmp / "dist").glob("atlas_jax-*.whl"))
    env_dir = tmp / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=300)
    python = env_dir / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    work = tmp / "work"  # outside the repo: nothing resolves against it
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return env_dir, work, env


def test_wheel_ships_the_data_and_runs_the_default_job(installed):
    env_dir, work, env = installed
    run = lambda *argv: subprocess.run([str(a) for a in argv], cwd=work, env=env, capture_output=True, text=True,
                                       timeout=600)
    loaders = run(env_dir / "bin" / "python", "-c", LOADERS)
    assert loaders.returncode == 0, loaders.stderr[-3000:]
    got = json.loads(loaders.stdout)
    assert Path(got.pop("file")).is_relative_to(env_dir)  # the installed package, not the repo
    assert got == {"chinchilla": 240, "all_points": 245, "datablations": 182, "campaign": got["campaign"],
                   "truth": got["truth"], "matrix": [38, 38], "statistics": got["statistics"]}
    assert got["campaign"] > 1000 and got["truth"] and got["statistics"]

    fit = run(env_dir / "bin" / "atlas-jax", "fit", "epoch-chinchilla", "--law", "chinchilla", "--bootstrap", 50,
              "--out", work / "chinchilla", "-q")
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "alpha" in fit.stdout and (work / "chinchilla" / "params.csv").exists()
    plan = run(env_dir / "bin" / "atlas-jax", "plan", "--fit", work / "chinchilla", "--flops", "1e22", "--json")
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert json.loads(plan.stdout)
