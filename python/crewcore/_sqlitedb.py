"""SQLite helpers shared by the pure-Python engines (memory, storage layer):
error codes, the "is this a SQLite file" check, busy detection.

The pure-Python counterpart of what the Go package ``sqlitedb`` gives the Go
engines. Bottom layer: imports nothing of crewcore.
"""

from __future__ import annotations

import sqlite3
import urllib.parse

#: SQLite primary result codes the engines branch on.
SQLITE_PERM, SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY = 3, 5, 6, 8
SQLITE_CORRUPT, SQLITE_CANTOPEN, SQLITE_AUTH, SQLITE_NOTADB = 11, 14, 23, 26
SQLITE_IOERR, SQLITE_FULL = 10, 13


def errcode(e: BaseException) -> int | None:
    """The primary result code of a sqlite3 error (None when it has none)."""
    code = getattr(e, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def not_sqlite(path: str) -> bool:
    """Whether SQLite itself, read-only, refuses path as "not a database".

    It never reads the file through a descriptor of its own: closing any
    descriptor of a file drops every POSIX lock this process holds on it,
    and the file may already be open here (a second store on one file).
    Without those locks another process can rebuild the WAL index, or take
    the open connection for gone and delete the -wal under it. SQLite's own
    connections share their locks per file. Other failures are left for the
    real open to report (False).
    """
    try:
        conn = sqlite3.connect("file:" + urllib.parse.quote(path) + "?mode=ro", uri=True,
                               isolation_level=None, check_same_thread=False)
    except sqlite3.Error:
        return False
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as e:
        return errcode(e) == SQLITE_NOTADB or "not a database" in str(e).lower()
    except sqlite3.Error:
        return False
    finally:
        conn.close()
    return False


def is_busy(e: BaseException) -> bool:
    """True for SQLITE_BUSY / SQLITE_LOCKED (another connection holds the lock)."""
    if not isinstance(e, sqlite3.Error):
        return False
    code = errcode(e)
    if code in (SQLITE_BUSY, SQLITE_LOCKED):
        return True
    msg = str(e).lower()
    return "database is locked" in msg or "database is busy" in msg or "table is locked" in msg


def disk_full(e: BaseException, path: str) -> bool:
    """Whether a sqlite3 error is a write refused for lack of space.

    SQLITE_FULL is (the disk or the database size limit). A write past the
    file size limit (RLIMIT_FSIZE: EFBIG) or onto a full disk can also come
    back as SQLITE_IOERR, which Python's sqlite3 reports without the errno:
    then it is taken for a full disk when the directory has under 1 MiB free
    or the process has a file size limit (a write past it fails with EFBIG).
    """
    code = errcode(e)
    if code == SQLITE_FULL:
        return True
    if code != SQLITE_IOERR:
        return False
    import os
    import resource

    try:
        st = os.statvfs(os.path.dirname(path) or ".")
        if st.f_bavail * st.f_frsize < 1 << 20:
            return True
        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    except (OSError, ValueError):
        return False
    return soft != resource.RLIM_INFINITY
