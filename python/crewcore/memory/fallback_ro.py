"""Read-only stores for the pure-Python engine (as the Go engine's
``memory/readonly.go``; docs/troubleshooting.md, "A read-only store").

A store whose database file or directory this process cannot write is
opened read-only instead of being refused: SQLite's ``mode=ro`` (which sees
other processes' writes through the WAL index, the -shm file), or, when the
-shm file does not exist and cannot be created (a read-only directory),
``immutable=1``: SQLite then reads the database file alone and assumes
nobody changes it (writes made meanwhile are not seen), so a -wal file left
beside it is refused rather than skipped. No schema is created, nothing is
truncated or upgraded (a format 1 or 2 store must be opened writable once),
the marker and the space reserve are left alone, segment files are only
read. Every write raises ``StoreAccessError`` naming the file.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse

from crewcore._sqlitedb import SQLITE_CANTOPEN, SQLITE_IOERR, SQLITE_PERM, SQLITE_READONLY, errcode
from crewcore.errors import StoreAccessError, StoreCorruptError

__all__ = ["check_store", "connect_ro", "has_store", "refused", "unwritable"]

_FALL_BACK = (SQLITE_CANTOPEN, SQLITE_READONLY, SQLITE_PERM, SQLITE_IOERR)


def has_store(path: str) -> bool:
    """Whether a non-empty file is at ``path`` (something to open read-only)."""
    try:
        return os.path.isfile(path) and os.path.getsize(path) > 0
    except OSError:
        return False


def unwritable(path: str, parent: str) -> str:
    """Why the existing store file ``path`` cannot be opened for writing
    ("" when it can)."""
    if not os.access(path, os.W_OK):
        return "the file is read-only"
    if not os.access(parent, os.W_OK | os.X_OK):
        return (f"directory {parent} is read-only (SQLite needs to create the -wal and -shm "
                "files next to the database)")
    return ""


def connect_ro(path: str, busy_ms: int, immutable: bool | None = None) -> tuple[sqlite3.Connection, bool]:
    """A read-only connection to ``path``: ``mode=ro``, or ``immutable=1``
    when that cannot read (``immutable`` None: try both, in that order).
    Returns the connection and whether it is immutable; raises sqlite3.Error."""
    first: sqlite3.Error | None = None
    for imm in ((False, True) if immutable is None else (immutable,)):
        uri = "file:" + urllib.parse.quote(path) + "?mode=ro" + ("&immutable=1" if imm else "")
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                                   timeout=busy_ms / 1000)
        except sqlite3.Error as e:
            first = first or e
            continue
        try:
            conn.execute(f"PRAGMA busy_timeout={busy_ms}")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn, imm
        except sqlite3.Error as e:
            conn.close()
            first = first or e
            if errcode(e) not in _FALL_BACK:
                break
    assert first is not None
    raise first


def check_store(path: str, why: str, busy_ms: int) -> bool:
    """Check that the store at ``path`` can be served read-only (``why``
    says why it is read-only); returns whether its connections are immutable."""
    try:
        conn, immutable = connect_ro(path, busy_ms)
    except sqlite3.Error as e:
        raise StoreAccessError(f"open store {path}: store not writable ({why}) and it cannot be read "
                               f"read-only either: {e}") from None
    try:
        try:
            row = conn.execute("SELECT value FROM crewcore_meta WHERE key='version'").fetchone()
        except sqlite3.OperationalError:
            row = None
        version = row[0] if row else None
    finally:
        conn.close()
    if version is None:
        raise StoreAccessError(f"open store {path}: store not writable: the file holds no initialized store, "
                               f"and it cannot be initialized read-only ({why})")
    if version in ("1", "2"):
        raise StoreAccessError(
            f"open store {path}: store not writable: the store is in format version {version} and must be "
            f"upgraded to version 3, which writes it, but it can only be opened read-only ({why}): open it "
            "writable once with this version of crewcore")
    if version != "3":
        raise StoreCorruptError(f"open store {path}: not a crewcore memory store: unsupported format "
                                f"version {version!r} (this engine reads versions 1 to 3)")
    try:
        wal = os.path.getsize(path + "-wal")
    except OSError:
        wal = 0
    if immutable and wal > 0:
        raise StoreAccessError(
            f"open store {path}: store not writable: it is opened read-only ({why}) and its WAL {path}-wal "
            f"holds writes that cannot be read without creating {path}-shm; open it writable once "
            "(or make the directory writable)")
    return immutable


def refused(op: str, path: str, why: str) -> StoreAccessError:
    """The error of a write to a read-only store."""
    return StoreAccessError(f"{op} {path}: store not writable: the store was opened read-only ({why})")
