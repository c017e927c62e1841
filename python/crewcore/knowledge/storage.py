"""``CrewcoreKnowledgeStorage``: CrewAI's ``BaseKnowledgeStorage`` on a
crewcore knowledge store, in place of ChromaDB.

It names collections as CrewAI's ``KnowledgeStorage`` does
(``knowledge_<collection_name>``, or ``knowledge``), embeds with the embedder
CrewAI hands it (:mod:`crewcore.knowledge.embedder`), ids chunks by the
SHA-256 of their text as CrewAI does for ChromaDB (so re-adding a source
stores and embeds nothing twice), and returns CrewAI ``SearchResult`` dicts
whose vector scores are ChromaDB's (0.5 + 0.5*cosine), so CrewAI's default
``score_threshold`` of 0.6 keeps what it keeps with ChromaDB.

Errors: bad arguments, a wrong embedding dimension and keyword search
without FTS5 raise crewcore's typed errors; a search of a collection that
was never saved to returns []; other failures of a search (the embedder's
HTTP errors, say) are logged and return [], as CrewAI's ``KnowledgeStorage``
does, so a failing embedder does not stop a crew.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from crewai.knowledge.storage.base_knowledge_storage import BaseKnowledgeStorage
from pydantic import Field, PrivateAttr

from crewcore.errors import (
    CollectionNotFoundError,
    InvalidArgumentError,
    KeywordSearchUnavailableError,
    KnowledgeDimensionError,
)
from crewcore.knowledge import validate as v
from crewcore.knowledge.embedder import resolve_embedder
from crewcore.knowledge.store import KnowledgeStore

log = logging.getLogger("crewcore.knowledge")

_RAISED = (InvalidArgumentError, KnowledgeDimensionError, KeywordSearchUnavailableError)


class CrewcoreKnowledgeStorage(BaseKnowledgeStorage):
    """A CrewAI knowledge storage backed by crewcore (see the module doc).

    ``mode``: "vector" (default), "keyword" or "hybrid"; ``search(...,
    mode=...)`` overrides it per call. ``path``: the store file or
    directory (default ``<storage dir>/crewcore/knowledge.db``).
    """

    collection_name: str | None = None
    embedder: Any = Field(default=None, exclude=True)
    path: str | None = Field(default=None, repr=False)  # may hold a DSN password
    mode: str = "vector"
    rrf_k: int = v.DEFAULT_RRF_K
    batch_size: int = 256
    engine: str | None = None

    _store: KnowledgeStore | None = PrivateAttr(default=None)
    _embed: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)
    #: progress callback (done, total) of save(); the ingest CLI sets it
    _progress: Any = PrivateAttr(default=None)

    def model_post_init(self, __context: Any) -> None:
        v.check_mode(self.mode)
        if self.rrf_k < 1:
            raise InvalidArgumentError(f"rrf_k must be >= 1, got {self.rrf_k}")
        if self.batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def collection(self) -> str:
        """The store collection: ``knowledge_<collection_name>`` or ``knowledge``."""
        return f"knowledge_{self.collection_name}" if self.collection_name else "knowledge"

    @property
    def store(self) -> KnowledgeStore:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = KnowledgeStore(self.path, engine=self.engine)
        return self._store

    def _embedder(self) -> Any:
        if self._embed is None:
            with self._lock:
                if self._embed is None:
                    self._embed = resolve_embedder(self.embedder)
        return self._embed

    # ---------------------------------------------------------------- CrewAI's API

    def save(self, documents: list[str]) -> None:
        """Store documents (chunks): checked, deduplicated by content hash,
        embedded in batches of ``batch_size``, one transaction per batch."""
        if not documents:
            return
        self.add(documents, progress=self._progress)

    def add(self, documents: list[str], metadata: list[dict[str, Any] | None] | None = None,
            progress: Any = None) -> int:
        """``save`` with per-document metadata and a progress callback
        ``(done, total)``; returns how many chunks were added."""
        docs = v.check_documents(documents)
        return self.store.add(self.collection, docs, self._embedder(), metadata,
                              batch_size=self.batch_size, progress=progress)

    def search(
        self,
        query: list[str],
        limit: int = 5,
        metadata_filter: dict[str, Any] | None = None,
        score_threshold: float = 0.6,
        mode: str | None = None,
    ) -> list[Any]:
        """CrewAI's search (queries joined by a space, as CrewAI does) in this
        storage's ``mode`` or the given one."""
        mode = v.check_mode(mode or self.mode)
        if isinstance(query, str):
            query = [query]
        if not query or not all(isinstance(q, str) for q in query):
            raise InvalidArgumentError(f"query must be a non-empty list of strings, got {query!r}")
        text = " ".join(query) if len(query) > 1 else query[0]
        try:
            embedding = None
            if mode != "keyword":
                embedding = self._embedder()([text])[0]
            return self.store.search(
                self.collection, text, embedding, mode=mode, limit=limit, metadata_filter=metadata_filter,
                score_threshold=score_threshold, rrf_k=self.rrf_k,
            )
        except CollectionNotFoundError:
            return []
        except _RAISED:
            raise
        except Exception as e:  # noqa: BLE001 - CrewAI's KnowledgeStorage logs and answers []
            log.error("crewcore knowledge search of %s failed: %s: %s", self.collection, type(e).__name__, e)
            return []

    def reset(self) -> None:
        """Delete this storage's collection (chunks, dimension, keyword index)."""
        self.store.reset(self.collection)

    async def asearch(
        self,
        query: list[str],
        limit: int = 5,
        metadata_filter: dict[str, Any] | None = None,
        score_threshold: float = 0.6,
        mode: str | None = None,
    ) -> list[Any]:
        return await asyncio.to_thread(self.search, query, limit, metadata_filter, score_threshold, mode)

    async def asave(self, documents: list[str]) -> None:
        await asyncio.to_thread(self.save, documents)

    async def areset(self) -> None:
        await asyncio.to_thread(self.reset)
