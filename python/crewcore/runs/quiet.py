"""Abandoned runs stay quiet while the interpreter exits.

A run whose thread is stuck in C is abandoned (handle.py's watchdog): its
result is already recorded as a failure. When that thread comes back while
the interpreter shuts down, CrewAI's code goes on under a dying runtime
(``cannot schedule new futures after interpreter shutdown``) and logs a
traceback for every step it can no longer take. Those lines say nothing
about the user's crews, so from the start of shutdown the log records and
uncaught-exception reports of abandoned threads are dropped; everything else
is printed as before. During normal running nothing is hidden.

An abandoned thread that comes back while the interpreter finalizes is
killed by CPython (3.11-3.13: ``pthread_exit`` when it next takes the GIL).
If it is then inside a Rust extension frame (pydantic-core builds CrewAI's
models), the unwind aborts the whole process (SIGABRT, exit status 134) after
the user's script has succeeded. So at exit (``atexit``, after the non-daemon
tool threads were joined, before finalization) the exit waits for abandoned
threads that are still alive, up to ``CREWCORE_EXIT_WAIT`` seconds (default
5): a run that came back finishes its last steps; one still stuck in C is
left behind as before. (No stop exception is raised in them here: CPython
3.11 gives a thread being started the ident of the thread starting it until
it runs, so ``PyThreadState_SetAsyncExc`` can hit that new thread instead,
which was seen when the run was inside ``asyncio.run``.)
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from typing import Any

_lock = threading.Lock()
_threads: set[int] = set()
# The Thread objects themselves: an ident is reused by later threads once its
# thread ended, so the exit wait must not go by ident alone.
_objects: list[threading.Thread] = []
_armed = False


class _DropAbandoned(logging.Filter):
    """Drops the records of abandoned threads (installed at shutdown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread not in _threads


def abandoned(*thread_ids: int | None) -> None:
    """Note the threads of an abandoned run (its worker and tool threads)."""
    global _armed
    with _lock:
        _threads.update(t for t in thread_ids if t is not None)
        live = {t.ident: t for t in threading.enumerate()}
        _objects.extend(live[t] for t in thread_ids if t is not None and t in live)
        if _armed:
            return
        _armed = True
    # Runs before the interpreter waits for non-daemon threads (CrewAI's tool
    # threads are), which is when an abandoned run may come back.
    atexit.register(_wait_at_exit)
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(_at_shutdown)
            return
        except RuntimeError:  # already shutting down
            pass
    _at_shutdown()


def _at_shutdown() -> None:
    drop = _DropAbandoned()
    handlers: list[logging.Handler] = []
    for lg in [logging.getLogger()] + [v for v in logging.Logger.manager.loggerDict.values()
                                       if isinstance(v, logging.Logger)]:
        handlers.extend(lg.handlers)
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for h in handlers:
        h.addFilter(drop)
    previous = threading.excepthook

    def hook(args: Any) -> None:
        if args.thread is not None and args.thread.ident in _threads:
            return
        previous(args)

    threading.excepthook = hook


def _exit_wait() -> float:
    raw = os.environ.get("CREWCORE_EXIT_WAIT", "")
    try:
        return max(0.0, float(raw)) if raw else 5.0
    except ValueError:
        return 5.0


def _wait_at_exit() -> None:
    """Let abandoned threads that came back end before finalization."""
    with _lock:
        alive = [t for t in _objects if t.is_alive() and t is not threading.current_thread()]
    if not alive:
        return
    deadline = time.monotonic() + _exit_wait()
    for t in alive:
        t.join(max(0.0, deadline - time.monotonic()))
