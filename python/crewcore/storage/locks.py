"""Named locks: in-process and cross-process, released from any thread,
freed by the kernel when the holder dies.

    from crewcore.locks import lock
    with lock("my-resource", timeout=5):
        ...

A lock is an ``flock(2)`` on a file named by the SHA-256 of the lock name in
a directory outside the project (``CREWCORE_LOCK_DIR``, else
``$XDG_RUNTIME_DIR/crewcore-locks``, else ``$TMPDIR/crewcore-locks-<uid>``);
the Go engine and the pure-Python fallback beside this module
(:mod:`~crewcore.storage.fallback_locks`) use the same files, so they exclude
each other. ``crewcore.install()`` makes every CrewAI lock
(``crewai_core.lock_store.lock``) go through :func:`crewai_lock_backend`.

Timeouts: seconds (float); ``0`` tries once; ``None`` waits without limit; a
negative timeout raises ``InvalidArgumentError``. A lock still held at the
deadline raises ``LockTimeoutError`` naming the lock and its file.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from crewcore import _bridge
from crewcore.errors import InvalidArgumentError
from crewcore.storage import engine as _storage_engine
from crewcore.storage import fallback_locks as _fallback

__all__ = ["Lock", "acquire", "crewai_lock_backend", "lock", "lock_dir", "lock_file", "install", "uninstall"]


def lock_dir() -> str:
    """The directory of lock files (the same rule as the Go engine's)."""
    d = os.environ.get("CREWCORE_LOCK_DIR")
    if d:
        return d
    x = os.environ.get("XDG_RUNTIME_DIR")
    if x and os.path.isdir(x):
        return os.path.join(x, "crewcore-locks")
    tmp = os.environ.get("TMPDIR") or "/tmp"
    return os.path.join(tmp, f"crewcore-locks-{os.getuid()}")


def lock_file(name: str) -> str:
    """The lock file of ``name``."""
    return os.path.join(lock_dir(), hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32] + ".lock")


def _check(name: Any, timeout: Any) -> float | None:
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"lock name must be a non-empty str, got {name!r}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"lock name {name!r} is not valid UTF-8") from None
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise InvalidArgumentError(f"lock {name!r}: timeout must be a number of seconds or None, got {timeout!r}")
    t = float(timeout)
    if math.isnan(t):
        raise InvalidArgumentError(f"lock {name!r}: timeout is NaN")
    if t < 0:
        raise InvalidArgumentError(
            f"lock {name!r}: negative timeout {timeout!r} (use 0 to try once, None to wait without limit)"
        )
    return t


class Lock:
    """One held named lock. ``release()`` may be called from any thread, once."""

    __slots__ = ("name", "_native", "_handle", "_released", "_rel_mu")

    def __init__(self, name: str, timeout: float | None = 120.0) -> None:
        t = _check(name, timeout)
        self.name = name
        self._released = False
        self._rel_mu = threading.Lock()
        self._native = _storage_engine.use_native()
        # The Go engine's lock handle, or the pure-Python engine's (mutex, fd).
        self._handle: Any = (
            _bridge.call(["lock_acquire", 0, name, t, lock_dir()])
            if self._native
            else _fallback.acquire(name, lock_file(name), t)
        )

    def release(self) -> None:
        with self._rel_mu:
            if self._released:
                raise InvalidArgumentError(f"lock {self.name!r} was already released")
            self._released = True
        if self._native:
            _bridge.call(["lock_release", self._handle])
        else:
            _fallback.release(self.name, self._handle)

    @property
    def held(self) -> bool:
        return not self._released

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(name: str, timeout: float | None = 120.0) -> Lock:
    """Take the lock ``name`` and return it held."""
    return Lock(name, timeout)


@contextmanager
def lock(name: str, timeout: float | None = 120.0) -> Iterator[None]:
    """Hold the lock ``name`` for the ``with`` block."""
    held = Lock(name, timeout)
    try:
        yield
    finally:
        held.release()


def crewai_lock_backend(name: str, *, timeout: float | None = 120) -> Lock:
    """The backend for ``crewai_core.lock_store.set_lock_backend``: CrewAI calls
    it as ``backend(name, timeout=...)`` and uses the result as a context
    manager; the lock may be released from another thread than its taker."""
    return Lock(name, timeout)


crewai_lock_backend.crewcore = True  # type: ignore[attr-defined]


def install() -> None:
    """Route every CrewAI lock through crewcore locks."""
    from crewai_core.lock_store import set_lock_backend

    set_lock_backend(crewai_lock_backend)


def uninstall() -> None:
    """Restore CrewAI's own lock selection (if crewcore's is in place)."""
    from crewai_core import lock_store

    if getattr(lock_store, "_backend", None) is crewai_lock_backend:
        lock_store.set_lock_backend(None)
