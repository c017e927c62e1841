"""Abandoned runs stay quiet while the interpreter exits.

A run whose thread is stuck in C is abandoned (handle.py's watchdog): its
result is already recorded as a failure. When that thread comes back while
the interpreter shuts down, CrewAI's code goes on under a dying runtime
(``cannot schedule new futures after interpreter shutdown``) and logs a
traceback for every step it can no longer take. Those lines say nothing
about the user's crews, so from the start of shutdown the log records and
uncaught-exception reports of abandoned threads are dropped; everything else
is printed as before. During normal running nothing is hidden.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

_lock = threading.Lock()
_threads: set[int] = set()
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
        if _armed:
            return
        _armed = True
    # Runs before the interpreter waits for non-daemon threads (CrewAI's tool
    # threads are), which is when an abandoned run may come back.
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
