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
    tools: Any = None,
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

    ``memory`` names where ``"crewcore"`` and the default go: a store path,
    or a ``postgresql://`` DSN to share one PostgreSQL + pgvector store
    between processes and machines (``install(memory="postgresql://...")``).
    """
    from crewai.memory.storage.factory import set_memory_storage_factory

    from crewcore.tools import install_tools

    with _lock:
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


def uninstall() -> None:
    """Restore CrewAI's default storage selection."""
    from crewcore.tools import install_tools

    install_tools(None)
    _installed.pop("tools", None)
    from crewai.memory.storage.factory import set_memory_storage_factory

    with _lock:
        from crewcore.storage.install import uninstall_storage

        uninstall_storage(_installed)
        if "memory" in _installed:
            set_memory_storage_factory(None)
            _installed.pop("memory", None)
            _installed.pop("memory_target", None)


def installed() -> dict[str, Any]:
    """What install() has set (for diagnostics)."""
    return dict(_installed)
