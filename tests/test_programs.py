"""Compiled programs are reused: a table of another size, more resamples and a rebuilt law compile nothing new
(shape buckets, memoised laws); the persistent cache, lazy imports and the bucket sizes themselves."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import chinchilla_frame

LOWERED = "/jax/core/compile/jaxpr_to_mlir_module_duration"  # one per jit cache miss, cached on disk or not
_events = []


@pytest.fixture(scope="module")
def lowerings():
    """A function returning how many programs were lowered (traced and compiled or read from the cache) so far."""
    import jax

    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: _events.append(event) if event == LOWERED else None)
    return lambda: len(_events)


def test_bucket_sizes():
    from atlas_jax.engine.batch import bucket

    sizes = [bucket(n) for n in range(1, 2000)]
    assert sizes[:12] == [1, 2, 3, 4, 6, 6, 8, 8, 12, 12, 12, 12]
    assert all(b >= n for n, b in zip(range(1, 2000), sizes))
    assert max(b / n for n, b in zip(range(1, 2000), sizes)) < 1.5
    assert len(set(sizes)) == 22  # 1,999 sizes, 22 programs


@pytest.mark.filterwarnings("ignore:group 'all'. not a trustworthy fit")  # small tables: wide intervals; not the point
def test_similar_tables_and_rebuilt_laws_compile_nothing_new(lowerings):
    """After one fit (with bootstrap) and one prediction, tables with fewer rows and more resamples in the
    same buckets (up to 64 runs, up to 512 fits a batch), and a law rebuilt by its factory, lower no new program."""
    import atlas_jax as aj
    from atlas_jax.engine import predict
    from atlas_jax.laws import atlas_law

    first = chinchilla_frame(np.geomspace(4e7, 4e9, 6), np.geomspace(1e9, 1e11, 5), noise=0.01, seed=1)
    second = first.sample(27, random_state=2).reset_index(drop=True)   # 30 -> 27 runs: one bucket (32)
    aj.fit("chinchilla", first, bootstrap=20, seed=0)
    atlas = aj.load_campaign()[0].frame
    atlas = atlas[(atlas["language"] == "sw") & (atlas["regime"] == "pretrain")].reset_index(drop=True)
    params = {"E": 1.5, "A": 300.0, "B": 900.0, "alpha": 0.3, "beta": 0.3, "lambda": 0.1}
    predict(aj.get_law("atlas_monolingual"), atlas.iloc[:20], params)
    before = lowerings()
    res = aj.fit("chinchilla", second, bootstrap=22, seed=1)
    more = aj.fit("chinchilla", first.iloc[:9], bootstrap=300, seed=2)  # polish and bootstrap: one program
    predict(atlas_law("monolingual"), atlas.iloc[:17], params)
    assert lowerings() == before
    assert res.samples.shape == (1, 22, 5) and res.status == ("converged",)
    assert more.samples.shape == (1, 300, 5)


def test_imports_cost_only_what_a_command_uses(tmp_path):
    """`import atlas_jax`, the laws, the run tables and the CLI load no JAX, NumPyro, ArviZ, matplotlib or scipy;
    `atlas-jax --help`, an argument error, a bad option value and a bad table answer without JAX."""
    code = ("import sys, atlas_jax, atlas_jax.laws, atlas_jax.data, atlas_jax.datasets, atlas_jax.cli\n"
            "atlas_jax.laws.get_law('atlas').names\n"
            "print(sorted(m for m in ('jax', 'numpyro', 'arviz', 'matplotlib', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]
    probe = ("import sys, runpy\nsys.argv = ['atlas-jax'] + sys.argv[1:]\n"
             "try:\n    runpy.run_module('atlas_jax.cli', run_name='__main__')\n"
             "except SystemExit as e:\n    print('exit', e.code, 'jax' in sys.modules, file=sys.stderr)\n")
    bad = tmp_path / "runs.csv"
    bad.write_text("params,tokens,loss\n1e8,2e9,3.1\n2e8,4e9,-2.9\n")
    for args, code_, said in (
            (["--help"], 0, ""), (["fit", "x.csv", "--law", "chinchila", "--out", str(tmp_path)], 2, "chinchila"),
            (["fit", str(bad), "--law", "chinchilla", "--out", str(tmp_path / "o")], 2, "non-positive"),
            (["fit", "epoch-chinchilla", "--law", "chinchilla", "--fix", "alpha", "--out", "o"], 2, "NAME=VALUE"),
            # option values are checked before the table is read: a missing table is not what they name
            (["fit", "nope.csv", "--law", "chinchilla", "--delta", "0", "--out", "o"], 2, "delta = 0.0"),
            (["fit", "nope.csv", "--law", "chinchilla", "--fix", "alpha=inf", "--out", "o"], 2, "alpha=inf")):
        out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120)
        assert out.stderr.strip().splitlines()[-1] == f"exit {code_} False", out.stderr[-2000:]
        assert said in out.stderr, out.stderr


def test_persistent_cache_is_used_and_can_be_moved_or_switched_off(tmp_path):
    """$ATLAS_JAX_CACHE_DIR moves the compilation cache (a second process reads what the first wrote);
    ``off`` switches it off."""
    code = ("import jax, atlas_jax, json; from atlas_jax.runtime import cache_dir\n"
            "import jax.numpy as jnp; jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(3)).block_until_ready()\n"
            "print(json.dumps([str(cache_dir()), jax.config.jax_compilation_cache_dir]))")
    env = {**os.environ, "ATLAS_JAX_CACHE_DIR": str(tmp_path / "xla")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == f'["{tmp_path / "xla"}", "{tmp_path / "xla"}"]', out.stderr[-2000:]
    assert any(f.name.endswith("-cache") for f in (tmp_path / "xla").iterdir())
    out = subprocess.run([sys.executable, "-c", code], env={**env, "ATLAS_JAX_CACHE_DIR": "off"},
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == '["None", null]', out.stderr[-2000:]


_STORED = """
import json, sys
import numpy as np, pandas as pd
import atlas_jax as aj
from atlas_jax import programs
exports = []
export = programs.export.export
programs.export.export = lambda *a, **k: exports.append(1) or export(*a, **k)
runs = pd.read_csv(sys.argv[1])
res = aj.fit("chinchilla", runs, starts=np.array([[0.5, 6.0, 6.0, 0.3, 0.3], [1.0, 5.0, 7.0, 0.4, 0.2]]))
print(json.dumps({"exports": len(exports), "estimate": res.estimate.tolist()}))
"""


def test_traced_programs_are_stored_and_read_by_the_next_process(tmp_path):
    """A new process reads the solver's traced programs (`atlas_jax.programs`) instead of tracing them again, and
    gets the same numbers to the last bit; an unreadable stored program is exported again."""
    runs = chinchilla_frame(np.geomspace(4e7, 4e9, 4), np.geomspace(1e9, 1e11, 3), noise=0.01, seed=3)
    runs.to_csv(tmp_path / "runs.csv", index=False)
    env = {**os.environ, "ATLAS_JAX_CACHE_DIR": str(tmp_path / "xla"), "ATLAS_JAX_CPU_DEVICES": "1"}
    fit = lambda: subprocess.run([sys.executable, "-W", "ignore", "-c", _STORED, str(tmp_path / "runs.csv")],
                                 env=env, capture_output=True, text=True, timeout=300)
    import json

    results = []
    for _ in range(2):
        out = fit()
        assert out.returncode == 0, out.stderr[-2000:]
        results.append(json.loads(out.stdout))
    stored = sorted((tmp_path / "xla" / "traced").glob("*.jaxexport"))
    assert [r["exports"] for r in results] == [len(stored), 0] and len(stored) >= 2  # solver, Gauss-Newton
    stored[0].write_bytes(b"not a program")
    out = fit()
    assert json.loads(out.stdout)["exports"] == 1 and stored[0].stat().st_size > 100
    assert results[0]["estimate"] == results[1]["estimate"] == json.loads(out.stdout)["estimate"]


def test_program_keys_name_only_atlas_jax_code(tmp_path, monkeypatch):
    """Only atlas_jax's own functions are stored (a user's may change under the same name); law factories name
    their closures; the folder is trimmed past MAX_FILES."""
    from atlas_jax import programs
    from atlas_jax.laws import CHINCHILLA, atlas_law

    assert programs.program_key(CHINCHILLA.log_loss) == "atlas_jax.laws.chinchilla._log_loss"
    assert programs.program_key(atlas_law("transfer", 2).log_loss) != programs.program_key(atlas_law().log_loss)
    assert programs.program_key(lambda theta, x: theta[0]) is None
    assert programs.program_key(np_log_loss) is None
    monkeypatch.setattr(programs, "MAX_FILES", 4)
    for k in range(6):
        programs._write(tmp_path / f"p{k}.jaxexport", b"x")
    assert len(list(tmp_path.glob("*.jaxexport"))) == 3  # at the fifth (5 > 4) the oldest 3 went


def np_log_loss(theta, x):
    return theta[0]
