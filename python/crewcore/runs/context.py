"""Stopping runs: the run context, CrewAI hooks and the stop exception.

Which run a thread or a task is working for (``_Run``: thread-local, a
context variable for asyncio tasks, and the crew copy's id for CrewAI's tool
threads); the CrewAI ``pre_model_call``/``pre_tool_call``/``post_tool_call``
hooks that ask the run's engine whether it must stop, registered while a
batch is active; the stop exception (a CrewAI ``HookAborted``);
``_kickoff_copy`` (one run on this thread) and ``_interrupt`` (the stop
exception raised in a run's threads). Used by the batch in this process and
by the worker processes (:mod:`crewcore.runs.procs`).
"""

from __future__ import annotations

import contextvars
import ctypes
import threading
from typing import Any, Protocol

from crewcore.runs.lean import own_save_queue, share_generic_types


class _RunBatch(Protocol):
    """What a run needs of its batch (a ``_Batch``, or a worker process's
    stand-in): the engine its hooks ask whether it must stop."""

    engine: Any


class _Run:
    """One running input."""

    __slots__ = ("batch", "index", "thread_id", "crew_id", "task", "told", "tool_threads", "remote")

    def __init__(self, batch: _RunBatch, index: int) -> None:
        self.batch = batch
        self.index = index
        self.thread_id: int | None = None
        self.crew_id: int | None = None
        self.task: Any = None
        self.told = ""
        # Threads running one of this run's tools right now (CrewAI runs
        # tools on executor threads), from the pre/post tool hooks.
        self.tool_threads: set[int] = set()
        # Set when the run executes in a worker process (processes > 1).
        self.remote = False


_tls = threading.local()
_cv_run: contextvars.ContextVar[_Run | None] = contextvars.ContextVar("crewcore_run", default=None)
_by_crew: dict[int, _Run] = {}
_hooks_lock = threading.Lock()
_hooks_users = 0
_stop_classes: dict[str, type[BaseException]] = {}


def _stop_class(reason: str) -> type[BaseException]:
    """The exception that stops a run: a CrewAI HookAborted, so CrewAI lets
    it propagate out of kickoff instead of feeding it back to the model."""
    cls = _stop_classes.get(reason)
    if cls is None:
        from crewai.hooks import HookAborted

        name = {"timeout": "RunTimeout", "deadline": "RunDeadline"}.get(reason, "RunCancelled")
        # Named after the public module (crewcore.runs.scheduler, where they
        # were made before it was split): the name CrewAI and tools report.
        def init(self: Any, reason: str = f"crewcore: run stopped ({name})", source: Any = "crewcore.scheduler") -> None:
            # Defaults: an exception raised in a thread by class (PyThreadState_
            # SetAsyncExc) is built with no arguments; HookAborted needs a reason.
            HookAborted.__init__(self, reason, source)

        cls = type(name, (HookAborted,), {"__module__": "crewcore.runs.scheduler", "reason_code": reason,
                                          "__init__": init})
        _stop_classes[reason] = cls
    return cls


def _stop_exc(reason: str, index: int) -> BaseException:
    what = {
        "timeout": "passed its per-run timeout",
        "deadline": "passed the overall deadline",
    }.get(reason, "was cancelled")
    return _stop_class(reason)(f"crewcore: run {index} {what}", source="crewcore.scheduler")


def _current_run(ctx: Any) -> _Run | None:
    r = getattr(_tls, "run", None) or _cv_run.get()
    if r is None:
        crew = getattr(ctx, "crew", None)
        if crew is not None:
            r = _by_crew.get(id(crew))
    return r


def _pre_call_hook(ctx: Any) -> None:
    r = _current_run(ctx)
    if r is None:
        return None
    reason = r.told or r.batch.engine.check(r.index)
    if reason:
        r.told = reason
        raise _stop_exc(reason, r.index)
    return None


#: thread id -> the run whose tool that thread is executing right now.
_tool_thread_run: dict[int, _Run] = {}


def _pre_tool_hook(ctx: Any) -> None:
    r = _current_run(ctx)
    if r is None:
        return None
    _pre_call_hook(ctx)  # raises when the run must stop: the tool never runs
    tid = threading.get_ident()
    if tid != r.thread_id:
        _tool_thread_run[tid] = r
        r.tool_threads.add(tid)
    return None


def _post_tool_hook(ctx: Any) -> None:
    tid = threading.get_ident()
    r = _tool_thread_run.pop(tid, None)
    if r is not None:
        r.tool_threads.discard(tid)
    return None


_HOOKS: list[tuple[str, Any]] = [
    ("PRE_MODEL_CALL", _pre_call_hook),
    ("PRE_TOOL_CALL", _pre_tool_hook),
    ("POST_TOOL_CALL", _post_tool_hook),
]


def _hooks_acquire() -> None:
    global _hooks_users
    from crewai.hooks import InterceptionPoint, register_hook

    with _hooks_lock:
        if _hooks_users == 0:
            for point, fn in _HOOKS:
                register_hook(getattr(InterceptionPoint, point), fn)
        _hooks_users += 1


def _hooks_release() -> None:
    global _hooks_users
    from crewai.hooks import InterceptionPoint, unregister_hook

    with _hooks_lock:
        _hooks_users -= 1
        if _hooks_users == 0:
            for point, fn in _HOOKS:
                unregister_hook(getattr(InterceptionPoint, point), fn)


def _kickoff_copy(r: _Run, crew: Any, inputs: dict[str, Any], kw: dict[str, Any]) -> tuple[bool, Any]:
    """Run ``crew.copy().kickoff(inputs)`` as run r on this thread, where the
    hooks find it (thread-local, and the copy's id for tool threads):
    (True, the output) or (False, the exception)."""
    r.thread_id = threading.get_ident()
    _tls.run = r
    share_generic_types()
    try:
        done = None
        try:
            c = crew.copy()
            done = own_save_queue(c)
            r.crew_id = id(c)
            _by_crew[r.crew_id] = r
            return True, c.kickoff(inputs=inputs, **kw)
        except BaseException as e:  # noqa: BLE001 - every failure is a result
            return False, e
        finally:
            if done is not None:
                done()
    except BaseException as e:  # noqa: BLE001 - the stop exception landed late
        return False, e
    finally:
        _tls.run = None


def _interrupt(r: _Run, reason: str) -> bool:
    """Raise the stop exception in the threads running r's tools, or in its
    worker thread when no tool is running. Only threads that are verifiably
    still working for r are touched."""
    exc = _stop_class(reason)
    hit = False
    for tid in list(r.tool_threads):
        if _tool_thread_run.get(tid) is r:
            hit = _raise_in_thread(tid, exc) or hit
    if not hit and r.thread_id is not None:
        hit = _raise_in_thread(r.thread_id, exc)
    return hit


def _raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> bool:
    n = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type))
    if n > 1:  # never expected: undo
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)
        return False
    return n == 1
