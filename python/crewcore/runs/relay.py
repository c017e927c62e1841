"""Stores that cannot cross a fork, for ``kickoff_many(..., processes=N)``.

A worker process is a ``fork()`` of the parent, and some of what a crew
holds does not survive it: CrewAI's default memory store (LanceDB) and its
knowledge store (ChromaDB) run native runtimes whose threads exist only in
the parent, so a worker that touches them dies of SIGSEGV or waits forever;
a crewcore PostgreSQL store needs the Go runtime, which does not survive
fork either. Before forking, :func:`find` lists them in the crew (its
memory, its agents' memories, its and its agents' knowledge). In each worker
:func:`install_child` replaces every one with a relay: an object with the
same methods that sends each call to the parent, which runs it on the real
store (:class:`Server`, on a thread pool) and sends back the result or the
exception. The worker's runs therefore read and write the very store the
crew was built with, and nothing native runs in the worker.

Knowledge is rebuilt by every crew copy (CrewAI's ``Crew.copy()`` builds a
new ``Knowledge`` from ``knowledge_sources``, opening a new ChromaDB client),
so in a worker CrewAI's knowledge storage factory returns a relay too; the
parent opens (once per collection and embedder) the storage CrewAI would
have opened. When crewcore's own knowledge factory is installed, workers
keep it (its store reopens its file after fork).

Left alone: crewcore's file-backed ``MemoryStorage`` (it reopens its file on
the pure-Python engine after fork) and any object whose ``crewcore_fork_safe``
attribute is true.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
import itertools
import pickle
import threading
from typing import Any, Callable

#: Memory storage methods a relay serves (CrewAI's StorageBackend and the
#: optional ones CrewAI looks up with getattr).
MEMORY_METHODS = (
    "save", "search", "delete", "update", "get_record", "list_records", "get_scope_info",
    "list_scopes", "list_categories", "count", "reset", "touch_records", "optimize",
    "asave", "asearch", "adelete",
)
#: Async methods a relay runs as their sync twin in a thread.
_ASYNC = {"asave": "save", "asearch": "search", "adelete": "delete"}
#: Knowledge storage methods (CrewAI's BaseKnowledgeStorage).
KNOWLEDGE_METHODS = ("search", "asearch", "save", "asave", "reset", "areset")


def _fork_safe(obj: Any) -> bool:
    return bool(getattr(obj, "crewcore_fork_safe", False))


class Hazard:
    """One store in the crew that cannot be used in a worker process."""

    __slots__ = ("token", "kind", "obj", "owner", "attr", "methods", "what")

    def __init__(self, token: int, kind: str, obj: Any, owner: Any, attr: str, what: str) -> None:
        self.token = token
        self.kind = kind  # "memory" | "knowledge"
        self.obj = obj
        self.owner = owner  # the object holding it (Memory, Knowledge, Agent)
        self.attr = attr  # the attribute of owner that holds it
        names = MEMORY_METHODS if kind == "memory" else KNOWLEDGE_METHODS
        self.methods = tuple(n for n in names if callable(getattr(obj, n, None)))
        self.what = what

    def __repr__(self) -> str:
        return f"<{self.what}: {type(self.obj).__module__}.{type(self.obj).__qualname__}>"


def _memories(crew: Any) -> list[tuple[Any, str]]:
    """The crew's memories (CrewAI ``Memory`` objects), with a name."""
    out: list[tuple[Any, str]] = []
    cands: list[tuple[Any, str]] = [
        (getattr(crew, "_memory", None), "crew memory"),
        (getattr(crew, "memory", None), "crew memory"),
    ]
    for i, a in enumerate(getattr(crew, "agents", None) or []):
        cands.append((getattr(a, "memory", None), f"memory of agent {i} ({getattr(a, 'role', '?')})"))
    cands.append((getattr(getattr(crew, "manager_agent", None), "memory", None), "memory of the manager agent"))
    seen: set[int] = set()
    for m, what in cands:
        if m is None or isinstance(m, (bool, str)):
            continue
        if not hasattr(m, "_storage") and hasattr(m, "_memory"):  # MemoryScope / MemorySlice
            m = getattr(m, "_memory", None)
        if m is None or not hasattr(m, "_storage") or id(m) in seen:
            continue
        seen.add(id(m))
        out.append((m, what))
    return out


def _knowledges(crew: Any) -> list[tuple[Any, str, str]]:
    """(owner, attribute, name) of every knowledge storage the crew holds."""
    out: list[tuple[Any, str, str]] = []
    k = getattr(crew, "knowledge", None)
    if k is not None and getattr(k, "storage", None) is not None:
        out.append((k, "storage", "crew knowledge"))
    for i, a in enumerate(getattr(crew, "agents", None) or []):
        role = getattr(a, "role", "?")
        k = getattr(a, "knowledge", None)
        if k is not None and getattr(k, "storage", None) is not None:
            out.append((k, "storage", f"knowledge of agent {i} ({role})"))
        if getattr(a, "knowledge_storage", None) is not None:
            out.append((a, "knowledge_storage", f"knowledge storage of agent {i} ({role})"))
    return out


