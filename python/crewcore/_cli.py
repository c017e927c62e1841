"""The ``crewcore`` command of an installed package (console entry point, and
``python -m crewcore``): it replaces this process with the Go binary shipped
in ``crewcore/_lib/``, so arguments, output, exit code and signals are the
binary's own."""

from __future__ import annotations

import os
from pathlib import Path
import sys


def executable() -> Path:
    """The Go ``crewcore`` binary of this installation."""
    return Path(__file__).resolve().parent / "_lib" / "crewcore"


def main() -> None:
    exe = executable()
    if not os.access(exe, os.X_OK):
        sys.stderr.write(
            f"crewcore: the crewcore command is missing from this installation ({exe}); "
            "install a crewcore wheel for this platform, or build from source with Go >= 1.26 "
            "(`make build` in a checkout)\n")
        raise SystemExit(2)
    # Commands with a Python half (`crewcore memory import`, `crewcore worker`) use this interpreter.
    os.environ.setdefault("CREWCORE_PYTHON", sys.executable)
    os.execv(str(exe), [str(exe), *sys.argv[1:]])


if __name__ == "__main__":
    main()
