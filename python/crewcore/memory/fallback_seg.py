"""Segment files of the pure-Python engine: the same files as the Go
engine's ``memory/segment.go`` and the same crash protocol as
``memory/segstore.go`` (docs/architecture.md, "On-disk format" and "Crash
protocol").

A store's vectors live beside its database in append-only segments, each a
pair of files ``<database>-seg-NNNNNN.vec`` (float32 rows) and ``.bin`` (the
1-bit codes the Go engine's search scans first, one row of ``words`` uint64
+ the vector's CRC-32 + the row's own CRC-32), each with a 64-byte header
(magic, version, element type, dimension, row size, segment id, offset of
row 0, CRC-32); the ``.bin`` header is followed by the segment's center.

Appends run inside the store's write transaction: the rows go to the end of
the committed rows (the ``segments`` table) with one ``pwrite`` per file,
before the rows that address them are inserted and the transaction commits.
Bytes past the committed rows are ignored, overwritten and truncated at open.
Vectors are read with numpy's ``memmap`` when numpy is importable, else with
plain reads.
"""

from __future__ import annotations

from array import array
import os
import sqlite3
import struct
import sys
from typing import Any
import zlib

from crewcore.errors import StorageFullError, StoreAccessError, StoreCorruptError
from crewcore.memory.fallback_state import numpy_module

__all__ = ["SEGMENTS_SQL", "append_vectors", "bin_row", "read_segment", "seg_paths", "truncate_tails"]

HEADER = 64
VERSION = 1
ELEM_F32, ELEM_BITS = 1, 2
MIN_CAP = 1024
_HDR = struct.Struct("<8sIIIIQI")  # magic, version, elem, dim, row size, id, rows at

SEGMENTS_SQL = """CREATE TABLE IF NOT EXISTS segments (
  id   INTEGER PRIMARY KEY,
  dim  INTEGER NOT NULL,
  rows INTEGER NOT NULL,
  cap  INTEGER NOT NULL
)"""


def seg_paths(db_path: str, seg_id: int) -> tuple[str, str]:
    p = f"{db_path}-seg-{seg_id:06d}"
    return p + ".vec", p + ".bin"


def words(dim: int) -> int:
    return (dim + 63) // 64


def row_sizes(dim: int) -> tuple[int, int]:
    return dim * 4, words(dim) * 8 + 8


