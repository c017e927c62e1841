"""crewcore's embedding layer: shared embedders, crewcore's embedding client
for OpenAI-compatible APIs, and a persistent embedding cache.

    import crewcore
    crewcore.install()                      # embeddings=True is the default
    crewcore.install(embeddings={"cache": "/data/embeddings.db", "rate_limit": 50})
    crewcore.install(embeddings=False)      # CrewAI's own embedders

With ``install()`` every ``Crew(memory=True)``, ``Agent(memory=True)``,
``Memory()`` and ``Flow`` memory of one configuration shares one
:class:`Embedder`. For OpenAI, Azure OpenAI and OpenRouter configurations
(and any OpenAI-compatible server given as ``api_base``: vLLM, Ollama's
``/v1``) it calls the provider through crewcore's Go client (package
``embed``: pooled keep-alive connections, the GIL released while waiting,
concurrent calls batched, retries with backoff honouring ``Retry-After``, a
deadline per call, an optional rate limit) and returns the provider's exact
float32 vectors. Every embedder answers from a content-addressed cache
(provider, endpoint, model, dimensions, text) in ``embeddings.db`` beside
the memory store, or in the memory store's PostgreSQL database, shared by
all processes, bounded with LRU eviction. ``crewcore embeddings stats|clear``
inspects it from the shell; :func:`cache_stats` and :func:`clear_cache` from
Python.

Go package ``embed/`` <-> this subpackage: ``native.py`` (the bridge ops
``embed_*``) beside ``fallback_client.py`` / ``fallback_cache.py`` (the
pure-Python engines, same results, same file); ``config.py`` resolves
CrewAI's configurations; ``embedder.py`` is the embedding function;
``shared.py`` the sharing and the CrewAI seam.
"""

from __future__ import annotations

from typing import Any

from crewcore import _backend
from crewcore.embeddings.embedder import Embedder, EmbeddingOptions, default_cache_target, open_cache
from crewcore.embeddings.shared import (
    install_embeddings,
    installed,
    shared_embedder,
    shared_embedders,
    uninstall_embeddings,
)


def _cache(target: str | None) -> Any:
    from crewcore.embeddings.shared import _state

    t = target or _state.get("cache_target") or default_cache_target()
    return open_cache(t, _state.get("options") or EmbeddingOptions(), _backend.use_native())


def cache_stats(target: str | None = None) -> dict[str, Any]:
    """Statistics of the embedding cache at ``target`` (a path or a DSN;
    default: the installed or default cache): entries, bytes, the bound,
    counters of all processes (hits, misses, calls and tokens saved, API
    calls and tokens spent, evictions) and of this process, and entries
    per namespace. ``off`` says why the cache is off ("" when on)."""
    return _cache(target).stats()


def clear_cache(target: str | None = None, namespace: str = "") -> int:
    """Delete the cached embeddings of ``namespace`` (all, and the counters,
    when ""); returns how many were deleted."""
    return _cache(target).clear(namespace)


def embedding_stats() -> list[dict[str, Any]]:
    """Per shared embedder: provider, namespace, engine, calls, the client's
    counters and its cache's statistics."""
    return [e.stats() for e in shared_embedders()]


__all__ = [
    "Embedder",
    "EmbeddingOptions",
    "cache_stats",
    "clear_cache",
    "default_cache_target",
    "embedding_stats",
    "install_embeddings",
    "installed",
    "shared_embedder",
    "uninstall_embeddings",
]
