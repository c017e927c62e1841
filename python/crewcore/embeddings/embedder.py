"""``Embedder``: one shared, cached embedding function per configuration.

An Embedder is what CrewAI's ``Memory`` calls (``embedder(texts)``, a list
of float32 arrays back, as chromadb's ``OpenAIEmbeddingFunction`` returns).
It answers from the cache first (one lookup that keeps the GIL), then sends
the misses to the provider: through crewcore's client for OpenAI-compatible
configurations (the GIL released while Go waits; concurrent calls batched),
or through CrewAI's own embedding function for the others, and stores what
came back. The engines (native or pure Python) are chosen once through
``crewcore._backend.use_native()``; a child forked after the library loaded
switches to the pure-Python engines on its first call.
"""

from __future__ import annotations

import atexit
from dataclasses import dataclass, fields
import os
from pathlib import Path
import threading
import warnings
from typing import Any, Callable

from crewcore import _backend
from crewcore.embeddings.config import ApiConfig, Resolved
from crewcore.errors import InvalidArgumentError

_DB_SUFFIXES = (".db", ".sqlite", ".sqlite3")


@dataclass(frozen=True)
class EmbeddingOptions:
    """Options of ``crewcore.install(embeddings=...)`` (a dict of these keys works too).

    ``cache``: True (the default location: beside the memory store, or in its
    PostgreSQL database when memory is on PostgreSQL), False (no cache), or a
    file path / ``postgresql://`` DSN (``#schema`` selects the schema).
    ``max_bytes`` bounds the persistent cache (LRU eviction), ``memory_bytes``
    the in-process LRU. ``client``: serve OpenAI-compatible providers with
    crewcore's client (False: CrewAI's own client, still shared and cached).
    ``timeout`` is each call's deadline in seconds, retries included, and
    ``attempt_timeout`` one HTTP attempt's (a hung connection is retried);
    ``max_retries``, ``max_in_flight`` (concurrent API calls; more callers
    are batched), ``max_batch`` (inputs per API call) and ``rate_limit``
    (API calls per second, None: none) tune the client.
    """

    cache: bool | str = True
    max_bytes: int = 1 << 30
    memory_bytes: int = 64 << 20
    client: bool = True
    timeout: float = 60.0
    attempt_timeout: float = 30.0
    max_retries: int = 4
    max_in_flight: int = 4
    max_batch: int = 2048
    rate_limit: float | None = None

    @classmethod
    def of(cls, value: Any) -> EmbeddingOptions:
        """Options from True, a dict or an EmbeddingOptions; bad values raise InvalidArgumentError."""
        if value is True or value is None:
            return cls()
        if isinstance(value, cls):
            opts = value
        elif isinstance(value, dict):
            known = {f.name for f in fields(cls)}
            bad = sorted(set(value) - known)
            if bad:
                raise InvalidArgumentError(f"embeddings: unknown option(s) {bad}; known: {sorted(known)}")
            opts = cls(**value)
        else:
            raise InvalidArgumentError(f"embeddings must be True, False, a dict or EmbeddingOptions, got {value!r}")
        opts.check()
        return opts

    def check(self) -> None:
        def num(name: str, v: Any, lo: float, integer: bool = True) -> None:
            ok = isinstance(v, int) if integer else isinstance(v, (int, float))
            if isinstance(v, bool) or not ok or v != v or v < lo:
                raise InvalidArgumentError(f"embeddings: {name} must be a number >= {lo}, got {v!r}")

        if not isinstance(self.cache, (bool, str)) or self.cache == "":
            raise InvalidArgumentError(f"embeddings: cache must be True, False, a path or a DSN, got {self.cache!r}")
        num("max_bytes", self.max_bytes, 1)
        num("memory_bytes", self.memory_bytes, 0)
        num("timeout", self.timeout, 0.001, integer=False)
        num("attempt_timeout", self.attempt_timeout, 0.001, integer=False)
        num("max_retries", self.max_retries, 0)
        num("max_in_flight", self.max_in_flight, 1)
        num("max_batch", self.max_batch, 1)
        if self.rate_limit is not None:
            num("rate_limit", self.rate_limit, 0.001, integer=False)
        if not isinstance(self.client, bool):
            raise InvalidArgumentError(f"embeddings: client must be True or False, got {self.client!r}")

    def client_options(self) -> dict[str, Any]:
        return {"timeout_s": float(self.timeout), "attempt_timeout_s": float(self.attempt_timeout),
                "max_retries": int(self.max_retries) or -1,
                "max_in_flight": int(self.max_in_flight), "max_batch": int(self.max_batch),
                "rate_limit": float(self.rate_limit or 0.0)}


