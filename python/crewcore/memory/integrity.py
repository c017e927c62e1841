"""Integrity of a store file, shared with the Go engine: the WAL bound.

Mirrors ``memory/wal.go`` for the pure-Python engine (docs/architecture.md,
"WAL size"). SQLite starts a WAL over only when a write begins while every
frame is in the database and no reader is still in the WAL; the automatic
passive checkpoint in each commit copies the frames but cannot wait for
readers, so with readers in other processes the WAL could keep growing.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3

__all__ = ["WAL_LIMIT", "bound_wal"]

#: ``journal_size_limit`` of every connection: a WAL started over is
#: truncated to this size; past it, the writer runs a RESTART checkpoint.
WAL_LIMIT = 4 << 20
#: How long (ms) that checkpoint waits for other processes' readers and writers.
_CHECKPOINT_WAIT_MS = 2000


def bound_wal(conn: sqlite3.Connection, path: str, busy_ms: int) -> None:
    """After a commit on ``conn`` (the store's writer, outside a
    transaction, with the process's write lock held): when the ``-wal`` file
    of ``path`` is past ``WAL_LIMIT``, run a RESTART checkpoint, so the next
    write of any process starts the WAL over (and truncates it to
    ``WAL_LIMIT``). Busy readers or writers are waited for up to 2 s; a
    checkpoint that cannot finish is tried again after the next write.
    ``busy_ms`` is the connection's own busy timeout, put back after."""
    try:
        if os.stat(path + "-wal").st_size <= WAL_LIMIT:
            return
    except OSError:
        return
    with contextlib.suppress(sqlite3.Error):
        conn.execute(f"PRAGMA busy_timeout={min(busy_ms, _CHECKPOINT_WAIT_MS)}")
        try:
            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        finally:
            conn.execute(f"PRAGMA busy_timeout={busy_ms}")