def find(crew: Any) -> list[Hazard]:
    """Every memory or knowledge store of ``crew`` a worker process must not
    use itself (all but crewcore's file-backed stores)."""
    found: list[Hazard] = []
    seen: dict[int, int] = {}
    n = itertools.count(1)
    for m, what in _memories(crew):
        st = getattr(m, "_storage", None)
        if st is None or _fork_safe(st):
            continue
        tok = seen.setdefault(id(st), next(n))
        found.append(Hazard(tok, "memory", st, m, "_storage", what))
    for owner, attr, what in _knowledges(crew):
        st = getattr(owner, attr)
        if _fork_safe(st):
            continue
        tok = seen.setdefault(id(st), next(n))
        found.append(Hazard(tok, "knowledge", st, owner, attr, what))
    return found


def check(crew: Any) -> None:
    """Refuse at once, before forking, what a worker could not relay: the
    embedder a crew copy would build knowledge with must pickle (the parent
    opens the knowledge storage with it)."""
    from crewcore.errors import InvalidArgumentError

    if not uses_knowledge(crew):
        return
    embedders = [("the crew's embedder", getattr(crew, "embedder", None))] + [
        (f"the embedder of agent {i}", getattr(a, "embedder", None))
        for i, a in enumerate(getattr(crew, "agents", None) or [])
    ]
    for what, emb in embedders:
        try:
            pickle.dumps(emb)
        except Exception as e:  # noqa: BLE001 - any failure to pickle
            raise InvalidArgumentError(
                f"kickoff_many(processes=...): the crew uses Knowledge, whose store (ChromaDB by default) does "
                f"not survive fork, so worker processes have the parent run it; {what} cannot be sent to the "
                f"parent ({type(e).__name__}: {e}). Give it as a config dict (e.g. "
                "{'provider': 'openai', 'config': {...}}) or a picklable object, or run with threads "
                "(kickoff_many without processes=)."
            ) from None


def uses_knowledge(crew: Any) -> bool:
    """Whether crew copies build ``Knowledge`` (and so knowledge storages)."""
    if getattr(crew, "knowledge_sources", None):
        return True
    return any(getattr(a, "knowledge_sources", None) for a in getattr(crew, "agents", None) or [])


# --------------------------------------------------------------------------
# the parent


class Server:
    """The parent's side: runs the calls workers relay to the real stores.

    ``handle(msg, reply)`` is called by the reader thread of a worker with
    a ``("call", cid, target, method, args, kwargs)`` message; the call runs
    on a pool thread and ``reply(("reply", cid, ok, blob))`` sends its
    pickled result or exception back.
    """

    def __init__(self, hazards: list[Hazard]) -> None:
        self._targets: dict[Any, Any] = {h.token: h.obj for h in hazards}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False

    def handle(self, msg: tuple[Any, ...], reply: Callable[[tuple[Any, ...]], None]) -> None:
        with self._lock:
            if self._closed:
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="crewcore-relay")
            self._pool.submit(self._run, msg, reply)

    def _target(self, target: Any) -> Any:
        if isinstance(target, tuple) and target[0] == "knowledge-factory":
            # A Knowledge a worker's crew copy built: open (once) the storage
            # CrewAI would have opened for that embedder and collection here.
            with self._lock:
                st = self._targets.get(target)
                if st is None:
                    embedder = pickle.loads(target[2])
                    st = self._targets[target] = _knowledge_storage(embedder, target[1])
            return st
        return self._targets[target]

    def _run(self, msg: tuple[Any, ...], reply: Callable[[tuple[Any, ...]], None]) -> None:
        _, cid, target, method, args, kwargs = msg
        try:
            fn = getattr(self._target(target), method)
            value = fn(*args, **kwargs)
            if asyncio.iscoroutine(value):
                value = asyncio.run(value)
            ok = True
        except BaseException as e:  # noqa: BLE001 - the worker's caller gets it
            ok, value = False, e
        try:
            blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:  # noqa: BLE001 - a result that does not pickle
            ok, blob = False, pickle.dumps(
                RuntimeError(f"crewcore: the result of {method} on the parent's store could not be sent "
                             f"to the worker process ({type(e).__name__}: {e})"))
        try:
            reply(("reply", cid, ok, blob))
        except OSError:
            pass  # the worker is gone

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _knowledge_storage(embedder: Any, collection_name: str | None) -> Any:
    """The knowledge storage CrewAI's ``Knowledge`` builds (its factory's, or
    ``KnowledgeStorage``)."""
    from crewai.knowledge.storage.factory import resolve_knowledge_storage

    custom = resolve_knowledge_storage(embedder, collection_name)
    if custom is not None:
        return custom
    from crewai.knowledge.storage.knowledge_storage import KnowledgeStorage

    return KnowledgeStorage(embedder=embedder, collection_name=collection_name)


