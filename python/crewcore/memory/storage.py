"""``MemoryStorage``: CrewAI's ``StorageBackend`` served by the crewcore engine.

One engine is opened per database file (and options) per process and shared
by every ``MemoryStorage`` on it, so the many ``Memory`` objects a crew builds
load the store once.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
import os
from pathlib import Path
import threading
from typing import Any

from crewcore import _backend, _bridge
from crewcore.errors import InvalidArgumentError

_DB_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def default_path() -> Path:
    """``<CREWAI_STORAGE_DIR or CrewAI's data dir>/crewcore/memory.db``."""
    env = os.environ.get("CREWAI_STORAGE_DIR")
    if env:
        base = Path(env)
    else:
        from crewai_core.paths import db_storage_path

        base = Path(db_storage_path())
    return base / "crewcore" / "memory.db"


def resolve_db_path(path: str | os.PathLike[str] | None) -> str:
    """The database file a ``path`` argument names (see docs/architecture.md)."""
    if path is None or str(path) == "":
        p = default_path()
    else:
        p = Path(os.path.expanduser(os.fspath(path)))
        if p.is_dir():
            p = p / "memory.db"
        elif not p.exists() and p.suffix.lower() not in _DB_SUFFIXES:
            p = p / "memory.db"
    return str(p.resolve())


class _Shared:
    """An open engine and the number of MemoryStorage objects using it."""

    def __init__(self, engine: Any, kind: str) -> None:
        self.engine = engine
        self.kind = kind
        self.refs = 0
        self.pid = os.getpid()
        self.closed = False  # the engine was closed (its last user closed)


_shared: dict[tuple[Any, ...], _Shared] = {}
_shared_lock = threading.Lock()


def _open(key: tuple[Any, ...], engine: str = "auto") -> _Shared:
    db_path, dim, metric, ret_emb, exact = key
    with _shared_lock:
        sh = _shared.get(key)
        if sh is not None and sh.pid == os.getpid() and engine in ("auto", sh.kind):
            sh.refs += 1
            return sh
        kind = _backend.backend() if engine == "auto" else engine
        for (other_path, *_), other in _shared.items():
            if other_path == db_path and other.kind != kind and other.pid == os.getpid() and other.refs > 0:
                raise InvalidArgumentError(
                    f"{db_path} is already open with the {other.kind} engine in this process; "
                    "SQLite locks break if two SQLite libraries open one file in one process"
                )
        if kind == "native":
            from crewcore.memory.native import NativeStore

            engine: Any = NativeStore(db_path, dim, metric, ret_emb, exact_below=-1 if exact else 0)
        else:
            from crewcore.memory.fallback import PyStore

            engine = PyStore(db_path, dim, metric, return_embeddings=ret_emb)
        sh = _Shared(engine, kind)
        sh.refs = 1
        _shared[key] = sh
        return sh


def _open_pg(key: tuple[Any, ...]) -> _Shared:
    """The PostgreSQL engine for a store key (see MemoryStorage._init_postgres),
    shared like the file engines."""
    from crewcore.memory.postgres import PgStore

    _, _, dsn, schema, vector_dim, metric, ret_emb, exact, ef_search = key
    with _shared_lock:
        sh = _shared.get(key)
        if sh is None or sh.pid != os.getpid():
            store = PgStore(dsn, schema, vector_dim, metric, ret_emb, exact_below=-1 if exact else 0, ef_search=ef_search)
            sh = _Shared(store, "postgres")
            _shared[key] = sh
        sh.refs += 1
        return sh


