"""The memory store's native binding: ``NativeStore``, one store in the Go
engine (package ``memory``) addressed by a handle through the bridge.

Records travel as MessagePack arrays with the vector as raw little-endian
float32 bytes; validation and the stored form are shared with the fallback
(:mod:`crewcore.memory.validate`).
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from crewcore import _bridge
from crewcore._bridge import call
from crewcore.errors import InvalidArgumentError, StoreClosedError
from crewcore.memory import validate as v


_exit_lock = threading.Lock()
_exit_registered = False


def _register_exit() -> None:
    """At exit, open stores write their index snapshot if it is stale
    (memory.db-index: the next open reads it instead of every record; stores
    are seldom closed, so Close alone would rarely write it)."""
    global _exit_registered
    with _exit_lock:
        if not _exit_registered:
            atexit.register(_save_indexes)
            _exit_registered = True


def _save_indexes() -> None:
    if _bridge.forked():
        return
    try:
        call(["memory_save_index_all", 0])
    except Exception:  # noqa: BLE001  (exit path: the snapshot is only a cache)
        pass


# scope_prefix argument -> canonical prefix as UTF-8 (b"" for no filter),
# for the count() fast path.
_prefix_bytes: dict[str | None, bytes] = {}


def _wire_record(row: v.Row) -> list[Any]:
    return [
        row.id,
        row.content,
        row.scope,
        row.cats,
        row.metadata,
        row.importance,
        row.created_at,
        row.last_accessed,
        row.source,
        row.private,
        row.embedding,
    ]


def _record(f: list[Any]) -> Any:
    return v.make_record(
        f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], v.floats_from_bytes(f[10])
    )


class NativeStore:
    """One open store in the Go engine, addressed by a handle."""

    #: Prefix of this store kind's bridge ops ("pg_" for postgres.PgStore).
    _P = ""

    def __init__(
        self,
        db_path: str,
        vector_dim: int | None = None,
        metric: str = "l2",
        return_embeddings: bool = False,
        exact_below: int = 0,
    ) -> None:
        if metric not in ("l2", "cosine"):
            raise InvalidArgumentError(f"metric must be 'l2' or 'cosine', got {metric!r}")
        if vector_dim is not None and (not isinstance(vector_dim, int) or vector_dim < 0):
            raise InvalidArgumentError(f"vector_dim must be a positive integer, got {vector_dim!r}")
        self.path = db_path
        self._return_embeddings = return_embeddings
        self._pid = os.getpid()
        h, dim = call(["open", 0, db_path, vector_dim or 0, metric, exact_below])
        if not self._P:
            _register_exit()
        self._h: int | None = h
        self._dim = dim

    @property
    def dim(self) -> int:
        return int(call([self._P + "dim", self._handle()]))

    @property
    def read_only(self) -> bool:
        """Whether the engine opened the store read-only (its file or
        directory cannot be written): writes raise StoreAccessError."""
        return bool(call(["memory_read_only", self._handle()]))

    def _handle(self) -> int:
        if self._h is None:
            raise StoreClosedError(f"memory store {self.path} is closed")
        return self._h

    def save(self, records: list[Any]) -> None:
        # the data contract (validate.py); the vectors converted in one call
        wire = [_wire_record(row) for row in v.to_rows(records, batch_vectors=True)]
        if not wire:
            self._handle()
            return
        call([self._P + "save", self._handle(), wire])

    def update(self, record: Any) -> None:
        call([self._P + "update", self._handle(), _wire_record(v.to_row(record))])

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
        a = v.check_search(query_embedding, scope_prefix, categories, metadata_filter, limit, min_score,
                           source, include_private)
        privacy = None if a.include_private else (a.source or "")
        rows = call(
            [
                self._P + "search",
                self._handle(),
                a.query,
                a.prefix,
                a.categories,
                a.metadata_filter,
                a.limit,
                a.min_score,
                privacy,
                self._return_embeddings,
            ]
        )
        return [(_record(f), f[11]) for f in rows]

    def delete(
        self,
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        record_ids: list[str] | None = None,
        older_than: Any = None,
        metadata_filter: dict[str, Any] | None = None,
    ) -> int:
        a = v.check_delete(scope_prefix, categories, record_ids, older_than, metadata_filter)
        if a.ids is not None and not a.ids:
            self._handle()
            return 0  # an empty id list selects nothing
        return int(
            call([self._P + "delete", self._handle(), a.prefix, a.categories, a.ids, a.older_than,
                  a.metadata_filter])
        )

    def get_record(self, record_id: str) -> Any:
        f = call([self._P + "get", self._handle(), v.check_id(record_id)])
        return None if f is None else _record(f)

    def list_records(
        self, scope_prefix: str | None = None, limit: int = 200, offset: int = 0
    ) -> list[Any]:
        limit = v.check_limit(limit)
        offset = v.check_limit(offset, "offset")
        rows = call(
            [self._P + "list", self._handle(), v.normalize_prefix(scope_prefix), limit, offset, self._return_embeddings]
        )
        return [_record(f) for f in rows]

    def get_scope_info(self, scope: str) -> Any:
        from crewai.memory.types import ScopeInfo

        path, count, cats, oldest, newest, children = call(
            [self._P + "scope_info", self._handle(), v.normalize_scope(scope)]
        )
        return ScopeInfo(
            path=path,
            record_count=count,
            categories=cats,
            oldest_record=v.parse_dt(oldest) if oldest else None,
            newest_record=v.parse_dt(newest) if newest else None,
            child_scopes=children,
        )

    def list_scopes(self, parent: str = "/") -> list[str]:
        return list(call([self._P + "list_scopes", self._handle(), v.normalize_scope(parent)]))

    def list_categories(self, scope_prefix: str | None = None) -> dict[str, int]:
        return dict(call([self._P + "list_categories", self._handle(), v.normalize_prefix(scope_prefix)]))

    def count(self, scope_prefix: str | None = None) -> int:
        try:
            p = _prefix_bytes.get(scope_prefix)
        except TypeError:  # unhashable: let normalize_prefix name the problem
            p = None
        if p is None:
            norm = v.normalize_prefix(scope_prefix)  # raises InvalidScopeError
            p = (norm or "").encode("utf-8")
            if len(_prefix_bytes) >= 4096:
                _prefix_bytes.clear()
            _prefix_bytes[scope_prefix] = p
        h = self._h
        fast = getattr(_bridge._lib, "crewcore_count", None)
        if h is not None and fast is not None:
            n = fast(h, p, len(p))
            if n >= 0:
                return int(n)
        # The error path (or an old library): the full call raises the typed error.
        return int(call([self._P + "count", self._handle(), v.normalize_prefix(scope_prefix)]))

    def reset(self, scope_prefix: str | None = None) -> None:
        call([self._P + "reset", self._handle(), v.normalize_prefix(scope_prefix)])

    def touch_records(self, record_ids: list[str]) -> None:
        ids = v.check_str_list(record_ids, "record_ids")
        if ids:
            call([self._P + "touch", self._handle(), ids])

    def optimize(self) -> None:
        call([self._P + "optimize", self._handle()])

    def close(self) -> None:
        h, self._h = self._h, None
        if h is not None and not _bridge.forked() and os.getpid() == self._pid:
            call([self._P + "close", h])
