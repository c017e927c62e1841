"""The embedding seam of the knowledge store: one function that turns the
embedder CrewAI hands a knowledge storage into ``texts -> vectors``.

Today it builds CrewAI's own embedding function (``build_embedder``), as
CrewAI's ``KnowledgeStorage`` does, so a knowledge store embeds exactly what
ChromaDB would have. crewcore's shared embedding layer (issue 13: Go client,
shared embedders per config, persistent cache) will replace the body of
:func:`resolve_embedder` once it lands; nothing else in this package builds
an embedder.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

#: What CrewAI's default RAG client embeds with when a Knowledge has no
#: embedder (crewai.rag.chromadb.config._default_embedding_function).
DEFAULT_EMBEDDER: dict[str, Any] = {"provider": "openai", "config": {"model_name": "text-embedding-3-small"}}


def resolve_embedder(embedder: Any) -> Callable[[list[str]], Sequence[Any]]:
    """``texts -> vectors`` for a CrewAI embedder config: None (CrewAI's
    default, OpenAI text-embedding-3-small), a provider spec dict, a
    provider instance or class, or any callable ``list[str] -> vectors``."""
    from crewai.rag.core.base_embeddings_provider import BaseEmbeddingsProvider
    from crewai.rag.embeddings.factory import build_embedder

    if embedder is None:
        return build_embedder(DEFAULT_EMBEDDER)  # type: ignore[no-any-return]
    if isinstance(embedder, type) and issubclass(embedder, BaseEmbeddingsProvider):
        return build_embedder(embedder())  # type: ignore[no-any-return]
    if isinstance(embedder, (dict, BaseEmbeddingsProvider)):
        return build_embedder(embedder)  # type: ignore[no-any-return]
    if callable(embedder):
        return embedder  # type: ignore[no-any-return]
    raise TypeError(f"cannot build an embedder from {type(embedder).__name__}")