def default_cache_target(memory: str | None = None) -> str:
    """Where the cache goes: ``CREWCORE_EMBED_CACHE`` if set; else the
    memory store's PostgreSQL database (a DSN given as ``memory``); else
    ``embeddings.db`` beside the memory store file (``memory`` a path),
    by default ``<CREWAI_STORAGE_DIR or CrewAI's data dir>/crewcore/``."""
    env = os.environ.get("CREWCORE_EMBED_CACHE")
    if env:
        return env
    if memory and memory.startswith(("postgres://", "postgresql://")):
        return memory
    if memory:
        p = Path(memory)
        if p.suffix in _DB_SUFFIXES or p.is_file():
            return str(p.parent / "embeddings.db")
        return str(p / "embeddings.db")
    base = os.environ.get("CREWAI_STORAGE_DIR")
    if not base:
        from crewai_core.paths import db_storage_path

        base = db_storage_path()
    return str(Path(base) / "crewcore" / "embeddings.db")


_np: Any = None


def _numpy() -> Any:
    global _np
    if _np is None:
        import numpy

        _np = numpy
    return _np


def _split_target(target: str) -> tuple[str, str]:
    """(path or DSN, schema): a DSN may end in ``#schema``."""
    if target.startswith(("postgres://", "postgresql://")) and "#" in target:
        dsn, _, schema = target.rpartition("#")
        return dsn, schema
    return target, ""


# --------------------------------------------------------------------------
# caches: one per target per process and engine


_caches: dict[tuple[str, str], Any] = {}
_caches_lock = threading.Lock()
_warned: set[str] = set()


def warn_once(key: str, message: str) -> None:
    with _caches_lock:
        if key in _warned:
            return
        _warned.add(key)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def open_cache(target: str, opts: EmbeddingOptions, native: bool) -> Any:
    """The process's cache on ``target`` for this engine (opened once)."""
    engine = "native" if native else "python"
    key = (engine, target)
    with _caches_lock:
        c = _caches.get(key)
        if c is not None:
            return c
        other = _caches.get(("python" if native else "native", target))
        if other is not None and other.engine == "native" and _backend.forked():
            # The parent's native cache, inherited by fork: the Go runtime
            # (and its SQLite) never runs in this child, so the Python engine
            # is the only one here (its locks are this process's own).
            other = None
    if other is not None and other.off == "":
        # Two SQLite libraries must never open one file in one process.
        raise InvalidArgumentError(f"embedding cache {target} is open with the {other.engine} engine in this "
                                   f"process; the {engine} engine cannot open it too")
    where, schema = _split_target(target)
    if native:
        from crewcore.embeddings.native import NativeCache

        c = NativeCache(where, schema, opts.max_bytes, opts.memory_bytes)
    else:
        from crewcore.embeddings.fallback_cache import PyCache

        c = PyCache(where, schema, opts.max_bytes, opts.memory_bytes)
    if c.off:
        warn_once("cache:" + target, f"crewcore: embeddings work without the cache: {c.off}")
    with _caches_lock:
        got = _caches.setdefault(key, c)
    if got is not c:
        c.close()
    return got


def close_caches() -> None:
    """Flush and close every cache this process opened (also at exit)."""
    with _caches_lock:
        caches = list(_caches.values())
        _caches.clear()
    for c in caches:
        try:
            if c.engine == "native" and _backend.forked():
                continue  # the Go runtime is gone in this child
            c.close()
        except Exception:  # noqa: BLE001 - exit path: nothing to report to
            pass


atexit.register(close_caches)


# --------------------------------------------------------------------------
# the embedder


