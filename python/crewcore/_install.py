"""``crewcore.install()``: route CrewAI's seams through crewcore."""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_installed: dict[str, Any] = {}

#: CrewAI's built-in specs that crewcore never takes over.
_FOREIGN_SPECS = frozenset({"qdrant-edge"})


def _memory_factory(replace_default: bool, target: str | None = None) -> Any:
    def factory(spec: str) -> Any:
        from crewcore.memory import MemoryStorage

        if spec == "crewcore":
            return MemoryStorage(target)
        if spec.startswith("crewcore:"):
            return MemoryStorage(spec[len("crewcore:"):] or None)
        if not replace_default or spec in _FOREIGN_SPECS:
            return None
        if spec == "lancedb":
            return MemoryStorage(target)
        return MemoryStorage(spec)  # a bare path, as LanceDB would take it

    factory.crewcore = True  # type: ignore[attr-defined]
    return factory


def install(
    replace_default_memory: bool = True,
    memory: str | None = None,
    *,
    locks: bool = True,
    task_outputs: bool = True,
    flows: bool = True,
    embeddings: Any = True,
    llm_clients: bool = True,
    lean_runs: bool = True,
    tools: Any = None,
    knowledge: Any = True,
    import_existing: bool = False,
) -> None:
    """Route CrewAI memory storage to crewcore.

    The storage specs ``"crewcore"`` and ``"crewcore:<path>"`` always map to
    crewcore. With ``replace_default_memory`` (the default), ``"lancedb"`` (the
    default of every ``Memory``) and bare paths do too. Calling it again
    replaces the previous settings; ``uninstall()`` restores CrewAI's defaults.
    An explicit ``Memory(storage=obj)`` always wins, as in CrewAI.

    ``tools`` takes a :class:`crewcore.ToolPolicy` applied to every tool call
    of every agent (deadlines, budgets, loop detection, cache; see
    crewcore/tools/); it is validated before anything is installed, and
    None (the default) removes a policy installed before.

    ``locks``, ``task_outputs`` and ``flows`` (default on) route every CrewAI
    lock (``set_lock_backend``), the kickoff task outputs of every Crew
    (``TaskOutputStorageHandler``) and the default flow persistence
    (``set_flow_persistence_factory``) through crewcore's storage layer;
    pass False to leave that seam to CrewAI.

    ``knowledge`` (default True) stores every CrewAI ``Knowledge`` (crew and
    agent knowledge sources) in crewcore's knowledge store instead of
    ChromaDB: True, False, a store path, or a dict with ``path``, ``mode``
    ("vector", "keyword", "hybrid") and ``modes`` ({collection_name: mode}).

    ``embeddings`` (default True) shares one embedder per embedder
    configuration in the process instead of one per Crew/Agent/Memory, serves
    OpenAI-compatible providers with crewcore's client and caches vectors in
    a persistent content-addressed cache (beside the memory store, or in its
    PostgreSQL database): True, False, or a dict of
    :class:`crewcore.embeddings.EmbeddingOptions` (``cache``, ``max_bytes``,
    ``client``, ``timeout``, ``rate_limit``, ...), validated first.

    ``llm_clients`` (default True) gives CrewAI's OpenAI LLMs one shared
    HTTP client per process (and one SSL context) instead of two new clients
    per ``LLM`` (see crewcore/llm/).

    ``lean_runs`` (default True) removes work CrewAI repeats on every run
    with the same result (a new pydantic class per agent executor,
    parametrized pydantic generics rebuilt in every copied context),
    through CrewAI's default-state hook (see crewcore/runs/lean.py).

    ``memory`` names where ``"crewcore"`` and the default go: a store path,
    or a ``postgresql://`` DSN to share one PostgreSQL + pgvector store
    between processes and machines (``install(memory="postgresql://...")``).

    Existing LanceDB memories (crewcore/memory/lancedb_import.py): when
    CrewAI's default LanceDB memory holds records and the crewcore store that
    now replaces it is empty, install() warns once per process
    (``crewcore.LanceDBMemoryWarning``, naming both paths and the command
    ``crewcore memory import --from-lancedb PATH``). ``import_existing=True``
    imports those records instead (once: only into an empty store; the
    summary is in ``installed()["memory_import"]``). Without a LanceDB
    directory the check costs a few ``stat`` calls.
    """
    from crewai.memory.storage.factory import set_memory_storage_factory

    from crewcore.tools import install_tools
    from crewcore.embeddings import EmbeddingOptions, install_embeddings, uninstall_embeddings

    eopts = None if embeddings is False else EmbeddingOptions.of(embeddings)  # validated before any change
    with _lock:
        from crewcore.knowledge.install import parse_config

        parse_config(knowledge)  # a bad knowledge config changes nothing either
        install_tools(tools)  # validates first: a bad policy changes nothing
        if tools is None:
            _installed.pop("tools", None)
        else:
            _installed["tools"] = tools
        set_memory_storage_factory(_memory_factory(replace_default_memory, memory))
        _installed["memory"] = replace_default_memory
        if memory is not None:
            from crewcore.memory.postgres import is_dsn, redact

            _installed["memory_target"] = redact(memory) if is_dsn(memory) else memory
        from crewcore.storage.install import install_storage

        install_storage(_installed, locks, task_outputs, flows)
        # embeddings (default on): shared embedders, crewcore's client, the cache (crewcore/embeddings/)
        if eopts is None:
            uninstall_embeddings()
            _installed.pop("embeddings", None)
        else:
            install_embeddings(eopts, memory=memory)
            _installed["embeddings"] = eopts
        from crewcore.llm import install_llm_clients, uninstall_llm_clients

        if llm_clients:
            install_llm_clients()
            _installed["llm_clients"] = True
        else:
            uninstall_llm_clients()
            _installed.pop("llm_clients", None)
        from crewcore.runs.lean import install_lean, uninstall_lean

        if lean_runs:
            install_lean()
            _installed["lean_runs"] = True
        else:
            uninstall_lean()
            _installed.pop("lean_runs", None)
        from crewcore.knowledge.install import install_knowledge

        # knowledge (default on): every CrewAI Knowledge stores in crewcore
        # instead of ChromaDB (set_knowledge_storage_factory); see crewcore/knowledge/
        kcfg = install_knowledge(knowledge)
        if kcfg is None:
            _installed.pop("knowledge", None)
        else:
            _installed["knowledge"] = {k: kcfg[k] for k in ("path", "mode", "modes") if kcfg.get(k) is not None}
    if replace_default_memory:
        # CrewAI's default LanceDB memory left behind: warn once, or import it (import_existing).
        from crewcore.memory.lancedb_import import notice_existing

        summary = notice_existing(memory, import_existing=import_existing)
        if summary is not None:
            _installed["memory_import"] = str(summary)


def uninstall() -> None:
    """Restore CrewAI's default storage selection."""
    from crewcore.tools import install_tools

    install_tools(None)
    _installed.pop("tools", None)
    from crewai.memory.storage.factory import set_memory_storage_factory

    with _lock:
        from crewcore.storage.install import uninstall_storage

        uninstall_storage(_installed)
        from crewcore.embeddings import uninstall_embeddings

        uninstall_embeddings()
        _installed.pop("embeddings", None)
        from crewcore.llm import uninstall_llm_clients

        uninstall_llm_clients()
        _installed.pop("llm_clients", None)
        from crewcore.runs.lean import uninstall_lean

        uninstall_lean()
        _installed.pop("lean_runs", None)
        from crewcore.knowledge.install import uninstall_knowledge

        uninstall_knowledge()
        _installed.pop("knowledge", None)
        if "memory" in _installed:
            set_memory_storage_factory(None)
            _installed.pop("memory", None)
            _installed.pop("memory_target", None)


def installed() -> dict[str, Any]:
    """What install() has set (for diagnostics)."""
    return dict(_installed)
