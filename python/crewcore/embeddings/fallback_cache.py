"""The pure-Python embedding cache: the Go cache's twin (package embed,
cache.go and sqlite.go) over the same SQLite file and format.

Keys are SHA-256 over ``namespace NUL text`` (UTF-8), vectors little-endian
float32, the same tables (``crewcore_embed_cache``, ``crewcore_embed_stats``,
``crewcore_embed_meta``), the same LRU bound (evict the least recently used
down to 90% of ``max_bytes``), uses and counters written in batches. A
process uses this engine or the Go one for a file, never both (two SQLite
libraries in one process break each other's POSIX locks). There is no
pure-Python PostgreSQL engine: a PostgreSQL cache is off in this engine,
with the reason.
"""

from __future__ import annotations

from collections import OrderedDict
import hashlib
import os
from pathlib import Path
import sqlite3
import threading
import time
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS crewcore_embed_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS crewcore_embed_cache (
  key BLOB PRIMARY KEY, ns TEXT NOT NULL, dim INTEGER NOT NULL, vec BLOB NOT NULL,
  tokens INTEGER NOT NULL, bytes INTEGER NOT NULL, created INTEGER NOT NULL,
  used INTEGER NOT NULL, hits INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS crewcore_embed_cache_used ON crewcore_embed_cache(used);
CREATE TABLE IF NOT EXISTS crewcore_embed_stats (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_COUNTERS = ("hits", "misses", "calls_saved", "tokens_saved", "api_calls", "api_tokens", "stored", "evictions")
_FLUSH_EVERY = 2.0
_FLUSH_KEYS = 4096


def key_of(ns: str, text: str) -> bytes:
    """The content address of a text's embedding (Go: embed.KeyOf)."""
    h = hashlib.sha256(ns.encode("utf-8"))
    h.update(b"\0")
    h.update(text.encode("utf-8"))
    return h.digest()


def entry_bytes(ns: str, dim: int) -> int:
    """What an entry counts against the bound (Go: entryBytes)."""
    return 4 * dim + len(ns.encode("utf-8")) + 32 + 48


class _Off(Exception):
    """A lasting failure: the cache turns off."""


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


class PyCache:
    """The pure-Python cache over one SQLite file (see the module doc)."""

    engine = "python"

    def __init__(self, target: str, schema: str = "", max_bytes: int = 0, mem_bytes: int = 0) -> None:
        self.target = target
        self._pid = os.getpid()
        self.max_bytes = int(max_bytes) if max_bytes and max_bytes > 0 else 1 << 30
        self.mem_bytes = int(mem_bytes) if mem_bytes else 64 << 20
        self._lock = threading.RLock()
        self._mem: OrderedDict[bytes, tuple[str, bytes, int, int]] = OrderedDict()  # key -> (ns, raw, dim, tokens)
        self._mem_size = 0
        self._uses: dict[bytes, list[int]] = {}
        self._pending = dict.fromkeys(_COUNTERS, 0)
        self._local = dict.fromkeys(_COUNTERS, 0)
        self._last_flush = time.monotonic()
        self._warned = False
        self._db: sqlite3.Connection | None = None
        self.off = ""
        if target.startswith(("postgres://", "postgresql://")):
            self.off = (f"embedding cache {target.split('@')[-1]} is off: the pure-Python engine has no "
                        "PostgreSQL driver (the native engine serves PostgreSQL caches)")
            self._warned = True
            return
        try:
            self._db = self._open(Path(target))
        except _Off as e:
            self.off = str(e)
            self._warned = True  # reported by the opener, not again

    # -- opening -------------------------------------------------------------

    def _open(self, path: Path) -> sqlite3.Connection:
        try:
            if path.exists() and path.stat().st_size > 0:
                if not path.is_file() or not _is_sqlite(path):
                    raise _Off(f"embedding cache corrupt or foreign: {path} is not a SQLite database")
                ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                try:
                    names = {r[0] for r in ro.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                finally:
                    ro.close()
                others = {n for n in names if not n.startswith(("sqlite_", "crewcore_embed_"))}
                if "crewcore_embed_meta" not in names and "crewcore_meta" not in names and others:
                    raise _Off(f"embedding cache corrupt or foreign: {path} holds tables of another application")
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("BEGIN IMMEDIATE")
            try:
                row = None
                try:
                    row = db.execute("SELECT value FROM crewcore_embed_meta WHERE key = 'format'").fetchone()
                except sqlite3.OperationalError:
                    pass
                if row is not None and row[0] != "crewcore-embeddings":
                    raise _Off(f"embedding cache corrupt or foreign: {path}: format {row[0]!r}")
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        db.execute(stmt)
                db.execute("INSERT OR IGNORE INTO crewcore_embed_meta VALUES ('format', 'crewcore-embeddings'), "
                           "('version', '1')")
                for name in (*_COUNTERS, "bytes"):
                    db.execute("INSERT OR IGNORE INTO crewcore_embed_stats VALUES (?, 0)", (name,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                db.close()
                raise
            return db
        except _Off:
            raise
        except PermissionError as e:
            raise _Off(f"embedding cache not writable: {path}: {e}") from None
        except sqlite3.DatabaseError as e:
            msg = str(e).lower()
            if "readonly" in msg or "read-only" in msg or "unable to open" in msg:
                raise _Off(f"embedding cache not writable: {path}: {e}") from None
            if "not a database" in msg or "malformed" in msg:
                raise _Off(f"embedding cache corrupt or foreign: {path}: {e}") from None
            raise _Off(f"embedding cache unavailable: {path}: {e}") from None
        except OSError as e:
            raise _Off(f"embedding cache not writable: {path}: {e}") from None

    def _fail(self, e: BaseException) -> None:
        """Turn off for a lasting failure (anything but a lock timeout)."""
        if isinstance(e, sqlite3.OperationalError) and "locked" in str(e).lower():
            return
        with self._lock:
            if not self.off:
                self.off = f"embedding cache {self.target} turned off: {type(e).__name__}: {e}"

    def take_warning(self) -> str:
        with self._lock:
            if self.off and not self._warned:
                self._warned = True
                return self.off
        return ""

    # -- lookups and stores ---------------------------------------------------

    def _mem_add(self, key: bytes, value: tuple[str, bytes, int, int]) -> None:
        size = len(value[1]) + len(value[0]) // 8 + 96
        if self.mem_bytes <= 0 or size > self.mem_bytes or key in self._mem:
            return
        self._mem[key] = value
        self._mem_size += size
        while self._mem_size > self.mem_bytes:
            _, old = self._mem.popitem(last=False)
            self._mem_size -= len(old[1]) + len(old[0]) // 8 + 96

    def get(self, ns: str, texts: list[str]) -> tuple[int, bytes, bytes, str]:
        """(dim, mask, hit vectors' raw bytes, warning), as NativeCache.get."""
        if self._pid != os.getpid():
            self._after_fork()
        keys = [key_of(ns, t) for t in texts]
        found: list[tuple[str, bytes, int, int] | None] = [None] * len(keys)
        with self._lock:
            missing = []
            for i, k in enumerate(keys):
                v = self._mem.get(k)
                if v is not None:
                    self._mem.move_to_end(k)
                    found[i] = v
                else:
                    missing.append(i)
            if missing and not self.off and self._db is not None:
                try:
                    for i in missing:
                        row = self._db.execute("SELECT ns, dim, vec, tokens FROM crewcore_embed_cache WHERE key = ?",
                                               (keys[i],)).fetchone()
                        if row is not None and row[1] > 0 and len(row[2]) == 4 * row[1]:
                            found[i] = (row[0], bytes(row[2]), int(row[1]), int(row[3]))
                            self._mem_add(keys[i], found[i])  # type: ignore[arg-type]
                except sqlite3.Error as e:
                    self._fail(e)
            dim, mask, parts, tokens = 0, bytearray(len(keys)), [], 0
            now = int(time.time() * 1000)
            for i, v in enumerate(found):
                if v is not None and (dim == 0 or v[2] == dim):
                    dim = v[2]
                    mask[i] = 1
                    parts.append(v[1])
                    tokens += v[3]
                    u = self._uses.setdefault(keys[i], [0, 0])
                    u[0], u[1] = now, u[1] + 1
            hits = len(parts)
            self._count(hits=hits, misses=len(keys) - hits, tokens_saved=tokens,
                        calls_saved=1 if hits == len(keys) and keys else 0)
            self._maybe_flush()
        return dim, bytes(mask), b"".join(parts), self.take_warning()

    def put(self, ns: str, texts: list[str], dim: int, raw: bytes, tokens: list[int]) -> str:
        """Store vectors (one transaction: all or none)."""
        if self._pid != os.getpid():
            self._after_fork()
        keys = [key_of(ns, t) for t in texts]
        with self._lock:
            seen = set()
            rows = []
            for i, k in enumerate(keys):
                if k in seen:
                    continue
                seen.add(k)
                vec = raw[4 * dim * i: 4 * dim * (i + 1)]
                tok = int(tokens[i]) if tokens else 0
                rows.append((k, vec, tok))
                self._mem_add(k, (ns, vec, dim, tok))
            self._count(api_calls=1, api_tokens=sum(int(t) for t in tokens) if tokens else 0)
            if not self.off and self._db is not None:
                try:
                    self._store(ns, dim, rows)
                    self._local["stored"] += len(rows)
                except sqlite3.Error as e:
                    self._fail(e)
        return self.take_warning()

    def _store(self, ns: str, dim: int, rows: list[tuple[bytes, bytes, int]]) -> None:
        db = self._db
        assert db is not None
        ms = int(time.time() * 1000)
        size = entry_bytes(ns, dim)
        db.execute("BEGIN IMMEDIATE")
        try:
            added = stored = 0
            for k, vec, tok in rows:
                cur = db.execute("INSERT OR IGNORE INTO crewcore_embed_cache (key, ns, dim, vec, tokens, bytes, created, "
                                 "used) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (k, ns, dim, vec, tok, size, ms, ms))
                if cur.rowcount == 1:
                    added += size
                    stored += 1
                else:
                    db.execute("UPDATE crewcore_embed_cache SET used = max(used, ?) WHERE key = ?", (ms, k))
            db.execute("UPDATE crewcore_embed_stats SET value = value + ? WHERE name = 'bytes'", (added,))
            db.execute("UPDATE crewcore_embed_stats SET value = value + ? WHERE name = 'stored'", (stored,))
            self._evict(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _evict(self, db: sqlite3.Connection) -> None:
        total = db.execute("SELECT value FROM crewcore_embed_stats WHERE name = 'bytes'").fetchone()[0]
        if total <= self.max_bytes:
            return
        target = self.max_bytes // 10 * 9
        evicted = 0
        while total > target:
            victims, freed = [], 0
            for k, b in db.execute("SELECT key, bytes FROM crewcore_embed_cache ORDER BY used LIMIT 256").fetchall():
                if total - freed <= target:
                    break
                victims.append((k,))
                freed += b
            if not victims:
                break
            db.executemany("DELETE FROM crewcore_embed_cache WHERE key = ?", victims)
            total -= freed
            evicted += len(victims)
        db.execute("UPDATE crewcore_embed_stats SET value = ? WHERE name = 'bytes'", (max(total, 0),))
        db.execute("UPDATE crewcore_embed_stats SET value = value + ? WHERE name = 'evictions'", (evicted,))

    # -- counters, flushing ---------------------------------------------------

    def _count(self, **add: int) -> None:
        for k, v in add.items():
            self._pending[k] += v
            self._local[k] += v

    def _maybe_flush(self) -> None:
        if len(self._uses) >= _FLUSH_KEYS or time.monotonic() - self._last_flush >= _FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            self._last_flush = time.monotonic()
            uses, pending = self._uses, self._pending
            self._uses, self._pending = {}, dict.fromkeys(_COUNTERS, 0)
            if self.off or self._db is None or (not uses and not any(pending.values())):
                return
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.executemany("UPDATE crewcore_embed_cache SET used = max(used, ?), hits = hits + ? WHERE key = ?",
                                   [(u[0], u[1], k) for k, u in uses.items()])
                    db.executemany("UPDATE crewcore_embed_stats SET value = value + ? WHERE name = ?",
                                   [(v, k) for k, v in pending.items() if v])
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                self._fail(e)

    def stats(self) -> dict[str, Any]:
        """The same map as the native engine's stats."""
        self.flush()
        out: dict[str, Any] = {"where": self.target, "off": self.off, "entries": 0, "bytes": 0,
                               "max_bytes": self.max_bytes, "all_processes": dict.fromkeys(_COUNTERS, 0),
                               "this_process": dict(self._local), "memory_entries": len(self._mem),
                               "memory_bytes": self._mem_size, "namespaces": []}
        if self.off or self._db is None:
            return out
        with self._lock:
            try:
                ns = self._db.execute("SELECT ns, count(*), coalesce(sum(bytes), 0) FROM crewcore_embed_cache "
                                      "GROUP BY ns ORDER BY 3 DESC").fetchall()
                counters = dict(self._db.execute("SELECT name, value FROM crewcore_embed_stats").fetchall())
            except sqlite3.Error as e:
                self._fail(e)
                out["off"] = self.off
                return out
        out["namespaces"] = [list(r) for r in ns]
        out["entries"] = sum(r[1] for r in ns)
        out["bytes"] = sum(r[2] for r in ns)
        out["all_processes"] = {k: int(counters.get(k, 0)) for k in _COUNTERS}
        return out

    def clear(self, ns: str = "") -> int:
        from crewcore.errors import EmbeddingCacheError

        with self._lock:
            if ns:
                for k in [k for k, v in self._mem.items() if v[0] == ns]:
                    self._mem_size -= len(self._mem[k][1]) + len(ns) // 8 + 96
                    del self._mem[k]
            else:
                self._mem.clear()
                self._mem_size = 0
            if self.off or self._db is None:
                raise EmbeddingCacheError(self.off or "embedding cache closed")
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if ns:
                    n = db.execute("DELETE FROM crewcore_embed_cache WHERE ns = ?", (ns,)).rowcount
                else:
                    n = db.execute("DELETE FROM crewcore_embed_cache").rowcount
                    db.execute("UPDATE crewcore_embed_stats SET value = 0")
                db.execute("UPDATE crewcore_embed_stats SET value = (SELECT coalesce(sum(bytes), 0) FROM "
                           "crewcore_embed_cache) WHERE name = 'bytes'")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return int(n)

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._db is not None and self._pid == os.getpid():
                self._db.close()
            self._db = None
            if not self.off:
                self.off = "embedding cache closed"
                self._warned = True

    def _after_fork(self) -> None:
        """A child after fork: SQLite connections must not cross fork, so the
        child opens its own (the inherited one is left alone)."""
        if self._pid != os.getpid() and self._db is not None:
            self._pid = os.getpid()
            self._lock = threading.RLock()
            try:
                self._db = self._open(Path(self.target))
            except _Off as e:
                self._db = None
                self.off = str(e)
