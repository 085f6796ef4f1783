"""Atomic output (a run writes into a temporary folder that replaces the target only when complete) and
the machine-stamped JSON records of benchmarks and validation runs."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

__all__ = ["atomic_output_dir", "atomic_output_file", "check_output", "write_json", "machine_record", "save_record"]


def check_output(out: str | os.PathLike, folder: bool = True) -> Path:
    """``out`` if it can be written as a ``folder`` (or a file): a ``ValueError`` naming it when it exists as the
    other kind, or when its nearest existing parent is not a writable folder. Commands call it before any work."""
    out = Path(out)
    kind = "folder" if folder else "file"
    if out.exists() and out.is_dir() != folder:
        raise ValueError(f"{out}: exists and is a {'file' if folder else 'folder'}; expected an output {kind} "
                         f"(give another path)")
    parent = next((p for p in out.absolute().parents if p.exists()), Path("/"))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK) or \
            (out.exists() and not os.access(out, os.W_OK | (os.X_OK if folder else 0))):
        raise ValueError(f"{out}: cannot write here ({parent if not out.exists() else out} is not a writable "
                         f"{'folder' if not out.exists() or folder else 'file'}); "
                         f"expected a writable output {kind}")
    return out


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike):
    """Yield a temporary folder beside ``out``; on success its files replace those in ``out``.

    A new ``out`` appears by one rename; in an existing ``out`` each file is replaced by one rename.
    On failure the temporary folder is removed and ``out`` is left as it was.
    """
    out = check_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the output folder gets the usual permissions
    try:
        yield tmp
        if out.exists():
            for f in tmp.iterdir():
                os.replace(f, out / f.name)
            tmp.rmdir()
        else:
            os.rename(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_output_file(out: str | os.PathLike):
    """Yield a temporary path beside ``out`` (same suffix); on success it replaces ``out`` by one rename, on
    failure it is removed and ``out`` is left as it was."""
    out = check_output(out, folder=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the output gets the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False, default=float) + "\n")


def machine_record() -> dict:
    """Date, CPU model and core count, OS and JAX device: the header of every benchmark record."""
    import jax

    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(l.split(":", 1)[1].strip() for l in lines if l.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    return {"date": dt.date.today().isoformat(), "machine": f"{cpu}, {os.cpu_count()} cores, {platform.system()} "
            f"{platform.release()}", "device": str(jax.devices()[0]), "jax": jax.__version__}


def save_record(directory: str | os.PathLike, stem: str, record: dict) -> Path:
    """Write ``record`` to ``directory/<stem>_<date>.json`` atomically and return the path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem}_{record['date']}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    write_json(tmp, record)
    os.replace(tmp, path)
    print(f"wrote {path}")
    return path
