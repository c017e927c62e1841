"""The PostgreSQL + pgvector engine: the Go store of package ``pgmemory``,
reached through the ``pg_*`` ops of the native library (cabi/postgres.go).

``MemoryStorage(dsn="postgresql://...")`` and ``crewcore.install(memory=
"postgresql://...")`` open one of these. It offers exactly the engine API of
``NativeStore`` (same arguments, same records, same typed errors), so
``MemoryStorage`` serves it unchanged.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from crewcore import _native
from crewcore import _validate as v
from crewcore._native import _meta_filter, _older_than, _record, _row, _wire_record, call
from crewcore.errors import (
    InvalidArgumentError,
    PgVectorMissingError,
    StoreClosedError,
    StoreUnavailableError,
)

# The bridge's error kinds of this engine (registered here, next to the code
# that raises them, rather than in _native._ERRORS).
_native._ERRORS.setdefault("pg_unavailable", StoreUnavailableError)
_native._ERRORS.setdefault("pg_no_vector", PgVectorMissingError)

DEFAULT_SCHEMA = "crewcore"


def is_dsn(value: Any) -> bool:
    """True for ``postgres://`` and ``postgresql://`` URLs."""
    return isinstance(value, str) and value.lower().startswith(("postgres://", "postgresql://"))


def redact(dsn: str) -> str:
    """The DSN without its password (for reprs and messages)."""
    try:
        parts = urlsplit(dsn)
        if parts.password is not None:
            host = parts.hostname or ""
            if parts.port:
                host = f"{host}:{parts.port}"
            netloc = f"{parts.username or ''}:xxxxx@{host}"
            return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        pass
    return dsn


class PgStore:
    """One open Postgres store in the Go engine, addressed by a handle."""

    def __init__(
        self,
        dsn: str,
        schema: str = DEFAULT_SCHEMA,
        vector_dim: int | None = None,
        metric: str = "l2",
        return_embeddings: bool = False,
        exact_below: int = 0,
        ef_search: int = 0,
        retry_seconds: float = 0,
    ) -> None:
        if not is_dsn(dsn):
            raise InvalidArgumentError("dsn must be a postgresql:// URL")
        if not isinstance(schema, str) or not schema or "\x00" in schema:
            raise InvalidArgumentError(f"schema must be a non-empty string, got {schema!r}")
        if not isinstance(ef_search, int) or isinstance(ef_search, bool) or not 0 <= ef_search <= 1000:
            raise InvalidArgumentError(f"ef_search must be an integer in 1..1000, got {ef_search!r}")
        self.dsn = dsn
        self.schema = schema
        self.path = f"{redact(dsn)}#{schema}"
        self._return_embeddings = return_embeddings
        self._pid = os.getpid()
        h, dim = call(["pg_open", 0, dsn, schema, vector_dim or 0, metric, exact_below, ef_search,
                       int(retry_seconds * 1000)])
        self._h: int | None = h
        self._dim = dim

    def _handle(self) -> int:
        if self._h is None:
            raise StoreClosedError(f"memory store {self.path} is closed")
        return self._h

    @property
    def dim(self) -> int:
        return int(call(["pg_dim", self._handle()]))

    def save(self, records: list[Any]) -> None:
        if not records:
            return
        wire = [_wire_record(_row(r), list(r.categories or [])) for r in records]
        call(["pg_save", self._handle(), wire])

    def update(self, record: Any) -> None:
        call(["pg_update", self._handle(), _wire_record(_row(record), list(record.categories or []))])

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
        privacy = None if include_private else (source or "")
        rows = call(
            [
                "pg_search",
                self._handle(),
                q,
                v.normalize_prefix(scope_prefix),
                list(categories) if categories else None,
                _meta_filter(metadata_filter),
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
        if record_ids is not None and len(record_ids) == 0:
            return 0
        return int(
            call(
                [
                    "pg_delete",
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
        f = call(["pg_get", self._handle(), str(record_id)])
        return None if f is None else _record(f)

    def list_records(self, scope_prefix: str | None = None, limit: int = 200, offset: int = 0) -> list[Any]:
        limit = v.check_limit(limit)
        offset = v.check_limit(offset, "offset")
        rows = call(
            ["pg_list", self._handle(), v.normalize_prefix(scope_prefix), limit, offset, self._return_embeddings]
        )
        return [_record(f) for f in rows]

    def get_scope_info(self, scope: str) -> Any:
        from crewai.memory.types import ScopeInfo

        path, count, cats, oldest, newest, children = call(
            ["pg_scope_info", self._handle(), v.normalize_scope(scope)]
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
        return list(call(["pg_list_scopes", self._handle(), v.normalize_scope(parent)]))

    def list_categories(self, scope_prefix: str | None = None) -> dict[str, int]:
        return dict(call(["pg_list_categories", self._handle(), v.normalize_prefix(scope_prefix)]))

    def count(self, scope_prefix: str | None = None) -> int:
        return int(call(["pg_count", self._handle(), v.normalize_prefix(scope_prefix)]))

    def reset(self, scope_prefix: str | None = None) -> None:
        call(["pg_reset", self._handle(), v.normalize_prefix(scope_prefix)])

    def touch_records(self, record_ids: list[str]) -> None:
        if record_ids:
            call(["pg_touch", self._handle(), [str(i) for i in record_ids]])

    def optimize(self) -> None:
        call(["pg_optimize", self._handle()])

    def build_index(self) -> None:
        """Build the HNSW index now (after a bulk load; a store builds it by
        itself once it holds 10,000 vectors)."""
        call(["pg_build_index", self._handle()])

    def close(self) -> None:
        h, self._h = self._h, None
        if h is not None and not _native.forked() and os.getpid() == self._pid:
            call(["pg_close", h])
