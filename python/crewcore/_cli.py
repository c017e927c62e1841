"""Launcher for the Go `crewcore` command shipped inside the package."""

from __future__ import annotations

import os
from pathlib import Path
import sys


def main() -> None:
    exe = Path(__file__).resolve().parent / "_lib" / "crewcore"
    if not exe.exists():
        sys.stderr.write(f"crewcore: the command was not built ({exe} is missing); run `make build`\n")
        raise SystemExit(2)
    os.execv(str(exe), [str(exe), *sys.argv[1:]])


if __name__ == "__main__":
    main()
