"""The SQLite side of the pure-Python engine (``PyStore``, in fallback.py).

``StoreDb`` owns a store's database file: the checks before SQLite opens it,
the write connection and a small pool of read connections, the write
transaction (``BEGIN IMMEDIATE`` with retry while other processes hold the
lock), the change log, and the refresh that keeps the in-memory ``State``
(fallback_state.py) in step with the file (docs/architecture.md, "On-disk
format" and "In-memory state and refresh").

Threads: one write connection guarded by ``StoreDb._wlock`` (one writer per
process; SQLite serializes processes), a small pool of read connections, and
an ``RLock`` (``StoreDb.lock``) around the in-memory state.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from typing import Any, Iterable, Iterator

# SQLite primary result codes.
from crewcore._sqlitedb import (
    SQLITE_AUTH as _SQLITE_AUTH,
    SQLITE_CANTOPEN as _SQLITE_CANTOPEN,
    SQLITE_CORRUPT as _SQLITE_CORRUPT,
    SQLITE_NOTADB as _SQLITE_NOTADB,
    SQLITE_PERM as _SQLITE_PERM,
    SQLITE_READONLY as _SQLITE_READONLY,
    disk_full,
    errcode as _errcode,
    is_busy as _is_busy,
    not_sqlite,
)
from crewcore.errors import (
    CrewcoreError,
    EngineError,
    StoreClosedError,
    StoreAccessError,
    StoreCorruptError,
    StoreTimeoutError,
    StorageFullError,
    dimension_error,
)
from crewcore.memory import fallback_ro as ro
from crewcore.memory.fallback_state import Entry, State, numpy_module
from crewcore.memory.fallback_seg import SEGMENTS_SQL, truncate_tails, vector_of
from crewcore.memory.integrity import (FREES_SPACE, RAW_COLS, WAL_LIMIT, bound_wal, check_tables,
                                       corrupt_error, ensure_reserve, grow_reserve, has_marker, is_full,
                                       lost_store_error, release_reserve, verify_row, write_marker)
from crewcore.memory.validate import parse_dt

__all__ = ["FORMAT", "ID_CHUNK", "VERSION", "StoreDb", "classify", "decode_strings", "encode_strings"]

#: Format identity written in ``crewcore_meta``.
FORMAT = "crewcore-memory"
VERSION = "3"  # versions 1 and 2 (vectors in the records table) are upgraded on open (fallback_upgrade.py)

ID_CHUNK = 500  # ids per "IN (...)" statement (well under SQLite's variable limit)
_READ_POOL_MAX = 8
_ZERO_TIME = "0001-01-01T00:00:00.000000"

_COLS = RAW_COLS  # text as bytes and the checksum: rows are verified as read (integrity.py)

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
  seg           INTEGER,
  row           INTEGER,
  checksum      INTEGER
)""",
    """CREATE TABLE IF NOT EXISTS changes (
  seq       INTEGER PRIMARY KEY AUTOINCREMENT,
  record_id TEXT NOT NULL
)""",
    SEGMENTS_SQL,
    "INSERT OR IGNORE INTO crewcore_meta(key, value) VALUES "
    "('format', 'crewcore-memory'), ('version', '3')",
)


# ---------------------------------------------------------------------------
# stored form


def encode_strings(items: list[str]) -> str:
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


def decode_strings(s: str | None) -> list[str]:
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


def classify(op: str, path: str, e: sqlite3.Error) -> CrewcoreError:
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
    if disk_full(e, path):  # as the Go engine's sqlitedb.ErrFull
        return StorageFullError(f"{op} {path}: disk full: no space for the write ({msg})")
    return EngineError(f"{op} {path}: {msg}")


def _check_format(path: str, meta: dict[Any, Any], hint: str = "") -> None:
    """Refuse a database whose ``crewcore_meta`` does not name this format and
    version (``hint`` ends the version message)."""
    if meta.get("format") != FORMAT:
        raise StoreCorruptError(
            f"open store {path}: not a crewcore memory store: it holds another "
            "application's tables"
        )
    if meta.get("version") not in ("1", "2", VERSION):
        raise StoreCorruptError(
            f"open store {path}: not a crewcore memory store: unsupported format "
            f"version {meta.get('version')!r}{hint}"
        )


# ---------------------------------------------------------------------------
# the file



def _file_in_path(d: str) -> str:
    """The first existing ancestor of ``d`` (``d`` included) that is not a
    directory, or "": a store cannot be created under it ("not a directory",
    not "not writable")."""
    while True:
        if os.path.exists(d):
            return "" if os.path.isdir(d) else d
        up = os.path.dirname(d)
        if up == d:
            return ""
        d = up

