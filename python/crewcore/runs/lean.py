"""Per-run overhead of CrewAI runs that crewcore removes (``install(lean_runs=True)``).

Found by profiling whole crew runs (bench/bench_crew.py ``--profile``, and
py-spy over ``kickoff_many``); each item is work CrewAI repeats on every run
whose result never changes, removed through a seam without changing what the
run computes:

- **Parametrized pydantic generics, once per process.** pydantic (2.11+)
  keeps its cache of parametrized generic models (``Model[T]``) in a context
  variable that starts empty in every thread. CrewAI runs each flow step in
  a copy of the caller's context (``asyncio.run``, ``asyncio.to_thread``), so
  when the caller's context has no cache yet, every copy builds its own and
  drops it: the OpenAI SDK's structured-output parser (``ParsedChatCompletion
  [ResponseFormatT]``, used by CrewAI's memory analysis on every save) then
  builds and schema-checks a new model class on every call (~20-60 ms).
  :func:`share_generic_types` gives the calling thread's context one
  process-wide cache (the copies inherit it), as pydantic did for all
  threads before 2.11; kickoff_many's run threads call it before every run
  and ``install()`` calls it for the installing thread.

- **The agent executor's initial state class, once.** CrewAI's
  ``Flow._create_initial_state`` makes a new pydantic class (``StateWithId``:
  ``FlowState`` + the flow's state model) every time a flow without an
  initial state whose state model lacks ``FlowState`` is built: every
  ``AgentExecutor`` (CrewAI builds two per task), ~20 ms of schema building
  each, for a state the executor then replaces with its own
  ``AgentExecutorState()``. Before building it CrewAI asks
  ``_create_default_extension_state()``, its hook for runtime extensions
  to supply the default state; for CrewAI's internal flows crewcore answers
  it with an instance of the same composition built once per state model
  (same fields, defaults, validation, and a fresh ``id``). Users' flows are
  left to CrewAI (a class per flow, as without crewcore).

``uninstall_lean()`` (and ``crewcore.uninstall()``) removes the hook.

- **A save queue per run in ``kickoff_many``.** ``Crew.copy()`` hands every
  copy the crew's own ``Memory``, whose background saves go through one
  single-thread pool, and every kickoff ends by waiting for all of that
  pool's pending saves (``Crew._drain_memory_writes``; ``recall`` waits the
  same way). With many copies running at once in one interpreter, each run
  therefore waits for every other run's saves, one after another (each one
  or two LLM calls), and the CPU idles: the batch goes no faster than one
  save at a time. :func:`own_save_queue` gives a run's copy a view of the
  same ``Memory`` (same storage, embedder, LLM and settings) with a save
  queue of its own, so a run waits for its own saves only; the saves of one
  run keep their order. Runs in separate processes (``processes=N``,
  ``crewcore worker``) already saved independently of each other; now runs
  on threads of one process do too.
"""

from __future__ import annotations

import threading
from typing import Any
import uuid

_lock = threading.Lock()
#: state model -> its FlowState composition (built once)
_state_classes: dict[type, type] = {}
#: the classes whose ``_create_default_extension_state`` crewcore set
_patched: list[type] = []
_generics: dict[str, Any] = {}

#: CrewAI's internal flows whose default state crewcore supplies (its memory
#: flows, EncodingFlow and RecallFlow, are always given their initial state).
INTERNAL_FLOWS = (("crewai.agents.agent_executor", "AgentExecutor"),)


def share_generic_types() -> None:
    """Give this thread's context the process's cache of parametrized
    pydantic generics, unless it has one (see the module doc)."""
    var = _generics.get("var")
    if var is None:
        if "var" in _generics:
            return
        _init_generics()
        var = _generics.get("var")
        if var is None:
            return
    if var.get() is None:
        var.set(_generics["cache"])


