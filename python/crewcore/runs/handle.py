"""The threaded front end: ``ManyHandle`` (worker threads, the watchdog that
interrupts or abandons runs that do not stop, the progress line),
``start_many`` and ``kickoff_many``. With ``processes=N`` the runs execute in
worker processes (:mod:`crewcore.runs.procs`)."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Iterable

from crewcore.errors import RunFailedError
from crewcore.runs import quiet
from crewcore.runs.batch import _POLL, _Batch, _check_args, _check_processes, _final_line
from crewcore.runs.context import _by_crew, _interrupt, _kickoff_copy, _stop_exc
from crewcore.runs.results import ManyResults, RunFailure, RunSummary


class ManyHandle:
    """A batch running on worker threads (see :func:`start_many`).

    ``cancel()`` stops it (pending inputs never start, running runs stop at
    their next LLM or tool call); ``result()`` waits and returns the
    :class:`ManyResults`; ``summary()`` is a live snapshot; ``done()`` says
    whether every input is final.
    """

    def __init__(self, batch: _Batch, workers: int, processes: int = 1) -> None:
        self._b = batch
        self._threads: list[threading.Thread] = []
        self._tlock = threading.Lock()
        self._results: ManyResults | None = None
        self._finish_lock = threading.Lock()
        self._procs: Any = None
        if processes > 1:
            from crewcore.runs.procs import Pool

            # Fork before this batch starts any thread of its own.
            self._procs = Pool(batch, processes)
        for _ in range(workers):
            self._spawn_worker()
        self._watchdog = threading.Thread(target=self._watch, name="crewcore-sched-watchdog", daemon=True)
        self._watchdog.start()
        self._progress: threading.Thread | None = None
        if batch.progress_on:
            self._progress = threading.Thread(target=self._show, name="crewcore-sched-progress", daemon=True)
            self._progress.start()

    # -- workers ---------------------------------------------------------
    def _spawn_worker(self) -> None:
        t = threading.Thread(target=self._work, name="crewcore-sched-worker", daemon=True)
        with self._tlock:
            self._threads.append(t)
        t.start()

    def _work(self) -> None:
        b = self._b
        while True:
            try:
                kind, idx = b.engine.acquire(_POLL)
            except Exception:  # noqa: BLE001 - the engine was closed under us
                return
            if kind == "wait":
                continue
            if kind != "run":
                return
            self._run(idx)

    def _run(self, idx: int) -> None:
        if self._procs is not None:
            self._run_remote(idx)
            return
        b = self._b
        r = b.begin(idx)
        ok, value = _kickoff_copy(r, b.crew, b.inputs[idx], b.kw)
        b.settle(r, ok, value)

    def _run_remote(self, idx: int) -> None:
        """Run input idx in a worker process and wait for its result."""
        b = self._b
        r = b.begin(idx)
        r.remote = True
        p = self._procs.submit(idx)
        p.event.wait()
        if not p.abandoned:  # (else the watchdog recorded it)
            b.settle(r, p.ok, p.value)

    # -- watchdog: runs that must stop but do not ------------------------
    def _watch(self) -> None:
        b = self._b
        pending: dict[int, tuple[float, str, int]] = {}  # index -> (since, reason, stage)
        while True:
            try:
                kind, ex = b.engine.expired(_POLL if not pending else min(_POLL, b.stop_grace / 4 or _POLL))
            except Exception:  # noqa: BLE001 - closed
                return
            now = time.monotonic()
            for idx, reason in ex:
                pending[idx] = (now, reason, 0)
                with b.lock:
                    r = b.running.get(idx)
                if r is not None and not r.told:
                    r.told = reason
                if r is not None and r.remote:
                    self._procs.tell(idx, reason)
            for idx, (since, reason, stage) in list(pending.items()):
                with b.lock:
                    r = b.running.get(idx)
                if r is None:
                    del pending[idx]
                    continue
                if now - since < b.stop_grace:
                    continue
                if stage == 0 and r.remote:
                    # 3. in its worker process: interrupt Python code that reaches no hook
                    self._procs.tell(idx, reason, interrupt=True)
                    pending[idx] = (now, reason, 1)
                elif stage == 0 and r.thread_id is not None:
                    # 3. interrupt Python code that reaches no hook
                    _interrupt(r, reason)
                    pending[idx] = (now, reason, 1)
                elif stage >= 1 or r.thread_id is None:
                    # 4. abandon a thread stuck in C: reap its slot, replace it
                    outcome = "cancelled" if reason == "cancelled" else "timed_out"
                    with b.lock:
                        b.running.pop(idx, None)
                        if r.crew_id is not None:
                            _by_crew.pop(r.crew_id, None)
                    ok, el = b.engine.finish(idx, outcome)
                    if ok:
                        b.abandoned += 1
                        quiet.abandoned(r.thread_id, *r.tool_threads)
                        kind_ = reason if reason in ("timeout", "deadline") else "cancelled"
                        e = _stop_exc(kind_, idx)
                        b.results[idx] = RunFailure(
                            idx, kind_, type(e).__name__, f"{e} (its thread did not stop and was abandoned)", el, True, e
                        )
                        if r.remote:
                            # Its parent thread only waits: wake it. The
                            # worker process ends with the batch.
                            self._procs.abandon(idx)
                        else:
                            self._spawn_worker()
                    del pending[idx]
            if kind in ("finished", "closed") and not pending:
                return

    def _show(self) -> None:
        b = self._b
        while not b.closed:
            try:
                if b.engine.wait(0.25):
                    break
                sys.stderr.write(b.progress_line())
                sys.stderr.flush()
            except Exception:  # noqa: BLE001 - progress must never break a batch
                return

    # -- public ------------------------------------------------------------
    def cancel(self) -> bool:
        """Stop the batch; True if this call stopped it."""
        return self._b.cancel()

    def done(self) -> bool:
        """Whether every input is final."""
        return self._results is not None or self._b.engine.wait(0)

    def summary(self) -> RunSummary:
        """A snapshot of the counts so far (final once ``done()``)."""
        if self._results is not None:
            return self._results.summary
        return _live_summary(self._b)

    def result(self, timeout: float | None = None) -> ManyResults:
        """Wait for every input to be final and return the results.

        Raises TimeoutError if ``timeout`` seconds pass first (the batch goes
        on), and RunFailedError for ``on_error="raise"`` after a failure.
        """
        end = None if timeout is None else time.monotonic() + timeout
        while self._results is None:
            left = _POLL if end is None else min(_POLL, end - time.monotonic())
            if left <= 0:
                raise TimeoutError("the batch is still running")
            if self._b.engine.wait(left):
                self._finish()
        return self._raise_or(self._results)

    def _finish(self) -> None:
        with self._finish_lock:
            if self._results is not None:
                return
            b = self._b
            # Every input is final: workers exit on their next dequeue.
            for t in list(self._threads):
                t.join(timeout=2 * _POLL + 1)
            self._watchdog.join(timeout=2 * _POLL + 1)
            if self._procs is not None:
                self._procs.close()
            res = b.collect()
            b.close()
            if self._progress is not None:
                self._progress.join(timeout=1)
                sys.stderr.write(_final_line(res.summary))
                sys.stderr.flush()
            elif b.summary_only:  # not a terminal: no bar, one summary line
                sys.stderr.write(_final_line(res.summary).lstrip("\r"))
                sys.stderr.flush()
            self._results = res

    def _raise_or(self, res: ManyResults) -> ManyResults:
        f = self._b.first_failure
        if self._b.on_error == "raise" and f is not None:
            raise RunFailedError(f, res)
        return res

    def _interrupt(self) -> None:
        """Ctrl-C: cancel and wait (a second Ctrl-C stops waiting)."""
        self.cancel()
        try:
            while not self._b.engine.wait(_POLL):
                pass
            self._finish()
        except KeyboardInterrupt:
            if self._procs is not None:
                self._procs.close(grace=0.2)
            self._b.close()
            raise


def _live_summary(b: _Batch) -> RunSummary:
    s = b.engine.summary()
    el = float(s["elapsed"])
    return RunSummary(
        total=s["total"], done=s["done"], failed=s["failed"], timed_out=s["timed_out"],
        cancelled=s["cancelled"], p50=s["p50"], p95=s["p95"], max=s["max"], elapsed=el,
        throughput=s["done"] / el if el > 0 else 0.0, stop=s["stop"], abandoned=b.abandoned,
        concurrency=int(s.get("limit", 0)),
    )


def _crewai_storage_is_crewcore() -> bool:
    """Whether CrewAI's lock backend and kickoff task-output handler are
    crewcore's (read from CrewAI itself: whoever installed them)."""
    from crewai.utilities.task_output_storage_handler import TaskOutputStorageHandler
    from crewai_core import lock_store

    locks = getattr(getattr(lock_store, "_backend", None), "crewcore", False)
    outputs = getattr(TaskOutputStorageHandler.__init__, "__module__", "") or ""
    return bool(locks) and outputs.startswith("crewcore.")