class StoreDb:
    """The database file of one ``PyStore``, its connections, and the
    in-memory state read from it.

    ``state`` is replaced on a reload, a reset and close: read it under
    ``lock`` (``reading()``) or inside ``write``'s function, never keep it.
    ``last`` is the newest change-log seq that ``state`` reflects; a write's
    on-commit step sets it. ``force_reload`` makes the next refresh rebuild
    everything (set when memory may disagree with the file).

    Args:
        path: absolute path of the database file.
        vector_dim: the dimension fixed at open (0: from the file or the
            first saved embedding).
        busy_timeout: seconds a write waits for other processes' locks.
    """

    def __init__(self, path: str, vector_dim: int, busy_timeout: float) -> None:
        self.path = path
        self.opt_dim = vector_dim
        self._busy_timeout = float(busy_timeout)
        self._busy_ms = int(min(10_000, max(1, self._busy_timeout * 1000)))
        self.use_numpy = numpy_module() is not None

        self._wlock = threading.Lock()  # one writer per process
        self.lock = threading.RLock()  # in-memory state, last, _closed
        self._pool_lock = threading.Lock()
        self._pool: list[sqlite3.Connection] = []
        self._closed = False
        self.last = 0
        self.force_reload = False
        self.saw_full = False  # a write failed for lack of space (write)
        self._db_size = 0  # the database file's size at the last grow_reserve
        self.state = State(vector_dim, self.use_numpy)
        self._wconn: sqlite3.Connection | None = None
        # segment id -> (rows read, vectors, code rows, why unreadable, committed rows)
        self._segs: dict[int, tuple[int, Any, bytes, str, int]] = {}
        self.read_only, self.ro_why, self._immutable = False, "", False  # fallback_ro.py

        self._check_file()
        try:
            try:
                self._open()
            except StoreAccessError as e:  # SQLite would not write an existing store: read-only
                if self.read_only or not ro.has_store(self.path):
                    raise
                self._close_connections()
                self.read_only, self.ro_why = True, f"opening it writable failed: {e}"
                self._open()
        except BaseException:
            self._close_connections()
            raise
        if not self.read_only:
            write_marker(self.path)
            ensure_reserve(self.path)

    # -- opening --

    def _check_file(self) -> None:
        """Refuse foreign files and unwritable locations before SQLite touches them."""
        path = self.path
        parent = os.path.dirname(path)
        blocker = _file_in_path(parent)
        if blocker:
            raise StoreAccessError(f"open store {path}: not a directory: {blocker} is a file")
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
        why = ro.unwritable(path, parent)  # an existing store is then opened read-only
        if why and (st.st_size == 0 or not os.access(path, os.R_OK)):
            raise StoreAccessError(f"open store {path}: store not writable: {why}")
        self.read_only, self.ro_why = bool(why), why
        if st.st_size == 0:
            if has_marker(path):
                raise lost_store_error(path, "is empty (0 bytes)")
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
        path = self.path
        try:  # mode=ro, or immutable=1 in a read-only directory (fallback_ro.py)
            conn, _ = ro.connect_ro(path, self._busy_ms)
        except sqlite3.Error as e:
            raise classify("open store", path, e) from None
        try:
            (tables,) = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type='table'"
            ).fetchone()
            if tables == 0:
                if has_marker(path):
                    raise lost_store_error(path, "has no tables")
                return
            try:
                meta = dict(conn.execute("SELECT key, value FROM crewcore_meta").fetchall())
            except sqlite3.OperationalError:
                meta = {}
            _check_format(path, meta, f" (this engine reads versions 1 to {VERSION})")
            check_tables(conn, path)  # a store that lost a table is damaged, not new
        except sqlite3.Error as e:
            raise classify("open store", path, e) from None
        finally:
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            return ro.connect_ro(self.path, self._busy_ms, self._immutable)[0]
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout={self._busy_ms}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=OFF")
            conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
            conn.execute("PRAGMA secure_delete=FAST")  # as the Go engine (integrity.py, reserve)
        except BaseException:
            conn.close()
            raise
        return conn

    def _open(self) -> None:
        if self.read_only:  # no schema, truncation or upgrade (fallback_ro.py)
            self._immutable = ro.check_store(self.path, self.ro_why, self._busy_ms)
        else:
            self._open_writable()
        with self.lock:
            try:
                with self._rconn() as conn:
                    self._in_read_tx(conn, self._reload)
            except sqlite3.Error as e:  # a damaged file: StoreCorruptError, as in Go
                raise classify("open store", self.path, e) from None

    def _open_writable(self) -> None:
        try:
            self._wconn = self._connect()
        except sqlite3.Error as e:
            raise classify("open store", self.path, e) from None

        def init(conn: sqlite3.Connection) -> tuple[str, None]:
            try:
                meta = dict(conn.execute("SELECT key, value FROM crewcore_meta").fetchall())
            except sqlite3.OperationalError:
                meta = {}
            if meta.get("version") in ("1", "2"):
                return meta["version"], None  # upgraded below, after a backup
            for stmt in _SCHEMA:
                conn.execute(stmt)
            meta = dict(conn.execute("SELECT key, value FROM crewcore_meta").fetchall())
            _check_format(self.path, meta)
            truncate_tails(conn, self.path)  # bytes of a writer that died uncommitted
            return meta["version"], None

        if self.write("open store", init, sync_first=False) in ("1", "2"):
            from crewcore.memory.fallback_upgrade import upgrade

            upgrade(self, VERSION, _SCHEMA[1], classify)

    # -- connections --

    @contextlib.contextmanager
    def _rconn(self) -> Iterator[sqlite3.Connection]:
        with self._pool_lock:
            conn = self._pool.pop() if self._pool else None
        if conn is None:
            try:
                conn = self._connect()
            except sqlite3.Error as e:
                raise classify("read store", self.path, e) from None
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

    def check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"memory store {self.path} is closed")

    def close(self) -> None:
        """Release the database and the in-memory state. Idempotent; later calls raise StoreClosedError."""
        with self._wlock:
            with self.lock:
                if self._closed:
                    return
                self._closed = True
                self.state = State(0, self.use_numpy)
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
                f"read store {self.path}: not a crewcore memory store: bad dim {row[0]!r}"
            ) from None
        if d < 0:
            raise StoreCorruptError(f"read store {self.path}: negative dim {d}")
        return d

    def _vector_of(self, conn: sqlite3.Connection, raw: tuple, dim: int) -> tuple[bytes | None, int, int, str]:
        return vector_of(conn, self.path, self._segs, raw, dim)

    def _entry_from_db(self, conn: sqlite3.Connection, raw: tuple, dim: int) -> tuple[Entry, bytes | None]:
        blob, vlen, vcrc, why = self._vector_of(conn, raw, dim)
        row, bad = verify_row(raw, vlen, vcrc)  # a damaged row: an entry marked bad, without its vector
        bad = why or bad
        (rid, rec_id, content, scope, cats_json, meta_json, importance, created,
         accessed, source, private, _addr) = row
        cats_json = cats_json if isinstance(cats_json, str) else "[]"
        e = Entry(
            rid, rec_id, content if isinstance(content, str) else "",
            scope if isinstance(scope, str) and scope else "/",
            decode_strings(cats_json), cats_json,
            meta_json if isinstance(meta_json, str) else "{}",
            float(importance) if importance is not None else 0.5,
            _safe_time(created), _safe_time(accessed),
            source, bool(private),
        )
        e.bad = bad
        return e, (blob if blob and not bad else None)

    def _reload(self, conn: sqlite3.Connection) -> None:
        """Rebuild the in-memory state from the database. Caller holds self.lock."""
        (max_seq,) = conn.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()
        dim = self._stored_dim(conn)
        if self.opt_dim:
            if dim and dim != self.opt_dim:
                raise dimension_error(dim, self.opt_dim)
            dim = self.opt_dim
        (nvec,) = conn.execute(
            "SELECT count(*) FROM records WHERE seg IS NOT NULL"
        ).fetchone()
        st = State(dim, self.use_numpy, cap=nvec)
        self._segs = {}
        for row in conn.execute(f"SELECT {_COLS} FROM records ORDER BY rid").fetchall():
            e, vec = self._entry_from_db(conn, row, dim)
            st.put(e, vec)
        self._segs = {}  # the vectors are in the arena now
        self.state = st
        self.last = max_seq
        self.force_reload = False

    def _apply(self, conn: sqlite3.Connection) -> None:
        """Bring memory up to date with the change log. Caller holds self.lock,
        and conn is inside a transaction (read snapshot or write lock)."""
        max_seq, min_seq = conn.execute(
            "SELECT coalesce((SELECT max(seq) FROM changes), 0), "
            "coalesce((SELECT min(seq) FROM changes), 0)"
        ).fetchone()
        last = self.last
        if self.force_reload:
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
        st = self.state
        if st.dim == 0:
            st.set_dim(self._stored_dim(conn))
        id_list = list(ids)
        for i in range(0, len(id_list), ID_CHUNK):
            chunk = id_list[i:i + ID_CHUNK]
            marks = ",".join("?" * len(chunk))
            present: set[str] = set()
            for row in conn.execute(f"SELECT {_COLS} FROM records WHERE id IN ({marks})", chunk).fetchall():
                e, vec = self._entry_from_db(conn, row, st.dim)
                present.add(e.id)
                st.put(e, vec)
            for rec_id in chunk:
                if rec_id not in present:
                    st.remove(rec_id)
        self.last = max_seq

    def sync(self) -> None:
        """Before a read: cheap max(seq) check, then apply changes if any."""
        self.check_open()
        try:
            with self._rconn() as conn:
                if not self.force_reload:
                    (max_seq,) = conn.execute(
                        "SELECT coalesce(max(seq), 0) FROM changes"
                    ).fetchone()
                    if max_seq == self.last:
                        return
                with self.lock:
                    self.check_open()
                    self._in_read_tx(conn, self._apply)
        except sqlite3.Error as e:
            raise classify("read store", self.path, e) from None

    @contextlib.contextmanager
    def reading(self) -> Iterator[State]:
        """``sync()``, then hold ``lock``: yields the up-to-date state of the
        open store (raises StoreClosedError once closed)."""
        self.sync()
        with self.lock:
            self.check_open()
            if self.state.corrupt:
                raise corrupt_error("read", self.path, self.state.corrupt)
            yield self.state

    # -- writes --

    def write(self, op: str, fn: Any, sync_first: bool = True) -> Any:
        """Run fn(conn) -> (result, on_commit) in BEGIN IMMEDIATE, retrying
        while other processes hold the lock, up to the busy deadline. A
        delete or reset refused for lack of space is tried again after the
        store's reserve is released and the WAL checkpointed (integrity.py)."""
        if self.read_only:
            self.check_open()
            raise ro.refused(op, self.path, self.ro_why)
        full = False
        try:
            result = self._write(op, fn, sync_first)
        except CrewcoreError as e:
            if not is_full(e):
                raise
            self.saw_full = full = True
            if op not in FREES_SPACE or not release_reserve(self.path):
                raise
            result = self._write(op, fn, sync_first)  # before a checkpoint takes the space
        if op in FREES_SPACE and self.saw_full:
            if not full:
                release_reserve(self.path)
            if self.restart_wal():
                self.saw_full = False
            ensure_reserve(self.path)
        return result

    def restart_wal(self) -> bool:
        """A RESTART checkpoint (integrity.bound_wal): True when the WAL is
        all in the database and the next write starts it over."""
        with self._wlock:
            return self._wconn is not None and bound_wal(self._wconn, self.path, self._busy_ms, force=True)

    def _write(self, op: str, fn: Any, sync_first: bool) -> Any:
        self.check_open()
        with self._wlock:
            self.check_open()
            deadline = time.monotonic() + self._busy_timeout
            backoff = 0.005
            while True:
                try:
                    result = self._try_write(fn, sync_first)
                    bound_wal(self._wconn, self.path, self._busy_ms)  # type: ignore[arg-type]
                    self._db_size = grow_reserve(self.path, self._db_size)
                    return result
                except sqlite3.Error as e:
                    if not _is_busy(e):
                        raise classify(op, self.path, e) from None
                    if time.monotonic() >= deadline:
                        raise StoreTimeoutError(
                            f"{op} {self.path}: the database stayed locked by another "
                            f"connection for more than {self._busy_timeout:g} s"
                        ) from None
                time.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
                backoff = min(backoff * 2, 0.2)

    def _try_write(self, fn: Any, sync_first: bool) -> Any:
        conn = self._wconn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            with self.lock:
                self.check_open()
                if sync_first:
                    self._apply(conn)
                result, on_commit = fn(conn)
                conn.execute("COMMIT")
                if on_commit is not None:
                    try:
                        on_commit()
                    except BaseException:
                        self.force_reload = True  # memory may be off: reload next time
                        raise
                return result
        finally:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")

    def log_changes(self, conn: sqlite3.Connection, ids: Iterable[str]) -> int:
        conn.executemany("INSERT INTO changes(record_id) VALUES (?)", ((i,) for i in ids))
        (max_seq,) = conn.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()
        return max_seq

    def fix_dim(self, conn: sqlite3.Connection, new_dim: int) -> int:
        """Check ``new_dim`` (0: no vector) against the store inside a write
        transaction; record the dimension in the file once known. Returns the
        store's dimension after the write."""
        stored = self._stored_dim(conn)
        dim = self.state.dim
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

    def checkpoint(self) -> None:
        """``PRAGMA wal_checkpoint(TRUNCATE)`` and ``PRAGMA optimize`` on the
        write connection (for ``optimize()``); a busy database is not an error."""
        with self._wlock:
            self.check_open()
            conn = self._wconn
            assert conn is not None
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                conn.execute("PRAGMA optimize").fetchall()
            except sqlite3.Error as e:
                if not _is_busy(e):
                    raise classify("optimize", self.path, e) from None
