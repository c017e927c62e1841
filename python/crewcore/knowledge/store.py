"""``KnowledgeStore``: a knowledge store file, on the Go engine or its
pure-Python twin, with batched ingestion (dedup before embedding).

One engine per file per process: every ``KnowledgeStore`` on one path shares
it (two SQLite libraries must not open one file in one process). In a child
forked after the Go library loaded, a native engine is replaced by the
Python one on the same file.
"""

from __future__ import annotations

import os
from pathlib import Path
import threading
from typing import Any, Callable, Sequence

from crewcore import _backend
from crewcore._redact import redact_dsn
from crewcore.errors import InvalidArgumentError
from crewcore.knowledge import validate as v

#: Embedding call: texts -> one vector per text.
EmbedFn = Callable[[list[str]], Sequence[Any]]
#: Progress callback: (chunks done, chunks to embed and store).
ProgressFn = Callable[[int, int], None]

_DB_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_lock = threading.Lock()
_engines: dict[str, Any] = {}
_pids: dict[str, int] = {}


def default_path() -> Path:
    """``<CREWAI_STORAGE_DIR or CrewAI's data dir>/crewcore/knowledge.db``."""
    env = os.environ.get("CREWAI_STORAGE_DIR")
    if env:
        base = Path(env)
    else:
        from crewai_core.paths import db_storage_path

        base = Path(db_storage_path())
    return base / "crewcore" / "knowledge.db"


def is_dsn(path: Any) -> bool:
    """Whether ``path`` is a PostgreSQL DSN (``postgresql://...``, ``#schema`` optional)."""
    return isinstance(path, str) and path.startswith(("postgres://", "postgresql://"))


def resolve_path(path: str | os.PathLike[str] | None) -> str:
    """The database file a ``path`` argument names: a file ending in .db,
    .sqlite or .sqlite3 (or an existing file), else ``<dir>/knowledge.db``;
    a PostgreSQL DSN is kept as it is."""
    if is_dsn(path):
        return str(path)
    if path is None or str(path) == "":
        p = default_path()
    else:
        p = Path(os.path.expanduser(os.fspath(path)))
        if not (p.suffix in _DB_SUFFIXES or p.is_file()):
            p = p / "knowledge.db"
    return str(p.absolute())


def _open_engine(path: str, engine: str | None, timeout: float | None) -> Any:
    if engine not in (None, "native", "python"):
        raise InvalidArgumentError(f"engine must be 'native', 'python' or None, got {engine!r}")
    with _lock:
        eng = _engines.get(path)
        if eng is not None and eng.kind == "native" and (_backend.forked() or _pids.get(path) != os.getpid()):
            eng = None  # a forked child: the Go runtime is gone; Python takes the file
        if eng is not None:
            if engine is not None and engine != eng.kind:
                raise InvalidArgumentError(
                    f"{redact_dsn(path)} is already open on the {eng.kind} engine in this process; one process uses one "
                    "engine per file (two SQLite libraries must not share a file)"
                )
            return eng
        kind = engine or ("native" if _backend.use_native() else "python")
        if is_dsn(path) and kind != "native":
            raise InvalidArgumentError(
                "a PostgreSQL knowledge store needs the Go engine, which is not usable in this process "
                f"({_backend.reason() or 'engine=python'}); there is no pure-Python PostgreSQL engine"
            )
        if kind == "native":
            from crewcore.knowledge.native import NativeEngine

            eng = NativeEngine(path, timeout)
        else:
            from crewcore.knowledge.fallback import PyEngine

            eng = PyEngine(path, timeout, no_fts=os.environ.get("CREWCORE_KNOWLEDGE_NO_FTS5", "") not in ("", "0"))
        _engines[path] = eng
        _pids[path] = os.getpid()
        return eng


