"""The pure-Python engine of named locks: what :mod:`crewcore.storage.locks`
uses when :func:`crewcore.storage.engine.use_native` says no.

A held lock is an in-process mutex per name (threads of this process queue on
it) plus an ``flock(2)`` on the lock file (other processes, of either engine,
are excluded by the kernel and freed when the holder dies). The caller gives
the lock file (:func:`crewcore.storage.locks.lock_file`, the Go engine's rule)
and keeps what :func:`acquire` returns for :func:`release`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from typing import Any

from crewcore.errors import LockTimeoutError, StoreAccessError

__all__ = ["acquire", "release"]

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


def acquire(name: str, path: str, timeout: float | None) -> tuple[threading.Lock, int]:
    """Take the lock ``name`` (lock file ``path``; ``timeout`` already checked)
    and return what :func:`release` needs: its mutex and the locked descriptor."""
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


def release(name: str, held: tuple[threading.Lock, int]) -> None:
    """Release what :func:`acquire` returned for ``name`` (from any thread, once:
    the caller guards against a second release)."""
    mu, fd = held
    try:
        os.close(fd)  # drops the flock
    finally:
        mu.release()
        _py_unref(name)