def start_many(
    crew: Any,
    inputs: Iterable[dict[str, Any]],
    concurrency: int = 64,
    timeout: float | None = None,
    deadline: float | None = None,
    on_error: str = "continue",
    progress: bool = True,
    stop_grace: float = 1.0,
    adaptive: bool = True,
    processes: int = 1,
    **kickoff_kwargs: Any,
) -> ManyHandle:
    """Start ``crew`` on every input on worker threads; return a handle at once.

    Arguments as :func:`kickoff_many`.
    """
    inputs = _check_args(crew, inputs, concurrency, timeout, deadline, on_error, stop_grace)
    processes = _check_processes(processes)
    if processes > 1 and len(inputs) > 1:
        if not _crewai_storage_is_crewcore():
            import warnings

            warnings.warn(
                "crewcore: kickoff_many(processes=N) without crewcore.install(): every run takes "
                "CrewAI's kickoff-task-outputs file lock, whose waiters poll every 0.25 s between "
                "processes, so runs queue on it; crewcore.install() routes CrewAI's locks and task "
                "outputs through crewcore's storage",
                RuntimeWarning,
                stacklevel=3,
            )
    batch = _Batch(
        crew, inputs, concurrency, timeout, deadline, on_error, progress, stop_grace, kickoff_kwargs, bool(adaptive)
    )
    return batch.start(ManyHandle, min(concurrency, len(inputs)), min(processes, max(1, len(inputs))))