class Embedder:
    """A shared embedding function: ``embedder(texts) -> list[numpy.ndarray]``.

    Built by crewcore for each distinct CrewAI embedder configuration while
    ``crewcore.install()`` is active (see :func:`crewcore.embeddings.shared_embedder`).
    Thread-safe; copies are the same object.
    """

    def __init__(self, resolved: Resolved, opts: EmbeddingOptions, *, inner: Callable[..., Any] | None = None,
                 cache_target: str | None = None) -> None:
        if resolved.api is None and inner is None:
            raise InvalidArgumentError("an Embedder needs an OpenAI-compatible configuration or an inner embedder")
        self.resolved, self.opts, self.inner = resolved, opts, inner
        self.api: ApiConfig | None = resolved.api if opts.client else None
        self.namespace = resolved.namespace
        self.cache_target = cache_target
        self._lock = threading.Lock()
        self._native: bool | None = None
        self._client: Any = None
        self._cache: Any = None
        self.calls = 0

    # CrewAI copies Memory objects (and their embedder) with deepcopy: share.
    def __copy__(self) -> Embedder:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Embedder:
        return self

    def __repr__(self) -> str:
        return (f"crewcore.Embedder({self.resolved.provider!r}, namespace={self.namespace!r}, "
                f"engine={'?' if self._native is None else ('native' if self._native else 'python')}, "
                f"cache={self.cache_target!r})")

    @staticmethod
    def name() -> str:
        return "crewcore"

    def _engines(self) -> tuple[Any, Any]:
        native = self._native
        if native is None or (native and _backend.forked()):
            with self._lock:
                if self._native is None or (self._native and _backend.forked()):
                    self._open(_backend.use_native())
                native = self._native
        return self._client, self._cache

    def _open(self, native: bool) -> None:
        cache = None
        if self.cache_target and self.namespace:
            try:
                cache = open_cache(self.cache_target, self.opts, native)
            except InvalidArgumentError as e:
                warn_once("cache-engine:" + self.cache_target, f"crewcore: embeddings work without the cache: {e}")
        client = None
        if self.api is not None:
            if native:
                from crewcore.embeddings.native import NativeClient

                client = NativeClient(self.api, **self.opts.client_options())
            else:
                from crewcore.embeddings.fallback_client import PyClient

                o = self.opts
                client = PyClient(self.api, timeout=o.timeout, attempt_timeout=o.attempt_timeout,
                                  max_retries=o.max_retries,
                                  max_in_flight=o.max_in_flight, max_batch=o.max_batch, rate_limit=o.rate_limit)
        self._client, self._cache, self._native = client, cache, native

    @property
    def engine(self) -> str:
        """"native" or "python" (opens the engines if not yet)."""
        self._engines()
        return "native" if self._native else "python"

    def __call__(self, input: list[str]) -> list[Any]:  # noqa: A002 - chromadb's parameter name
        texts = input if type(input) is list else list(input)
        if not texts:
            return []
        if not all(type(t) is str for t in texts):
            for i, t in enumerate(texts):
                if not isinstance(t, str):
                    raise InvalidArgumentError(f"embeddings: text {i} is a {type(t).__name__}, not a str")
        try:
            return self._embed(texts)
        except UnicodeEncodeError as e:
            raise InvalidArgumentError(f"embeddings: a text is not valid UTF-8 ({e.reason} at position "
                                       f"{e.start})") from None

    def _embed(self, texts: list[str]) -> list[Any]:
        np = _numpy()
        if self._native is None or (self._native and _backend.forked()):
            self._engines()
        client, cache = self._client, self._cache
        self.calls += 1
        n = len(texts)
        hit_mask, hit_raw, dim = b"", b"", 0
        if cache is not None and not cache.off:
            dim, hit_mask, hit_raw, warn = cache.get(self.namespace, texts)
            if warn:
                warn_once("cache:" + str(self.cache_target), f"crewcore: embeddings work without the cache: {warn}")
            if hit_mask and b"\x00" not in hit_mask:  # every text was cached: the hot path
                return list(np.frombuffer(hit_raw, dtype="<f4").reshape(n, dim).copy())
        missing = [t for t, m in zip(texts, hit_mask or bytes(n)) if not m]
        fresh = self._embed_missing(client, cache, missing)
        fdim = int(fresh.shape[1])
        if hit_raw and fdim != dim:
            # The cache holds another length for this namespace: trust the provider.
            fresh = self._embed_missing(client, None, texts)
            return list(fresh)
        if not hit_raw:
            return list(fresh)
        out = np.empty((n, fdim), dtype=np.float32)
        mask = np.frombuffer(hit_mask, dtype=np.uint8).astype(bool)
        out[mask] = np.frombuffer(hit_raw, dtype="<f4").reshape(-1, dim)
        out[~mask] = fresh
        return list(out)

    def _embed_missing(self, client: Any, cache: Any, texts: list[str]) -> Any:
        """The misses' vectors as one (n, dim) float32 array; stored in the cache."""
        import numpy as np

        live = cache if cache is not None and not cache.off else None
        if client is not None:
            if client.engine == "native":
                dim, n, raw, _tokens = client.fill(live.h if live is not None else 0, self.namespace, texts,
                                                   self.opts.timeout)
                return np.frombuffer(raw, dtype="<f4").reshape(n, dim).copy()
            vectors, tokens = client.embed(texts, self.opts.timeout)
            arr = np.vstack(vectors).astype(np.float32, copy=False)
        else:
            assert self.inner is not None
            result = self.inner(texts)
            arr = np.vstack([np.asarray(v, dtype=np.float32).reshape(-1) for v in result])
            tokens = []
            if arr.shape[0] != len(texts):
                from crewcore.errors import EmbeddingResponseError

                raise EmbeddingResponseError(f"embeddings {self.resolved.provider}: {arr.shape[0]} vectors for "
                                             f"{len(texts)} texts")
        if live is not None and np.isfinite(arr).all():
            warn = live.put(self.namespace, texts, int(arr.shape[1]), arr.astype("<f4").tobytes(), list(tokens))
            if warn:
                warn_once("cache:" + str(self.cache_target), f"crewcore: embeddings work without the cache: {warn}")
        return arr

    def stats(self) -> dict[str, Any]:
        """Calls, the client's counters and the cache's statistics."""
        client, cache = self._engines()
        return {"provider": self.resolved.provider, "namespace": self.namespace, "engine": self.engine,
                "calls": self.calls, "client": client.stats() if client is not None else None,
                "cache": cache.stats() if cache is not None else None}

    def close(self) -> None:
        """Close the client (the cache is the process's; see close_caches)."""
        with self._lock:
            c, self._client, self._native = self._client, None, None
        if c is not None and not (c.engine == "native" and _backend.forked()):
            c.close()