def rows_at(elem: int, dim: int) -> int:
    return HEADER + ((dim * 4 + 63) // 64 * 64 if elem == ELEM_BITS else 0)


def encode_header(elem: int, dim: int, seg_id: int, center: bytes = b"") -> bytes:
    at = rows_at(elem, dim)
    b = bytearray(at)
    magic = b"CCSEGVEC" if elem == ELEM_F32 else b"CCSEGBIN"
    _HDR.pack_into(b, 0, magic, VERSION, elem, dim, row_sizes(dim)[elem - 1], seg_id, at)
    if elem == ELEM_BITS:
        b[HEADER:HEADER + len(center)] = center
    c = zlib.crc32(bytes(b[HEADER:]), zlib.crc32(bytes(b[:60])))
    struct.pack_into("<I", b, 60, c)
    return bytes(b)


def decode_header(b: bytes) -> tuple[int, int, int, int, bytes]:
    """(elem, dim, id, rows at, center bytes); ValueError says what is wrong."""
    if len(b) < HEADER:
        raise ValueError(f"the file is {len(b)} bytes, shorter than a segment header")
    magic, ver, elem, dim, row, seg_id, at = _HDR.unpack_from(b, 0)
    if magic not in (b"CCSEGVEC", b"CCSEGBIN"):
        raise ValueError("not a segment file (bad magic)")
    if ver != VERSION:
        raise ValueError(f"unsupported segment version {ver}")
    if not 0 < dim <= 16000 or elem not in (ELEM_F32, ELEM_BITS):
        raise ValueError(f"bad dimension {dim} or element type {elem} in the header")
    want_magic = b"CCSEGVEC" if elem == ELEM_F32 else b"CCSEGBIN"
    if magic != want_magic or row != row_sizes(dim)[elem - 1] or at != rows_at(elem, dim):
        raise ValueError(f"inconsistent header (element type {elem}, row size {row}, rows at {at})")
    if len(b) < at:
        raise ValueError(f"the file is {len(b)} bytes, shorter than its {at}-byte header")
    (stored,) = struct.unpack_from("<I", b, 60)
    if zlib.crc32(b[HEADER:at], zlib.crc32(b[:60])) != stored:
        raise ValueError("header checksum mismatch")
    return elem, dim, seg_id, at, bytes(b[HEADER:HEADER + 4 * dim]) if elem == ELEM_BITS else b""


def _bits(vec: bytes, center: bytes, dim: int) -> bytes:
    np = numpy_module()
    if np is not None:
        v = np.frombuffer(vec, dtype="<f4")
        c = np.frombuffer(center, dtype="<f4") if center else np.zeros(dim, dtype="<f4")
        packed = np.packbits(v > c, bitorder="little")
        out = np.zeros(words(dim) * 8, dtype=np.uint8)
        out[: packed.size] = packed
        return out.tobytes()
    v = array("f", vec)
    c = array("f", center) if center else array("f", bytes(4 * dim))
    if sys.byteorder == "big":
        v.byteswap()
        c.byteswap()
    out = bytearray(words(dim) * 8)
    for j in range(dim):
        if v[j] > c[j]:
            out[j >> 3] |= 1 << (j & 7)
    return bytes(out)


def bin_row(vec: bytes, center: bytes, dim: int) -> tuple[bytes, int]:
    """The .bin row of a vector (little-endian float32 bytes) and its vcrc."""
    vcrc = zlib.crc32(vec)
    code = _bits(vec, center, dim) + struct.pack("<I", vcrc)
    return code + struct.pack("<I", zlib.crc32(code)), vcrc


def check_bin_row(b: bytes, dim: int) -> int | None:
    """The vcrc of an intact .bin row, None when it fails its checksum."""
    n = words(dim) * 8
    if len(b) != n + 8:
        return None
    vcrc, rcrc = struct.unpack_from("<II", b, n)
    return vcrc if zlib.crc32(b[: n + 4]) == rcrc else None


def _os_error(op: str, path: str, e: OSError) -> Exception:
    import errno

    if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return StorageFullError(f"{op} segment file {path}: disk full: no space for the write ({e})")
    if e.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return StoreAccessError(f"{op} segment file {path}: store not writable ({e})")
    return StoreCorruptError(f"{op} segment file {path}: {e}")


def read_segment(db_path: str, seg_id: int, dim: int, rows: int) -> tuple[Any, bytes, str, int]:
    """Read segment ``seg_id``'s committed rows: (vectors, bin rows, why, fit).

    ``vectors`` is a numpy memmap of shape (fit, dim) when numpy is
    importable, else the .vec file's bytes of those rows; ``fit`` is the
    number of rows read: ``rows``, or fewer when a file was cut short (the
    rows past its end are damaged, the ones before it readable, as in the Go
    engine); ``why`` is empty, or says what is wrong with the files (the
    caller marks the records on them as damaged)."""
    vec_path, bin_path = seg_paths(db_path, seg_id)
    try:
        for path, elem in ((vec_path, ELEM_F32), (bin_path, ELEM_BITS)):
            with open(path, "rb") as f:
                hdr = f.read(rows_at(ELEM_BITS, dim))
            try:
                e, d, sid, _, _center = decode_header(hdr)
            except ValueError as ex:
                return None, b"", f"segment file {path}: {ex}", 0
            if e != elem or sid != seg_id:
                return None, b"", f"segment file {path}: it holds segment {sid} (element type {e}), not {seg_id}", 0
            if d != dim:
                return None, b"", f"segment file {path}: its vectors have {d} dimensions, the store's {dim}", 0
        vrow, brow = row_sizes(dim)
        for path, at, size in ((vec_path, HEADER, vrow), (bin_path, rows_at(ELEM_BITS, dim), brow)):
            rows = min(rows, max(0, (os.path.getsize(path) - at) // size))
        with open(bin_path, "rb") as f:
            f.seek(rows_at(ELEM_BITS, dim))
            bins = f.read(rows * brow)
        np = numpy_module()
        if rows == 0:
            vecs: Any = b""
        elif np is not None:
            vecs = np.memmap(vec_path, dtype="<f4", mode="r", offset=HEADER, shape=(rows, dim))
        else:
            with open(vec_path, "rb") as f:
                f.seek(HEADER)
                vecs = f.read(rows * vrow)
        return vecs, bins, "", rows
    except FileNotFoundError as e:
        return None, b"", f"segment file {e.filename} is missing", 0
    except OSError as e:
        return None, b"", f"segment file {vec_path}: {e}", 0


def active_center(db_path: str, seg_id: int, dim: int, rows: int) -> bytes | None:
    """The center of segment ``seg_id`` when new rows can go after its
    ``rows`` committed ones: both files there, their headers intact and of
    this segment and dimension, neither cut short. None otherwise (a damaged
    segment: its records are reported until deleted, new rows go to a new
    segment)."""
    center = b""
    try:
        for path, elem, size in zip(seg_paths(db_path, seg_id), (ELEM_F32, ELEM_BITS), row_sizes(dim)):
            with open(path, "rb") as f:
                e, d, sid, at, c = decode_header(f.read(rows_at(ELEM_BITS, dim)))
                if (e, d, sid) != (elem, dim, seg_id) or os.fstat(f.fileno()).st_size < at + rows * size:
                    return None
            center = c or center
    except (OSError, ValueError):
        return None
    return center


def _mean(vecs: list[bytes], dim: int) -> bytes:
    np = numpy_module()
    if np is not None:
        m = np.frombuffer(b"".join(vecs), dtype="<f4").reshape(len(vecs), dim).astype(np.float64).mean(axis=0)
        return m.astype("<f4").tobytes()
    sums = [0.0] * dim
    for v in vecs:
        a = array("f", v)
        if sys.byteorder == "big":
            a.byteswap()
        for j in range(dim):
            sums[j] += a[j]
    out = array("f", (s / len(vecs) for s in sums))
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()


def _next_id(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM crewcore_meta WHERE key='next_segment'").fetchone()
    nid = int(row[0]) if row else 1
    conn.execute("INSERT OR REPLACE INTO crewcore_meta(key, value) VALUES ('next_segment', ?)", (str(nid + 1),))
    return nid


def _write(path: str, data: bytes, off: int, create: bool = False) -> None:
    flags = os.O_WRONLY | (os.O_CREAT | os.O_TRUNC if create else 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        raise _os_error("write", path, e) from None
    try:
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, off)
            view, off = view[n:], off + n
    except OSError as e:
        raise _os_error("write", path, e) from None
    finally:
        os.close(fd)


def append_vectors(conn: sqlite3.Connection, db_path: str, dim: int, vecs: list[bytes],
                   new_cap: int = 0, center: bytes | None = None) -> list[tuple[int, int, int]]:
    """Inside the write transaction on ``conn``: append ``vecs`` (little-endian
    float32 bytes of dimension ``dim``) to the active segment, or a new one,
    and return each one's (segment, row, vcrc). ``new_cap`` forces a new
    segment of that capacity."""
    if not vecs:
        return []
    last = conn.execute("SELECT id, rows, cap, dim FROM segments ORDER BY id DESC LIMIT 1").fetchone()
    seg_center = None
    if new_cap == 0 and last is not None and last[1] + len(vecs) <= last[2] and last[3] == dim:
        seg_id, rows = last[0], last[1]
        seg_center = active_center(db_path, seg_id, dim, rows)
    if seg_center is None:
        (total,) = conn.execute("SELECT coalesce(sum(rows), 0) FROM segments").fetchone()
        cap = max(MIN_CAP, total, len(vecs))
        seg_center = _mean(vecs, dim)
        if new_cap:
            cap, seg_center = max(new_cap, len(vecs)), center or seg_center
        elif last is not None and last[3] == dim and last[1] > 0:
            prev, _, why, fit = read_segment(db_path, last[0], dim, last[1])
            if not why and fit:
                np = numpy_module()
                if np is not None:
                    seg_center = prev.astype(np.float64).mean(axis=0).astype("<f4").tobytes()
                else:
                    seg_center = _mean([prev[i * dim * 4:(i + 1) * dim * 4] for i in range(fit)], dim)
        seg_id, rows = _next_id(conn), 0
        vp, bp = seg_paths(db_path, seg_id)
        _write(vp, encode_header(ELEM_F32, dim, seg_id), 0, create=True)
        _write(bp, encode_header(ELEM_BITS, dim, seg_id, seg_center), 0, create=True)
        conn.execute("INSERT INTO segments(id, dim, rows, cap) VALUES (?, ?, 0, ?)", (seg_id, dim, cap))
    out = []
    brows = []
    for i, v in enumerate(vecs):
        b, vcrc = bin_row(v, seg_center, dim)
        brows.append(b)
        out.append((seg_id, rows + i, vcrc))
    vrow, brow = row_sizes(dim)
    vp, bp = seg_paths(db_path, seg_id)
    _write(vp, b"".join(vecs), HEADER + rows * vrow)
    _write(bp, b"".join(brows), rows_at(ELEM_BITS, dim) + rows * brow)
    conn.execute("UPDATE segments SET rows = ? WHERE id = ?", (rows + len(vecs), seg_id))
    return out


def truncate_tails(conn: sqlite3.Connection, db_path: str) -> None:
    """Inside the open transaction: cut every segment file back to its
    committed rows (bytes a writer left before dying uncommitted)."""
    for seg_id, dim, rows in conn.execute("SELECT id, dim, rows FROM segments").fetchall():
        if not 0 < dim <= 16000:
            continue
        vrow, brow = row_sizes(dim)
        for path, size in zip(seg_paths(db_path, seg_id), (HEADER + rows * vrow, rows_at(ELEM_BITS, dim) + rows * brow)):
            try:
                if os.path.getsize(path) > size:
                    os.truncate(path, size)
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno not in (13, 30):  # EACCES, EROFS: left for a writer
                    raise _os_error("truncate", path, e) from None


_libc: Any = None


def _punch(path: str, off: int, n: int) -> None:
    """fallocate(PUNCH_HOLE | KEEP_SIZE) over [off, off+n) of path; best effort
    (Linux; elsewhere, or on a file system without it, the blocks stay)."""
    global _libc
    if _libc is None:
        try:
            import ctypes
            import ctypes.util

            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        except (OSError, AttributeError):
            _libc = False
    if not _libc or not sys.platform.startswith("linux"):
        return
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        return
    try:
        _libc.fallocate(fd, 0x01 | 0x02, off, n)  # FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE
    finally:
        os.close(fd)


def punch_rows(db_path: str, dim: int, addrs: list[tuple[int, int]]) -> None:
    """Give the file system back the .vec rows at ``addrs`` ((segment, row)
    of vectors whose records a committed delete removed), as the Go engine's
    freeRows: only after the store ran out of space (another process that
    has not seen the delete could read zeros there and report the record as
    damaged until its next refresh). Runs of consecutive rows go in one call."""
    vrow = row_sizes(dim)[0]
    addrs = sorted(addrs)
    i = 0
    while i < len(addrs):
        j = i + 1
        while j < len(addrs) and addrs[j] == (addrs[i][0], addrs[i][1] + (j - i)):
            j += 1
        _punch(seg_paths(db_path, addrs[i][0])[0], HEADER + addrs[i][1] * vrow, (j - i) * vrow)
        i = j


def remove_segments(db_path: str, ids: list[int]) -> None:
    for seg_id in ids:
        for p in seg_paths(db_path, seg_id):
            try:
                os.remove(p)
            except OSError:
                pass


def vector_of(conn: sqlite3.Connection, db_path: str, segs: dict[int, tuple[int, Any, bytes, str, int]],
              raw: tuple, dim: int) -> tuple[bytes | None, int, int, str]:
    """(vector bytes, length, vcrc, why) of a ``RAW_COLS`` row's vector,
    read from its segment (``segs`` caches what was read: rows read,
    vectors, code rows, why unreadable, committed rows) and checked against
    its CRCs; why names the damage."""
    seg, srow = raw[11], raw[12]
    if seg is None:
        return None, 0, 0, ""
    if not dim:
        return None, 0, 0, f"rowid {raw[0]}: a vector in a store without a dimension"
    ent = segs.get(seg)
    if ent is None or srow >= ent[4]:
        info = conn.execute("SELECT dim, rows FROM segments WHERE id = ?", (seg,)).fetchone()
        if info is None:
            ent = (0, None, b"", f"segment {seg} is not in the store's segments table", 0)
        elif info[0] != dim:
            ent = (0, None, b"", f"segment {seg} has {info[0]} dimensions, the store {dim}", 0)
        else:
            vecs, bins, why, fit = read_segment(db_path, seg, dim, info[1])
            ent = (fit, vecs, bins, why, info[1])
        segs[seg] = ent
    fit, vecs, bins, why, rows = ent
    if why:
        return None, 0, 0, f"rowid {raw[0]}: {why}"
    if not 0 <= srow < rows:
        return None, 0, 0, f"rowid {raw[0]}: row {srow} of segment {seg} was never committed ({rows} rows)"
    vrow, brow = row_sizes(dim)
    vec_path, bin_path = seg_paths(db_path, seg)
    if srow >= fit:
        return None, 0, 0, (f"rowid {raw[0]}: segment file {vec_path} or {bin_path} is truncated: "
                            f"row {srow} is past its end")
    vcrc = check_bin_row(bins[srow * brow:(srow + 1) * brow], dim)
    if vcrc is None:
        return None, 0, 0, f"rowid {raw[0]}: row {srow} of segment file {bin_path} fails its checksum"
    vec = vecs[srow].tobytes() if not isinstance(vecs, bytes) else vecs[srow * vrow:(srow + 1) * vrow]
    if zlib.crc32(vec) != vcrc:
        return None, 0, 0, f"rowid {raw[0]}: vector row {srow} of segment file {vec_path} fails its checksum"
    return vec, 4 * dim, vcrc, ""
