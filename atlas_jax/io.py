"""Atomic output (a command writes into a temporary folder that replaces the target as a whole, only when
complete), output locks, and the machine-stamped JSON records of benchmarks and validation runs.

Every output folder holds a manifest, ``.atlas-jax`` (JSON: the files it holds); a folder is replaced only when
it is new, empty or such a folder holding nothing else, so no user file is ever deleted. A process holds a lock
(``.<name>.atlas-jax-lock`` beside the output, ``flock``) from :func:`claim_output` until :func:`release_outputs`
or its exit, so that two processes never write one output. Temporary paths are named
``.<name>.atlas-jax-<pid>-*``; those of processes that died (kill -9) are removed by the next writer.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import datetime as dt
import errno
import glob
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

__all__ = ["atomic_output_dir", "atomic_output_file", "claim_output", "release_outputs", "write_json",
           "machine_record", "save_record", "MANIFEST"]

MANIFEST = ".atlas-jax"
#: What the commands wrote before output folders had a manifest (2026-11-30): such a folder is atlas-jax's too.
EARLIER_OUTPUTS = frozenset({"params.csv", "diagnostics.csv", "fit.json", "fit.npz", "runs.parquet", "posterior.nc",
                             "summary.csv", "derived.csv", "posterior.json", "plan.json", "plan.txt", "bench.json",
                             "BENCHMARKS.md", "throughput.png"})
_HELD: dict[Path, list] = {}  # outputs this process has claimed: [lock file descriptor, claims]


def claim_output(out: str | os.PathLike, folder: bool = True) -> Path:
    """``out`` if it can be written as a ``folder`` (or a file), locked for this process until
    :func:`release_outputs` (or exit) when its parent folder exists. A ``ValueError`` naming it when it exists as
    the other kind, when its nearest existing parent is not a writable folder, when it is a folder holding files
    atlas-jax did not write, or when another process holds it. Commands call it before any work."""
    out = _check(Path(out), folder)
    if out.parent.is_dir():
        _lock(out)
    return out


def release_outputs() -> None:
    """Release every output this process has claimed (:func:`claim_output`)."""
    for out in list(_HELD):
        _unlock(out, all_claims=True)


atexit.register(release_outputs)


def _check(out: Path, folder: bool) -> Path:
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
    if folder and out.is_dir():
        foreign = _foreign(out)
        if foreign:
            raise ValueError(f"{out}: holds {', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}, not "
                             f"written by atlas-jax (or by a version before its {MANIFEST} manifest); expected a new "
                             f"or empty folder, or one atlas-jax wrote, which is replaced as a whole: give another "
                             f"--out or move those files")
    return out


def _foreign(folder: Path) -> list[str]:
    """The entries of ``folder`` that its manifest does not list; without a manifest, those that are not
    :data:`EARLIER_OUTPUTS`."""
    try:
        listed = set(json.loads((folder / MANIFEST).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        listed = EARLIER_OUTPUTS
    return sorted(p.name for p in folder.iterdir() if p.name != MANIFEST and p.name not in listed)


def _lock(out: Path) -> None:
    key = out.absolute()
    if key in _HELD:
        _HELD[key][1] += 1
        return
    import fcntl

    path = out.parent / f".{out.name}.atlas-jax-lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ValueError(f"{out}: another atlas-jax process (pid {holder}) is writing it; wait for it to "
                             f"finish, or give another output") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino  # not unlinked by its last holder meanwhile
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _HELD[key] = [fd, 1]


def _unlock(out: Path, all_claims: bool = False) -> None:
    key = out.absolute()
    if key not in _HELD:
        return
    _HELD[key][1] -= 1
    if _HELD[key][1] > 0 and not all_claims:
        return
    fd, _ = _HELD.pop(key)
    with contextlib.suppress(OSError):
        os.unlink(out.parent / f".{out.name}.atlas-jax-lock")
    os.close(fd)


def _temporary_prefix(out: Path) -> str:
    return f".{out.name}.atlas-jax-{os.getpid()}-"


def _remove_stale(out: Path) -> None:
    """Remove the temporary paths beside ``out`` left by processes that are no longer alive."""
    stem = f".{out.name}.atlas-jax-"
    for p in out.parent.glob(f"{glob.escape(stem)}*"):
        pid = p.name[len(stem):].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the system
    cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_cwd, exchange = -100, 2
    if renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike):
    """Yield a temporary folder beside ``out``; on success, with its manifest, it replaces ``out`` as a whole.

    A new ``out`` appears by one rename; an existing one (empty, or written by atlas-jax: :func:`claim_output`)
    is exchanged with the new folder in one step (Linux; elsewhere two renames) and then removed. A process killed
    at any moment leaves the previous folder or the new one, complete; on failure ``out`` is left as it was.
    """
    out = _check(Path(out), folder=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    _lock(out)
    try:
        _remove_stale(out)
        tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(out), dir=out.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the output folder gets the usual permissions
        try:
            yield tmp
            write_json(tmp / MANIFEST, {"written_by": "atlas-jax", "files": sorted(p.name for p in tmp.iterdir())})
            if not out.exists():
                os.rename(tmp, out)
            elif not _exchange(tmp, out):  # tmp now holds the previous folder
                old = Path(tempfile.mkdtemp(prefix=_temporary_prefix(out), dir=out.parent))
                os.rename(out, old)
                os.rename(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    finally:
        _unlock(out)


@contextlib.contextmanager
def atomic_output_file(out: str | os.PathLike):
    """Yield a temporary path beside ``out`` (same suffix); on success it replaces ``out`` by one rename, on
    failure it is removed and ``out`` is left as it was."""
    out = _check(Path(out), folder=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    _lock(out)
    try:
        _remove_stale(out)
        fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(out), suffix=out.suffix, dir=out.parent)
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
    finally:
        _unlock(out)


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
