"""Shared embedders: one :class:`Embedder` per distinct configuration per
process, in place of the new embedder CrewAI builds for every ``Crew``,
``Agent`` and ``Memory`` (each a new OpenAI client with its own SSL
context: ~20-50 ms of CPU apiece).

The seam: CrewAI builds embedders with ``build_embedder`` from
``crewai.rag.embeddings.factory``, imported by name into
``crewai.memory.unified_memory`` (``Memory._embedder``, the default
embedder) and looked up in the factory module by ``Crew.create_crew_memory``.
While installed, both names point at :func:`_shared_build`, which serves
calls coming from CrewAI's crew and memory code and from crewcore's
knowledge store, and leaves every other caller (CrewAI's ChromaDB knowledge
storage, user code) to CrewAI's own function. Equal
configurations (the same provider, resolved settings and the environment
variables their client reads) share one embedder; different ones never
mix. ``uninstall`` puts CrewAI's function back.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Callable

from crewcore.embeddings.config import _digest, resolve
from crewcore.embeddings.embedder import EmbeddingOptions, Embedder, close_caches, default_cache_target

_lock = threading.Lock()
_registry: dict[tuple[Any, ...], Embedder] = {}
#: (digest of a dict configuration, of the environment, options, cache) -> its embedder
_by_raw: dict[tuple[Any, ...], Embedder] = {}
_state: dict[str, Any] = {}

#: The modules whose build_embedder calls are served with shared embedders:
#: CrewAI's crew and memory code, and crewcore's knowledge store (whose
#: embedding seam calls build_embedder, crewcore/knowledge/embedder.py).
_SERVED = ("crewai.crew", "crewai.memory.", "crewcore.knowledge.")
#: Where CrewAI's build_embedder is looked up at call time.
_TARGETS = ("crewai.rag.embeddings.factory", "crewai.memory.unified_memory")


def shared_embedder(spec: Any, options: EmbeddingOptions | dict[str, Any] | None = None,
                    cache: str | None = None) -> Any:
    """The shared embedder for a CrewAI embedder configuration ``spec`` (a
    ``{"provider": ..., "config": ...}`` dict or a provider instance).

    Configurations crewcore cannot share (``custom`` callables, values it
    cannot resolve) are built by CrewAI as usual.
    """
    opts = EmbeddingOptions.of(options if options is not None else _state.get("options"))
    original = _state.get("original") or _crewai_build()
    target = cache if cache is not None else _state.get("cache_target")
    return _get(spec, opts, original, target if opts.cache else None)


def _crewai_build() -> Callable[[Any], Any]:
    from crewai.rag.embeddings import factory

    return getattr(factory.build_embedder, "__wrapped__", factory.build_embedder)


#: Prefixes of the environment variables CrewAI's embedding providers and
#: their clients read (EMBEDDINGS_OPENAI_API_KEY, OPENAI_BASE_URL, ...).
_ENV_PREFIXES = ("EMBEDDINGS_", "OPENAI_", "AZURE_", "OPENROUTER_", "CHROMA_", "OLLAMA_", "GOOGLE_", "COHERE_",
                 "VOYAGE", "JINA_", "HF_", "HUGGINGFACE", "WATSONX_", "AWS_", "SSL_CERT", "HTTP_PROXY", "HTTPS_PROXY")


def _env_digest() -> str:
    return _digest(sorted((k, v) for k, v in os.environ.items() if k.upper().startswith(_ENV_PREFIXES)))


def _get(spec: Any, opts: EmbeddingOptions, original: Callable[[Any], Any], target: str | None) -> Any:
    # Fast path: a dict configuration seen before, in the same environment,
    # skips CrewAI's provider validation (~1 ms of pydantic).
    raw = None
    if isinstance(spec, dict):
        try:
            raw = (_digest(spec), _env_digest(), opts, target)
        except (TypeError, ValueError):
            raw = None
        if raw is not None:
            e = _by_raw.get(raw)
            if e is not None:
                return e
    try:
        r = resolve(spec)
    except Exception:  # noqa: BLE001 - CrewAI's own build reports a bad configuration
        return original(spec)
    if r.key is None:
        return original(spec)
    key = (*r.key, opts, target)
    with _lock:
        e = _registry.get(key)
    if e is not None:
        return e
    inner = None
    if r.api is None or not opts.client:
        inner = original(spec)  # CrewAI's own embedding function, built once
    e = Embedder(r, opts, inner=inner, cache_target=target)
    with _lock:
        e = _registry.setdefault(key, e)
        if raw is not None:
            _by_raw[raw] = e
        return e


def _shared_build(spec: Any) -> Any:
    """CrewAI's ``build_embedder`` while installed (see the module doc)."""
    original = _state["original"]
    caller = sys._getframe(1).f_globals.get("__name__", "")
    if not (caller == _SERVED[0] or caller.startswith(_SERVED[1:])):
        return original(spec)
    opts = _state["options"]
    return _get(spec, opts, original, _state["cache_target"] if opts.cache else None)


def install_embeddings(options: Any = True, memory: str | None = None) -> None:
    """Share (and cache) CrewAI's embedders; ``options``: True, a dict or
    :class:`EmbeddingOptions`; ``memory``: where ``install()`` puts memory
    (a path or a DSN), which decides the default cache location."""
    import importlib

    opts = EmbeddingOptions.of(options)
    target = None
    if opts.cache is True:
        target = default_cache_target(memory)
    elif isinstance(opts.cache, str):
        target = opts.cache
    with _lock:
        if "original" not in _state:
            _state["original"] = _crewai_build()
        _state["options"], _state["cache_target"] = opts, target
        _shared_build.__wrapped__ = _state["original"]  # type: ignore[attr-defined]
        for name in _TARGETS:
            mod = importlib.import_module(name)
            if getattr(mod, "build_embedder", None) is not _shared_build:
                _state.setdefault("replaced", {})[name] = mod.build_embedder
                mod.build_embedder = _shared_build  # type: ignore[attr-defined]


def uninstall_embeddings() -> None:
    """Put CrewAI's ``build_embedder`` back; new Crews and Memories build
    their own embedders again (existing ones keep theirs). Caches are
    flushed."""
    with _lock:
        for name, fn in _state.pop("replaced", {}).items():
            mod = sys.modules.get(name)
            if mod is not None and getattr(mod, "build_embedder", None) is _shared_build:
                mod.build_embedder = fn  # type: ignore[attr-defined]
        _state.pop("options", None)
        _state.pop("cache_target", None)
        _state.pop("original", None)
        _registry.clear()
        _by_raw.clear()
    for c in _cache_objects():
        try:
            c.flush()
        except Exception:  # noqa: BLE001 - a flush failure is not the caller's problem
            pass


def _cache_objects() -> list[Any]:
    from crewcore.embeddings import embedder as _emb

    with _emb._caches_lock:
        return list(_emb._caches.values())


def installed() -> bool:
    return "replaced" in _state


def shared_embedders() -> list[Embedder]:
    """The embedders shared in this process (for statistics)."""
    with _lock:
        return list(_registry.values())


def reset() -> None:
    """Forget the shared embedders and close the caches (tests)."""
    with _lock:
        embs = list(_registry.values())
        _registry.clear()
        _by_raw.clear()
    for e in embs:
        e.close()
    close_caches()
