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

The code: this module holds ``PyStore``, the StorageBackend methods and what
each write changes in the file and in memory; ``fallback_db.StoreDb`` owns the
file (checks, connections, write transaction with busy retry, change log,
refresh); ``fallback_state`` the in-memory state and its vector arenas;
``fallback_scan`` the vector scans and the filtered selection.
"""

from __future__ import annotations

from datetime import datetime
import heapq
import json
import os
import sqlite3
from typing import Any, Iterable

from crewcore.errors import (
    InvalidArgumentError,
    RecordNotFoundError,
    dimension_error,
)
from crewcore.memory.fallback_db import ID_CHUNK, StoreDb, decode_strings, encode_strings
from crewcore.memory.fallback_scan import search_lists, search_numpy, select
from crewcore.memory.fallback_state import Entry, NumpyArena, State
from crewcore.memory.fallback_seg import append_vectors, punch_rows, remove_segments
from crewcore.memory.integrity import corrupt_error, kept_checksum, row_checksum_crc, touch_rows
from crewcore.memory.validate import (
    check_delete,
    check_id,
    check_limit,
    check_search,
    check_str_list,
    make_record,
    normalize_prefix,
    normalize_scope,
    parse_dt,
    to_rows,
    utcnow_str,
)

__all__ = ["PyStore"]

#: ``optimize()`` keeps this many newest rows of the change log.
KEEP_CHANGES = 10_000
#: Default deadline for a write waiting on other processes' locks.
DEFAULT_BUSY_TIMEOUT = 60.0

_UPDATE_SQL = (
    "UPDATE records SET content=?, scope=?, categories=?, metadata=?, importance=?, "
    "created_at=?, last_accessed=?, source=?, private=?{emb}, checksum=? WHERE id=?"
)
_INSERT_SQL = (
    "INSERT INTO records(id, content, scope, categories, metadata, importance, "
    "created_at, last_accessed, source, private, seg, row, checksum) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_SET_VECTOR = ", seg=?, row=?"


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

        self._return_embeddings = bool(return_embeddings)
        # The file, its connections and the in-memory state (opens the file).
        self._db = StoreDb(os.path.abspath(path), vector_dim, busy_timeout)

    # -- public properties --

    @property
    def dim(self) -> int:
        """The vector dimension (0 while unknown)."""
        return self._db.state.dim

    @property
    def path(self) -> str:
        """Absolute path of the database file."""
        return self._db.path

    @property
    def read_only(self) -> bool:
        """Whether the store was opened read-only (fallback_ro.py): writes
        raise StoreAccessError."""
        return self._db.read_only

    @property
    def metric(self) -> str:
        return "cosine" if self._cosine else "l2"

    def __repr__(self) -> str:
        return f"PyStore({self._db.path!r}, dim={self.dim}, metric={self.metric!r})"

    def __enter__(self) -> PyStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Release the database and the in-memory state. Idempotent; later calls raise StoreClosedError."""
        self._db.close()

    # -- records to rows and entries --

    @staticmethod
    def _rows(records: Any) -> list:
        return to_rows(records)  # the data contract (validate.py)

    @staticmethod
    def _new_entry(row: Any, rid: int, cats: list[str], cats_json: str) -> Entry:
        return Entry(
            rid, row.id, row.content, row.scope, cats, cats_json, row.metadata,
            row.importance, row.created_at, row.last_accessed, row.source, row.private,
        )

    # -- StorageBackend --

    def save(self, records: list[Any]) -> None:
        """Upsert records by id; all of the batch or nothing."""
        rows = self._rows(records)
        if not rows:
            self._db.check_open()
            return
        dims = [len(row.embedding) // 4 for row in rows if row.embedding]
        batch_dim = dims[0] if dims else 0
        ref = self._db.state.dim or batch_dim
        for d in dims:  # a batch of mixed dimensions is refused whole
            if d != ref:
                raise dimension_error(ref, d)
        cats = [decode_strings(row.categories) for row in rows]
        cats_json = [encode_strings(c) for c in cats]

        def fn(conn: sqlite3.Connection) -> tuple[None, Any]:
            dim = self._db.fix_dim(conn, batch_dim)
            st = self._db.state
            rids: dict[str, int] = {}
            # The batch's vectors first: one write per segment file (fallback_seg.py).
            addrs = iter(append_vectors(conn, self._db.path, dim, [r.embedding for r in rows if r.embedding]))
            for row, cj in zip(rows, cats_json):
                rid = rids.get(row.id)
                if rid is None:
                    old = st.entries.get(row.id)
                    rid = old.rid if old is not None else None
                params = (
                    row.content, row.scope, cj, row.metadata, row.importance,
                    row.created_at, row.last_accessed, row.source, int(row.private),
                )
                seg, srow, vcrc = next(addrs) if row.embedding else (None, None, 0)
                cks = row_checksum_crc(row.id, *params, len(row.embedding or b""), vcrc)  # integrity.py
                done = False
                if rid is not None:
                    cur = conn.execute(
                        _UPDATE_SQL.format(emb=_SET_VECTOR), params + (seg, srow, cks, row.id)
                    )
                    done = cur.rowcount > 0
                if not done:
                    cur = conn.execute(
                        _INSERT_SQL, (row.id,) + params + (seg, srow, cks)
                    )
                    rid = cur.lastrowid
                rids[row.id] = rid  # type: ignore[assignment]
            seq = self._db.log_changes(conn, rids)

            def on_commit() -> None:
                st.set_dim(dim)
                for row, c, cj in zip(rows, cats, cats_json):
                    st.put(self._new_entry(row, rids[row.id], c, cj), row.embedding)
                self._db.last = seq

            return None, on_commit

        self._db.write("save", fn)

    def update(self, record: Any) -> None:
        """Replace the stored record with the same id; no embedding keeps the stored vector."""
        (row,) = self._rows([record])
        new_dim = len(row.embedding) // 4 if row.embedding else 0
        if new_dim and self._db.state.dim and new_dim != self._db.state.dim:
            raise dimension_error(self._db.state.dim, new_dim)
        cats = decode_strings(row.categories)
        cj = encode_strings(cats)

        def fn(conn: sqlite3.Connection) -> tuple[None, Any]:
            st = self._db.state
            old = st.entries.get(row.id)
            if old is None:
                raise RecordNotFoundError(f"update {self._db.path}: record {row.id!r} not found")
            dim = self._db.fix_dim(conn, new_dim)
            params = (
                row.content, row.scope, cj, row.metadata, row.importance,
                row.created_at, row.last_accessed, row.source, int(row.private),
            )
            if old.bad:  # save it again instead (integrity.py)
                raise corrupt_error("update", self._db.path, {row.id: old.bad})
            if row.embedding:
                ((seg, srow, vcrc),) = append_vectors(conn, self._db.path, dim, [row.embedding])
                cks = row_checksum_crc(row.id, *params, len(row.embedding), vcrc)
                cur = conn.execute(_UPDATE_SQL.format(emb=_SET_VECTOR),
                                   params + (seg, srow, cks, row.id))
            else:
                cks = kept_checksum(conn, self._db.path, row.id, params, dim)
                cur = conn.execute(_UPDATE_SQL.format(emb=""), params + (cks, row.id))
            if cur.rowcount == 0:  # memory and file disagree: should not happen
                self._db.force_reload = True
                raise RecordNotFoundError(f"update {self._db.path}: record {row.id!r} not found")
            seq = self._db.log_changes(conn, [row.id])
            rid = old.rid

            def on_commit() -> None:
                st.set_dim(dim)
                st.put(self._new_entry(row, rid, cats, cj), row.embedding, keep=True)
                self._db.last = seq

            return None, on_commit

        self._db.write("update", fn)

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
        a = check_search(query_embedding, scope_prefix, categories, metadata_filter, limit, min_score,
                         source, include_private)
        qb, prefix, cats, limit, min_score, source = a.query, a.prefix, a.categories, a.limit, a.min_score, a.source
        mfilter = None if a.metadata_filter is None else json.loads(a.metadata_filter)
        if limit == 0:
            self._db.check_open()
            return []
        with self._db.reading() as st:
            qdim = len(qb) // 4
            if st.dim == 0 or st.arena is None:
                return []  # nothing has a vector yet
            if qdim != st.dim:
                raise dimension_error(st.dim, qdim)
            if st.arena.n == 0:
                return []
            args = (st, qb, prefix, cats, mfilter, limit, min_score, source, a.include_private,
                    self._cosine)
            if isinstance(st.arena, NumpyArena):
                hits = search_numpy(*args)
            else:
                hits = search_lists(*args)
            with_emb = self._return_embeddings
            return [(self._record(st, e, with_emb), score) for e, score in hits]

    def delete(
        self,
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        record_ids: list[str] | None = None,
        older_than: datetime | None = None,
        metadata_filter: dict[str, Any] | None = None,
    ) -> int:
        """Delete the records matching every given criterion; returns how many."""
        a = check_delete(scope_prefix, categories, record_ids, older_than, metadata_filter)
        prefix, cats, ids, cutoff = a.prefix, a.categories, a.ids, a.older_than
        mfilter = None if a.metadata_filter is None else json.loads(a.metadata_filter)
        if ids is not None and not ids:
            self._db.check_open()
            return 0

        def fn(conn: sqlite3.Connection) -> tuple[int, Any]:
            victims = select(self._db.state, prefix, cats, ids, cutoff, mfilter)
            return self._delete_ids(conn, victims)

        return self._db.write("delete", fn)

    def _delete_ids(self, conn: sqlite3.Connection, victims: list[str]) -> tuple[int, Any]:
        if not victims:
            return 0, None
        freed: list[tuple[int, int]] = []  # after a full disk: the rows to give back (punch_rows)
        for i in range(0, len(victims), ID_CHUNK):
            chunk = victims[i:i + ID_CHUNK]
            marks = ",".join("?" * len(chunk))
            if self._db.saw_full:
                freed += conn.execute(f"SELECT seg, row FROM records WHERE id IN ({marks}) AND seg IS NOT NULL",
                                      chunk).fetchall()
            conn.execute(f"DELETE FROM records WHERE id IN ({marks})", chunk)
        seq = self._db.log_changes(conn, victims)
        st = self._db.state

        def on_commit() -> None:
            for rec_id in victims:
                st.remove(rec_id)
            self._db.last = seq
            if freed and st.dim:
                punch_rows(self._db.path, st.dim, freed)

        return len(victims), on_commit

    def reset(self, scope_prefix: str | None = None) -> None:
        """Delete every record under the scope; everything when None (and
        forget the dimension unless vector_dim was given at open)."""
        prefix = normalize_prefix(scope_prefix)
        if prefix is not None:
            def fn_scope(conn: sqlite3.Connection) -> tuple[None, Any]:
                victims = select(self._db.state, prefix, None, None, None, None)
                _, on_commit = self._delete_ids(conn, victims)
                return None, on_commit

            self._db.write("reset", fn_scope)
            return

        def fn_all(conn: sqlite3.Connection) -> tuple[None, Any]:
            segs = [r[0] for r in conn.execute("SELECT id FROM segments")]
            conn.execute("DELETE FROM records")
            conn.execute("DELETE FROM segments")
            if self._db.opt_dim:
                conn.execute(
                    "INSERT OR REPLACE INTO crewcore_meta(key, value) VALUES ('dim', ?)",
                    (str(self._db.opt_dim),),
                )
            else:
                conn.execute("DELETE FROM crewcore_meta WHERE key='dim'")
            seq = self._db.log_changes(conn, ["*"])

            def on_commit() -> None:
                self._db.state = State(self._db.opt_dim, self._db.use_numpy)
                self._db.last = seq
                remove_segments(self._db.path, segs)

            return None, on_commit

        self._db.write("reset", fn_all)

    def touch_records(self, record_ids: list[str]) -> None:
        """Set last_accessed to now (UTC) on the given records; unknown ids are ignored."""
        ids = check_str_list(record_ids, "record_ids")
        if not ids:
            self._db.check_open()
            return
        ids = list(dict.fromkeys(ids))

        def fn(conn: sqlite3.Connection) -> tuple[None, Any]:
            st = self._db.state
            known = [i for i in ids if i in st.entries and not st.entries[i].bad]
            if not known:
                return None, None
            now = utcnow_str()
            known, damaged = touch_rows(conn, known, now, self._db.path, st.dim)  # checksums (integrity.py)
            seq = self._db.log_changes(conn, known)

            def on_commit() -> None:
                st.mark_bad(damaged)
                for i in known:
                    e = st.entries.get(i)
                    if e is not None:
                        e.accessed = now
                self._db.last = seq

            return None, on_commit

        self._db.write("touch", fn)

    def optimize(self) -> None:
        """Trim the change log to its newest 10,000 rows, checkpoint the WAL
        (TRUNCATE) and run PRAGMA optimize."""

        def fn(conn: sqlite3.Connection) -> tuple[None, None]:
            conn.execute(
                "DELETE FROM changes WHERE seq <= (SELECT max(seq) FROM changes) - ?",
                (KEEP_CHANGES,),
            )
            return None, None

        self._db.write("optimize", fn)
        self._db.checkpoint()

    # -- reads --

    def _record(self, st: State, e: Entry, with_embedding: bool) -> Any:
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
        check_id(record_id)
        with self._db.reading() as st:
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
            self._db.check_open()
            return []
        with self._db.reading() as st:
            if prefix is None:
                pool: Iterable[Entry] = st.entries.values()
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
        with self._db.reading() as st:
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
        with self._db.reading() as st:
            return st.children(path)

    def list_categories(self, scope_prefix: str | None = None) -> dict[str, int]:
        """Category -> number of records under the prefix having it."""
        prefix = normalize_prefix(scope_prefix)
        with self._db.reading() as st:
            return st.categories(prefix)

    def count(self, scope_prefix: str | None = None) -> int:
        """Number of records under the prefix (all when None)."""
        prefix = normalize_prefix(scope_prefix)
        with self._db.reading() as st:
            return st.count(prefix)

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
