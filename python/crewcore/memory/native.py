"""The memory store's native binding: ``NativeStore``, one store in the Go
engine (package ``memory``) addressed by a handle through the bridge.

Records travel as MessagePack arrays with the vector as raw little-endian
float32 bytes; validation and the stored form are shared with the fallback
(:mod:`crewcore.memory.validate`).
"""

from __future__ import annotations

import os
from typing import Any

from crewcore import _bridge
from crewcore._bridge import call
from crewcore.errors import InvalidArgumentError, StoreClosedError
from crewcore.memory import validate as v


# scope_prefix argument -> canonical prefix as UTF-8 (b"" for no filter),
# for the count() fast path.
_prefix_bytes: dict[str | None, bytes] = {}


def _row(record: Any) -> v.Row:
    return v.to_row(record, check_vector=False)


def _wire_record(row: v.Row, categories: list[str]) -> list[Any]:
    return [
        row.id,
        row.content,
        row.scope,
        categories,
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
        self._h: int | None = h
        self._dim = dim

    @property
    def dim(self) -> int:
        return int(call([self._P + "dim", self._handle()]))

    def _handle(self) -> int:
        if self._h is None:
            raise StoreClosedError(f"memory store {self.path} is closed")
        return self._h

    def save(self, records: list[Any]) -> None:
        if not records:
            return
        wire = [_wire_record(_row(r), list(r.categories or [])) for r in records]
        call([self._P + "save", self._handle(), wire])

    def update(self, record: Any) -> None:
        call([self._P + "update", self._handle(), _wire_record(_row(record), list(record.categories or []))])

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
        q = v.vector_bytes(query_embedding, "query embedding", check=False)
        if q is None:
            raise InvalidArgumentError("query_embedding is empty")
        limit = v.check_limit(limit)
        if min_score != min_score:  # NaN
            raise InvalidArgumentError("min_score is NaN")
        prefix = v.normalize_prefix(scope_prefix)
        mf = _meta_filter(metadata_filter)
        privacy = None if include_private else (source or "")
        rows = call(
            [
                self._P + "search",
                self._handle(),
                q,
                prefix,
                list(categories) if categories else None,
                mf,
                limit,
                float(min_score),
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
        if record_ids is not None and len(record_ids) == 0 and not (
            scope_prefix or categories or older_than or metadata_filter
        ):
            return 0
        return int(
            call(
                [
                    self._P + "delete",
                    self._handle(),
                    v.normalize_prefix(scope_prefix),
                    list(categories) if categories else None,
                    [str(i) for i in record_ids] if record_ids else None,
                    _older_than(older_than),
                    _meta_filter(metadata_filter),
                ]
            )
        )

    def get_record(self, record_id: str) -> Any:
        f = call([self._P + "get", self._handle(), str(record_id)])
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
        if record_ids:
            call([self._P + "touch", self._handle(), [str(i) for i in record_ids]])

    def optimize(self) -> None:
        call([self._P + "optimize", self._handle()])

    def close(self) -> None:
        h, self._h = self._h, None
        if h is not None and not _bridge.forked() and os.getpid() == self._pid:
            call([self._P + "close", h])


def _older_than(value: Any) -> str | None:
    from datetime import datetime

    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidArgumentError(f"older_than must be a datetime, got {type(value).__name__}")
    return v.fmt_dt(value)


def _meta_filter(metadata_filter: dict[str, Any] | None) -> str | None:
    if not metadata_filter:
        return None
    import json

    try:
        return json.dumps(metadata_filter, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"metadata_filter is not JSON-serializable: {e}") from None
