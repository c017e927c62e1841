"""The pure-Python knowledge engine: the Go engine's twin over the same file.

Same schema (see knowledge/store.go), same checks, same scores and ties:
vector search is an exact numpy scan over unit vectors (ties: older chunk
first), keyword search runs the same FTS5 query through Python's sqlite3,
hybrid fuses both with the same reciprocal-rank fusion. One connection per
engine, serialized by a lock; writes are ``BEGIN IMMEDIATE`` transactions
retried while another process holds the lock, up to a deadline.

Without FTS5 in this interpreter's SQLite (``fts`` False) chunks are queued
in ``fts_pending`` for the next engine that has it, vector search works, and
keyword or hybrid search raises KeywordSearchUnavailableError.
"""

from __future__ import annotations

from contextlib import contextmanager
import json
import os
import sqlite3
import threading
import time
from typing import Any, Iterator

from crewcore._sqlitedb import is_busy, not_sqlite
from crewcore.errors import (
    CollectionNotFoundError,
    InvalidArgumentError,
    KeywordSearchUnavailableError,
    KnowledgeDimensionError,
    StoreAccessError,
    StoreCorruptError,
    StoreTimeoutError,
)
from crewcore.knowledge import validate as v

SCHEMA = """
CREATE TABLE IF NOT EXISTS crewcore_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS collections (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  name       TEXT NOT NULL UNIQUE,
  dim        INTEGER NOT NULL,
  fts        INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
  rid       INTEGER PRIMARY KEY AUTOINCREMENT,
  coll      INTEGER NOT NULL,
  id        TEXT NOT NULL,
  content   TEXT NOT NULL,
  metadata  TEXT NOT NULL,
  embedding BLOB NOT NULL,
  UNIQUE (coll, id)
);
CREATE TABLE IF NOT EXISTS fts_pending (rid INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS writes (id INTEGER PRIMARY KEY CHECK (id = 0), seq INTEGER NOT NULL);
INSERT OR IGNORE INTO writes (id, seq) VALUES (0, 0);
"""
FTS_CREATE = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS {t} USING fts5(content, tokenize = 'unicode61 remove_diacritics 2')"
)
FORMAT_VERSION = "1"


def fts5_available(conn: sqlite3.Connection) -> bool:
    try:
        return conn.execute("SELECT sqlite_compileoption_used('ENABLE_FTS5')").fetchone()[0] == 1
    except sqlite3.Error:
        return False


def _np() -> Any:
    import numpy

    return numpy


class _Coll:
    """A collection's vectors (unit length, float32) and per-chunk data."""

    def __init__(self, cid: int, name: str, dim: int) -> None:
        np = _np()
        self.id, self.name, self.dim = cid, name, dim
        self.last_rid = 0
        self.vecs = np.zeros((0, dim), dtype=np.float32)
        self.rids = np.zeros(0, dtype=np.int64)
        self.metas: list[dict[str, Any] | None] = []
        self.pos: dict[int, int] = {}

    def add(self, rows: list[tuple[int, str, bytes]]) -> None:
        np = _np()
        if not rows:
            return
        new = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4").reshape(len(rows), self.dim)
        new64 = new.astype(np.float64)
        norms = np.linalg.norm(new64, axis=1)
        norms[norms == 0] = 1.0
        unit = (new64 / norms[:, None]).astype(np.float32)
        base = len(self.rids)
        self.vecs = np.concatenate([self.vecs, unit]) if base else unit
        self.rids = np.concatenate([self.rids, np.array([r[0] for r in rows], dtype=np.int64)])
        for i, (rid, meta, _) in enumerate(rows):
            m = json.loads(meta) if meta not in ("", "{}") else None
            self.metas.append(m or None)
            self.pos[rid] = base + i
        self.last_rid = max(self.last_rid, rows[-1][0])


