"""Outputs (atlas_jax.io): a folder is replaced as a whole, never merged with an earlier one; a process killed
(SIGKILL) at any moment leaves the previous output or the new one, complete; no user file is ever deleted; two
processes never write one output."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from typer.testing import CliRunner

from atlas_jax.io import MANIFEST, atomic_output_dir, atomic_output_file, claim_output, release_outputs

#: Writes OUT again and again, each time three files holding the same number, after saying it is ready.
WRITER = textwrap.dedent("""
    import sys
    from atlas_jax.io import atomic_output_dir
    print("ready", flush=True)
    i = 0
    while True:
        with atomic_output_dir(sys.argv[1]) as tmp:
            for name in ("a.txt", "b.txt", "c.txt"):
                (tmp / name).write_text(str(i % 10) * 200_000)
        i += 1
""")

#: Claims OUT (the lock) and waits until killed.
HOLDER = "import sys, time; from atlas_jax.io import claim_output; claim_output(sys.argv[1]); print('held', " \
         "flush=True); time.sleep(60)"


def write(out, files: dict) -> None:
    with atomic_output_dir(out) as tmp:
        for name, text in files.items():
            (tmp / name).write_text(text)


def test_a_folder_is_replaced_as_a_whole_and_lists_its_files(tmp_path):
    out = tmp_path / "out"
    write(out, {"params.csv": "1", "fit.json": "{}"})
    assert json.loads((out / MANIFEST).read_text())["files"] == ["fit.json", "params.csv"]
    write(out, {"posterior.nc": "2"})  # another command's files: the fit's are gone, not left unmarked beside them
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "posterior.nc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary path, no lock left behind


def test_a_folder_with_files_atlas_jax_did_not_write_is_refused_and_left_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"holds notes.txt, not written by atlas-jax .*; expected a new or empty"):
        write(tmp_path, {"params.csv": "1"})
    empty = tmp_path / "empty"
    empty.mkdir()
    write(empty, {"params.csv": "1"})  # an empty folder is fine
    written = tmp_path / "written"
    write(written, {"params.csv": "1"})
    (written / "mine.txt").write_text("added by the user")
    with pytest.raises(ValueError, match="holds mine.txt"):
        write(written, {"params.csv": "2"})
    assert (tmp_path / "notes.txt").read_text() == "mine" and (written / "mine.txt").exists()
    earlier = tmp_path / "earlier"  # written by atlas-jax before the manifest: replaced
    earlier.mkdir()
    (earlier / "params.csv").write_text("old")
    (earlier / "fit.json").write_text("{}")
    write(earlier, {"params.csv": "new"})
    assert sorted(p.name for p in earlier.iterdir()) == [MANIFEST, "params.csv"]


def test_sigkill_at_any_moment_leaves_the_previous_or_the_new_output_complete(tmp_path):
    """20 writers killed at random moments of a write loop (3 files of 200 kB each): after each kill the folder
    holds one complete version or does not exist yet; the next writer removes what the killed ones left."""
    out, rng, seen = tmp_path / "out", random.Random(0), set()
    for _ in range(20):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        proc.stdout.close()
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if out.exists():
            names = sorted(p.name for p in out.iterdir())
            assert names == [MANIFEST, "a.txt", "b.txt", "c.txt"], names
            texts = {(out / n).read_text() for n in ("a.txt", "b.txt", "c.txt")}
            assert len(texts) == 1 and len(texts.pop()) == 200_000  # one version, whole
            seen.add((out / "a.txt").read_text()[0])
    assert len(seen) >= 2  # the kills fell on different writes
    write(out, {"a.txt": "final"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # stale temporary folders and locks removed


def test_a_second_process_is_refused_while_one_writes(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ValueError, match=rf"another atlas-jax process \(pid {holder.pid}\) is writing it"):
            claim_output(out)
        with pytest.raises(ValueError, match="is writing it"):
            write(out, {"a": "1"})
        with atomic_output_file(tmp_path / "out.png") as tmp:  # another output beside it is free
            tmp.write_text("png")
        from atlas_jax.cli import app

        res = CliRunner().invoke(app, ["fit", "epoch-chinchilla", "--law", "chinchilla", "--out", str(out)])
        assert res.exit_code == 2 and res.output.count("error:") == 1 and "is writing it" in res.output
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    claim_output(out)  # the lock died with its holder
    release_outputs()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