def kickoff_many(
    crew: Any,
    inputs: Iterable[dict[str, Any]],
    concurrency: int = 64,
    timeout: float | None = 120,
    deadline: float | None = None,
    on_error: str = "continue",
    progress: bool = True,
    stop_grace: float = 1.0,
    adaptive: bool = True,
    processes: int = 1,
    queue: Any = None,
    **kickoff_kwargs: Any,
) -> ManyResults:
    """Run ``crew`` once per input, ``concurrency`` at a time; results in input order.

    - ``concurrency``: the most runs at once (each on its own worker thread
      and its own ``crew.copy()``).
    - ``adaptive`` (default True): the engine starts with 4 runs at once and
      grows toward ``concurrency`` while runs do not get slower, shrinking
      when they take more than twice the shortest run: runs waiting on the
      LLM overlap freely, runs competing for the GIL are not piled up (that
      only makes every run slower). ``adaptive=False`` runs ``concurrency``
      at once from the start. ``summary.concurrency`` reports the limit.
    - ``timeout``: seconds per run (None: no limit); ``deadline``: seconds for
      the whole batch (None: no limit). A run past either stops at its next
      LLM or tool call and becomes a RunFailure of kind "timeout"/"deadline";
      inputs not started by the deadline become kind "deadline".
    - ``on_error``: "continue" (default) records failures and goes on;
      "cancel" cancels the rest after the first failure and returns; "raise"
      does the same, then raises :class:`crewcore.errors.RunFailedError`
      (``.failure``, ``.results``).
    - ``progress``: a progress line on stderr when it is a terminal; off a
      terminal (a log file, CI) one summary line at the end instead.
      ``progress=False``: nothing is printed.
    - ``stop_grace``: seconds a run told to stop may take before its thread
      is interrupted, and again before it is abandoned.
    - ``processes`` (default 1): with N > 1, runs execute in N worker
      processes forked when the batch starts, each under its own GIL (every
      CrewAI run costs tens of milliseconds of Python CPU, so one process
      cannot use more than one core); ``"auto"`` is one per CPU. POSIX only.
      Results, failures, deadlines and cancellation behave as with threads,
      but callbacks and tools run in the workers: changes they make to
      Python objects do not reach this process (files and stores do). See
      crewcore/runs/procs.py.
    - other keyword arguments (e.g. ``input_files``) go to ``Crew.kickoff``.
    - ``queue``: run on the durable queue instead (``crewcore.runs.queue``):
      a SQLite file, a ``postgresql://`` DSN, or True for the default file;
      ``crew`` is then a factory ``"package.module:function"``, the inputs
      JSON, ``processes`` (0 allowed) the local worker processes started for
      this call, besides any ``crewcore worker`` on that queue, and
      ``attempts`` (default 3), ``priority``, ``key`` are the queue's
      (``crewcore.runs.queued``).

    Ctrl-C cancels every pending and running run, waits for them to stop and
    re-raises KeyboardInterrupt (press it again to stop waiting).
    """
    if queue is not None and queue is not False:
        from crewcore.runs.queued import kickoff_many_queued

        return kickoff_many_queued(crew, inputs, queue, concurrency, timeout, deadline, on_error, progress,
                                   processes, kickoff_kwargs)
    handle = start_many(
        crew, inputs, concurrency, timeout, deadline, on_error, progress, stop_grace, adaptive, processes,
        **kickoff_kwargs,
    )
    try:
        return handle.result()
    except KeyboardInterrupt:
        handle._interrupt()
        raise
