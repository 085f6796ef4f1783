"""Compiled programs kept across processes: traced once per machine, not once per process.

The persistent compilation cache (:mod:`atlas_jax.runtime`) keeps what XLA compiled, but JAX finds a program
there only after tracing and lowering the Python function again, 0.5-1.5 s per solver program in every new
process (BENCHMARKS.md, "cli"). :class:`stored_jit` also keeps the traced program (``jax.export``, StableHLO)
in ``<cache>/traced``, keyed by all it depends on: the function, its static arguments, the shapes and dtypes of
its arguments, the devices, the JAX version and a hash of atlas_jax's source. A new process reads it in
milliseconds; the compiled program then comes from the compilation cache.

A call is stored only when every static argument is known by value: plain values, and atlas_jax's own
functions (a law's ``log_loss``), named by module and name, or by a ``program_key`` attribute that a law
factory sets on the closures it builds (:func:`program_key`). A user's own law, a progress bar (a host
callback), several processes (``jax.distributed``) or a switched-off cache run as a plain ``jax.jit``, as does
a program that cannot be exported or stored (it is then traced in every process, as before).

Before lowering a stored program for a CPU, ``jax.export`` sets up jaxlib's LAPACK kernels, which imports
``scipy.linalg`` (0.4 s of a 3.5 s command). atlas_jax's programs call no LAPACK kernel (:mod:`atlas_jax.linalg`),
so that setup is skipped for programs whose module names none (checked when the program is read).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import inspect
import os
import tempfile
from functools import update_wrapper
from pathlib import Path
from typing import Callable, Sequence

import jax
from jax import export

from .devices import batch_mesh
from .runtime import cache_dir

__all__ = ["stored_jit", "program_key", "source_hash", "traced_dir", "MAX_FILES"]

MAX_FILES = 4096  # stored programs kept (the oldest half is removed past it); one is 20-200 kB
_source = None
_lapack_free = contextvars.ContextVar("lapack_free", default=False)


def _skip_lapack_setup() -> None:
    """Make ``jax.export``'s LAPACK setup (module doc) conditional on the program calling LAPACK."""
    from jax._src.export import _export

    setup = getattr(_export, "_ensure_backends_initialized", None)
    if setup is not None:
        _export._ensure_backends_initialized = lambda platforms: None if _lapack_free.get() else setup(platforms)


_skip_lapack_setup()


def source_hash() -> str:
    """SHA-256 of atlas_jax's Python source: a stored program is used only by the code that traced it."""
    global _source
    if _source is None:
        digest, root = hashlib.sha256(), Path(__file__).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
        _source = digest.hexdigest()
    return _source


def traced_dir() -> Path | None:
    """Where traced programs are stored: ``traced/`` in the compilation cache; None when it is switched off."""
    path = cache_dir()
    return None if path is None else path / "traced"


def program_key(fn: Callable) -> str | None:
    """A name that identifies ``fn``'s code across processes: its ``program_key`` attribute, else
    ``module.qualname`` for a module-level function of atlas_jax (whose source :func:`source_hash` covers);
    None for anything else (a user's function may change without the key changing)."""
    key = getattr(fn, "program_key", None)
    if key is None and getattr(fn, "__module__", "").split(".")[0] == "atlas_jax" \
            and "<" not in getattr(fn, "__qualname__", "<"):  # not a lambda or a closure
        key = f"{fn.__module__}.{fn.__qualname__}"
    return key


class stored_jit:
    """``jax.jit(fn, static_argnames=...)`` whose traced programs are stored on disk (module doc).

    ``devices``: the static argument giving the number of devices a ``shard_map`` inside ``fn`` spans (the
    program is exported and called inside that mesh); ``unless``: static arguments that, when true, make the
    program unstorable (host callbacks)."""

    def __init__(self, fn: Callable, static_argnames: Sequence[str], devices: str | None = None,
                 unless: Sequence[str] = ()):
        update_wrapper(self, fn)
        self.fn, self.static, self.devices, self.unless = fn, tuple(static_argnames), devices, tuple(unless)
        self.jitted = jax.jit(fn, static_argnames=self.static)
        self.signature = inspect.signature(fn)
        self.programs: dict[str, tuple[Callable, bool]] = {}  # key -> (program, LAPACK-free)

    def __call__(self, *args, **kwargs):
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        static = {k: v for k, v in bound.arguments.items() if k in self.static}
        names = [k for k in bound.arguments if k not in self.static]
        dynamic = [bound.arguments[k] for k in names]
        key = self._key(static, dynamic)
        if key is None:
            return self.jitted(*args, **kwargs)
        program = self.programs.get(key)
        if program is None:
            program = self.programs[key] = self._program(key, static, names, dynamic)
        call, lapack_free = program
        token = _lapack_free.set(lapack_free)
        try:
            with self._mesh(static):
                return call(*dynamic)
        finally:
            _lapack_free.reset(token)

    def _mesh(self, static):
        n = static.get(self.devices, 1) if self.devices else 1
        return jax.set_mesh(batch_mesh(n)) if n > 1 else contextlib.nullcontext()

    def _key(self, static, dynamic) -> str | None:
        if traced_dir() is None or jax.process_count() > 1:
            return None
        parts = [self.fn.__module__, self.fn.__qualname__, jax.__version__, jax.default_backend(),
                 jax.devices()[0].device_kind, str(jax.device_count()), str(jax.config.jax_enable_x64), source_hash()]
        for name, value in static.items():
            if name in self.unless and value:
                return None
            if callable(value):
                value = program_key(value)
                if value is None:
                    return None
            parts.append(f"{name}={value!r}")
        leaves, tree = jax.tree.flatten(dynamic)
        parts.append(str(tree))
        parts += [repr(jax.typeof(leaf)) for leaf in leaves]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]

    def _program(self, key, static, names, dynamic) -> tuple[Callable, bool]:
        """The stored program of ``key`` (read, or exported and written; the plain jit where that fails) and
        whether it is free of LAPACK calls."""
        path = traced_dir() / f"{self.fn.__name__}-{key}.jaxexport"
        exported = None
        with contextlib.suppress(Exception):  # absent or unreadable: export it again
            exported = export.deserialize(bytearray(path.read_bytes()))
        if exported is None:
            fn = jax.jit(lambda *values: self.fn(**static, **dict(zip(names, values))))
            try:
                with self._mesh(static):
                    exported = export.export(fn)(*dynamic)
                blob = exported.serialize()
            except Exception:  # not exportable (e.g. a callback): trace in every process, as jax.jit does
                return lambda *values: self.jitted(**static, **dict(zip(names, values))), False
            _write(path, blob)
        return jax.jit(exported.call), b"lapack" not in exported.mlir_module_serialized.lower()  # its call targets


def _write(path: Path, blob: bytes) -> None:
    """Write atomically (concurrent processes may store the same program); trim the folder past ``MAX_FILES``.
    A folder that cannot be written only costs the tracing next time."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
        files = sorted(path.parent.glob("*.jaxexport"), key=lambda p: p.stat().st_mtime)
        for old in files[: len(files) - MAX_FILES // 2] if len(files) > MAX_FILES else ():
            old.unlink(missing_ok=True)
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
