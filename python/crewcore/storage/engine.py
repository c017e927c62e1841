"""The storage layer's engine (locks, task outputs, flow state).

Native (libcrewcore.so: packages ``lock``, ``taskoutputs``, ``flowstate`` on
``sqlitedb``) when :func:`crewcore._backend.use_native` says so, otherwise the
pure-Python implementations beside each binding work on the same files. This
module holds what the three share: the choice (with the exit hook that closes
the Go stores), CrewAI's storage directory, the Python engine's file checks
and and its error mapping.
"""

from __future__ import annotations

import atexit
import os
import threading

from crewcore import _backend, _bridge

_lock = threading.Lock()
_registered = False


def use_native() -> bool:
    """True when the storage layer should go through the Go engine."""
    if not _backend.use_native():
        return False
    _register_exit()
    return True


def _register_exit() -> None:
    global _registered
    if _registered:
        return
    with _lock:
        if not _registered:
            atexit.register(_close_all)
            _registered = True


def _close_all() -> None:
    if _bridge.forked():
        return
    try:
        _bridge.call(["storage_close_all", 0])
    except Exception:  # noqa: BLE001  (exit path: nothing to report to)
        pass


def storage_dir() -> str:
    """CrewAI's storage directory (where its SQLite files live)."""
    from crewai_core.paths import db_storage_path

    return str(db_storage_path())


def check_db_file(path: str) -> None:
    """Refuse a path that is a directory or a non-SQLite file (never modified),
    and an uncreatable one, with crewcore's typed errors (Python engine)."""
    from crewcore.errors import StoreAccessError, StoreCorruptError

    d = os.path.dirname(path) or "."
    try:
        os.makedirs(d, exist_ok=True)
    except OSError as e:
        raise StoreAccessError(f"open database {path}: cannot create directory {d}: {e}") from None
    if os.path.isdir(path):
        raise StoreCorruptError(f"open database {path}: path is a directory")
    from crewcore._sqlitedb import not_sqlite

    try:
        st = os.stat(path)
    except FileNotFoundError:
        if not os.access(d, os.W_OK) or _readonly_fs(d):
            raise StoreAccessError(f"open database {path}: directory {d} is not writable") from None
        return
    except OSError as e:
        raise StoreAccessError(f"open database {path}: {e}") from None
    if not os.access(path, os.R_OK):
        raise StoreAccessError(f"open database {path}: the file is not readable")
    # Never through open(): see not_sqlite.
    if st.st_size and not_sqlite(path):
        raise StoreCorruptError(f"open database {path}: the file is not a SQLite database")


def _readonly_fs(d: str) -> bool:
    try:
        return bool(os.statvfs(d).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def py_error(op: str, path: str, e: BaseException) -> Exception:
    """Map a sqlite3 error of the Python engine to crewcore's typed errors."""
    from crewcore.errors import (
        StorageFullError,
        StoreAccessError,
        StoreCorruptError,
        StoreTimeoutError,
    )

    msg = str(e).lower()
    text = f"{op} {path}: {e}"
    if "locked" in msg or "busy" in msg:
        return StoreTimeoutError(f"{op} {path}: database locked past deadline: the database stayed locked by another connection or process: {e}")
    if "full" in msg or "too big" in msg or getattr(e, "errno", None) in (28, 27, 122):
        return StorageFullError(f"{op} {path}: disk full: {e}")
    if "not a database" in msg or "malformed" in msg or "corrupt" in msg:
        return StoreCorruptError(f"{op} {path}: database corrupt or not a SQLite file: {e}")
    if "readonly" in msg or "read-only" in msg or "unable to open" in msg or "permission" in msg:
        return StoreAccessError(f"{op} {path}: database not writable: {e}")
    if "disk i/o" in msg:
        return StorageFullError(text) if _dir_full(path) else OSError(text)
    return OSError(text)


def _dir_full(path: str) -> bool:
    import resource

    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        if soft != resource.RLIM_INFINITY:
            return True
        st = os.statvfs(os.path.dirname(path) or ".")
        return st.f_bavail * st.f_frsize < 1 << 20
    except OSError:
        return False