class PyEngine:
    """One knowledge store file opened by the pure-Python engine."""

    kind = "python"

    def __init__(self, path: str, timeout: float | None = None, no_fts: bool = False) -> None:
        self.path = os.path.abspath(path)
        self.timeout = 60.0 if timeout is None or timeout <= 0 else float(timeout)
        self._lock = threading.RLock()
        self._seq = -1
        self._names: dict[str, int] = {}
        self._colls: dict[int, _Coll] = {}
        parent = os.path.dirname(self.path)
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as e:
            raise StoreAccessError(f"cannot create the knowledge store directory {parent}: {e}") from None
        if os.path.exists(self.path) and os.path.getsize(self.path) > 0 and not_sqlite(self.path):
            raise StoreCorruptError(f"open knowledge store {self.path}: not a SQLite database")
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0.1)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.OperationalError as e:
            if is_busy(e):
                raise StoreTimeoutError(f"open knowledge store {self.path}: {e}") from None
            raise StoreAccessError(f"open knowledge store {self.path}: {e}") from None
        self.fts = (not no_fts) and fts5_available(self._conn)
        with self._write() as c:
            n = c.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            if n:
                fmt = self._meta(c, "format")
                if fmt != "crewcore-knowledge":
                    raise StoreCorruptError(f"open knowledge store {self.path}: not a crewcore knowledge store")
                ver = self._meta(c, "version")
                if ver != FORMAT_VERSION:
                    raise StoreCorruptError(
                        f"open knowledge store {self.path}: format version {ver}, this build reads {FORMAT_VERSION}"
                    )
            for stmt in SCHEMA.strip().split(";\n"):
                if stmt.strip():
                    c.execute(stmt)
            c.execute(
                "INSERT OR IGNORE INTO crewcore_meta (key, value) VALUES ('format', 'crewcore-knowledge'), ('version', ?)",
                (FORMAT_VERSION,),
            )

    @staticmethod
    def _meta(c: sqlite3.Connection, key: str) -> str | None:
        try:
            row = c.execute("SELECT value FROM crewcore_meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error:
            return None
        return row[0] if row else None

    # ---------------------------------------------------------------- transactions

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        deadline = time.monotonic() + self.timeout
        backoff = 0.001
        with self._lock:
            c = self._conn
            while True:
                try:
                    c.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as e:
                    if not is_busy(e) or time.monotonic() > deadline:
                        raise self._classify("write", e) from None
                time.sleep(backoff)
                backoff = min(backoff * 2, 0.05)
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK")
                raise
            try:
                c.execute("COMMIT")
            except sqlite3.Error as e:
                c.execute("ROLLBACK")
                raise self._classify("commit", e) from None

    def _classify(self, op: str, e: sqlite3.Error) -> Exception:
        if is_busy(e):
            return StoreTimeoutError(f"knowledge store {self.path}: {op}: locked by another process past {self.timeout}s")
        if "no such module: fts5" in str(e):
            return KeywordSearchUnavailableError(
                f"knowledge store {self.path}: {op}: this interpreter's SQLite has no FTS5 (the collection's keyword index needs it)"
            )
        if isinstance(e, sqlite3.OperationalError) and "readonly" in str(e).lower():
            return StoreAccessError(f"knowledge store {self.path}: {op}: {e}")
        return StoreCorruptError(f"knowledge store {self.path}: {op}: {e}")

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.OperationalError as e:
                if not is_busy(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    # ---------------------------------------------------------------- writes

    def missing(self, coll: str, ids: list[str]) -> list[str]:
        v.check_name(coll)
        with self._lock:
            row = self._read("SELECT id FROM collections WHERE name = ?", (coll,))
            seen: set[str] = set()
            out: list[str] = []
            stored: set[str] = set()
            if row:
                cid = row[0][0]
                uniq = [i for i in dict.fromkeys(ids)]
                for k in range(0, len(uniq), 500):
                    part = uniq[k : k + 500]
                    q = f"SELECT id FROM chunks WHERE coll = ? AND id IN ({','.join('?' * len(part))})"
                    stored.update(r[0] for r in self._read(q, (cid, *part)))
            for i in ids:
                if i not in seen and i not in stored:
                    out.append(i)
                seen.add(i)
            return out

    def save(self, coll: str, ids: list[str], contents: list[str], metas: list[str], dim: int, vectors: bytes) -> int:
        v.check_name(coll)
        if not ids:
            return 0
        added = 0
        with self._write() as c:
            row = c.execute("SELECT id, dim, fts FROM collections WHERE name = ?", (coll,)).fetchone()
            if row is None:
                created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000000"
                cur = c.execute(
                    "INSERT INTO collections (name, dim, fts, created_at) VALUES (?, ?, 0, ?)", (coll, dim, created)
                )
                cid, stored, indexed = cur.lastrowid, dim, False
            else:
                cid, stored, indexed = row[0], row[1], row[2] == 1
            if stored != dim:
                raise KnowledgeDimensionError(
                    f"knowledge collection {coll!r}: embedding dimension mismatch: the collection holds "
                    f"{stored}-dimensional vectors, got {dim} (use the same embedding model for a collection, or reset it)",
                    stored,
                    dim,
                )
            if self.fts and not indexed:
                self._index(c, cid)
                indexed = True
            t = f"kfts_{cid}"
            step = 4 * dim
            for k, (cid_, content, meta) in enumerate(zip(ids, contents, metas)):
                cur = c.execute(
                    "INSERT INTO chunks (coll, id, content, metadata, embedding) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (coll, id) DO NOTHING",
                    (cid, cid_, content, meta or "{}", vectors[k * step : (k + 1) * step]),
                )
                if cur.rowcount == 0:
                    continue
                rid = cur.lastrowid
                if indexed:
                    c.execute(f"INSERT INTO {t} (rowid, content) VALUES (?, ?)", (rid, content))
                else:
                    c.execute("INSERT INTO fts_pending (rid) VALUES (?)", (rid,))
                added += 1
            c.execute("UPDATE writes SET seq = seq + 1 WHERE id = 0")
        return added

    def _index(self, c: sqlite3.Connection, cid: int) -> None:
        t = f"kfts_{cid}"
        c.execute(FTS_CREATE.format(t=t))
        c.execute(
            f"INSERT INTO {t} (rowid, content) SELECT k.rid, k.content FROM fts_pending p "
            "JOIN chunks k ON k.rid = p.rid WHERE k.coll = ?",
            (cid,),
        )
        c.execute("DELETE FROM fts_pending WHERE rid IN (SELECT rid FROM chunks WHERE coll = ?)", (cid,))
        c.execute("UPDATE collections SET fts = 1 WHERE id = ?", (cid,))

    def _drop(self, c: sqlite3.Connection, cid: int) -> None:
        c.execute("DELETE FROM fts_pending WHERE rid IN (SELECT rid FROM chunks WHERE coll = ?)", (cid,))
        c.execute("DELETE FROM chunks WHERE coll = ?", (cid,))
        c.execute(f"DROP TABLE IF EXISTS kfts_{cid}")
        c.execute("DELETE FROM collections WHERE id = ?", (cid,))
        c.execute("UPDATE writes SET seq = seq + 1 WHERE id = 0")

    def reset(self, coll: str) -> bool:
        v.check_name(coll)
        try:
            with self._write() as c:
                row = c.execute("SELECT id FROM collections WHERE name = ?", (coll,)).fetchone()
                if row is None:
                    return False
                self._drop(c, row[0])
                return True
        except sqlite3.Error as e:
            raise self._classify("reset", e) from None

    def reset_all(self) -> None:
        try:
            with self._write() as c:
                for (cid,) in c.execute("SELECT id FROM collections").fetchall():
                    self._drop(c, cid)
        except sqlite3.Error as e:
            raise self._classify("reset", e) from None

    def stats(self) -> list[tuple[Any, ...]]:
        with self._lock:
            rows = self._read(
                "SELECT c.name, c.dim, c.fts, c.created_at, (SELECT count(*) FROM chunks k WHERE k.coll = c.id), "
                "(SELECT count(*) FROM fts_pending p JOIN chunks k ON k.rid = p.rid WHERE k.coll = c.id) "
                "FROM collections c ORDER BY c.name"
            )
        return [(n, d, cnt, f == 1 and pend == 0, created) for n, d, f, created, cnt, pend in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # ---------------------------------------------------------------- state

    def _sync(self) -> None:
        seq = self._read("SELECT seq FROM writes WHERE id = 0")[0][0]
        if seq == self._seq:
            return
        rows = self._read("SELECT id, name, dim FROM collections")
        ids = {r[0] for r in rows}
        for cid in list(self._colls):
            if cid not in ids:
                del self._colls[cid]
        for c in self._colls.values():
            self._load_new(c)
        self._names = {r[1]: r[0] for r in rows}
        self._seq = seq

    def _load_new(self, c: _Coll) -> None:
        rows = self._read(
            "SELECT rid, metadata, embedding FROM chunks WHERE coll = ? AND rid > ? ORDER BY rid", (c.id, c.last_rid)
        )
        for rid, _, emb in rows:
            if len(emb) != 4 * c.dim:
                raise StoreCorruptError(f"knowledge store {self.path}: chunk row {rid} has a {len(emb)}-byte embedding")
        c.add(rows)

    def _state(self, coll: str) -> _Coll:
        self._sync()
        cid = self._names.get(coll)
        if cid is None:
            raise CollectionNotFoundError(f"knowledge collection {coll!r} does not exist")
        c = self._colls.get(cid)
        if c is None:
            dim = self._read("SELECT dim FROM collections WHERE id = ?", (cid,))[0][0]
            c = _Coll(cid, coll, dim)
            self._load_new(c)
            self._colls[cid] = c
        return c

    # ---------------------------------------------------------------- search

    def search(
        self, coll: str, mode: str, text: str, qvec: bytes | None, limit: int, flt: str, threshold: float, rrf_k: int
    ) -> list[tuple[Any, ...]]:
        from crewcore.knowledge.fallback_search import run_search

        v.check_name(coll)
        mode = v.check_mode(mode)
        if limit < 0:
            raise InvalidArgumentError(f"negative limit {limit}")
        if mode != "vector" and not self.fts:
            raise KeywordSearchUnavailableError(
                f"knowledge {coll}: {mode} search: this interpreter's SQLite has no FTS5 (vector search works)"
            )
        fdict = json.loads(flt) if flt else None
        if fdict is not None and not isinstance(fdict, dict):
            raise InvalidArgumentError("metadata filter is not a JSON object")
        with self._lock:
            c = self._state(coll)
            if mode != "keyword":
                if qvec is None:
                    raise InvalidArgumentError(f"{mode} search needs a query embedding")
                if len(qvec) // 4 != c.dim:
                    raise KnowledgeDimensionError(
                        f"knowledge collection {coll!r}: embedding dimension mismatch: the collection holds "
                        f"{c.dim}-dimensional vectors, got {len(qvec) // 4}",
                        c.dim,
                        len(qvec) // 4,
                    )
            if limit == 0:
                return []
            if mode != "vector":
                self._ensure_indexed(c)
            return run_search(self, c, mode, text, qvec, limit, fdict or None, threshold, rrf_k or v.DEFAULT_RRF_K)

    def _ensure_indexed(self, c: _Coll) -> None:
        row = self._read("SELECT fts FROM collections WHERE id = ?", (c.id,))
        if not row:
            return
        pend = self._read(
            "SELECT 1 FROM fts_pending p JOIN chunks k ON k.rid = p.rid WHERE k.coll = ? LIMIT 1", (c.id,)
        )
        if row[0][0] == 1 and not pend:
            return
        with self._write() as w:
            if w.execute("SELECT 1 FROM collections WHERE id = ?", (c.id,)).fetchone():
                self._index(w, c.id)
                w.execute("UPDATE writes SET seq = seq + 1 WHERE id = 0")

    def keyword(self, c: _Coll, text: str, flt: dict[str, Any] | None, n: int) -> list[tuple[int, float]]:
        """Up to n (row, score) BM25 matches, best first, scores 0.5 + 0.5*b/bmax."""
        q = v.fts_query(text)
        if not q:
            return []
        t = f"kfts_{c.id}"
        try:
            sql = f"SELECT rowid, -bm25({t}) FROM {t} WHERE {t} MATCH ? ORDER BY bm25({t}), rowid"
            args: tuple[Any, ...] = (q,)
            if flt is None:
                sql += " LIMIT ?"  # as the Go engine: the best rows, with slack for newer ones
                args = (q, n + 64)
            cur = self._conn.execute(sql, args)
        except sqlite3.OperationalError as e:
            if f"no such table: {t}" in str(e):
                raise CollectionNotFoundError(f"knowledge collection {c.name!r} was reset during the search") from None
            raise self._classify("keyword search", e) from None
        out: list[tuple[int, float]] = []
        for rid, b in cur:
            row = c.pos.get(rid)
            if row is None or (flt is not None and not v.matches(c.metas[row], flt)):
                continue
            out.append((row, b))
            if len(out) == n:
                break
        cur.close()
        if out:
            bmax = out[0][1]
            out = [(r, 0.5 + 0.5 * b / bmax if bmax > 0 else 1.0) for r, b in out]
        return out

    def fetch(self, c: _Coll, rows: list[int]) -> dict[int, tuple[str, str, str]]:
        """rid -> (id, content, metadata) of the rows still stored."""
        rids = [int(c.rids[r]) for r in rows]
        if not rids:
            return {}
        q = f"SELECT rid, id, content, metadata FROM chunks WHERE rid IN ({','.join('?' * len(rids))})"
        return {r[0]: (r[1], r[2], r[3]) for r in self._read(q, tuple(rids))}
