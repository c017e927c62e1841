"""``python -m crewcore.memory import``: copy a CrewAI LanceDB memory into a
crewcore store (what ``crewcore memory import`` runs; see lancedb_import.py).

    python -m crewcore.memory import --from-lancedb ~/.local/share/myproj/CrewAI/memory
    python -m crewcore.memory import --from-lancedb ./memory --to postgresql://host/db#team

Prints a progress bar on stderr when stderr is a terminal, and one summary
line on stdout. Exit status: 0 when every record was imported (or was already
there), 1 when some were refused (each listed on stderr) or the import failed,
2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO


class _Bar:
    """A one-line progress bar (redrawn at most 10 times a second)."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.last, self.t0 = out, 0.0, time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < 0.1:
            return
        self.last = now
        width = 30
        filled = int(width * done / total) if total else width
        rate = done / max(now - self.t0, 1e-9)
        self.out.write(f"\rimporting [{'#' * filled}{'-' * (width - filled)}] {done}/{total} records  {rate:.0f}/s ")
        if done >= total:
            self.out.write("\n")
        self.out.flush()


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    ap = argparse.ArgumentParser(prog="crewcore memory", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    imp = sub.add_parser("import", help="copy a CrewAI LanceDB memory into a crewcore store")
    imp.add_argument("--from-lancedb", required=True, metavar="PATH",
                     help="the LanceDB directory (CrewAI's default: <CREWAI_STORAGE_DIR or its data dir>/memory)")
    imp.add_argument("--to", metavar="PATH|DSN", default=None,
                     help="the crewcore store: a path or a postgresql:// DSN (default: crewcore's default store)")
    imp.add_argument("--table", default="memories", help="the LanceDB table (default: memories, CrewAI's)")
    imp.add_argument("--batch-size", type=int, default=500, help="records per write transaction")
    imp.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                     help="progress bar on stderr: auto (when stderr is a terminal), always or never")
    args = ap.parse_args(argv)

    from crewcore.errors import CrewcoreError
    from crewcore.memory.lancedb_import import import_lancedb

    show = args.progress == "always" or (args.progress == "auto" and err.isatty())
    bar: Any = _Bar(err) if show else None
    try:
        summary = import_lancedb(args.from_lancedb, args.to, table=args.table,
                                 batch_size=args.batch_size, progress=bar)
    except CrewcoreError as e:
        if bar is not None and bar.last:
            err.write("\n")
        err.write(f"crewcore memory import: {e}\n")
        return 1
    except KeyboardInterrupt:
        import signal

        # A second Ctrl-C must not cut the message short; the caller's
        # handler comes back after it (main() may run inside a program).
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            err.write("\ncrewcore memory import: interrupted; the batches written so far are kept, "
                      "and running the same command again imports the rest\n")
        finally:
            signal.signal(signal.SIGINT, previous)
        return 130
    for rid, reason in summary.refused:
        err.write(f"crewcore memory import: refused record {rid}: {reason}\n")
    out.write(f"{summary}\n")
    out.flush()
    return 0 if summary.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