# --------------------------------------------------------------------------
# a worker


class Client:
    """A worker's side: sends calls to the parent and waits for replies.

    ``send(msg)`` writes a message to the parent; the worker's main loop
    passes every ``("reply", ...)`` message to :meth:`deliver`.
    """

    def __init__(self, send: Callable[[tuple[Any, ...]], None]) -> None:
        self._send = send
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._waiting: dict[int, list[Any]] = {}
        self.keep: list[Any] = []  # the replaced stores: never freed in a worker

    def call(self, target: Any, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        cid = next(self._ids)
        slot: list[Any] = [threading.Event(), False, None]
        with self._lock:
            self._waiting[cid] = slot
        try:
            self._send(("call", cid, target, method, args, kwargs))
            # Short waits: a stop exception raised in this thread (a run's
            # timeout) lands between them.
            while not slot[0].wait(0.1):
                pass
        finally:
            with self._lock:
                self._waiting.pop(cid, None)
        value = pickle.loads(slot[2])
        if not slot[1]:
            raise value
        return value

    def deliver(self, msg: tuple[Any, ...]) -> None:
        _, cid, ok, blob = msg
        with self._lock:
            slot = self._waiting.get(cid)
        if slot is not None:
            slot[1], slot[2] = ok, blob
            slot[0].set()


class MemoryRelay:
    """Stands in for a memory storage in a worker: each call runs in the parent."""

    crewcore_fork_safe = True

    def __init__(self, client: Client, token: Any, methods: tuple[str, ...], name: str) -> None:
        self._client = client
        self._token = token
        self._methods = frozenset(methods)
        self._name = name

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self._methods:
            raise AttributeError(name)
        sync = _ASYNC.get(name)
        if sync is not None:

            async def relay_async(*args: Any, **kwargs: Any) -> Any:
                return await asyncio.to_thread(self._client.call, self._token, sync, args, kwargs)

            return relay_async

        def relay(*args: Any, **kwargs: Any) -> Any:
            return self._client.call(self._token, name, args, kwargs)

        return relay

    def close(self) -> None:
        """Nothing: the store is the parent's (it closes it)."""

    def __repr__(self) -> str:
        return f"<crewcore relay to the parent's {self._name}>"


def _knowledge_relay_class() -> type:
    from crewai.knowledge.storage.base_knowledge_storage import BaseKnowledgeStorage
    from pydantic import PrivateAttr

    class KnowledgeRelay(BaseKnowledgeStorage):
        """Stands in for a knowledge storage in a worker: each call runs in
        the parent (a CrewAI ``BaseKnowledgeStorage``)."""

        crewcore_fork_safe: bool = True
        _client: Any = PrivateAttr(default=None)
        _token: Any = PrivateAttr(default=None)

        def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
            return self._client.call(self._token, method, args, kwargs)

        def search(self, query: list[str], limit: int = 5, metadata_filter: dict[str, Any] | None = None,
                   score_threshold: float = 0.6) -> Any:
            return self._call("search", query, limit=limit, metadata_filter=metadata_filter,
                              score_threshold=score_threshold)

        async def asearch(self, query: list[str], limit: int = 5, metadata_filter: dict[str, Any] | None = None,
                          score_threshold: float = 0.6) -> Any:
            return await asyncio.to_thread(self.search, query, limit, metadata_filter, score_threshold)

        def save(self, documents: list[str]) -> None:
            self._call("save", documents)

        async def asave(self, documents: list[str]) -> None:
            await asyncio.to_thread(self.save, documents)

        def reset(self) -> None:
            self._call("reset")

        async def areset(self) -> None:
            await asyncio.to_thread(self.reset)

    return KnowledgeRelay


def install_child(hazards: list[Hazard], client: Client, knowledge: bool) -> None:
    """In a worker: put a relay in place of every hazard, and (when crew
    copies build knowledge) make CrewAI's knowledge factory return relays."""
    kr: type | None = None
    for h in hazards:
        client.keep.append(h.obj)  # dropping the last reference would run native code
        if h.kind == "memory":
            relay: Any = MemoryRelay(client, h.token, h.methods, h.what)
        else:
            kr = kr or _knowledge_relay_class()
            relay = kr()
            relay._client, relay._token = client, h.token
        setattr(h.owner, h.attr, relay)
    if knowledge:
        from crewai.knowledge.storage import factory

        if getattr(getattr(factory, "_factory", None), "crewcore", False):
            return  # crewcore's knowledge store: it reopens its file after fork itself
        kr = kr or _knowledge_relay_class()
        cls = kr

        def relay_factory(embedder: Any, collection_name: str | None) -> Any:
            r = cls()
            r._client = client
            r._token = ("knowledge-factory", collection_name, pickle.dumps(embedder))
            return r

        factory.set_knowledge_storage_factory(relay_factory)
