"""The asyncio front end: ``AsyncManyHandle`` (each run a task of the running
loop; a feeder thread dequeues in the engine, a watcher thread reports
expired runs), ``astart_many`` and ``akickoff_many``."""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any, Iterable

from crewcore.errors import RunFailedError
from crewcore.runs.batch import _POLL, _Batch, _check_args, _final_line
from crewcore.runs.context import _by_crew, _cv_run, _stop_exc
from crewcore.runs.results import ManyResults, RunFailure


class AsyncManyHandle:
    """A batch running as asyncio tasks on the current loop (see
    :func:`astart_many`). ``cancel()`` stops it; ``await handle.result()``."""

    def __init__(self, batch: _Batch, loop: asyncio.AbstractEventLoop) -> None:
        self._b = batch
        self._loop = loop
        self._tasks: dict[int, asyncio.Task[Any]] = {}
        self._ran: set[int] = set()
        self._started = 0
        self._ended = 0
        self._fed = False
        self._done = asyncio.Event()
        self._results: ManyResults | None = None
        self._feeder = threading.Thread(target=self._feed, name="crewcore-sched-feeder", daemon=True)
        self._watcher = threading.Thread(target=self._watch, name="crewcore-sched-watchdog", daemon=True)
        self._feeder.start()
        self._watcher.start()
        self._progress: asyncio.Task[Any] | None = None
        if batch.progress_on:
            self._progress = loop.create_task(self._show())

    # threads: dequeue in Go, hand to the loop
    def _feed(self) -> None:
        b = self._b
        while True:
            try:
                kind, idx = b.engine.acquire(_POLL)
            except Exception:  # noqa: BLE001 - closed
                break
            if kind == "wait":
                continue
            if kind != "run":
                break
            try:
                self._loop.call_soon_threadsafe(self._start, idx)
            except RuntimeError:  # loop closed
                b.engine.finish(idx, "cancelled")
                break
        try:
            self._loop.call_soon_threadsafe(self._fed_all)
        except RuntimeError:
            pass

    def _watch(self) -> None:
        b = self._b
        while True:
            try:
                kind, ex = b.engine.expired(_POLL)
            except Exception:  # noqa: BLE001 - closed
                return
            for idx, reason in ex:
                try:
                    self._loop.call_soon_threadsafe(self._expire, idx, reason)
                except RuntimeError:
                    return
            if kind in ("finished", "closed"):
                return

    # loop side
    def _start(self, idx: int) -> None:
        self._started += 1
        t = self._loop.create_task(self._run(idx))
        self._tasks[idx] = t
        t.add_done_callback(lambda _t, i=idx: self._task_done(i))

    def _task_done(self, idx: int) -> None:
        # A task cancelled before its first step never ran _run's finally:
        # account for it here (its slot, its result).
        if idx not in self._ran:
            ok, el = self._b.engine.finish(idx, "cancelled")
            if ok:
                e = _stop_exc("cancelled", idx)
                self._b.results[idx] = RunFailure(idx, "cancelled", type(e).__name__, str(e), el, False, e)
        self._tasks.pop(idx, None)
        self._ended += 1
        self._maybe_done()

    def _fed_all(self) -> None:
        self._fed = True
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self._fed and self._ended == self._started:
            self._done.set()

    def _expire(self, idx: int, reason: str) -> None:
        with self._b.lock:
            r = self._b.running.get(idx)
        if r is None:
            return
        r.told = r.told or reason
        t = self._tasks.get(idx)
        if t is not None and not t.done():
            # asyncio cancellation stops the run at its current await point.
            self._loop.call_later(0, t.cancel)

    async def _run(self, idx: int) -> None:
        b = self._b
        r = b.begin(idx)
        token = _cv_run.set(r)
        outcome, value, exc = "failed", None, None
        try:
            crew = b.crew.copy()
            r.crew_id = id(crew)
            _by_crew[r.crew_id] = r
            value = await crew.akickoff(inputs=b.inputs[idx], **b.kw)
            outcome = "done"
        except asyncio.CancelledError as e:
            exc = e
            outcome = b.classify(r, e)
            if outcome == "failed":
                outcome = "cancelled"
        except Exception as e:  # noqa: BLE001 - every failure is a result
            exc = e
            outcome = b.classify(r, e)
        finally:
            _cv_run.reset(token)
            self._ran.add(idx)
            b.end(r, outcome, value, None if outcome in ("cancelled", "timed_out") else exc)

    async def _show(self) -> None:
        while not self._done.is_set():
            sys.stderr.write(self._b.progress_line())
            sys.stderr.flush()
            await asyncio.sleep(0.25)

    def cancel(self) -> bool:
        """Stop the batch; True if this call stopped it."""
        return self._b.cancel()

    def done(self) -> bool:
        return self._results is not None or self._done.is_set()

    async def result(self) -> ManyResults:
        """Wait for every input; cancelling this await cancels the batch."""
        if self._results is None:
            try:
                await self._done.wait()
            except asyncio.CancelledError:
                await self._abort()
                raise
            await self._close()
        f = self._b.first_failure
        if self._b.on_error == "raise" and f is not None:
            raise RunFailedError(f, self._results)
        return self._results  # type: ignore[return-value]

    async def _abort(self) -> None:
        self.cancel()
        for t in list(self._tasks.values()):
            t.cancel()
        while not self._done.is_set():
            try:
                await asyncio.shield(self._done.wait())
            except asyncio.CancelledError:
                continue
        await self._close()

    async def _close(self) -> None:
        if self._results is not None:
            return
        b = self._b
        await asyncio.to_thread(self._feeder.join, 2 * _POLL + 1)
        await asyncio.to_thread(self._watcher.join, 2 * _POLL + 1)
        res = b.collect()
        b.close()
        if self._progress is not None:
            self._progress.cancel()
            sys.stderr.write(_final_line(res.summary))
            sys.stderr.flush()
        elif b.summary_only:  # not a terminal: no bar, one summary line
            sys.stderr.write(_final_line(res.summary).lstrip("\r"))
            sys.stderr.flush()
        self._results = res


