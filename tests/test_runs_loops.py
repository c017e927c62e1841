"""crewcore.runs.loops: one thread pool for the asyncio loops of a worker process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

from crewcore.runs import loops


def _to_thread_name() -> str:
    async def main() -> str:
        return await asyncio.to_thread(lambda: threading.current_thread().name)

    return asyncio.run(main())


def test_loops_share_one_pool_and_uninstall_restores_the_policy() -> None:
    before = asyncio.get_event_loop_policy()
    assert not _to_thread_name().startswith("crewcore-asyncio")
    loops.install_shared_executor()
    try:
        loops.install_shared_executor()  # idempotent
        threads_before = threading.active_count()
        names = [_to_thread_name() for _ in range(20)]
        assert all(n.startswith("crewcore-asyncio") for n in names), names
        # asyncio.run closing its loop neither shuts the shared pool down nor
        # leaves a thread per loop behind.
        assert threading.active_count() - threads_before <= 1
        assert not loops.shared_executor()._shutdown
    finally:
        loops.uninstall_shared_executor()
    assert asyncio.get_event_loop_policy() is before
    assert not _to_thread_name().startswith("crewcore-asyncio")


def test_a_loop_given_its_own_default_executor_keeps_it() -> None:
    loops.install_shared_executor()
    try:
        own = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="own")

        async def main() -> str:
            asyncio.get_running_loop().set_default_executor(own)
            return await asyncio.to_thread(lambda: threading.current_thread().name)

        assert asyncio.run(main()).startswith("own")
        assert own._shutdown  # asyncio.run shut it down, as without crewcore
    finally:
        loops.uninstall_shared_executor()
