"""One thread pool for the asyncio loops of a crewcore worker process.

CrewAI runs every agent step as a Flow: ``asyncio.run`` makes a new event
loop, ``asyncio.to_thread`` gives each loop its own default executor (a
new ``ThreadPoolExecutor``: a thread started for the first call, and the
caller waits for it to start), and closing the loop starts yet another
thread to join that executor. A run of a one-agent crew does this several
times; with many runs at once in one interpreter each of these thread
start and join handshakes waits for its new thread to get the GIL.

:func:`install_shared_executor` makes new event loops hand
``run_in_executor(None, ...)`` (and so ``asyncio.to_thread``) to one
process-wide pool whose threads stay, unless the loop was given its own
default executor. Nothing else about the loops changes. Used by the
processes ``crewcore worker`` starts (``python -m crewcore._worker``),
which crewcore owns; a user's own process keeps asyncio as it is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Callable

_lock = threading.Lock()
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_saved: asyncio.AbstractEventLoopPolicy | None = None

#: Threads of the shared pool at most. Idle threads are reused first, so
#: the pool only grows to the number of steps blocked at once; the bound is
#: high so that a step waiting on another step (nested flows) never waits
#: for a free thread.
MAX_THREADS = 256


def shared_executor() -> concurrent.futures.ThreadPoolExecutor:
    """The process-wide pool (made on first use)."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(MAX_THREADS, thread_name_prefix="crewcore-asyncio")
        return _pool


class SharedExecutorLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop whose default executor is the shared pool."""

    _own_default = False

    def set_default_executor(self, executor: Any) -> None:
        self._own_default = True
        super().set_default_executor(executor)

    def run_in_executor(self, executor: Any, func: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        if executor is None and not self._own_default:
            executor = shared_executor()
        return super().run_in_executor(executor, func, *args)


class SharedExecutorPolicy(asyncio.DefaultEventLoopPolicy):
    """The default policy, making :class:`SharedExecutorLoop` loops."""

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return SharedExecutorLoop()


def install_shared_executor() -> None:
    """Make loops created from now on use the shared pool (idempotent)."""
    global _saved
    with _lock:
        cur = asyncio.get_event_loop_policy()
        if isinstance(cur, SharedExecutorPolicy):
            return
        _saved = cur
    asyncio.set_event_loop_policy(SharedExecutorPolicy())


def uninstall_shared_executor() -> None:
    """Restore the policy :func:`install_shared_executor` replaced."""
    global _saved
    with _lock:
        saved, _saved = _saved, None
    if saved is not None and isinstance(asyncio.get_event_loop_policy(), SharedExecutorPolicy):
        asyncio.set_event_loop_policy(saved)


__all__ = ["MAX_THREADS", "SharedExecutorLoop", "SharedExecutorPolicy", "install_shared_executor",
           "shared_executor", "uninstall_shared_executor"]
