"""The batch: shared by the thread and asyncio front ends.

Argument checks, the engine choice (``_engine``: the Go scheduler through the
bridge, or its Python twin) and ``_Batch``, the state of one batch (its
engine, results, running runs and first failure; it registers the CrewAI
hooks while it is open).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Callable, Iterable, Sequence, TypeVar

from crewcore.errors import InvalidArgumentError, SchedulerClosedError
from crewcore.runs.context import (
    _by_crew,
    _hooks_acquire,
    _hooks_release,
    _Run,
    _stop_class,
    _stop_exc,
    _tool_thread_run,
)
from crewcore.runs.fallback import _PyEngine
from crewcore.runs.native import _NativeEngine
from crewcore.runs.results import ManyResults, RunFailure, RunSummary

#: Longest single blocking wait inside the engine (seconds).
_POLL = 0.2

_Front = TypeVar("_Front")


def _engine(total: int, concurrency: int, timeout: float, deadline: float, adaptive: bool) -> Any:
    from crewcore import _backend

    if _backend.use_native():
        return _NativeEngine(total, concurrency, timeout, deadline, adaptive)
    return _PyEngine(total, concurrency, timeout, deadline, adaptive)


def _check_processes(processes: Any) -> int:
    if processes == "auto":
        return max(1, os.cpu_count() or 1)
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise InvalidArgumentError(f"processes must be an integer >= 1 or 'auto', got {processes!r}")
    if processes > 1 and not hasattr(os, "fork"):
        raise InvalidArgumentError("processes > 1 needs os.fork(), which this platform does not have")
    return processes


def _check_args(
    crew: Any, inputs: Any, concurrency: Any, timeout: Any, deadline: Any, on_error: Any, stop_grace: Any
) -> list[dict[str, Any]]:
    if not (hasattr(crew, "copy") and (hasattr(crew, "kickoff") or hasattr(crew, "akickoff"))):
        raise InvalidArgumentError(f"crew must be a crewai.Crew, got {type(crew).__name__}")
    if not (hasattr(crew, "agents") and hasattr(crew, "tasks")):
        # An Agent (or a Flow) has copy() and kickoff() too, but every run of
        # it would fail: kickoff_many runs crews.
        raise InvalidArgumentError(
            f"crew must be a crewai.Crew (with agents and tasks), got {type(crew).__name__}: "
            "to run one agent many times, wrap it in Crew(agents=[agent], tasks=[task])"
        )
    if isinstance(inputs, (str, bytes, dict)) or not isinstance(inputs, Iterable):
        raise InvalidArgumentError(
            f"inputs must be a list of dicts (one per run), got {type(inputs).__name__}"
        )
    inputs = list(inputs)
    for i, x in enumerate(inputs):
        if not isinstance(x, dict):
            raise InvalidArgumentError(f"inputs[{i}] must be a dict, got {type(x).__name__}")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidArgumentError(f"concurrency must be an integer >= 1, got {concurrency!r}")
    for name, v in (("timeout", timeout), ("deadline", deadline)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or v != v):
            raise InvalidArgumentError(f"{name} must be a number of seconds > 0 or None, got {v!r}")
    if on_error not in ("continue", "cancel", "raise"):
        raise InvalidArgumentError(
            f"on_error must be 'continue', 'cancel' or 'raise', got {on_error!r}"
        )
    if isinstance(stop_grace, bool) or not isinstance(stop_grace, (int, float)) or not stop_grace >= 0:
        raise InvalidArgumentError(f"stop_grace must be a number of seconds >= 0, got {stop_grace!r}")
    return inputs


class _Batch:
    """State common to the threaded and asyncio front ends."""

    def __init__(
        self,
        crew: Any,
        inputs: Sequence[dict[str, Any]],
        concurrency: int,
        timeout: float | None,
        deadline: float | None,
        on_error: str,
        progress: bool,
        stop_grace: float,
        kickoff_kwargs: dict[str, Any],
        adaptive: bool = True,
    ) -> None:
        self.crew = crew
        self.inputs = inputs
        self.n = len(inputs)
        self.on_error = on_error
        self.stop_grace = float(stop_grace)
        self.kw = kickoff_kwargs
        self.engine = _engine(self.n, concurrency, timeout or 0.0, deadline or 0.0, adaptive)
        self.results: list[Any] = [None] * self.n
        self.running: dict[int, _Run] = {}
        self.lock = threading.Lock()
        self.abandoned = 0
        self.first_failure: RunFailure | None = None
        self.closed = False
        self.progress_on = bool(progress) and _isatty(sys.stderr)
        #: Off a terminal, progress=True still prints the final summary line.
        self.summary_only = bool(progress) and not self.progress_on
        _hooks_acquire()

    def start(self, front: Callable[..., _Front], *args: Any) -> _Front:
        """``front(self, *args)``: the front end (a handle) that runs this
        batch; if it cannot start, the batch is cancelled and closed."""
        try:
            return front(self, *args)
        except BaseException:
            self.engine.cancel()
            self.close()
            raise

    def cancel(self) -> bool:
        """Stop the batch; True if this call stopped it."""
        if self.closed:
            return False
        return bool(self.engine.cancel())

    # -- one run ---------------------------------------------------------
    def begin(self, idx: int) -> _Run:
        r = _Run(self, idx)
        with self.lock:
            self.running[idx] = r
        return r

    def end(self, r: _Run, outcome: str, value: Any, exc: BaseException | None) -> None:
        """Record a finished run (ignored if the watchdog already reaped it)."""
        with self.lock:
            self.running.pop(r.index, None)
            if r.crew_id is not None:
                _by_crew.pop(r.crew_id, None)
            for tid in list(r.tool_threads):
                if _tool_thread_run.get(tid) is r:
                    del _tool_thread_run[tid]
        accepted, elapsed = self.engine.finish(r.index, outcome)
        if not accepted:
            return
        if outcome == "done":
            self.results[r.index] = value
            return
        kind = {"timed_out": r.told if r.told == "deadline" else "timeout", "cancelled": "cancelled"}.get(
            outcome, "error"
        )
        if exc is None:
            exc = _stop_exc(kind, r.index)
        f = RunFailure(r.index, kind, type(exc).__name__, str(exc) or repr(exc), elapsed, True, exc)
        self.results[r.index] = f
        if outcome == "failed" and self.on_error != "continue":
            with self.lock:
                if self.first_failure is None:
                    self.first_failure = f
            self.engine.cancel()

    def settle(self, r: _Run, ok: bool, value: Any) -> None:
        """Record a run that returned value (ok) or raised it. A run that
        ends after its batch closed (an abandoned run, released at last) has
        nowhere to report: it is dropped quietly, never raised in its thread
        (the watchdog already recorded it as abandoned)."""
        try:
            if ok:
                self.end(r, "done", value, None)
                return
            outcome = self.classify(r, value)
            self.end(r, outcome, None, None if outcome in ("cancelled", "timed_out") else value)
        except SchedulerClosedError:
            if not self.closed:
                raise

    def classify(self, r: _Run, e: BaseException) -> str:
        """The outcome of a run that raised e."""
        reason = r.told or (self.engine.check(r.index) if not self.closed else "cancelled")
        if reason:
            r.told = reason
            return "cancelled" if reason == "cancelled" else "timed_out"
        return "failed"

    # -- the end ---------------------------------------------------------
    def collect(self) -> ManyResults:
        states = self.engine.states()
        s = self.engine.summary()
        stop = s.get("stop", "")
        for i, st in enumerate(states):
            if self.results[i] is None:
                if st == "cancelled":
                    why = "deadline" if stop == "deadline" else "cancelled"
                    msg = (
                        "not started: the overall deadline passed"
                        if why == "deadline"
                        else "not started: the batch was cancelled"
                    )
                    self.results[i] = RunFailure(i, why, _stop_class(why).__name__, msg, 0.0, False)
                else:  # a run that never reported (should not happen)
                    self.results[i] = RunFailure(i, "cancelled", "RunCancelled", f"run ended {st}", 0.0, False)
        el = float(s["elapsed"])
        summary = RunSummary(
            total=int(s["total"]),
            done=int(s["done"]),
            failed=int(s["failed"]),
            timed_out=int(s["timed_out"]),
            cancelled=int(s["cancelled"]),
            p50=float(s["p50"]),
            p95=float(s["p95"]),
            max=float(s["max"]),
            elapsed=el,
            throughput=(int(s["done"]) / el) if el > 0 else 0.0,
            stop=stop,
            abandoned=self.abandoned,
            concurrency=int(s.get("limit", 0)),
        )
        return ManyResults(self.results, summary)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.engine.close()
        finally:
            _hooks_release()

    def progress_line(self, final: bool = False) -> str:
        s = self.engine.summary()
        n = s["total"] or 1
        fin = s["done"] + s["failed"] + s["timed_out"] + s["cancelled"]
        el = max(1e-9, float(s["elapsed"]))
        rate = fin / el
        eta = (s["total"] - fin) / rate if rate > 0 else float("inf")
        width = 24
        bar = "#" * int(width * fin / n) + "-" * (width - int(width * fin / n))
        eta_s = "--" if eta == float("inf") else f"{eta:.0f}s"
        if final:
            eta_s = f"in {el:.1f}s"
        return (
            f"\rcrewcore [{bar}] {fin}/{s['total']} done {s['done']} failed "
            f"{s['failed'] + s['timed_out']} cancelled {s['cancelled']} | {rate:.1f} runs/s | ETA {eta_s} "
        )


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:  # noqa: BLE001 - closed or odd streams are not terminals
        return False


def _final_line(s: RunSummary) -> str:
    return (
        f"\rcrewcore: {s.done}/{s.total} done, {s.failed} failed, {s.timed_out} timed out, "
        f"{s.cancelled} cancelled in {s.elapsed:.1f}s ({s.throughput:.1f} runs/s, "
        f"p50 {s.p50:.2f}s p95 {s.p95:.2f}s)\n"
    )
