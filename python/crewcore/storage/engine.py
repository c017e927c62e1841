"""The storage layer's engine (locks, task outputs, flow state).

Native (libcrewcore.so: packages ``lock``, ``taskoutputs``, ``flowstate`` on
``sqlitedb``) when :func:`crewcore._backend.use_native` says so, otherwise the
pure-Python implementations beside the bindings
(:mod:`~crewcore.storage.fallback_locks`, :mod:`~crewcore.storage.fallback_db`)
work on the same files. This module holds what the three share: the choice
(with the exit hook that closes the Go stores) and CrewAI's storage directory;
the Python engine's file checks and its error mapping are in
:mod:`~crewcore.storage.fallback_db`.
"""

from __future__ import annotations

import atexit
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
