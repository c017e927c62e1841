"""Pure-Python engine: the same store as the Go library, without the Go library.

``PyStore`` reads and writes exactly the database file the Go engine does
(docs/architecture.md, "On-disk format"), with the same semantics, so a store
written by one engine is read by the other and both may have it open at once,
in one process or in many.

Design (mirrors ``memory/index.go``):

* SQLite (WAL) is the truth. Every write runs in ``BEGIN IMMEDIATE``, first
  brings the in-memory state up to date from the ``changes`` log, writes the
  rows plus one ``changes`` row per touched record id (a single ``'*'`` for a
  whole reset), commits, then applies the same change in memory.
* Every read first checks ``max(seq)`` of ``changes``; when another process
  (or another store object) wrote, the new ids are re-read, or everything is
  reloaded after a ``'*'`` or a gap in the log.
* In memory: every record's fields, the vectors of records that have one in a
  contiguous float32 matrix (numpy when importable, else ``array('f')``) with
  their squared norms, and per-scope statistics so ``count``,
  ``list_scopes``, ``get_scope_info`` and ``list_categories`` cost
  O(distinct scopes).
* Threads: one write connection guarded by a lock (one writer per process;
  SQLite serializes processes), a small pool of read connections, and an
  ``RLock`` around the in-memory state.
"""

from __future__ import annotations

from array import array
import contextlib
from datetime import datetime
import heapq
import json
import math
import operator
import os
import sqlite3
import sys
import threading
import time
from typing import Any, Iterable, Iterator
import urllib.parse

try:  # numpy is optional: without it the pure-Python arena is used.
    import numpy as _np
except Exception:  # pragma: no cover - exercised by monkeypatching in tests
    _np = None

from crewcore._sqlitedb import (
    SQLITE_AUTH as _SQLITE_AUTH,
    SQLITE_CANTOPEN as _SQLITE_CANTOPEN,
    SQLITE_CORRUPT as _SQLITE_CORRUPT,
    SQLITE_NOTADB as _SQLITE_NOTADB,
    SQLITE_PERM as _SQLITE_PERM,
    SQLITE_READONLY as _SQLITE_READONLY,
    errcode as _errcode,
    is_busy as _is_busy,
    not_sqlite,
)
from crewcore.memory.validate import (
    check_limit,
    fmt_dt,
    make_record,
    normalize_prefix,
    normalize_scope,
    parse_dt,
    scope_matches,
    to_row,
    utcnow_str,
    vector_bytes,
)
from crewcore.errors import (
    CrewcoreError,
    EngineError,
    StoreClosedError,
    InvalidArgumentError,
    InvalidRecordError,
    RecordNotFoundError,
    StoreAccessError,
    StoreCorruptError,
    StoreTimeoutError,
    dimension_error,
)

__all__ = ["PyStore"]

#: Format identity written in ``crewcore_meta``.
FORMAT = "crewcore-memory"
VERSION = "1"
#: ``optimize()`` keeps this many newest rows of the change log.
KEEP_CHANGES = 10_000
#: Default deadline for a write waiting on other processes' locks.
DEFAULT_BUSY_TIMEOUT = 60.0

_ID_CHUNK = 500  # ids per "IN (...)" statement (well under SQLite's variable limit)
_READ_POOL_MAX = 8
_ZERO_TIME = "0001-01-01T00:00:00.000000"
# Score slack used to pick the float32 candidates that are re-scored exactly
# in float64 (see _search_numpy): larger than float32 rounding of the score of
# normal embeddings, so the exact ranking and min_score cut are not affected.
_RESCORE_SLACK = 1e-4

_COLS = (
    "rid, id, content, scope, categories, metadata, importance, created_at, "
    "last_accessed, source, private, embedding"
)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS crewcore_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS records (
  rid           INTEGER PRIMARY KEY,
  id            TEXT NOT NULL UNIQUE,
  content       TEXT NOT NULL,
  scope         TEXT NOT NULL,
  categories    TEXT NOT NULL,
  metadata      TEXT NOT NULL,
  importance    REAL NOT NULL,
  created_at    TEXT NOT NULL,
  last_accessed TEXT NOT NULL,
  source        TEXT,
  private       INTEGER NOT NULL,
  embedding     BLOB
)""",
    """CREATE TABLE IF NOT EXISTS changes (
  seq       INTEGER PRIMARY KEY AUTOINCREMENT,
  record_id TEXT NOT NULL
)""",
    "INSERT OR IGNORE INTO crewcore_meta(key, value) VALUES "
    "('format', 'crewcore-memory'), ('version', '1')",
)

_UPDATE_SQL = (
    "UPDATE records SET content=?, scope=?, categories=?, metadata=?, importance=?, "
    "created_at=?, last_accessed=?, source=?, private=?{emb} WHERE id=?"
)
_INSERT_SQL = (
    "INSERT INTO records(id, content, scope, categories, metadata, importance, "
    "created_at, last_accessed, source, private, embedding) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)

# SQLite primary result codes.

_BIG_ENDIAN = sys.byteorder == "big"


# ---------------------------------------------------------------------------
# small helpers


def _encode_strings(items: list[str]) -> str:
    """JSON array of strings, byte-identical to Go's ``json.Marshal([]string)``.

    Go writes compact JSON and escapes ``<``, ``>``, ``&``, U+2028 and U+2029;
    both engines must store the same canonical bytes.
    """
    s = json.dumps(items, ensure_ascii=False, separators=(",", ":"))
    if any(ch in s for ch in "<>&\u2028\u2029"):
        s = (
            s.replace("<", "\\u003c")
            .replace(">", "\\u003e")
            .replace("&", "\\u0026")
            .replace("\u2028", "\\u2028")
            .replace("\u2029", "\\u2029")
        )
    return s


def _decode_strings(s: str | None) -> list[str]:
    """Parse a stored categories array; malformed values read as []."""
    if not s or s == "[]":
        return []
    try:
        v = json.loads(s)
    except (TypeError, ValueError):
        return []
    if not isinstance(v, list):
        return []
    return [c for c in v if isinstance(c, str)]


def _safe_time(s: Any) -> str:
    """A stored timestamp, or the zero time when a foreign writer left garbage."""
    if isinstance(s, str):
        try:
            parse_dt(s)
            return s
        except ValueError:
            pass
    return _ZERO_TIME


def _json_equal(a: Any, b: Any) -> bool:
    """Equality of decoded JSON values (numbers by value, bools are not numbers)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)):
        if not isinstance(b, (int, float)):
            return False
        # Python compares int with int exactly and int with float by value
        # without overflow: 2**60 != 2**60 + 1, 1 == 1.0.
        return a == b
    if isinstance(a, str):
        return isinstance(b, str) and a == b
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(_json_equal(x, y) for x, y in zip(a, b))
        )
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and len(a) == len(b)
            and all(k in b and _json_equal(v, b[k]) for k, v in a.items())
        )
    return False


