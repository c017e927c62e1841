"""Integrity of a store file for the pure-Python engine, the same as the Go
engine's: the WAL bound (``memory/wal.go``), record checksums
(``memory/checksum.go``), the marker beside the database and the upgrade
of version 1 stores (``memory/marker.go``); see docs/architecture.md,
"On-disk format" and "WAL size".

WAL: SQLite starts a WAL over only when a write begins while every
frame is in the database and no reader is still in the WAL; the automatic
passive checkpoint in each commit copies the frames but cannot wait for
readers, so with readers in other processes the WAL could keep growing.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import struct
from typing import Any
import zlib

from crewcore.errors import StoreCorruptError

__all__ = [
    "RAW_COLS", "WAL_LIMIT", "bound_wal", "corrupt_error", "row_checksum", "stored_row", "verify_row",
]

#: ``journal_size_limit`` of every connection: a WAL started over is
#: truncated to this size; past it, the writer runs a RESTART checkpoint.
WAL_LIMIT = 4 << 20
#: How long (ms) that checkpoint waits for other processes' readers and writers.
_CHECKPOINT_WAIT_MS = 2000


def bound_wal(conn: sqlite3.Connection, path: str, busy_ms: int, force: bool = False) -> bool:
    """After a commit on ``conn`` (the store's writer, outside a
    transaction, with the process's write lock held): when the ``-wal`` file
    of ``path`` is past ``WAL_LIMIT``, run a RESTART checkpoint, so the next
    write of any process starts the WAL over (and truncates it to
    ``WAL_LIMIT``). Busy readers or writers are waited for up to 2 s; a
    checkpoint that cannot finish is tried again after the next write.
    ``busy_ms`` is the connection's own busy timeout, put back after. With
    ``force``, whatever the WAL's size. True when the checkpoint finished."""
    if not force and _size(path + "-wal") <= WAL_LIMIT:
        return False
    done = False
    with contextlib.suppress(sqlite3.Error):
        conn.execute(f"PRAGMA busy_timeout={min(busy_ms, _CHECKPOINT_WAIT_MS)}")
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            done = busy == 0
        finally:
            conn.execute(f"PRAGMA busy_timeout={busy_ms}")
    if done and not force:
        ensure_reserve(path)  # grows with the store
    return done


# ---------------------------------------------------------------------------
# record checksums (format version 2; memory/checksum.go is the Go twin)
#
# checksum = CRC-32 (zlib.crc32; Go's crc32.ChecksumIEEE) of
#   uint32 LE byte lengths of id, content, scope, categories, metadata,
#       created_at, last_accessed, source, embedding        (9 x 4 bytes)
#   importance float64 LE (-0 written as +0), private int64 LE,
#   then those nine values' bytes, as stored (NULL source/embedding: empty).

_LENS = struct.Struct("<9I")
_NUMS = struct.Struct("<dq")

#: The records columns of a version 1 or 2 store, text as bytes (a flipped
#: byte may leave text that is not UTF-8, which sqlite3 cannot decode), then
#: the vector and the checksum.
LEGACY_RAW_COLS = (
    "rid, CAST(id AS BLOB), CAST(content AS BLOB), CAST(scope AS BLOB), CAST(categories AS BLOB), "
    "CAST(metadata AS BLOB), importance, CAST(created_at AS BLOB), CAST(last_accessed AS BLOB), "
    "CAST(source AS BLOB), private, embedding, checksum"
)
#: The same for version 3: the vector's (segment, row) address instead of it.
RAW_COLS = LEGACY_RAW_COLS.replace("embedding, checksum", "seg, row, checksum")


def _crc(parts: tuple[bytes, ...], importance: float, private: int) -> int:
    c = zlib.crc32(_LENS.pack(*map(len, parts)) + _NUMS.pack(importance + 0.0, private))
    for p in parts:
        c = zlib.crc32(p, c)
    return c


def _crc3(parts: tuple[bytes, ...], importance: float, private: int, vlen: int, vcrc: int) -> int:
    """Format version 3 (memory/checksum.go, recordChecksumV3): the vector's
    bytes are replaced by their CRC-32 (4 bytes LE); its length field stays."""
    c = zlib.crc32(_LENS.pack(*map(len, parts), vlen) + _NUMS.pack(importance + 0.0, private))
    for p in parts:
        c = zlib.crc32(p, c)
    return zlib.crc32(struct.pack("<I", vcrc), c) if vlen else c


def row_checksum(
    rec_id: str, content: str, scope: str, categories: str, metadata: str, importance: float,
    created: str, accessed: str, source: str | None, private: int, embedding: bytes | None,
) -> int:
    """The (version 3) checksum of a row about to be written with these
    column values and this vector (its bytes: their CRC is what is covered)."""
    return row_checksum_crc(rec_id, content, scope, categories, metadata, importance, created, accessed,
                            source, private, len(embedding or b""), zlib.crc32(embedding) if embedding else 0)


def row_checksum_crc(
    rec_id: str, content: str, scope: str, categories: str, metadata: str, importance: float,
    created: str, accessed: str, source: str | None, private: int, vlen: int, vcrc: int,
) -> int:
    """row_checksum of a vector of ``vlen`` bytes with CRC ``vcrc``."""
    return _crc3(
        (rec_id.encode(), content.encode(), scope.encode(), categories.encode(), metadata.encode(),
         created.encode(), accessed.encode(), (source or "").encode()),
        float(importance), int(private), vlen, vcrc,
    )


def verify_row(raw: tuple, vlen: int = 0, vcrc: int = 0, legacy: bool = False) -> tuple[tuple, str]:
    """A ``RAW_COLS`` row whose vector is ``vlen`` bytes with CRC ``vcrc``
    (``LEGACY_RAW_COLS`` and the version 2 checksum with ``legacy``) ->
    (the row as ``rid, id, content, scope, categories, metadata, importance,
    created_at, last_accessed, source, private, embedding-or-address`` with
    text decoded, why it fails its checksum or "")."""
    if legacy:
        (rid, rid_b, content, scope, cats, meta, importance, created, accessed, source, private,
         emb, checksum) = raw
    else:
        (rid, rid_b, content, scope, cats, meta, importance, created, accessed, source, private,
         seg, srow, checksum) = raw
        emb = (seg, srow)
    texts = (rid_b, content, scope, cats, meta, created, accessed)
    why = ""
    if checksum is None:
        why = "no checksum"
    elif not isinstance(importance, float) or not isinstance(private, int) or any(
            not isinstance(t, bytes) for t in texts):
        why = "a column holds a value of the wrong type"
    else:
        if legacy:
            got = _crc(texts + (source or b"", emb or b""), importance, private)
        else:
            got = _crc3(texts + (source or b"",), importance, private, vlen, vcrc)
        if got != checksum:
            why = f"checksum {got:08x}, stored {checksum & 0xFFFFFFFF:08x}"
    if why:
        why = f"rowid {rid}: {why}"
    # A damaged row's text may not be UTF-8: it is decoded with U+FFFD for the
    # bad bytes, only to name the record (its row is never served).
    d = [_text(t) or "" for t in texts]
    out = (rid, d[0], d[1], d[2], d[3], d[4], importance, d[5], d[6], _text(source), private, emb)
    return out, why


def _text(b: Any) -> str | None:
    if isinstance(b, bytes):
        try:
            return b.decode()
        except UnicodeDecodeError:
            return b.decode("utf-8", "replace")
    return None if b is None else str(b)


def stored_row(conn: sqlite3.Connection, rec_id: str) -> tuple | None:
    """The ``RAW_COLS`` row of ``rec_id`` (None when there is none)."""
    return conn.execute(f"SELECT {RAW_COLS} FROM records WHERE id = ?", (rec_id,)).fetchone()


def corrupt_error(op: str, path: str, bad: dict[str, str]) -> StoreCorruptError:
    """StoreCorruptError naming (up to 10 of) the records that fail their checksum."""
    ids = sorted(bad)
    names = ", ".join(f"{json.dumps(i, ensure_ascii=False)} ({bad[i]})" for i in ids[:10])
    if len(ids) > 10:
        names += f", and {len(ids) - 10} more"
    return StoreCorruptError(
        f"{op} {path}: not a crewcore memory store: records fail their checksum: {len(ids)} "
        f"record(s) damaged in the file: {names}; delete them (delete by record id) or save "
        f"them again, or run `crewcore memory check --repair {path}`"
    )


# ---------------------------------------------------------------------------
# the marker beside the database (memory/marker.go)

#: memory.db -> memory.db-crewcore: written when a store opens, never removed.
#: With it, a database that became empty or lost its tables is refused.
MARKER_SUFFIX = "-crewcore"
_MARKER_TEXT = (
    "crewcore memory store marker: the database beside this file holds a crewcore memory store.\n"
    "If that file becomes empty or loses its tables, crewcore refuses to open it instead of starting over.\n"
    "Delete this file to start a new, empty store at that path.\n"
)


def has_marker(path: str) -> bool:
    return os.path.exists(path + MARKER_SUFFIX)


def write_marker(path: str) -> None:
    """Create the marker of an open store if missing (where it cannot be
    written, only the check is lost)."""
    try:
        fd = os.open(path + MARKER_SUFFIX, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError:
        return
    with contextlib.suppress(OSError):
        os.write(fd, _MARKER_TEXT.encode())
    os.close(fd)


def lost_store_error(path: str, what: str) -> StoreCorruptError:
    m = path + MARKER_SUFFIX
    return StoreCorruptError(
        f"open store {path}: not a crewcore memory store: the store's database {what} (the marker "
        f"{m} says a store was here): it was truncated or replaced, and its records are not in it; "
        f"restore it from a backup, or delete {m} to start a new, empty store"
    )


# ---------------------------------------------------------------------------
# writes that keep part of a stored row: its checksum is computed anew from
# the row as stored, after that row passed its own checksum


def stored_vector(path: str, dim: int, raw: tuple) -> tuple[int, int, str]:
    """(vector length, vcrc, why) of a ``RAW_COLS`` row's vector: its
    segment's .bin row (why says what is wrong with it)."""
    from crewcore.memory.fallback_seg import check_bin_row, row_sizes, rows_at, seg_paths, ELEM_BITS

    seg, srow = raw[11], raw[12]
    if seg is None:
        return 0, 0, ""
    if not dim:
        return 0, 0, f"rowid {raw[0]}: a vector in a store without a dimension"
    _, bin_path = seg_paths(path, seg)
    brow = row_sizes(dim)[1]
    try:
        with open(bin_path, "rb") as f:
            b = os.pread(f.fileno(), brow, rows_at(ELEM_BITS, dim) + srow * brow)
    except OSError as e:
        return 0, 0, f"rowid {raw[0]}: segment file {bin_path}: {e}"
    vcrc = check_bin_row(b, dim)
    if vcrc is None:
        return 0, 0, f"rowid {raw[0]}: row {srow} of segment file {bin_path} fails its checksum"
    return 4 * dim, vcrc, ""


def kept_checksum(conn: sqlite3.Connection, path: str, rec_id: str, params: tuple, dim: int = 0) -> int:
    """The checksum of ``rec_id`` rewritten with ``params`` (content, scope,
    categories, metadata, importance, created_at, last_accessed, source,
    private) keeping its stored vector (update without an embedding)."""
    raw = stored_row(conn, rec_id)
    if raw is None:
        return 0  # the UPDATE finds no row and reports it
    vlen, vcrc, why = stored_vector(path, dim, raw)
    if not why:
        _, why = verify_row(raw, vlen, vcrc)
    if why:
        raise corrupt_error("update", path, {rec_id: why})
    return row_checksum_crc(rec_id, *params, vlen, vcrc)


def touch_rows(conn: sqlite3.Connection, ids: list[str], now: str, path: str = "",
               dim: int = 0) -> tuple[list[str], dict[str, str]]:
    """Set last_accessed to ``now`` with a new checksum on each stored row of
    ``ids`` that passes its own; returns the ids touched and, for rows found
    damaged, id -> why (left as they are)."""
    touched: list[str] = []
    damaged: dict[str, str] = {}
    for rec_id in ids:
        raw = stored_row(conn, rec_id)
        if raw is None:
            continue
        vlen, vcrc, why = stored_vector(path, dim, raw)
        row: tuple = ()
        if not why:
            row, why = verify_row(raw, vlen, vcrc)
        if why:
            damaged[rec_id] = why
            continue
        sums = row_checksum_crc(row[1], row[2], row[3], row[4], row[5], row[6], row[7], now, row[9],
                                row[10], vlen, vcrc)
        conn.execute("UPDATE records SET last_accessed=?, checksum=? WHERE id=?", (now, sums, rec_id))
        touched.append(rec_id)
    return touched, damaged


def check_tables(conn: sqlite3.Connection, path: str) -> None:
    """Refuse a store that lost its records or changes table: it is damaged,
    not new, and must not be re-created empty."""
    (have,) = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN ('records', 'changes')"
    ).fetchone()
    if have != 2:
        raise StoreCorruptError(
            f"open store {path}: not a crewcore memory store: the store lost its records or changes table"
        )


# ---------------------------------------------------------------------------
# the space reserve in the marker (memory/marker.go): on a full disk even a
# delete cannot be written (it appends to the WAL) and the WAL cannot be
# checkpointed (the database must grow to take its pages); a delete or
# reset that fails for lack of space releases the reserve, checkpoints and
# tries again.

_RESERVE_MIN, _RESERVE_MAX = 256 << 10, 8 << 20
#: The writes ``StoreDb.write`` retries on a full disk after releasing the reserve.
FREES_SPACE = frozenset({"delete", "reset"})


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def store_size(path: str) -> int:
    """Bytes of the database of ``path``, its WAL and (while that is under
    the largest reserve) its segment files."""
    size = _size(path) + _size(path + "-wal")
    if size < _RESERVE_MAX:
        import glob

        size += sum(_size(p) for p in glob.glob(glob.escape(path) + "-seg-*"))
    return size


def ensure_reserve(path: str) -> None:
    """Grow the marker of ``path`` to its text plus zeros as large as the
    database, its WAL and its segment files (256 KiB to 8 MiB; a store whose
    vectors fill the disk needs it as much); best effort."""
    text = len(_MARKER_TEXT.encode())
    want = text + min(_RESERVE_MAX, max(_RESERVE_MIN, store_size(path)))
    try:
        fd = os.open(path + MARKER_SUFFIX, os.O_WRONLY)
    except OSError:
        return
    start = off = _size(path + MARKER_SUFFIX)
    zeros = bytes(64 << 10)
    try:
        while off < want:
            off += os.pwrite(fd, zeros[: want - off], off)
    except OSError:  # no space: leave it to the store
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
    finally:
        os.close(fd)


def grow_reserve(path: str, seen: int) -> int:
    """After a write: while the reserve is under its largest size, grow it
    with the store (``ensure_reserve``) once the store (``store_size``: the
    database, which SQLite's automatic checkpoints inside commits make grow,
    its WAL and segments) is 1 MiB larger than ``seen``, the size at the last
    attempt (on a nearly full disk each attempt writes zeros until it fails).
    Returns the size to pass next time. One ``stat`` once the reserve is full."""
    if _size(path + MARKER_SUFFIX) >= len(_MARKER_TEXT.encode()) + _RESERVE_MAX:
        return seen
    size = store_size(path)
    if size < seen + (1 << 20):
        return seen
    ensure_reserve(path)
    return size


def release_reserve(path: str) -> bool:
    """Give the reserve back to the file system; False when there was none."""
    text = len(_MARKER_TEXT.encode())
    if _size(path + MARKER_SUFFIX) <= text:
        return False
    try:
        os.truncate(path + MARKER_SUFFIX, text)
    except OSError:
        return False
    return True


def is_full(e: BaseException) -> bool:
    """Whether a write failed for lack of space (StorageFullError, or SQLite's SQLITE_FULL text)."""
    return type(e).__name__ == "StorageFullError" or "database or disk is full" in str(e)
