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
        return without_value_loop(build_embedder(DEFAULT_EMBEDDER))
    if isinstance(embedder, type) and issubclass(embedder, BaseEmbeddingsProvider):
        return without_value_loop(build_embedder(embedder()))
    if isinstance(embedder, (dict, BaseEmbeddingsProvider)):
        return without_value_loop(build_embedder(embedder))
    if callable(embedder):
        return without_value_loop(embedder)
    raise TypeError(f"cannot build an embedder from {type(embedder).__name__}")


_WRAPPER_MODULE = "crewai.rag.core.base_embeddings_callable"


def _is_crewai_wrapper(f: Any) -> bool:
    return (getattr(f, "__module__", None) == _WRAPPER_MODULE and getattr(f, "__name__", "") == "wrapped_call"
            and "original_call" in getattr(getattr(f, "__code__", None), "co_freevars", ()))


def crewai_original_call(embedder: Any) -> Callable[..., Any] | None:
    """The ``__call__`` of ``embedder``'s class under the wrappers CrewAI's
    ``EmbeddingFunction.__init_subclass__`` puts around it (one per
    subclass level), or None when it is not wrapped that way."""
    f = getattr(type(embedder), "__call__", None)
    if not _is_crewai_wrapper(f):
        return None
    while _is_crewai_wrapper(f):
        cells = dict(zip(f.__code__.co_freevars, f.__closure__ or ()))
        f = cells["original_call"].cell_contents
    return f  # type: ignore[no-any-return]


def without_value_loop(embedder: Any) -> Callable[[list[str]], Sequence[Any]]:
    """``embedder`` with the same checks as CrewAI's wrapper of its
    ``__call__`` minus one loop that cannot fail.

    CrewAI wraps every ``EmbeddingFunction.__call__``: the result is
    normalized (``normalize_embeddings``: a float32 numpy array per
    embedding, or ValueError), then ``validate_embeddings`` checks the list,
    the shapes, and, in Python, that every value of every array is a number:
    after the normalization to float32 that cannot fail, and for one
    1536-dimensional query it costs more than the search (about 1 ms of the
    ~1.3 ms of a query embedding from a lookup table, profiled). Here the
    class's own ``__call__`` runs, then CrewAI's ``normalize_embeddings``,
    then the same list and shape checks with the same ValueError messages.
    An embedder CrewAI did not wrap is returned as it is."""
    original = crewai_original_call(embedder)
    if original is None:
        return embedder  # type: ignore[no-any-return]
    from crewai.rag.core.base_embeddings_callable import normalize_embeddings

    def call(texts: list[str]) -> Sequence[Any]:
        result = original(embedder, texts)
        if result is None:
            raise ValueError("Embedding function returned None")
        out = normalize_embeddings(result)
        if not isinstance(out, list) or not out:
            raise ValueError(f"Expected embeddings to be a list with at least one item, got {out!r}")
        for i, e in enumerate(out):
            if e.ndim == 0:
                raise ValueError(f"Expected a 1-dimensional array, got a 0-dimensional array {e}")
            if e.size == 0:
                raise ValueError(
                    "Expected each embedding to be a 1-dimensional numpy array with at least 1 value. "
                    f"Got an array with no values at position {i}"
                )
        return out

    call.embedder = embedder  # type: ignore[attr-defined]
    return call
