"""Run many CrewAI kickoffs with bounded concurrency, deadlines and cancellation.

    results = crewcore.kickoff_many(crew, inputs, concurrency=64, timeout=120)
    results[i]          # CrewOutput, or a RunFailure (falsy) for input i
    results.summary     # RunSummary: done, failed, timed_out, cancelled, p50, p95, ...

    handle = crewcore.start_many(crew, inputs)   # same, in the background
    handle.cancel(); results = handle.result()

    results = await crewcore.akickoff_many(crew, inputs)   # asyncio twin (Crew.akickoff)

    results = crewcore.kickoff_many(crew, inputs, processes="auto")  # one worker
    # process per CPU, each under its own GIL (crewcore/runs/procs.py); call
    # crewcore.install() first so CrewAI's locks are crewcore's

The engine (package ``sched`` in Go, behind the bridge) owns the queue, the
slots, the per-run and overall deadlines and the cancellation state. Python
worker threads pull inputs from it with one bridge call per dequeue (ctypes
releases the GIL while Go blocks; every wait is bounded, so Ctrl-C and
``cancel()`` are noticed within a fraction of a second).

How a run is stopped (cancel, Ctrl-C, ``timeout``, ``deadline``):

1. pending inputs never start;
2. a running run stops at its next LLM or tool call: crewcore registers a
   CrewAI ``pre_model_call``/``pre_tool_call`` hook (only while a batch is
   active) that asks the engine and raises CrewAI's ``HookAborted`` (a
   blocked tool call is reported to the model, whose next call is aborted);
3. a run that reaches no such call within ``stop_grace`` seconds (a tool
   that hangs in Python code) gets the stop exception raised in its thread;
4. a run still not finished ``stop_grace`` seconds later (a thread stuck in a
   blocking C call cannot be interrupted by Python) is abandoned: its result
   is recorded as stopped, its slot goes to a new worker thread, and
   ``summary.abandoned`` counts it. Worker threads are daemon threads.

Each run gets its own ``crew.copy()``, made when the run starts (as CrewAI's
``kickoff_for_each`` does, so copies share the crew's Memory, whose storage
must be safe for concurrent use: crewcore's MemoryStorage is).
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
from dataclasses import dataclass, field
import os
import sys
import threading
import time
from typing import Any, Iterable, Sequence

from crewcore.errors import InvalidArgumentError, RunFailedError

__all__ = [
    "AsyncManyHandle",
    "ManyHandle",
    "ManyResults",
    "RunFailure",
    "RunSummary",
    "akickoff_many",
    "astart_many",
    "kickoff_many",
    "start_many",
]

#: Longest single blocking wait inside the engine (seconds).
_POLL = 0.2

_STATE_NAMES = ("pending", "running", "done", "failed", "timed_out", "cancelled")


# --------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class RunFailure:
    """A run that did not produce a CrewOutput. Falsy, so ``[r for r in
    results if r]`` keeps the successful outputs.

    ``kind`` is ``"error"`` (the crew raised), ``"timeout"`` (per-run
    ``timeout``), ``"deadline"`` (overall ``deadline``) or ``"cancelled"``
    (``cancel()``, Ctrl-C, or ``on_error`` stopping the batch). ``elapsed`` is
    the run time in seconds (0 for an input that never started).
    """

    index: int
    kind: str
    error_type: str
    message: str
    elapsed: float
    started: bool = True
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    def __bool__(self) -> bool:
        return False


@dataclass(frozen=True)
class RunSummary:
    """Counts and run times of one batch (times in seconds).

    ``failed`` counts runs whose crew raised; ``timed_out`` runs stopped by
    ``timeout`` or ``deadline``; ``cancelled`` inputs cancelled before or
    while running. ``p50``/``p95``/``max`` are run times of successful runs
    (nearest rank). ``throughput`` is successful runs per second of
    ``elapsed``. ``stop`` is ``""``, ``"cancelled"`` or ``"deadline"``.
    ``abandoned`` counts runs whose thread did not stop (see the module doc).
    ``concurrency`` is the number of runs allowed at once at the end (the
    adaptive limit, or ``concurrency`` as given with ``adaptive=False``).
    """

    total: int
    done: int
    failed: int
    timed_out: int
    cancelled: int
    p50: float
    p95: float
    max: float
    elapsed: float
    throughput: float
    stop: str = ""
    abandoned: int = 0
    concurrency: int = 0


class ManyResults(list):
    """The results of a batch, in input order: ``results[i]`` is input i's
    CrewOutput or its :class:`RunFailure`. ``.summary`` is a
    :class:`RunSummary`; ``.failures`` and ``.outputs`` filter the list."""

    summary: RunSummary

    def __init__(self, items: Iterable[Any], summary: RunSummary) -> None:
        super().__init__(items)
        self.summary = summary

    @property
    def failures(self) -> list[RunFailure]:
        return [r for r in self if isinstance(r, RunFailure)]

    @property
    def outputs(self) -> list[Any]:
        return [r for r in self if not isinstance(r, RunFailure)]

    def __repr__(self) -> str:
        return f"ManyResults({len(self)} results, {self.summary!r})"


# --------------------------------------------------------------------------
# engines: the Go scheduler through the bridge, or a Python twin


class _NativeEngine:
    """The Go scheduler (package sched) behind the bridge."""

    def __init__(self, total: int, concurrency: int, timeout: float, deadline: float, adaptive: bool) -> None:
        from crewcore import _bridge

        self._call = _bridge.call
        self.h = self._call(["sched_new", 0, total, concurrency, float(timeout), float(deadline), bool(adaptive)])

    def acquire(self, wait: float) -> tuple[str, int]:
        kind, idx, _ = self._call(["sched_acquire", self.h, wait])
        return kind, idx

    def finish(self, idx: int, outcome: str) -> tuple[bool, float]:
        ok, el = self._call(["sched_finish", self.h, idx, outcome])
        return ok, el

    def check(self, idx: int) -> str:
        return self._call(["sched_check", self.h, idx])

    def cancel(self) -> bool:
        return self._call(["sched_cancel", self.h])

    def expired(self, wait: float) -> tuple[str, list[tuple[int, str]]]:
        kind, ex = self._call(["sched_expired", self.h, wait])
        return kind, [(int(i), r) for i, r in ex]

    def wait(self, wait: float) -> bool:
        return self._call(["sched_wait", self.h, wait])

    def summary(self) -> dict[str, Any]:
        return self._call(["sched_summary", self.h])

    def states(self) -> list[str]:
        return [_STATE_NAMES[b] for b in self._call(["sched_states", self.h])]

    def close(self) -> None:
        self._call(["sched_close", self.h])


class _PyEngine:
    """The same engine in Python, for processes without the native library."""

    def __init__(self, total: int, concurrency: int, timeout: float, deadline: float, adaptive: bool) -> None:
        self._cv = threading.Condition()
        self.total, self.conc, self.timeout = total, concurrency, timeout
        self.adaptive = adaptive
        self.limit = float(min(concurrency, 4) if adaptive else concurrency)
        self.min_rt = 0.0
        self.avg_rt = 0.0
        self.t0 = time.monotonic()
        self.deadline = self.t0 + deadline if deadline > 0 else 0.0
        self.next = self.running = self.final = 0
        self.st = ["pending"] * total
        self.start = [0.0] * total
        self.el = [0.0] * total
        self.dl = [0.0] * total
        self.told = [""] * total
        self.stop = ""
        self.closed = False
        self.end = self.t0 if total == 0 else 0.0

    def _set_final(self, i: int, st: str, now: float) -> None:
        if self.st[i] == "running":
            self.running -= 1
            self.el[i] = now - self.start[i]
        self.st[i] = st
        self.final += 1
        if self.final == self.total:
            self.end = now

    def _halt(self, why: str) -> bool:
        if self.stop:
            return False
        self.stop = why
        now = time.monotonic()
        for i in range(self.next, self.total):
            self._set_final(i, "cancelled", now)
        self.next = self.total
        self._cv.notify_all()
        return True

    def _poll(self, now: float) -> None:
        if not self.stop and self.deadline and now >= self.deadline:
            self._halt("deadline")

    def _reason(self, i: int, now: float) -> str:
        self._poll(now)
        if self.stop:
            return self.stop
        if self.dl[i] and now >= self.dl[i]:
            return "deadline" if self.deadline and now >= self.deadline else "timeout"
        return ""

    def _timeout(self, wait: float) -> float:
        if self.deadline:
            return max(0.0, min(wait, self.deadline - time.monotonic()))
        return wait

    def acquire(self, wait: float) -> tuple[str, int]:
        end = time.monotonic() + wait
        with self._cv:
            while True:
                now = time.monotonic()
                self._poll(now)
                if self.closed:
                    return "closed", -1
                if self.stop:
                    return "stopped", -1
                if self.next >= self.total:
                    return "drained", -1
                if self.running < self._slots():
                    i = self.next
                    self.next += 1
                    self.running += 1
                    self.st[i], self.start[i] = "running", now
                    d = now + self.timeout if self.timeout > 0 else 0.0
                    if self.deadline and (not d or self.deadline < d):
                        d = self.deadline
                    self.dl[i] = d
                    self._cv.notify_all()
                    return "run", i
                if now >= end:
                    return "wait", -1
                self._cv.wait(self._timeout(end - now) or 0.001)

    def _slots(self) -> int:
        return max(1, min(self.conc, int(self.limit))) if self.adaptive else self.conc

    def _adapt(self, rt: float) -> None:
        # The same gradient limiter as sched.Scheduler.adapt.
        if not self.adaptive or rt <= 0:
            return
        self.min_rt = rt if not self.min_rt or rt < self.min_rt else self.min_rt
        self.avg_rt = rt if not self.avg_rt else 0.8 * self.avg_rt + 0.2 * rt
        grad = max(0.5, min(1.0, 2.0 * self.min_rt / self.avg_rt))
        nxt = self.limit * grad + self.limit**0.5
        self.limit = max(1.0, min(float(self.conc), 0.8 * self.limit + 0.2 * nxt))

    def finish(self, i: int, outcome: str) -> tuple[bool, float]:
        with self._cv:
            if self.st[i] != "running":
                return False, self.el[i]
            self._set_final(i, outcome, time.monotonic())
            if outcome == "done":
                self._adapt(self.el[i])
            self._cv.notify_all()
            return True, self.el[i]

    def check(self, i: int) -> str:
        with self._cv:
            st = self.st[i]
            if st == "running":
                return self._reason(i, time.monotonic())
            if st == "pending":
                return self.stop
            if st == "timed_out":
                return self.told[i] or "timeout"
            return "cancelled"

    def cancel(self) -> bool:
        with self._cv:
            return self._halt("cancelled")

    def expired(self, wait: float) -> tuple[str, list[tuple[int, str]]]:
        end = time.monotonic() + wait
        with self._cv:
            while True:
                if self.closed:
                    return "closed", []
                if self.final == self.total:
                    return "finished", []
                now = time.monotonic()
                out, nxt = [], end
                for i in range(self.total):
                    if self.st[i] != "running" or self.told[i]:
                        continue
                    r = self._reason(i, now)
                    if r:
                        self.told[i] = r
                        out.append((i, r))
                    elif self.dl[i]:
                        nxt = min(nxt, self.dl[i])
                if out:
                    return "expired", out
                if now >= end:
                    return "wait", []
                self._cv.wait(max(0.001, nxt - now))

    def wait(self, wait: float) -> bool:
        end = time.monotonic() + wait
        with self._cv:
            while self.final < self.total and not self.closed:
                now = time.monotonic()
                if now >= end:
                    return False
                self._cv.wait(end - now)
            return self.final == self.total

    def summary(self) -> dict[str, Any]:
        with self._cv:
            self._poll(time.monotonic())
            counts = {n: 0 for n in _STATE_NAMES}
            for s in self.st:
                counts[s] += 1
            times = sorted(self.el[i] for i, s in enumerate(self.st) if s == "done")
            end = self.end or time.monotonic()
            return {
                "total": self.total,
                **counts,
                "p50": _pct(times, 50),
                "p95": _pct(times, 95),
                "max": times[-1] if times else 0.0,
                "elapsed": end - self.t0,
                "stop": self.stop,
                "limit": self._slots(),
            }

    def states(self) -> list[str]:
        with self._cv:
            return list(self.st)

    def close(self) -> None:
        with self._cv:
            self._halt("cancelled")
            self.closed = True
            self._cv.notify_all()


def _pct(sorted_times: list[float], p: float) -> float:
    if not sorted_times:
        return 0.0
    import math

    rank = max(1, min(len(sorted_times), math.ceil(len(sorted_times) * p / 100)))
    return sorted_times[rank - 1]


def _engine(total: int, concurrency: int, timeout: float, deadline: float, adaptive: bool) -> Any:
    from crewcore import _backend

    if _backend.use_native():
        return _NativeEngine(total, concurrency, timeout, deadline, adaptive)
    return _PyEngine(total, concurrency, timeout, deadline, adaptive)


# --------------------------------------------------------------------------
# stopping runs: CrewAI hooks and the stop exception


class _Run:
    """One running input."""

    __slots__ = ("batch", "index", "thread_id", "crew_id", "task", "told", "tool_threads", "remote")

    def __init__(self, batch: "_Batch", index: int) -> None:
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
        cls = type(name, (HookAborted,), {"__module__": __name__, "reason_code": reason})
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
    try:
        try:
            c = crew.copy()
            r.crew_id = id(c)
            _by_crew[r.crew_id] = r
            return True, c.kickoff(inputs=inputs, **kw)
        except BaseException as e:  # noqa: BLE001 - every failure is a result
            return False, e
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


# --------------------------------------------------------------------------
# the batch: shared by the thread and asyncio front ends


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
        _hooks_acquire()

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
        """Record a run that returned value (ok) or raised it."""
        if ok:
            self.end(r, "done", value, None)
            return
        outcome = self.classify(r, value)
        self.end(r, outcome, None, None if outcome in ("cancelled", "timed_out") else value)

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


# --------------------------------------------------------------------------
# threaded front end


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
        if self._b.closed:
            return False
        return bool(self._b.engine.cancel())

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


def _final_line(s: RunSummary) -> str:
    return (
        f"\rcrewcore: {s.done}/{s.total} done, {s.failed} failed, {s.timed_out} timed out, "
        f"{s.cancelled} cancelled in {s.elapsed:.1f}s ({s.throughput:.1f} runs/s, "
        f"p50 {s.p50:.2f}s p95 {s.p95:.2f}s)\n"
    )


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
    try:
        return ManyHandle(batch, min(concurrency, len(inputs)), min(processes, max(1, len(inputs))))
    except BaseException:
        batch.engine.cancel()
        batch.close()
        raise


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
    - ``progress``: a progress line on stderr when it is a terminal.
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

    Ctrl-C cancels every pending and running run, waits for them to stop and
    re-raises KeyboardInterrupt (press it again to stop waiting).
    """
    handle = start_many(
        crew, inputs, concurrency, timeout, deadline, on_error, progress, stop_grace, adaptive, processes,
        **kickoff_kwargs,
    )
    try:
        return handle.result()
    except KeyboardInterrupt:
        handle._interrupt()
        raise


# --------------------------------------------------------------------------
# asyncio front end


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
        if self._b.closed:
            return False
        return bool(self._b.engine.cancel())

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
    try:
        return AsyncManyHandle(batch, loop)
    except BaseException:
        batch.engine.cancel()
        batch.close()
        raise


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