def _meta_match(meta: dict[str, Any], want: dict[str, Any]) -> bool:
    for k, wv in want.items():
        if k not in meta or not _json_equal(meta[k], wv):
            return False
    return True


def _classify(op: str, path: str, e: sqlite3.Error) -> CrewcoreError:
    """Map a SQLite failure onto crewcore's typed errors (the message names the file)."""
    code = _errcode(e)
    msg = str(e)
    low = msg.lower()
    if code in (_SQLITE_NOTADB, _SQLITE_CORRUPT) or "not a database" in low or "malformed" in low:
        return StoreCorruptError(f"{op} {path}: not a crewcore memory store ({msg})")
    if code in (_SQLITE_READONLY, _SQLITE_PERM, _SQLITE_CANTOPEN, _SQLITE_AUTH) or (
        "readonly" in low or "unable to open" in low
    ):
        return StoreAccessError(f"{op} {path}: store not writable ({msg})")
    if _is_busy(e):
        return StoreTimeoutError(f"{op} {path}: database locked by another process ({msg})")
    return EngineError(f"{op} {path}: {msg}")


def _check_str_list(value: Any, name: str) -> list[str] | None:
    """None/empty -> None (no criterion); a list of strings otherwise."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InvalidArgumentError(f"{name} must be a list of strings, got {value!r}")
    out = list(value)
    for v in out:
        if not isinstance(v, str):
            raise InvalidArgumentError(f"{name} must be a list of strings, got item {v!r}")
    return out or None


def _check_metadata_filter(value: Any) -> dict[str, Any] | None:
    """None/{} -> None; otherwise the filter with values as decoded JSON."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidArgumentError(f"metadata_filter must be a dict, got {type(value).__name__}")
    if not value:
        return None
    for k in value:
        if not isinstance(k, str):
            raise InvalidArgumentError(f"metadata_filter keys must be strings, got {k!r}")
    try:
        # Round-trip through JSON so tuples compare as arrays, like stored values.
        return json.loads(json.dumps(value, ensure_ascii=False, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"metadata_filter is not JSON-serializable: {e}") from None


# ---------------------------------------------------------------------------
# in-memory state


class _Entry:
    """One record held in memory (stored form)."""

    __slots__ = (
        "rid", "id", "content", "scope", "sid", "cats", "cats_json", "meta_json",
        "_meta", "importance", "created", "accessed", "source", "private", "slot",
    )

    def __init__(
        self, rid: int, rec_id: str, content: str, scope: str, cats: list[str],
        cats_json: str, meta_json: str, importance: float, created: str,
        accessed: str, source: str | None, private: bool,
    ) -> None:
        self.rid = rid
        self.id = rec_id
        self.content = content
        self.scope = scope
        self.sid = -1
        self.cats = cats
        self.cats_json = cats_json
        self.meta_json = meta_json
        self._meta: dict[str, Any] | None = None
        self.importance = importance
        self.created = created
        self.accessed = accessed
        self.source = source
        self.private = private
        self.slot = -1

    def metadata(self) -> dict[str, Any]:
        """Parsed metadata, cached (read-only: callers must not mutate it)."""
        m = self._meta
        if m is None:
            try:
                m = json.loads(self.meta_json)
            except (TypeError, ValueError):
                m = {}
            if not isinstance(m, dict):
                m = {}
            self._meta = m
        return m


class _Scope:
    """Per-scope statistics: the records of exactly this scope."""

    __slots__ = ("path", "sid", "entries", "cats", "oldest", "newest", "stale")

    def __init__(self, path: str, sid: int) -> None:
        self.path = path
        self.sid = sid
        self.entries: set[_Entry] = set()
        self.cats: dict[str, int] = {}
        self.oldest: str | None = None
        self.newest: str | None = None
        self.stale = False

    def extremes(self) -> tuple[str | None, str | None]:
        if self.stale:
            created = [e.created for e in self.entries]
            self.oldest = min(created) if created else None
            self.newest = max(created) if created else None
            self.stale = False
        return self.oldest, self.newest


class _NumpyArena:
    """Vectors of the records that have one: slot i is row i of ``M``."""

    def __init__(self, dim: int, cap: int = 0) -> None:
        self.dim = dim
        self.n = 0
        cap = max(16, cap)
        self.M = _np.zeros((cap, dim), dtype=_np.float32)
        self.norm2 = _np.zeros(cap, dtype=_np.float64)
        self.rid = _np.zeros(cap, dtype=_np.int64)
        self.sid = _np.zeros(cap, dtype=_np.int32)
        self.priv = _np.zeros(cap, dtype=bool)
        self.ent: list[_Entry] = []

    def _grow(self) -> None:
        cap = self.M.shape[0] * 2
        n = self.n

        def grown(a: Any) -> Any:
            b = _np.zeros((cap,) + a.shape[1:], dtype=a.dtype)
            b[:n] = a[:n]
            return b

        self.M = grown(self.M)
        self.norm2 = grown(self.norm2)
        self.rid = grown(self.rid)
        self.sid = grown(self.sid)
        self.priv = grown(self.priv)

    def add(self, vec: bytes, e: _Entry) -> None:
        if self.n == self.M.shape[0]:
            self._grow()
        s = self.n
        v = _np.frombuffer(vec, dtype="<f4")
        self.M[s] = v
        v64 = v.astype(_np.float64)
        self.norm2[s] = float(v64 @ v64)
        self.rid[s] = e.rid
        self.sid[s] = e.sid
        self.priv[s] = e.private
        self.ent.append(e)
        e.slot = s
        self.n += 1

    def remove(self, slot: int) -> None:
        last = self.n - 1
        if slot != last:
            self.M[slot] = self.M[last]
            self.norm2[slot] = self.norm2[last]
            self.rid[slot] = self.rid[last]
            self.sid[slot] = self.sid[last]
            self.priv[slot] = self.priv[last]
            moved = self.ent[last]
            self.ent[slot] = moved
            moved.slot = slot
        self.ent.pop()
        self.n = last

    def vector_bytes(self, slot: int) -> bytes:
        return self.M[slot].astype("<f4").tobytes()

    def vector_list(self, slot: int) -> list[float]:
        return self.M[slot].tolist()


class _ListArena:
    """Same as _NumpyArena on ``array('f')`` and lists (numpy not importable)."""

    def __init__(self, dim: int, cap: int = 0) -> None:
        self.dim = dim
        self.n = 0
        self.V = array("f")
        self.norm2: list[float] = []
        self.rid: list[int] = []
        self.sid: list[int] = []
        self.priv: list[bool] = []
        self.ent: list[_Entry] = []

    def add(self, vec: bytes, e: _Entry) -> None:
        v = array("f")
        v.frombytes(vec)
        if _BIG_ENDIAN:
            v.byteswap()
        self.V.extend(v)
        self.norm2.append(math.fsum(x * x for x in v))
        self.rid.append(e.rid)
        self.sid.append(e.sid)
        self.priv.append(e.private)
        e.slot = self.n
        self.ent.append(e)
        self.n += 1

    def remove(self, slot: int) -> None:
        d = self.dim
        last = self.n - 1
        if slot != last:
            self.V[slot * d:(slot + 1) * d] = self.V[last * d:(last + 1) * d]
            for a in (self.norm2, self.rid, self.sid, self.priv):
                a[slot] = a[last]
            moved = self.ent[last]
            self.ent[slot] = moved
            moved.slot = slot
        del self.V[last * d:]
        for a in (self.norm2, self.rid, self.sid, self.priv, self.ent):
            a.pop()
        self.n = last

    def vector(self, slot: int) -> array:
        d = self.dim
        return self.V[slot * d:(slot + 1) * d]

    def vector_bytes(self, slot: int) -> bytes:
        v = self.vector(slot)
        if _BIG_ENDIAN:
            v.byteswap()
        return v.tobytes()

    def vector_list(self, slot: int) -> list[float]:
        return self.vector(slot).tolist()


class _State:
    """Everything a store keeps in memory. Guarded by PyStore._lock."""

    def __init__(self, dim: int, use_numpy: bool, cap: int = 0) -> None:
        self.use_numpy = use_numpy
        self.entries: dict[str, _Entry] = {}
        self.scopes: dict[str, _Scope] = {}
        self.scope_list: list[_Scope] = []  # sid -> scope; sids are stable
        self.cat_index: dict[str, set[_Entry]] = {}
        self.dim = 0
        self.arena: _NumpyArena | _ListArena | None = None
        self.set_dim(dim, cap)

    def set_dim(self, dim: int, cap: int = 0) -> None:
        """Fix the dimension once it becomes known (never changes a known one:
        a store changes dimension only through a reset, which builds a new state)."""
        if dim <= 0 or self.dim:
            return
        self.dim = dim
        self.arena = (_NumpyArena if self.use_numpy else _ListArena)(dim, cap)

    def scope_for(self, path: str) -> _Scope:
        sc = self.scopes.get(path)
        if sc is None:
            sc = _Scope(path, len(self.scope_list))
            self.scopes[path] = sc
            self.scope_list.append(sc)
        return sc

    def put(self, e: _Entry, vec: bytes | None, keep: bool = False) -> None:
        """Insert or replace ``e``. With ``keep`` and no vector, keep the old one."""
        old = self.entries.get(e.id)
        if old is not None:
            if keep and vec is None and old.slot >= 0 and self.arena is not None:
                vec = self.arena.vector_bytes(old.slot)
            self._remove(old)
        sc = self.scope_for(e.scope)
        e.sid = sc.sid
        e.slot = -1
        if vec is not None and self.arena is not None and len(vec) == 4 * self.dim:
            self.arena.add(vec, e)
        self.entries[e.id] = e
        sc.entries.add(e)
        for c in set(e.cats):
            sc.cats[c] = sc.cats.get(c, 0) + 1
            self.cat_index.setdefault(c, set()).add(e)
        if len(sc.entries) == 1:
            sc.oldest = sc.newest = e.created
            sc.stale = False
        elif not sc.stale:
            if e.created < sc.oldest:  # type: ignore[operator]
                sc.oldest = e.created
            if e.created > sc.newest:  # type: ignore[operator]
                sc.newest = e.created

    def remove(self, rec_id: str) -> _Entry | None:
        e = self.entries.get(rec_id)
        if e is not None:
            self._remove(e)
        return e

    def _remove(self, e: _Entry) -> None:
        if e.slot >= 0 and self.arena is not None:
            self.arena.remove(e.slot)
        e.slot = -1
        del self.entries[e.id]
        sc = self.scope_list[e.sid]
        sc.entries.discard(e)
        for c in set(e.cats):
            n = sc.cats.get(c, 0) - 1
            if n <= 0:
                sc.cats.pop(c, None)
            else:
                sc.cats[c] = n
            s = self.cat_index.get(c)
            if s is not None:
                s.discard(e)
                if not s:
                    del self.cat_index[c]
        if not sc.entries:
            sc.oldest = sc.newest = None
            sc.stale = False
        elif e.created == sc.oldest or e.created == sc.newest:
            sc.stale = True

    # -- scope statistics (O(distinct scopes)) --

    def matching_scopes(self, prefix: str | None) -> list[_Scope]:
        return [sc for sc in self.scope_list if sc.entries and scope_matches(prefix, sc.path)]

    def count(self, prefix: str | None) -> int:
        if prefix is None:
            return len(self.entries)
        return sum(len(sc.entries) for sc in self.matching_scopes(prefix))

    def categories(self, prefix: str | None) -> dict[str, int]:
        out: dict[str, int] = {}
        for sc in self.matching_scopes(prefix):
            for c, n in sc.cats.items():
                out[c] = out.get(c, 0) + n
        return out

    def children(self, parent: str) -> list[str]:
        base = "" if parent == "/" else parent
        head = base + "/"
        out: set[str] = set()
        for sc in self.scope_list:
            p = sc.path
            if not sc.entries or not p.startswith(head):
                continue
            rest = p[len(head):]
            first = rest.split("/", 1)[0]
            if first:
                out.add(head + first)
        return sorted(out)


# ---------------------------------------------------------------------------
# the store


class PyStore:
    """Pure-Python crewcore memory store (same file and semantics as the Go engine).

    Args:
        db_path: the database file (the caller resolves directories); parent
            directories are created.
        vector_dim: fixes the embedding dimension (None/0: from the file or the
            first saved embedding).
        metric: ``"l2"`` (score ``1/(1+squared distance)``, like LanceDB) or
            ``"cosine"``. Per open, not stored.
        return_embeddings: when True, search and list_records results carry
            their vectors (get_record always does).
        busy_timeout: seconds a write waits for other processes' locks before
            ``StoreTimeoutError`` (default 60).
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        vector_dim: int | None = None,
        metric: str = "l2",
        return_embeddings: bool = False,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> None:
        if isinstance(metric, str) and metric.lower() in ("", "l2"):
            self._cosine = False
        elif isinstance(metric, str) and metric.lower() == "cosine":
            self._cosine = True
        else:
            raise InvalidArgumentError(f'unknown metric {metric!r} (want "l2" or "cosine")')
        if vector_dim is None:
            vector_dim = 0
        if isinstance(vector_dim, bool) or not isinstance(vector_dim, int) or vector_dim < 0:
            raise InvalidArgumentError(f"vector_dim must be a non-negative integer, got {vector_dim!r}")
        if (
            isinstance(busy_timeout, bool)
            or not isinstance(busy_timeout, (int, float))
            or not busy_timeout > 0
        ):
            raise InvalidArgumentError(f"busy_timeout must be > 0 seconds, got {busy_timeout!r}")
        try:
            path = os.fspath(db_path)
        except TypeError:
            raise InvalidArgumentError(f"db_path must be a path, got {db_path!r}") from None
        if not isinstance(path, str) or not path or "\x00" in path:
            raise InvalidArgumentError(f"db_path must be a non-empty path, got {db_path!r}")

        self._path = os.path.abspath(path)
        self._opt_dim = vector_dim
        self._return_embeddings = bool(return_embeddings)
        self._busy_timeout = float(busy_timeout)
        self._busy_ms = int(min(10_000, max(1, self._busy_timeout * 1000)))
        self._use_numpy = _np is not None

        self._wlock = threading.Lock()  # one writer per process
        self._lock = threading.RLock()  # in-memory state, _last, _closed
        self._pool_lock = threading.Lock()
        self._pool: list[sqlite3.Connection] = []
        self._closed = False
        self._last = 0
        self._force_reload = False
        self._state = _State(vector_dim, self._use_numpy)
        self._wconn: sqlite3.Connection | None = None

        self._check_file()
        try:
            self._open()
        except BaseException:
            self._close_connections()
            raise

    # -- public properties --

    @property
    def dim(self) -> int:
        """The vector dimension (0 while unknown)."""
        return self._state.dim

    @property
    def path(self) -> str:
        """Absolute path of the database file."""
        return self._path

    @property
    def metric(self) -> str:
        return "cosine" if self._cosine else "l2"

    def __repr__(self) -> str:
        return f"PyStore({self._path!r}, dim={self.dim}, metric={self.metric!r})"

    def __enter__(self) -> PyStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- opening --

    def _check_file(self) -> None:
        """Refuse foreign files and unwritable locations before SQLite touches them."""
        path = self._path
        parent = os.path.dirname(path)
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as e:
            raise StoreAccessError(
                f"open store {path}: store not writable: cannot create directory {parent}: {e}"
            ) from None
        if not os.path.isdir(parent):
            raise StoreAccessError(f"open store {path}: store not writable: {parent} is not a directory")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._probe_dir(path, parent)
            return
        except OSError as e:
            raise StoreAccessError(f"open store {path}: store not writable: {e}") from None
        if os.path.isdir(path):
            raise StoreCorruptError(
                f"open store {path}: not a crewcore memory store: the path is a directory"
            )
        if not os.access(path, os.R_OK | os.W_OK):
            raise StoreAccessError(f"open store {path}: store not writable: the file is read-only")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise StoreAccessError(
                f"open store {path}: store not writable: directory {parent} is read-only "
                "(SQLite needs to create the -wal and -shm files next to the database)"
            )
        if st.st_size == 0:
            return
        if not_sqlite(path):
            raise StoreCorruptError(
                f"open store {path}: not a crewcore memory store: the file is not a SQLite database"
            )
        self._check_foreign()

    @staticmethod
    def _probe_dir(path: str, parent: str) -> None:
        probe = os.path.join(parent, f".crewcore-probe-{os.getpid()}-{threading.get_ident()}")
        try:
            fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise StoreAccessError(
                f"open store {path}: store not writable: directory {parent}: {e}"
            ) from None

    def _check_foreign(self) -> None:
        """Read-only look at an existing SQLite file: is it a crewcore store?"""
        path = self._path
        uri = "file:" + urllib.parse.quote(path) + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                                   timeout=self._busy_ms / 1000)
        except sqlite3.Error as e:
            raise _classify("open store", path, e) from None
        try:
            conn.execute(f"PRAGMA busy_timeout={self._busy_ms}")
            (tables,) = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type='table'"
            ).fetchone()
            if tables == 0:
                return
            try:
                meta = dict(conn.execute("SELECT key, value FROM crewcore_meta").fetchall())
            except sqlite3.OperationalError:
                meta = {}
            if meta.get("format") != FORMAT:
                raise StoreCorruptError(
                    f"open store {path}: not a crewcore memory store: it holds another "
                    "application's tables"
                )
            if meta.get("version") != VERSION:
                raise StoreCorruptError(
                    f"open store {path}: not a crewcore memory store: unsupported format "
                    f"version {meta.get('version')!r} (this engine reads version {VERSION})"
                )
        except sqlite3.Error as e:
            raise _classify("open store", path, e) from None
        finally:
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout={self._busy_ms}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=OFF")
        except BaseException:
            conn.close()
            raise
        return conn

    def _open(self) -> None:
        try:
            self._wconn = self._connect()
        except sqlite3.Error as e:
            raise _classify("open store", self._path, e) from None

        def init(conn: sqlite3.Connection) -> tuple[None, None]:
            for stmt in _SCHEMA:
                conn.execute(stmt)
            meta = dict(conn.execute("SELECT key, value FROM crewcore_meta").fetchall())
            if meta.get("format") != FORMAT:
                raise StoreCorruptError(
                    f"open store {self._path}: not a crewcore memory store: it holds another "
                    "application's tables"
                )
            if meta.get("version") != VERSION:
                raise StoreCorruptError(
                    f"open store {self._path}: not a crewcore memory store: unsupported "
                    f"format version {meta.get('version')!r}"
                )
            return None, None

        self._write("open store", init, sync_first=False)
        with self._lock:
            with self._rconn() as conn:
                self._in_read_tx(conn, self._reload)

    # -- connections --

    @contextlib.contextmanager
    def _rconn(self) -> Iterator[sqlite3.Connection]:
        with self._pool_lock:
            conn = self._pool.pop() if self._pool else None
        if conn is None:
            try:
                conn = self._connect()
            except sqlite3.Error as e:
                raise _classify("read store", self._path, e) from None
        try:
            yield conn
        finally:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            with self._pool_lock:
                if self._closed or len(self._pool) >= _READ_POOL_MAX:
                    conn.close()
                else:
                    self._pool.append(conn)

    def _close_connections(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, []
        for c in pool:
            with contextlib.suppress(Exception):
                c.close()
        if self._wconn is not None:
            with contextlib.suppress(Exception):
                self._wconn.close()
            self._wconn = None

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"memory store {self._path} is closed")

    def close(self) -> None:
        """Release the database and the in-memory state. Idempotent; later calls raise StoreClosedError."""
        with self._wlock:
            with self._lock:
                if self._closed:
                    return
                self._closed = True
                self._state = _State(0, self._use_numpy)
            self._close_connections()

    # -- refresh --

    @staticmethod
    def _in_read_tx(conn: sqlite3.Connection, fn: Any) -> None:
        """Run fn(conn) in one read transaction (one consistent snapshot)."""
        conn.execute("BEGIN")
        try:
            fn(conn)
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def _stored_dim(self, conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM crewcore_meta WHERE key='dim'").fetchone()
        if row is None:
            return 0
        try:
            d = int(row[0])
        except (TypeError, ValueError):
            raise StoreCorruptError(
                f"read store {self._path}: not a crewcore memory store: bad dim {row[0]!r}"
            ) from None
        if d < 0:
            raise StoreCorruptError(f"read store {self._path}: negative dim {d}")
        return d

    @staticmethod
    def _entry_from_db(row: tuple) -> tuple[_Entry, bytes | None]:
        (rid, rec_id, content, scope, cats_json, meta_json, importance, created,
         accessed, source, private, blob) = row
        cats_json = cats_json if isinstance(cats_json, str) else "[]"
        e = _Entry(
            rid, rec_id, content if isinstance(content, str) else "",
            scope if isinstance(scope, str) and scope else "/",
            _decode_strings(cats_json), cats_json,
            meta_json if isinstance(meta_json, str) else "{}",
            float(importance) if importance is not None else 0.5,
            _safe_time(created), _safe_time(accessed),
            source, bool(private),
        )
        return e, (bytes(blob) if blob else None)

    def _reload(self, conn: sqlite3.Connection) -> None:
        """Rebuild the in-memory state from the database. Caller holds _lock."""
        (max_seq,) = conn.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()
        dim = self._stored_dim(conn)
        if self._opt_dim:
            if dim and dim != self._opt_dim:
                raise dimension_error(dim, self._opt_dim)
            dim = self._opt_dim
        (nvec,) = conn.execute(
            "SELECT count(*) FROM records WHERE embedding IS NOT NULL"
        ).fetchone()
        st = _State(dim, self._use_numpy, cap=nvec)
        for row in conn.execute(f"SELECT {_COLS} FROM records ORDER BY rid"):
            e, vec = self._entry_from_db(row)
            st.put(e, vec)
        self._state = st
        self._last = max_seq
        self._force_reload = False

    def _apply(self, conn: sqlite3.Connection) -> None:
        """Bring memory up to date with the change log. Caller holds _lock,
        and conn is inside a transaction (read snapshot or write lock)."""
        max_seq, min_seq = conn.execute(
            "SELECT coalesce((SELECT max(seq) FROM changes), 0), "
            "coalesce((SELECT min(seq) FROM changes), 0)"
        ).fetchone()
        last = self._last
        if self._force_reload:
            self._reload(conn)
            return
        if max_seq == last:
            return
        if max_seq < last or min_seq > last + 1:
            self._reload(conn)
            return
        ids: dict[str, None] = {}
        for (rec_id,) in conn.execute(
            "SELECT record_id FROM changes WHERE seq > ? ORDER BY seq", (last,)
        ):
            if rec_id == "*":
                self._reload(conn)
                return
            ids[rec_id] = None
        st = self._state
        if st.dim == 0:
            st.set_dim(self._stored_dim(conn))
        id_list = list(ids)
        for i in range(0, len(id_list), _ID_CHUNK):
            chunk = id_list[i:i + _ID_CHUNK]
            marks = ",".join("?" * len(chunk))
            present: set[str] = set()
            for row in conn.execute(f"SELECT {_COLS} FROM records WHERE id IN ({marks})", chunk):
                e, vec = self._entry_from_db(row)
                present.add(e.id)
                st.put(e, vec)
            for rec_id in chunk:
                if rec_id not in present:
                    st.remove(rec_id)
        self._last = max_seq

    def _sync(self) -> None:
        """Before a read: cheap max(seq) check, then apply changes if any."""
        self._check_open()
        try:
            with self._rconn() as conn:
                if not self._force_reload:
                    (max_seq,) = conn.execute(
                        "SELECT coalesce(max(seq), 0) FROM changes"
                    ).fetchone()
                    if max_seq == self._last:
                        return
                with self._lock:
                    self._check_open()
                    self._in_read_tx(conn, self._apply)
        except sqlite3.Error as e:
            raise _classify("read store", self._path, e) from None

    # -- writes --

    def _write(self, op: str, fn: Any, sync_first: bool = True) -> Any:
        """Run fn(conn) -> (result, on_commit) in BEGIN IMMEDIATE, retrying
        while other processes hold the lock, up to the busy deadline."""
        self._check_open()
        with self._wlock:
            self._check_open()
            deadline = time.monotonic() + self._busy_timeout
            backoff = 0.005
            while True:
                try:
                    return self._try_write(fn, sync_first)
                except sqlite3.Error as e:
                    if not _is_busy(e):
                        raise _classify(op, self._path, e) from None
                    if time.monotonic() >= deadline:
                        raise StoreTimeoutError(
                            f"{op} {self._path}: the database stayed locked by another "
                            f"connection for more than {self._busy_timeout:g} s"
                        ) from None
                time.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
                backoff = min(backoff * 2, 0.2)

    def _try_write(self, fn: Any, sync_first: bool) -> Any:
        conn = self._wconn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            with self._lock:
                self._check_open()
                if sync_first:
                    self._apply(conn)
                result, on_commit = fn(conn)
                conn.execute("COMMIT")
                if on_commit is not None:
                    try:
                        on_commit()
                    except BaseException:
                        self._force_reload = True  # memory may be off: reload next time
                        raise
                return result
        finally:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")

    def _log_changes(self, conn: sqlite3.Connection, ids: Iterable[str]) -> int:
        conn.executemany("INSERT INTO changes(record_id) VALUES (?)", ((i,) for i in ids))
        (max_seq,) = conn.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()
        return max_seq

    def _fix_dim(self, conn: sqlite3.Connection, new_dim: int) -> int:
        """Check ``new_dim`` (0: no vector) against the store inside a write
        transaction; record the dimension in the file once known. Returns the
        store's dimension after the write."""
        stored = self._stored_dim(conn)
        dim = self._state.dim
        if stored and dim and stored != dim:
            raise dimension_error(stored, dim)
        dim = dim or stored
        if new_dim:
            if dim and new_dim != dim:
                raise dimension_error(dim, new_dim)
            dim = new_dim
        if dim and not stored:
            conn.execute(
                "INSERT OR REPLACE INTO crewcore_meta(key, value) VALUES ('dim', ?)", (str(dim),)
            )
        return dim

    @staticmethod
    def _rows(records: Any) -> list:
        if records is None:
            return []
        if isinstance(records, (str, bytes)) or not isinstance(records, Iterable):
            raise InvalidRecordError(f"records must be a list of MemoryRecord, got {type(records).__name__}")
        rows = []
        for r in records:
            try:
                rows.append(to_row(r))
            except AttributeError as e:
                raise InvalidRecordError(f"not a MemoryRecord: {e}") from None
            except (TypeError, OverflowError) as e:
                raise InvalidRecordError(f"invalid record: {e}") from None
        return rows

    @staticmethod
    def _new_entry(row: Any, rid: int, cats: list[str], cats_json: str) -> _Entry:
        return _Entry(
            rid, row.id, row.content, row.scope, cats, cats_json, row.metadata,
            row.importance, row.created_at, row.last_accessed, row.source, row.private,
        )

    # -- StorageBackend --

    def save(self, records: list[Any]) -> None:
        """Upsert records by id; all of the batch or nothing."""
        rows = self._rows(records)
        if not rows:
            self._check_open()
            return
        dims = [len(row.embedding) // 4 for row in rows if row.embedding]
        batch_dim = dims[0] if dims else 0
        ref = self._state.dim or batch_dim
        for d in dims:  # a batch of mixed dimensions is refused whole
            if d != ref:
                raise dimension_error(ref, d)
        cats = [_decode_strings(row.categories) for row in rows]
        cats_json = [_encode_strings(c) for c in cats]

        def fn(conn: sqlite3.Connection) -> tuple[None, Any]:
            dim = self._fix_dim(conn, batch_dim)
            st = self._state
            rids: dict[str, int] = {}
            for row, cj in zip(rows, cats_json):
                rid = rids.get(row.id)
                if rid is None:
                    old = st.entries.get(row.id)
                    rid = old.rid if old is not None else None
                params = (
                    row.content, row.scope, cj, row.metadata, row.importance,
                    row.created_at, row.last_accessed, row.source, int(row.private),
                )
                done = False
                if rid is not None:
                    cur = conn.execute(
                        _UPDATE_SQL.format(emb=", embedding=?"), params + (row.embedding, row.id)
                    )
                    done = cur.rowcount > 0
                if not done:
                    cur = conn.execute(
                        _INSERT_SQL, (row.id,) + params + (row.embedding,)
                    )
                    rid = cur.lastrowid
                rids[row.id] = rid  # type: ignore[assignment]
            seq = self._log_changes(conn, rids)

            def on_commit() -> None:
                st.set_dim(dim)
                for row, c, cj in zip(rows, cats, cats_json):
                    st.put(self._new_entry(row, rids[row.id], c, cj), row.embedding)
                self._last = seq

            return None, on_commit

        self._write("save", fn)

    def update(self, record: Any) -> None:
        """Replace the stored record with the same id; no embedding keeps the stored vector."""
        (row,) = self._rows([record])
        new_dim = len(row.embedding) // 4 if row.embedding else 0
        if new_dim and self._state.dim and new_dim != self._state.dim:
            raise dimension_error(self._state.dim, new_dim)
        cats = _decode_strings(row.categories)
        cj = _encode_strings(cats)

        def fn(conn: sqlite3.Connection) -> tuple[None, Any]:
            st = self._state
            old = st.entries.get(row.id)
            if old is None:
                raise RecordNotFoundError(f"update {self._path}: record {row.id!r} not found")
            dim = self._fix_dim(conn, new_dim)
            params = (
                row.content, row.scope, cj, row.metadata, row.importance,
                row.created_at, row.last_accessed, row.source, int(row.private),
            )
            if row.embedding:
                cur = conn.execute(_UPDATE_SQL.format(emb=", embedding=?"),
                                   params + (row.embedding, row.id))
            else:
                cur = conn.execute(_UPDATE_SQL.format(emb=""), params + (row.id,))
            if cur.rowcount == 0:  # memory and file disagree: should not happen
                self._force_reload = True
                raise RecordNotFoundError(f"update {self._path}: record {row.id!r} not found")
            seq = self._log_changes(conn, [row.id])
            rid = old.rid

            def on_commit() -> None:
                st.set_dim(dim)
                st.put(self._new_entry(row, rid, cats, cj), row.embedding, keep=True)
                self._last = seq

            return None, on_commit

        self._write("update", fn)

    def search(
        self,
        query_embedding: list[float],
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        metadata_filter: dict[str, Any] | None = None,
        limit: int = 10,
        min_score: float = 0.0,
        source: str | None = None,
        include_private: bool = True,
    ) -> list[tuple[Any, float]]:
        """Records nearest to the query, best first, filters applied before top-k."""
        limit = check_limit(limit, "limit")
        prefix = normalize_prefix(scope_prefix)
        cats = _check_str_list(categories, "categories")
        mfilter = _check_metadata_filter(metadata_filter)
        if isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or math.isnan(min_score):
            raise InvalidArgumentError(f"min_score must be a number, got {min_score!r}")
        min_score = float(min_score)
        if source is not None and not isinstance(source, str):
            raise InvalidArgumentError(f"source must be a string or None, got {source!r}")
        qb = vector_bytes(query_embedding, "query embedding")
        if limit == 0:
            self._check_open()
            return []
        self._sync()
        with self._lock:
            self._check_open()
            st = self._state
            if qb is None:
                raise InvalidArgumentError("query_embedding is empty")
            qdim = len(qb) // 4
            if st.dim == 0 or st.arena is None:
                return []  # nothing has a vector yet
            if qdim != st.dim:
                raise dimension_error(st.dim, qdim)
            if st.arena.n == 0:
                return []
            args = (st, qb, prefix, cats, mfilter, limit, min_score, source, bool(include_private))
            if isinstance(st.arena, _NumpyArena):
                hits = self._search_numpy(*args)
            else:
                hits = self._search_lists(*args)
            with_emb = self._return_embeddings
            return [(self._record(st, e, with_emb), score) for e, score in hits]

    def _visible(self, e: _Entry, source: str | None) -> bool:
        return not e.private or (source is not None and e.source == source)

    def _search_numpy(
        self, st: _State, qb: bytes, prefix: str | None, cats: list[str] | None,
        mfilter: dict[str, Any] | None, limit: int, min_score: float,
        source: str | None, include_private: bool,
    ) -> list[tuple[_Entry, float]]:
        np = _np
        ar: _NumpyArena = st.arena  # type: ignore[assignment]
        n = ar.n
        q32 = np.frombuffer(qb, dtype=np.float32)
        q64 = q32.astype(np.float64)
        qn2 = float(q64 @ q64)

        # 1. candidate mask from the filters
        mask = None
        if prefix is not None:
            ok = np.fromiter(
                (bool(sc.entries) and scope_matches(prefix, sc.path) for sc in st.scope_list),
                dtype=bool, count=len(st.scope_list),
            )
            if not ok.any():
                return []
            mask = ok[ar.sid[:n]]
        if cats:
            cm = np.zeros(n, dtype=bool)
            for c in cats:
                for e in st.cat_index.get(c, ()):
                    if e.slot >= 0:
                        cm[e.slot] = True
            mask = cm if mask is None else mask & cm
        if not include_private:
            hidden = ar.priv[:n] if mask is None else ar.priv[:n] & mask
            idx = np.flatnonzero(hidden)
            if idx.size:
                if mask is None:
                    mask = np.ones(n, dtype=bool)
                ent = ar.ent
                for s in idx.tolist():
                    if not self._visible(ent[s], source):
                        mask[s] = False
        if mfilter:
            idx = np.arange(n) if mask is None else np.flatnonzero(mask)
            ent = ar.ent
            cand = np.fromiter(
                (s for s in idx.tolist() if _meta_match(ent[s].metadata(), mfilter)),
                dtype=np.intp,
            )
        else:
            cand = None if mask is None else np.flatnonzero(mask)
        if cand is not None and cand.size == 0:
            return []

        # 2. float32 scan of the candidates
        if cand is None:
            dots = (ar.M[:n] @ q32).astype(np.float64)
            norms = ar.norm2[:n]
        else:
            dots = (ar.M[cand] @ q32).astype(np.float64)
            norms = ar.norm2[cand]
        if self._cosine:
            denom = np.sqrt(qn2) * np.sqrt(norms)
            safe = np.where(denom > 0, denom, 1.0)
            approx = np.where(denom > 0, dots / safe, 0.0)
        else:
            approx = 1.0 / (1.0 + np.maximum(qn2 + norms - 2.0 * dots, 0.0))

        # 3. pool: everything that may pass min_score and may be in the top k,
        #    with slack for float32 rounding; then exact float64 scores.
        k = min(limit, approx.size)
        pool = np.flatnonzero(approx >= min_score - _RESCORE_SLACK)
        if pool.size == 0:
            return []
        if pool.size > k:
            ps = approx[pool]
            kth = np.partition(ps, ps.size - k)[ps.size - k]
            pool = pool[ps >= kth - _RESCORE_SLACK]
        slots = pool if cand is None else cand[pool]
        sub = ar.M[slots].astype(np.float64)
        if self._cosine:
            d64 = sub @ q64
            vn = np.sqrt(np.einsum("ij,ij->i", sub, sub))
            den = vn * math.sqrt(qn2)
            exact = np.where(den > 0, d64 / np.where(den > 0, den, 1.0), 0.0)
            exact = np.clip(exact, -1.0, 1.0)
        else:
            diff = sub - q64
            exact = 1.0 / (1.0 + np.einsum("ij,ij->i", diff, diff))
        keep = exact >= min_score
        slots, exact = slots[keep], exact[keep]
        if slots.size == 0:
            return []
        order = np.lexsort((-ar.rid[slots], -exact))[:k]
        return [(ar.ent[int(slots[i])], float(exact[i])) for i in order]

    def _search_lists(
        self, st: _State, qb: bytes, prefix: str | None, cats: list[str] | None,
        mfilter: dict[str, Any] | None, limit: int, min_score: float,
        source: str | None, include_private: bool,
    ) -> list[tuple[_Entry, float]]:
        ar: _ListArena = st.arena  # type: ignore[assignment]
        q = array("f")
        q.frombytes(qb)
        qv = q.tolist()
        qn = math.sqrt(math.fsum(x * x for x in qv))
        sids = None
        if prefix is not None:
            sids = {sc.sid for sc in st.matching_scopes(prefix)}
            if not sids:
                return []
        catset = set(cats) if cats else None
        d = ar.dim
        V = ar.V
        hits: list[tuple[float, int, int]] = []
        for s in range(ar.n):
            e = ar.ent[s]
            if sids is not None and e.sid not in sids:
                continue
            if catset is not None and catset.isdisjoint(e.cats):
                continue
            if not include_private and not self._visible(e, source):
                continue
            if mfilter and not _meta_match(e.metadata(), mfilter):
                continue
            v = V[s * d:(s + 1) * d]
            if self._cosine:
                vn = math.sqrt(ar.norm2[s])
                if vn == 0 or qn == 0:
                    score = 0.0
                else:
                    dot = sum(map(operator.mul, qv, v))
                    score = max(-1.0, min(1.0, dot / (qn * vn)))
            else:
                dist = math.dist(qv, v)
                score = 1.0 / (1.0 + dist * dist)
            if score >= min_score:
                hits.append((score, e.rid, s))
        best = heapq.nlargest(limit, hits)
        return [(ar.ent[s], score) for score, _rid, s in best]

    def delete(
        self,
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        record_ids: list[str] | None = None,
        older_than: datetime | None = None,
        metadata_filter: dict[str, Any] | None = None,
    ) -> int:
        """Delete the records matching every given criterion; returns how many."""
        prefix = normalize_prefix(scope_prefix)
        cats = _check_str_list(categories, "categories")
        ids = _check_str_list(record_ids, "record_ids")
        mfilter = _check_metadata_filter(metadata_filter)
        cutoff = None
        if older_than is not None:
            if not isinstance(older_than, datetime):
                raise InvalidArgumentError(
                    f"older_than must be a datetime, got {type(older_than).__name__}"
                )
            cutoff = fmt_dt(older_than)

        def fn(conn: sqlite3.Connection) -> tuple[int, Any]:
            victims = self._select(prefix, cats, ids, cutoff, mfilter)
            return self._delete_ids(conn, victims)

        return self._write("delete", fn)

    def _select(
        self, prefix: str | None, cats: list[str] | None, ids: list[str] | None,
        cutoff: str | None, mfilter: dict[str, Any] | None,
    ) -> list[str]:
        """Ids of the records matching every criterion. Caller holds _lock."""
        st = self._state
        if ids is not None:
            pool: Iterable[_Entry] = (
                st.entries[i] for i in dict.fromkeys(ids) if i in st.entries
            )
        elif prefix is not None:
            pool = (e for sc in st.matching_scopes(prefix) for e in sc.entries)
        else:
            pool = st.entries.values()
        catset = set(cats) if cats else None
        out = []
        for e in pool:
            if prefix is not None and not scope_matches(prefix, e.scope):
                continue
            if catset is not None and catset.isdisjoint(e.cats):
                continue
            if cutoff is not None and not e.created < cutoff:
                continue
            if mfilter and not _meta_match(e.metadata(), mfilter):
                continue
            out.append(e.id)
        return out

    def _delete_ids(self, conn: sqlite3.Connection, victims: list[str]) -> tuple[int, Any]:
        if not victims:
            return 0, None
        for i in range(0, len(victims), _ID_CHUNK):
            chunk = victims[i:i + _ID_CHUNK]
            conn.execute(
                f"DELETE FROM records WHERE id IN ({','.join('?' * len(chunk))})", chunk
            )
        seq = self._log_changes(conn, victims)
        st = self._state

        def on_commit() -> None:
            for rec_id in victims:
                st.remove(rec_id)
            self._last = seq

        return len(victims), on_commit

    def reset(self, scope_prefix: str | None = None) -> None:
        """Delete every record under the scope; everything when None (and
        forget the dimension unless vector_dim was given at open)."""
        prefix = normalize_prefix(scope_prefix)
        if prefix is not None:
            def fn_scope(conn: sqlite3.Connection) -> tuple[None, Any]:
                _, on_commit = self._delete_ids(conn, self._select(prefix, None, None, None, None))
                return None, on_commit

            self._write("reset", fn_scope)
            return

        def fn_all(conn: sqlite3.Connection) -> tuple[None, Any]:
            conn.execute("DELETE FROM records")
            if self._opt_dim:
                conn.execute(
                    "INSERT OR REPLACE INTO crewcore_meta(key, value) VALUES ('dim', ?)",
                    (str(self._opt_dim),),
                )
            else:
                conn.execute("DELETE FROM crewcore_meta WHERE key='dim'")
            seq = self._log_changes(conn, ["*"])

            def on_commit() -> None:
                self._state = _State(self._opt_dim, self._use_numpy)
                self._last = seq

            return None, on_commit

        self._write("reset", fn_all)

    def touch_records(self, record_ids: list[str]) -> None:
        """Set last_accessed to now (UTC) on the given records; unknown ids are ignored."""
        ids = _check_str_list(record_ids, "record_ids")
        if not ids:
            self._check_open()
            return
        ids = list(dict.fromkeys(ids))

        def fn(conn: sqlite3.Connection) -> tuple[None, Any]:
            st = self._state
            known = [i for i in ids if i in st.entries]
            if not known:
                return None, None
            now = utcnow_str()
            conn.executemany(
                "UPDATE records SET last_accessed=? WHERE id=?", ((now, i) for i in known)
            )
            seq = self._log_changes(conn, known)

            def on_commit() -> None:
                for i in known:
                    e = st.entries.get(i)
                    if e is not None:
                        e.accessed = now
                self._last = seq

            return None, on_commit

        self._write("touch", fn)

    def optimize(self) -> None:
        """Trim the change log to its newest 10,000 rows, checkpoint the WAL
        (TRUNCATE) and run PRAGMA optimize."""

        def fn(conn: sqlite3.Connection) -> tuple[None, None]:
            conn.execute(
                "DELETE FROM changes WHERE seq <= (SELECT max(seq) FROM changes) - ?",
                (KEEP_CHANGES,),
            )
            return None, None

        self._write("optimize", fn)
        with self._wlock:
            self._check_open()
            conn = self._wconn
            assert conn is not None
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                conn.execute("PRAGMA optimize").fetchall()
            except sqlite3.Error as e:
                if not _is_busy(e):
                    raise _classify("optimize", self._path, e) from None

    # -- reads --

    def _record(self, st: _State, e: _Entry, with_embedding: bool) -> Any:
        emb = None
        if with_embedding and e.slot >= 0 and st.arena is not None:
            emb = st.arena.vector_list(e.slot)
        try:
            meta = json.loads(e.meta_json)  # a fresh dict: callers may mutate it
        except (TypeError, ValueError):
            meta = {}
        if not isinstance(meta, dict):
            meta = {}
        return make_record(
            e.id, e.content, e.scope, list(e.cats), meta, e.importance, e.created,
            e.accessed, e.source, e.private, emb,
        )

    def get_record(self, record_id: str) -> Any:
        """The record with this id (with its embedding), or None."""
        if not isinstance(record_id, str):
            raise InvalidArgumentError(f"record_id must be a string, got {record_id!r}")
        self._sync()
        with self._lock:
            self._check_open()
            st = self._state
            e = st.entries.get(record_id)
            return None if e is None else self._record(st, e, True)

    def list_records(
        self, scope_prefix: str | None = None, limit: int = 200, offset: int = 0
    ) -> list[Any]:
        """Records under the scope, newest created_at first (ties: newer rid first)."""
        limit = check_limit(limit, "limit")
        offset = check_limit(offset, "offset")
        prefix = normalize_prefix(scope_prefix)
        if limit == 0:
            self._check_open()
            return []
        self._sync()
        with self._lock:
            self._check_open()
            st = self._state
            if prefix is None:
                pool: Iterable[_Entry] = st.entries.values()
                total = len(st.entries)
            else:
                scs = st.matching_scopes(prefix)
                pool = (e for sc in scs for e in sc.entries)
                total = sum(len(sc.entries) for sc in scs)
            if offset >= total:
                return []
            need = offset + limit
            key = lambda e: (e.created, e.rid)  # noqa: E731
            if need < total // 2:
                ordered = heapq.nlargest(need, pool, key=key)
            else:
                ordered = sorted(pool, key=key, reverse=True)
            with_emb = self._return_embeddings
            return [self._record(st, e, with_emb) for e in ordered[offset:need]]

    def get_scope_info(self, scope: str) -> Any:
        """Count, categories, date range and children of the records under a scope."""
        from crewai.memory.types import ScopeInfo

        path = normalize_scope(scope)
        prefix = None if path == "/" else path
        self._sync()
        with self._lock:
            self._check_open()
            st = self._state
            count = 0
            cats: set[str] = set()
            oldest: str | None = None
            newest: str | None = None
            for sc in st.matching_scopes(prefix):
                count += len(sc.entries)
                cats.update(sc.cats)
                o, nw = sc.extremes()
                if o is not None and (oldest is None or o < oldest):
                    oldest = o
                if nw is not None and (newest is None or nw > newest):
                    newest = nw
            children = st.children(path)
        return ScopeInfo(
            path=path,
            record_count=count,
            categories=sorted(cats),
            oldest_record=parse_dt(oldest) if oldest else None,
            newest_record=parse_dt(newest) if newest else None,
            child_scopes=children,
        )

    def list_scopes(self, parent: str = "/") -> list[str]:
        """Sorted immediate child scopes of ``parent``."""
        path = normalize_scope(parent)
        self._sync()
        with self._lock:
            self._check_open()
            return self._state.children(path)

    def list_categories(self, scope_prefix: str | None = None) -> dict[str, int]:
        """Category -> number of records under the prefix having it."""
        prefix = normalize_prefix(scope_prefix)
        self._sync()
        with self._lock:
            self._check_open()
            return self._state.categories(prefix)

    def count(self, scope_prefix: str | None = None) -> int:
        """Number of records under the prefix (all when None)."""
        prefix = normalize_prefix(scope_prefix)
        self._sync()
        with self._lock:
            self._check_open()
            return self._state.count(prefix)

    # -- async variants of the protocol (run in a worker thread) --

    async def asave(self, records: list[Any]) -> None:
        import asyncio

        await asyncio.to_thread(self.save, records)

    async def asearch(
        self,
        query_embedding: list[float],
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        metadata_filter: dict[str, Any] | None = None,
        limit: int = 10,
        min_score: float = 0.0,
        source: str | None = None,
        include_private: bool = True,
    ) -> list[tuple[Any, float]]:
        import asyncio

        return await asyncio.to_thread(
            self.search, query_embedding, scope_prefix, categories, metadata_filter,
            limit, min_score, source, include_private,
        )

    async def adelete(
        self,
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        record_ids: list[str] | None = None,
        older_than: datetime | None = None,
        metadata_filter: dict[str, Any] | None = None,
    ) -> int:
        import asyncio

        return await asyncio.to_thread(
            self.delete, scope_prefix, categories, record_ids, older_than, metadata_filter
        )
