"""A second store on a file this process already has open keeps SQLite's locks.

Closing any descriptor of a file drops every POSIX lock the process holds on
it. A store that read the file's header through open() and closed it took
away the SHARED lock SQLite's open connections hold on the database file in
WAL mode (and the Go engine's WAL watch took away the DMS lock on -shm).
Without them another process can take the file as unused: rebuild the WAL
index under the open connections (CI saw SIGBUS) or checkpoint and delete
the -wal under them. The checks ask the kernel with F_OFD_GETLK, which sees
this process's own POSIX locks.

Run: cd /work/main && PYTHONPATH=python .venv/bin/python -m pytest tests/test_sqlite_locks.py -q
"""

from __future__ import annotations

import fcntl
import os
import struct
import sys

import pytest

from crewai.memory.types import MemoryRecord

import crewcore

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(fcntl, "F_OFD_GETLK"),
    reason="F_OFD_GETLK is Linux-only",
)

SHARED_FIRST, SHARED_SIZE = 0x40000002, 510  # SQLite's SHARED lock bytes (os_unix.c)
SHM_DMS = 128  # the -shm byte every connection read-locks while it has the WAL index


def locked(fd: int, start: int, length: int) -> bool:
    """Whether some lock would stop a write lock on [start, start+length)."""
    req = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, start, length, 0)
    out = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, req)
    return struct.unpack("hhqqi4x", out)[0] != fcntl.F_UNLCK


@pytest.mark.parametrize("engine", ["native", "python"])
def test_second_memory_store_keeps_locks(tmp_path, engine):
    path = str(tmp_path / "m.db")
    a = crewcore.MemoryStorage(path, engine=engine)
    a.save([MemoryRecord(content="kept", scope="/s", embedding=[1.0, 0.0, 0.0])])
    # Opened after the store and closed only after the checks: closing them
    # earlier would drop the locks themselves.
    db = os.open(path, os.O_RDONLY)
    shm = os.open(path + "-shm", os.O_RDONLY)
    try:
        assert locked(db, SHARED_FIRST, SHARED_SIZE), "no SHARED lock with the store open"
        assert locked(shm, SHM_DMS, 1), "no DMS lock on -shm with the store open"
        b = crewcore.MemoryStorage(path, engine=engine)
        try:
            assert b.count() == 1
            assert locked(db, SHARED_FIRST, SHARED_SIZE), (
                "opening a second store on the file dropped the first one's SHARED lock"
            )
            assert locked(shm, SHM_DMS, 1), (
                "opening a second store on the file dropped the first one's DMS lock on -shm"
            )
        finally:
            b.close()
        assert a.count() == 1
    finally:
        a.close()
        os.close(shm)
        os.close(db)


def test_file_check_keeps_locks(tmp_path):
    """The pure-Python engines' check of an existing file (run by every open
    of task outputs and flow state) leaves an open store's locks alone.

    Only within one SQLite library: Python's sqlite3 and the Go engine are
    two copies of SQLite, and either one closing a descriptor drops the
    other's locks, so one process must not have a file open through both
    engines at once (docs/architecture.md)."""
    from crewcore.storage import fallback_db as _storage_fallback

    path = str(tmp_path / "m.db")
    a = crewcore.MemoryStorage(path, engine="python")
    a.save([MemoryRecord(content="kept", scope="/s", embedding=[1.0, 0.0, 0.0])])
    db = os.open(path, os.O_RDONLY)
    try:
        assert locked(db, SHARED_FIRST, SHARED_SIZE)
        _storage_fallback.check_db_file(path)
        assert locked(db, SHARED_FIRST, SHARED_SIZE), "checking the file dropped the store's SHARED lock"
        with open(tmp_path / "junk.db", "wb") as f:
            f.write(b"this is not a database at all" * 10)
        with pytest.raises(crewcore.errors.StoreCorruptError, match="not a SQLite database"):
            _storage_fallback.check_db_file(str(tmp_path / "junk.db"))
        assert a.count() == 1
    finally:
        a.close()
        os.close(db)
