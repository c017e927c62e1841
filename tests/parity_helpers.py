"""Tool functions for tests/test_crewai_parity.py.

Module-level and free of CrewAI imports, so an ``isolate=True`` call can
unpickle them in a fresh interpreter. Every call appends a line to the file
named by ``CREWCORE_PARITY_LOG`` (when set), so a test counts the runs of a
tool even when they happen in another process.
"""

from __future__ import annotations

import os


def _log(name: str, arg: str) -> None:
    path = os.environ.get("CREWCORE_PARITY_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{name}\t{arg}\n")


def flaky_lookup(query: str) -> str:
    """Look a fact up in the records service."""
    _log("flaky_lookup", query)
    raise LookupError(f"records service down for {query}")


def same_lookup(query: str) -> str:
    """Look a fact up; the answer never changes."""
    _log("same_lookup", query)
    return f"same_lookup: the answer for {query} is 42"


class RecordsError(Exception):
    """An exception whose constructor wants more than a message."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status}: {text}")
        self.status = status


def records_error(query: str) -> str:
    """Raise RecordsError."""
    raise RecordsError(503, f"records service unavailable for {query}")


def decode_error(query: str) -> str:
    """Raise UnicodeDecodeError (five constructor arguments)."""
    return (b"\xff" + query.encode()).decode("utf-8")


def lazy_module_error(query: str) -> str:
    """Raise an exception of a module the calling process may never have imported."""
    import wave

    raise wave.Error(f"bad header in {query}")
