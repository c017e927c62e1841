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

from crewcore._bridge import call
from crewcore._redact import redact_dsn
from crewcore.errors import InvalidArgumentError
from crewcore.memory import validate as v
from crewcore.memory.native import NativeStore

DEFAULT_SCHEMA = "crewcore"


def is_dsn(value: Any) -> bool:
    """True for ``postgres://`` and ``postgresql://`` URLs."""
    return isinstance(value, str) and value.lower().startswith(("postgres://", "postgresql://"))


def redact(dsn: str) -> str:
    """The DSN without its password (for reprs and messages; malformed
    DSNs too: see crewcore._redact)."""
    return redact_dsn(dsn)


class PgStore(NativeStore):
    """One open Postgres store in the Go engine, addressed by a handle: the
    engine API of NativeStore over the ``pg_*`` ops."""

    _P = "pg_"

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

    @property
    def read_only(self) -> bool:
        """Never: a PostgreSQL store is not opened read-only."""
        return False

    def count(self, scope_prefix: str | None = None) -> int:
        # No crewcore_count fast path: that entry serves the embedded store.
        return int(call([self._P + "count", self._handle(), v.normalize_prefix(scope_prefix)]))

    def build_index(self) -> None:
        """Build the HNSW index now (after a bulk load; a store builds it by
        itself once it holds 10,000 vectors)."""
        call(["pg_build_index", self._handle()])
