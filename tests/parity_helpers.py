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
