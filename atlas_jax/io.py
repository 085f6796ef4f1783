"""Atomic output: a run writes into a temporary folder that replaces the target only when complete."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["atomic_output_dir", "write_json"]


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike):
    """Yield a temporary folder beside ``out``; on success its files replace those in ``out``.

    A new ``out`` appears by one rename; in an existing ``out`` each file is replaced by one rename.
    On failure the temporary folder is removed and ``out`` is left as it was.
    """
    out = Path(out)
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


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False, default=float) + "\n")