class MemoryStorage:
    """A CrewAI memory ``StorageBackend`` backed by crewcore.

    Args:
        path: database file, or a directory to hold ``memory.db``. Default:
            ``<CREWAI_STORAGE_DIR or CrewAI's storage dir>/crewcore/memory.db``
            (never LanceDB's files).
        vector_dim: fix the embedding dimension; default: taken from the
            store or the first saved embedding.
        metric: ``"l2"`` (default) scores ``1/(1 + squared L2 distance)`` like
            CrewAI's LanceDB store, so CrewAI's thresholds keep their meaning;
            ``"cosine"`` scores cosine similarity.
        return_embeddings: include vectors in search and list results
            (``get_record`` always includes it). Off by default: CrewAI does not
            need them and ``update`` with no embedding keeps the stored one.
        engine: ``"auto"`` (default: native when the library loads, else the
            fallback), ``"native"`` or ``"python"``.
        exact: always score every candidate exactly. By default the native
            engine searches 512+ candidate vectors with a quantized cascade
            (1-bit scan, int8 re-rank, exact float32 top-k; recall@10 >= 0.99,
            see docs/architecture.md). The fallback is always exact.
        dsn: a ``postgresql://`` URL: store in PostgreSQL + pgvector instead
            of a file (a DSN given as ``path`` means the same). Many
            processes and machines may share it; ``backend`` is "postgres".
        schema: the PostgreSQL schema holding the store (default "crewcore");
            a DSN may name it as its fragment: ``postgresql://host/db#team_a``.
        ef_search: pgvector's ``hnsw.ef_search`` for index searches (default
            100): higher is better recall and slower.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        vector_dim: int | None = None,
        *,
        metric: str = "l2",
        return_embeddings: bool = False,
        engine: str = "auto",
        exact: bool = False,
        dsn: str | None = None,
        schema: str = "crewcore",
        ef_search: int = 0,
    ) -> None:
        # PostgreSQL: dsn= or a postgresql:// URL as the path (docs/architecture.md).
        if dsn is None and isinstance(path, str) and path.lower().startswith(("postgres://", "postgresql://")):
            dsn, path = path, None
        elif dsn is not None and path is not None:
            from crewcore._redact import redact_dsn

            raise InvalidArgumentError(
                f"give path or dsn, not both: path={redact_dsn(path)!r} would be ignored for "
                f"dsn={redact_dsn(dsn)!r}"
            )
        if dsn is not None:
            self._init_postgres(dsn, vector_dim, metric, return_embeddings, engine, exact, schema, ef_search)
            return
        if engine not in ("auto", "native", "python"):
            raise InvalidArgumentError(f"engine must be 'auto', 'native' or 'python', got {engine!r}")
        if metric not in ("l2", "cosine"):
            raise InvalidArgumentError(f"metric must be 'l2' or 'cosine', got {metric!r}")
        if vector_dim is not None and (
            isinstance(vector_dim, bool) or not isinstance(vector_dim, int) or vector_dim <= 0
        ):
            raise InvalidArgumentError(f"vector_dim must be a positive integer, got {vector_dim!r}")
        self._key = (resolve_db_path(path), vector_dim, metric, bool(return_embeddings), bool(exact))
        self._engine = engine  # what a reopen after close() asks for
        self._shared: _Shared | None = _open(self._key, engine)
        self._kind = self._shared.kind
        self._lock = threading.Lock()

    def _init_postgres(
        self, dsn: Any, vector_dim: Any, metric: str, return_embeddings: bool, engine: str, exact: bool,
        schema: str, ef_search: int,
    ) -> None:
        from crewcore.memory.postgres import is_dsn, redact

        if engine not in ("auto", "postgres"):
            raise InvalidArgumentError(f"a dsn is served by engine 'postgres', not {engine!r}")
        if isinstance(dsn, str) and "#" in dsn:  # postgresql://.../db#schema
            dsn, _, frag = dsn.partition("#")
            schema = frag or schema
        if not is_dsn(dsn):
            raise InvalidArgumentError(f"dsn must be a postgresql:// URL, got {redact(str(dsn))!r}")
        if metric not in ("l2", "cosine"):
            raise InvalidArgumentError(f"metric must be 'l2' or 'cosine', got {metric!r}")
        if vector_dim is not None and (
            isinstance(vector_dim, bool) or not isinstance(vector_dim, int) or vector_dim <= 0
        ):
            raise InvalidArgumentError(f"vector_dim must be a positive integer, got {vector_dim!r}")
        self._key = (f"{redact(dsn)}#{schema}", "postgres", dsn, schema, vector_dim, metric,
                     bool(return_embeddings), bool(exact), ef_search)
        self._engine = "postgres"
        self._shared = _open_pg(self._key)
        self._kind = "postgres"
        self._lock = threading.Lock()

    # -- engine selection -------------------------------------------------

    @property
    def path(self) -> str:
        """The database file."""
        return self._key[0]

    @property
    def backend(self) -> str:
        """``"native"``, ``"python"`` or ``"postgres"``: the engine serving
        this store (after close(): the one that served it last)."""
        sh = self._shared
        return sh.kind if sh is not None else self._kind

    @property
    def read_only(self) -> bool:
        """Whether the store was opened read-only: its file or directory
        cannot be written, so reads are served and writes raise
        ``StoreAccessError`` naming the file (docs/troubleshooting.md)."""
        return bool(getattr(self._e(), "read_only", False))

    @property
    def crewcore_fork_safe(self) -> bool:
        """Whether a forked child may go on using this object (kickoff_many's
        worker processes): a file store reopens on the pure-Python engine
        there; a PostgreSQL store needs the Go runtime, which fork loses."""
        return self.backend != "postgres"

    def _sh(self) -> _Shared:
        sh = self._shared
        # Fast path (every call goes through here): no syscall, no import.
        if sh is not None and (sh.kind != "native" or not _bridge._forked):
            return sh
        with self._lock:
            sh = self._shared
            if sh is None:
                # Closed: the next call reopens the store, as CrewAI's own
                # stores stay usable after Memory.close() (docs/architecture.md).
                self._shared = sh = self._reopen()
                self._kind = sh.kind
            elif sh.kind == "native" and _bridge.forked():
                # A child forked after the library loaded: reopen on the engine
                # the one choice gives now (the pure-Python one; it warns once).
                self._shared = sh = _open(self._key, "auto")
                self._kind = sh.kind
            return sh

    def _reopen(self) -> _Shared:
        """Open the engine again after close() (self._lock is held)."""
        if self._engine == "postgres":
            return _open_pg(self._key)
        engine = self._engine
        if engine == "native" and _bridge.forked():
            engine = "auto"  # a forked child cannot use Go: the one choice decides
        return _open(self._key, engine)

    def _e(self) -> Any:
        return self._sh().engine

    # -- StorageBackend ---------------------------------------------------

    def save(self, records: list[Any]) -> None:
        self._e().save(records)

    def search(
        self,
        query_embedding: list[float],
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        metadata_filter: dict[str, Any] | None = None,
        limit: int = 10,
        min_score: float = 0.0,
        *,
        source: str | None = None,
        include_private: bool = True,
    ) -> list[tuple[Any, float]]:
        """Nearest records, best first. ``source``/``include_private`` apply
        CrewAI's privacy rule inside the engine (before top-k); by default no
        privacy filter is applied, as CrewAI's own backends do."""
        return self._e().search(
            query_embedding,
            scope_prefix=scope_prefix,
            categories=categories,
            metadata_filter=metadata_filter,
            limit=limit,
            min_score=min_score,
            source=source,
            include_private=include_private,
        )

    def delete(
        self,
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        record_ids: list[str] | None = None,
        older_than: datetime | None = None,
        metadata_filter: dict[str, Any] | None = None,
    ) -> int:
        """Delete records matching every given criterion; returns the number
        deleted. No criterion deletes everything (as CrewAI's LanceDB store
        does), but an explicitly empty ``record_ids`` list deletes nothing."""
        return self._e().delete(
            scope_prefix=scope_prefix,
            categories=categories,
            record_ids=record_ids,
            older_than=older_than,
            metadata_filter=metadata_filter,
        )

    def update(self, record: Any) -> None:
        self._e().update(record)

    def get_record(self, record_id: str) -> Any:
        return self._e().get_record(record_id)

    def list_records(
        self, scope_prefix: str | None = None, limit: int = 200, offset: int = 0
    ) -> list[Any]:
        return self._e().list_records(scope_prefix=scope_prefix, limit=limit, offset=offset)

    def get_scope_info(self, scope: str) -> Any:
        return self._e().get_scope_info(scope)

    def list_scopes(self, parent: str = "/") -> list[str]:
        return self._e().list_scopes(parent)

    def list_categories(self, scope_prefix: str | None = None) -> dict[str, int]:
        return self._e().list_categories(scope_prefix)

    def count(self, scope_prefix: str | None = None) -> int:
        return self._e().count(scope_prefix)

    def reset(self, scope_prefix: str | None = None) -> None:
        self._e().reset(scope_prefix)

    def touch_records(self, record_ids: list[str]) -> None:
        self._e().touch_records(record_ids)

    def optimize(self) -> None:
        self._e().optimize()

    def close(self) -> None:
        """Release this handle; the engine closes when its last user closes
        (its files and connections released, its writes committed). The
        store stays usable: the next call reopens it, as CrewAI's own stores
        stay usable after ``Memory.close()``. Closing twice is harmless."""
        with self._lock, _shared_lock:
            sh, self._shared = self._shared, None
            if sh is None:
                return
            sh.refs -= 1
            if sh.refs <= 0:
                if _shared.get(self._key) is sh:
                    del _shared[self._key]
                sh.closed = True
                if sh.pid == os.getpid():
                    sh.engine.close()

    async def asave(self, records: list[Any]) -> None:
        await asyncio.to_thread(self.save, records)

    async def asearch(
        self,
        query_embedding: list[float],
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        metadata_filter: dict[str, Any] | None = None,
        limit: int = 10,
        min_score: float = 0.0,
    ) -> list[tuple[Any, float]]:
        return await asyncio.to_thread(
            self.search, query_embedding, scope_prefix, categories, metadata_filter, limit, min_score
        )

    async def adelete(
        self,
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        record_ids: list[str] | None = None,
        older_than: datetime | None = None,
        metadata_filter: dict[str, Any] | None = None,
    ) -> int:
        return await asyncio.to_thread(
            self.delete, scope_prefix, categories, record_ids, older_than, metadata_filter
        )

    def __repr__(self) -> str:
        kind = self._shared.kind if self._shared else f"{self._kind}, closed"
        return f"MemoryStorage(path={self.path!r}, backend={kind!r})"
