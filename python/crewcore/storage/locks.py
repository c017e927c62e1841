"""Named locks: in-process and cross-process, released from any thread,
freed by the kernel when the holder dies.

    from crewcore.locks import lock
    with lock("my-resource", timeout=5):
        ...

A lock is an ``flock(2)`` on a file named by the SHA-256 of the lock name in
a directory outside the project (``CREWCORE_LOCK_DIR``, else
``$XDG_RUNTIME_DIR/crewcore-locks``, else ``$TMPDIR/crewcore-locks-<uid>``);
the Go engine and this module's pure-Python fallback use the same files, so
they exclude each other. ``crewcore.install()`` makes every CrewAI lock
(``crewai_core.lock_store.lock``) go through :func:`crewai_lock_backend`.

Timeouts: seconds (float); ``0`` tries once; ``None`` waits without limit; a
negative timeout raises ``InvalidArgumentError``. A lock still held at the
deadline raises ``LockTimeoutError`` naming the lock and its file.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from crewcore.storage import engine as _storage_engine
from crewcore.errors import InvalidArgumentError, LockTimeoutError, StoreAccessError

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


# ---- pure-Python engine -------------------------------------------------------

_py_mu = threading.Lock()
_py_names: dict[str, list[Any]] = {}  # name -> [threading.Lock, refs]


def _py_ref(name: str) -> threading.Lock:
    with _py_mu:
        e = _py_names.get(name)
        if e is None:
            e = _py_names[name] = [threading.Lock(), 0]
        e[1] += 1
        return e[0]


def _py_unref(name: str) -> None:
    with _py_mu:
        e = _py_names.get(name)
        if e is not None:
            e[1] -= 1
            if e[1] <= 0:
                del _py_names[name]


def _timeout_error(name: str, path: str, timeout: float | None) -> LockTimeoutError:
    return LockTimeoutError(
        f"lock {name!r} (file {path}) still held by another holder after {timeout:g}s"
        if timeout is not None
        else f"lock {name!r} (file {path}) could not be taken"
    )


def _py_acquire(name: str, timeout: float | None) -> tuple[threading.Lock, int]:
    path = lock_file(name)
    deadline = None if timeout is None else time.monotonic() + timeout
    mu = _py_ref(name)
    try:
        if timeout == 0:
            ok = mu.acquire(blocking=False)
        elif timeout is None:
            ok = mu.acquire()
        else:
            ok = mu.acquire(timeout=min(timeout, threading.TIMEOUT_MAX))
        if not ok:
            raise _timeout_error(name, path, timeout)
        try:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as e:
            mu.release()
            raise StoreAccessError(f"lock {name!r}: cannot create lock file {path}: {e}") from None
        backoff = 50e-6
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return mu, fd
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EINTR):
                    os.close(fd)
                    mu.release()
                    raise
            if timeout == 0 or (deadline is not None and time.monotonic() + backoff / 2 > deadline):
                os.close(fd)
                mu.release()
                raise _timeout_error(name, path, timeout)
            time.sleep(backoff)
            backoff = min(backoff * 2, 0.001)
    except BaseException:
        _py_unref(name)
        raise


class Lock:
    """One held named lock. ``release()`` may be called from any thread, once."""

    __slots__ = ("name", "_native", "_handle", "_mu", "_fd", "_released", "_rel_mu")

    def __init__(self, name: str, timeout: float | None = 120.0) -> None:
        t = _check(name, timeout)
        self.name = name
        self._released = False
        self._rel_mu = threading.Lock()
        self._native = _storage_engine.use_native()
        self._handle = 0
        self._mu: threading.Lock | None = None
        self._fd = -1
        if self._native:
            from crewcore import _bridge

            self._handle = _bridge.call(["lock_acquire", 0, name, t, lock_dir()])
        else:
            self._mu, self._fd = _py_acquire(name, t)

    def release(self) -> None:
        with self._rel_mu:
            if self._released:
                raise InvalidArgumentError(f"lock {self.name!r} was already released")
            self._released = True
        if self._native:
            from crewcore import _bridge

            _bridge.call(["lock_release", self._handle])
            return
        try:
            os.close(self._fd)  # drops the flock
        finally:
            assert self._mu is not None
            self._mu.release()
            _py_unref(self.name)

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