def astart_many(
    crew: Any,
    inputs: Iterable[dict[str, Any]],
    concurrency: int = 64,
    timeout: float | None = None,
    deadline: float | None = None,
    on_error: str = "continue",
    progress: bool = True,
    adaptive: bool = True,
    **kickoff_kwargs: Any,
) -> AsyncManyHandle:
    """Start ``crew.akickoff`` on every input as tasks of the running loop."""
    inputs = _check_args(crew, inputs, concurrency, timeout, deadline, on_error, 0.0)
    loop = asyncio.get_running_loop()
    batch = _Batch(crew, inputs, concurrency, timeout, deadline, on_error, progress, 0.0, kickoff_kwargs, bool(adaptive))
    return batch.start(AsyncManyHandle, loop)


async def akickoff_many(
    crew: Any,
    inputs: Iterable[dict[str, Any]],
    concurrency: int = 64,
    timeout: float | None = 120,
    deadline: float | None = None,
    on_error: str = "continue",
    progress: bool = True,
    adaptive: bool = True,
    **kickoff_kwargs: Any,
) -> ManyResults:
    """The asyncio twin of :func:`kickoff_many`: each run is
    ``await crew.copy().akickoff(...)`` on the running loop, at most
    ``concurrency`` at once; Go owns the queue, deadlines and cancellation.
    A run past its ``timeout``/``deadline`` or a cancelled batch has its task
    cancelled (and stops at its next LLM or tool call if it is in a thread).
    Cancelling the awaiting task (or Ctrl-C under ``asyncio.run``) cancels
    every run, waits for them, then raises CancelledError."""
    handle = astart_many(crew, inputs, concurrency, timeout, deadline, on_error, progress, adaptive, **kickoff_kwargs)
    return await handle.result()