def _init_generics() -> None:
    with _lock:
        if "var" in _generics:
            return
        var = cache = None
        try:
            from contextvars import ContextVar

            from pydantic._internal import _generics as g

            v = getattr(g, "_GENERIC_TYPES_CACHE", None)
            factory = getattr(g, "GenericTypesCache", None)
            if isinstance(v, ContextVar) and factory is not None:
                var, cache = v, factory()
        except Exception:  # noqa: BLE001 - another pydantic: the cache is theirs to manage
            var = None
        _generics["cache"] = cache
        _generics["var"] = var


def _state_with_id(state_type: type) -> type:
    """``FlowState`` composed with ``state_type``, built once."""
    cls = _state_classes.get(state_type)
    if cls is None:
        with _lock:
            cls = _state_classes.get(state_type)
            if cls is None:
                from crewai.flow.runtime import FlowState

                cls = type(state_type)("StateWithId", (FlowState, state_type), {"__module__": state_type.__module__})
                _state_classes[state_type] = cls
    return cls


def _override(flow_cls: type) -> Any:
    inherited = flow_cls._create_default_extension_state  # type: ignore[attr-defined]

    def _create_default_extension_state(self: Any, *, ignore_declared_state: bool = False) -> Any:
        got = inherited(self, ignore_declared_state=ignore_declared_state)
        if got is not None or ignore_declared_state or getattr(self, "initial_state", None) is not None:
            return got
        from crewai.flow.runtime import FlowState
        from pydantic import BaseModel

        t = getattr(self, "_initial_state_t", None)
        if not isinstance(t, type) or not issubclass(t, BaseModel) or issubclass(t, FlowState):
            return None  # CrewAI's own path
        state = _state_with_id(t)()
        if not getattr(state, "id", None):
            object.__setattr__(state, "id", str(uuid.uuid4()))
        return state

    _create_default_extension_state.crewcore = True  # type: ignore[attr-defined]
    _create_default_extension_state.__wrapped__ = inherited  # type: ignore[attr-defined]
    return _create_default_extension_state


def own_save_queue(crew: Any) -> Any:
    """Give crew (a fresh ``Crew.copy()``) a view of its ``Memory`` with its
    own save queue (see the module doc); return a function to call when the
    run is over (it lets the queue's thread end), or None when the crew has
    no plain ``Memory`` (none, a scope or slice view, another layout)."""
    mem = getattr(crew, "_memory", None)
    try:
        from crewai.memory.unified_memory import Memory
    except ImportError:
        return None
    if type(mem) is not Memory or not all(hasattr(mem, a) for a in ("_save_pool", "_pending_saves", "_pending_lock")):
        return None
    import concurrent.futures

    try:
        view = mem.model_copy()  # shallow: the same storage, embedder, LLM and settings
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="memory-save")
        view._save_pool = pool
        view._pending_saves = []
        view._pending_lock = threading.Lock()
        crew._memory = view
        if getattr(crew, "memory", None) is mem:
            crew.__dict__["memory"] = view
    except Exception:  # noqa: BLE001 - another CrewAI layout: share the crew's queue as before
        crew._memory = mem
        return None

    def done() -> None:
        view.drain_writes()
        pool.shutdown(wait=False)

    return done


def install_lean() -> None:
    """Install the items of the module doc (idempotent)."""
    import importlib

    share_generic_types()
    with _lock:
        if _patched:
            return
        for mod, name in INTERNAL_FLOWS:
            try:
                cls = getattr(importlib.import_module(mod), name)
            except (ImportError, AttributeError):
                continue  # another CrewAI layout: nothing to do for that flow
            if "_create_default_extension_state" in cls.__dict__ or not hasattr(cls, "_create_default_extension_state"):
                continue  # CrewAI defines its own there: leave it
            cls._create_default_extension_state = _override(cls)
            _patched.append(cls)


def uninstall_lean() -> None:
    """Remove crewcore's default-state hook from CrewAI's flows."""
    with _lock:
        while _patched:
            cls = _patched.pop()
            fn = cls.__dict__.get("_create_default_extension_state")
            if getattr(fn, "crewcore", False):
                delattr(cls, "_create_default_extension_state")


def installed() -> bool:
    return bool(_patched)


__all__ = ["install_lean", "installed", "own_save_queue", "share_generic_types", "uninstall_lean"]