class KnowledgeStore:
    """A crewcore knowledge store (see docs/architecture.md, "Knowledge").

    ``path``: a file (``.db``/``.sqlite``/``.sqlite3``), a directory (its
    ``knowledge.db``), or a ``postgresql://`` DSN (``#schema`` optional; Go
    engine only; see pgknowledge/); default ``<CREWAI_STORAGE_DIR or CrewAI's data
    dir>/crewcore/knowledge.db``. ``engine``: "native", "python" or None (the
    process-wide choice, ``crewcore.backend()``).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, engine: str | None = None,
                 timeout: float | None = None) -> None:
        target = resolve_path(path)
        #: The store's file, or its DSN without the password.
        self.path = redact_dsn(target) if is_dsn(target) else target
        self._engine = _open_engine(target, engine, timeout)

    def __repr__(self) -> str:
        return f"KnowledgeStore({self.path!r}, engine={self.engine!r})"

    @property
    def engine(self) -> str:
        """"native" or "python"."""
        return str(self._engine.kind)

    @property
    def keyword_search(self) -> bool:
        """Whether keyword and hybrid search work here (SQLite FTS5)."""
        return bool(self._engine.fts)

    # ------------------------------------------------------------------ writes

    def add(
        self,
        collection: str,
        documents: Sequence[str],
        embed: EmbedFn,
        metadata: Sequence[dict[str, Any] | None] | None = None,
        *,
        batch_size: int = 256,
        progress: ProgressFn | None = None,
    ) -> int:
        """Store ``documents`` (checked first: a bad one refuses the call and
        nothing is stored), embedding only the ones the collection does not
        hold yet, ``batch_size`` per embedding call and per transaction.
        Returns how many chunks were added."""
        v.check_name(collection)
        docs = v.check_documents(documents)
        if batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size}")
        if metadata is not None and len(metadata) != len(docs):
            raise InvalidArgumentError(f"{len(metadata)} metadata for {len(docs)} documents")
        metas = [v.metadata_text(metadata[i] if metadata else None, i) for i in range(len(docs))]
        ids = [v.chunk_id(d, m) for d, m in zip(docs, metas)]
        first: dict[str, int] = {}
        for i, cid in enumerate(ids):
            first.setdefault(cid, i)
        todo = [first[cid] for cid in self._engine.missing(collection, list(first))]
        total = len(todo)
        if progress:
            progress(0, total)
        added = 0
        for done, part in enumerate(v.batched(todo, batch_size)):
            texts = [docs[i] for i in part]
            vectors = embed(texts)
            dim, raw = v.check_vectors(vectors, len(texts))
            added += self._engine.save(collection, [ids[i] for i in part], texts, [metas[i] for i in part], dim, raw)
            if progress:
                progress(min(total, (done + 1) * batch_size), total)
        return added

    def add_embedded(
        self,
        collection: str,
        documents: Sequence[str],
        embeddings: Sequence[Sequence[float]],
        metadata: Sequence[dict[str, Any] | None] | None = None,
    ) -> int:
        """Store documents whose embeddings are already computed (one transaction)."""
        vecs = list(embeddings)
        if len(vecs) != len(documents):
            raise InvalidArgumentError(f"{len(vecs)} embeddings for {len(documents)} documents")
        by_text = dict(zip(documents, vecs))
        return self.add(collection, documents, lambda texts: [by_text[t] for t in texts], metadata,
                        batch_size=max(1, len(documents)))

    def reset(self, collection: str) -> bool:
        """Delete a collection (chunks, dimension, index); True if it existed."""
        return bool(self._engine.reset(v.check_name(collection)))

    def reset_all(self) -> None:
        """Delete every collection of the store."""
        self._engine.reset_all()

    # ------------------------------------------------------------------ reads

    def search(
        self,
        collection: str,
        query: str = "",
        embedding: Sequence[float] | None = None,
        *,
        mode: str = "vector",
        limit: int = 5,
        metadata_filter: dict[str, Any] | None = None,
        score_threshold: float = 0.0,
        rrf_k: int = v.DEFAULT_RRF_K,
    ) -> list[dict[str, Any]]:
        """CrewAI ``SearchResult`` dicts (id, content, metadata, score), best
        first, plus ``vector_score`` / ``keyword_score`` (None when not
        computed). Raises CollectionNotFoundError for an unknown collection."""
        import json

        mode = v.check_mode(mode)
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise InvalidArgumentError(f"limit must be an int, got {limit!r}")
        if limit < 0:
            raise InvalidArgumentError(f"negative limit {limit}")
        thr = float(score_threshold or 0.0)
        if thr != thr:
            raise InvalidArgumentError("score_threshold is NaN")
        if not isinstance(rrf_k, int) or rrf_k < 1:
            raise InvalidArgumentError(f"rrf_k must be an int >= 1, got {rrf_k!r}")
        qvec = None if mode == "keyword" or embedding is None else v.query_vector(embedding)
        if mode != "keyword" and qvec is None:
            raise InvalidArgumentError(f"{mode} search needs a query embedding")
        if not isinstance(query, str):
            raise InvalidArgumentError(f"query must be a string, got {type(query).__name__}")
        rows = self._engine.search(
            v.check_name(collection), mode, query, qvec, limit, v.filter_text(metadata_filter), thr, rrf_k
        )
        out = []
        for cid, content, meta, score, vs, ks in rows:
            out.append({
                "id": cid,
                "content": content,
                "metadata": json.loads(meta) if meta and meta != "{}" else {},
                "score": float(score),
                "vector_score": None if vs < 0 else float(vs),
                "keyword_score": None if ks < 0 else float(ks),
            })
        return out

    def stats(self) -> list[dict[str, Any]]:
        """One dict per collection: name, dim, chunks, indexed, created_at."""
        return [
            {"name": n, "dim": d, "chunks": c, "indexed": bool(i), "created_at": t}
            for n, d, c, i, t in self._engine.stats()
        ]
