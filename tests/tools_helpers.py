"""Plain functions for crewcore's isolated-tool tests.

This module imports nothing from CrewAI, so the fresh interpreter an
``isolate=True`` call starts can unpickle these functions quickly.
"""

from __future__ import annotations

import os
import time


def hang_and_report(pid_file: str) -> str:
    """Write this process's pid to pid_file, then hang forever."""
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    while True:
        time.sleep(3600)


def double(x: int) -> int:
    """Return 2 * x."""
    return 2 * x


def fail(msg: str) -> str:
    """Raise a LookupError."""
    raise LookupError(msg)
