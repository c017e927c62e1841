"""The engine choice: native (Go, through the bridge) or the pure-Python twin.

Every capability (memory, storage, tools, runs) asks :func:`use_native` at the
point where it opens an engine, and nowhere else decides. The answer is
"python" when

- ``CREWCORE_FORCE_PYTHON`` is set (to anything but ``""``, ``0``, ``false``),
  read on every call so a test or a process can switch before it opens;
- the shared library cannot load (one ``RuntimeWarning`` per process says why);
- this process is a child forked after the library loaded (its Go runtime is
  unusable; one ``RuntimeWarning`` per process says so).

Otherwise "native". :func:`backend` reports the choice, :func:`reason` why the
fallback was chosen.
"""

from __future__ import annotations

import os
import threading
import warnings

from crewcore import _bridge

_lock = threading.Lock()
#: Outcome of loading the library in this process: None (not tried yet),
#: "" (loaded) or the reason it could not load.
_load_error: str | None = None
_warned: set[str] = set()

_FALSE = ("", "0", "false", "False", "FALSE", "no")


def forced_python() -> bool:
    """True when ``CREWCORE_FORCE_PYTHON`` asks for the pure-Python engines."""
    return os.environ.get("CREWCORE_FORCE_PYTHON", "") not in _FALSE


def forked() -> bool:
    """True in a child forked after the native library loaded."""
    return _bridge.forked()


def _warn_once(key: str, message: str) -> None:
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    warnings.warn(message, RuntimeWarning, stacklevel=4)


def _library_error() -> str:
    """Load the library once per process; "" when it loaded, else why not."""
    global _load_error
    if _load_error is None:
        with _lock:
            if _load_error is None:
                try:
                    _bridge.load()
                    _bridge.version()
                    _load_error = ""
                except Exception as e:  # noqa: BLE001 - any failure means fallback
                    _load_error = str(e) or type(e).__name__
    return _load_error


def use_native() -> bool:
    """True when this process should use the Go engine (see the module doc)."""
    if forced_python():
        return False
    if _bridge.forked():
        _warn_once(
            "fork",
            "crewcore: this process was forked after the native library loaded; this child "
            "switches memory, locks, task outputs, flow state, tools and runs to the "
            "pure-Python engine (same files, same results).",
        )
        return False
    err = _library_error()
    if err:
        _warn_once(
            "load",
            f"crewcore: native engine unavailable ({err}); using the pure-Python engine "
            "over the same files (slower, same results).",
        )
        return False
    return True


def backend() -> str:
    """"native" or "python": the engine this process uses now."""
    return "native" if use_native() else "python"


def reason() -> str | None:
    """Why the pure-Python engine is used (None when native)."""
    if forced_python():
        return "CREWCORE_FORCE_PYTHON is set"
    if _bridge.forked():
        return "forked after the native library loaded"
    return _library_error() or None
