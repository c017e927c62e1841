"""Which engine serves this process: "native" (Go) or "python" (fallback)."""

from __future__ import annotations

import os
import threading
import warnings

_lock = threading.Lock()
_choice: str | None = None
_reason: str | None = None


def backend() -> str:
    """Return "native" or "python", deciding once per process.

    "python" is chosen when CREWCORE_FORCE_PYTHON=1, when the shared library
    cannot load, or in a child forked after the library loaded; a warning says
    why (except when forced).
    """
    global _choice, _reason
    from crewcore import _native

    if _choice == "native" and _native.forked():
        _choice = None
    if _choice is not None:
        return _choice
    with _lock:
        if _choice is not None:
            return _choice
        if os.environ.get("CREWCORE_FORCE_PYTHON", "") not in ("", "0", "false", "False"):
            _choice, _reason = "python", "CREWCORE_FORCE_PYTHON is set"
            return _choice
        try:
            _native.load()
            _native.version()
            _choice = "native"
        except Exception as e:  # noqa: BLE001 - any failure means fallback
            _choice, _reason = "python", str(e)
            warnings.warn(
                f"crewcore: native engine unavailable ({e}); using the pure-Python engine "
                "over the same files (slower, same results).",
                RuntimeWarning,
                stacklevel=2,
            )
        return _choice


def reason() -> str | None:
    """Why the fallback was chosen (None when native)."""
    backend()
    return _reason


def forked() -> bool:
    """True in a child forked after the native library loaded."""
    from crewcore import _native

    return _native.forked()
