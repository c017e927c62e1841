"""Durable crew runs on a River queue (Go package ``runq``): ``submit``,
``Queue``, ``RunHandle``, ``RunBatch``.

    batch = crewcore.runs.submit(crew="myapp.crews:build_crew", inputs=[{...}, ...],
                                 queue="runs.db")           # or a postgresql:// DSN
    results = batch.results()      # ManyResults in input order (RunFailure entries)

    crewcore worker --queue runs.db --processes auto         # elsewhere, any number

A run is one River job: the crew's factory (``"package.module:function"``:
a Crew cannot be pickled), one JSON object of inputs, its options
(priority, attempts, timeout, schedule, unique key). Workers run it and
write its result (a CrewOutput as its JSON form) or its error back to the
job. ``queue=`` is a SQLite file (default
``<CREWAI_STORAGE_DIR or CrewAI's data dir>/crewcore/runs.db``) for one
machine, or a ``postgresql://`` DSN for many (the same server as a shared
memory store may hold it; River's tables go into the schema ``crewcore_runs``
unless the DSN says ``?schema=...``).

Runs are at-least-once: a worker killed mid-run leaves its job to River's
rescuer, which retries it (on any worker) once it has been "running" longer
than the worker's ``rescue_after``. A tool with side effects (an email, a
payment, a write elsewhere) may therefore act twice for an interrupted run;
make such tools idempotent (a key derived from the run's inputs) or check
before acting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
import json
import os
from pathlib import Path
import threading
import time
from typing import Any, Iterable

from crewcore.errors import (
    CrewcoreError,
    InvalidArgumentError,
    QueueClosedError,
)
from crewcore.runs import crews
from crewcore.runs.collect import to_results, wait_all
from crewcore.runs.results import ManyResults, RunFailure

#: States a run ends in.
FINAL_STATES = ("completed", "cancelled", "discarded")


def default_queue() -> str:
    """The default queue file: ``<CrewAI's storage dir>/crewcore/runs.db``
    (CrewAI's storage dir is ``CREWAI_STORAGE_DIR``'s data dir, as CrewAI
    computes it)."""
    from crewai_core.paths import db_storage_path

    d = Path(db_storage_path()) / "crewcore"
    d.mkdir(parents=True, exist_ok=True)
    return str(d / "runs.db")


def _spec(queue: Any) -> str:
    if queue is None or queue is True:
        return default_queue()
    if isinstance(queue, Queue):
        return queue.spec
    if isinstance(queue, os.PathLike):
        queue = os.fspath(queue)
    if not isinstance(queue, str) or not queue.strip():
        raise InvalidArgumentError(
            f"queue must be a SQLite file path or a postgresql:// DSN, not {queue!r}"
        )
    return queue


def _call(req: list[Any]) -> Any:
    from crewcore._backend import use_native
    from crewcore._bridge import call

    if not use_native():
        from crewcore._backend import reason

        raise CrewcoreError(
            f"the run queue needs crewcore's native library (River runs in Go), which this process "
            f"cannot use: {reason()}"
        )
    return call(req)


def _ts(v: Any) -> datetime | None:
    return None if v is None else datetime.fromtimestamp(float(v), tz=timezone.utc)


@dataclass(frozen=True)
class RunInfo:
    """One run as the queue holds it. Times are aware UTC datetimes (None
    when not reached); ``errors`` are ``(attempt, at, text)`` of failed
    attempts; ``output`` is what the worker recorded (see ``result``)."""

    id: int
    index: int
    batch: str
    key: str
    crew: str
    inputs: dict[str, Any]
    state: str
    attempt: int
    max_attempts: int
    priority: int
    river_queue: str
    timeout: float
    created_at: datetime | None
    scheduled_at: datetime | None
    attempted_at: datetime | None
    finalized_at: datetime | None
    attempted_by: list[str]
    errors: list[tuple[int, datetime | None, str]]
    output: dict[str, Any] | None
    cancel_requested: bool
    tags: list[str] = field(default_factory=list)

    @classmethod
    def _from(cls, m: dict[str, Any]) -> RunInfo:
        try:
            inputs = json.loads(m["inputs"]) if m.get("inputs") else {}
        except ValueError:
            inputs = {}
        out = m.get("output")
        try:
            output = json.loads(out) if out else None
        except ValueError:
            output = {"ok": False, "error": {"type": "CorruptOutput", "message": str(out)[:200]}}
        return cls(
            id=m["id"], index=m["index"], batch=m["batch"], key=m["key"], crew=m["crew"], inputs=inputs,
            state=m["state"], attempt=m["attempt"], max_attempts=m["max_attempts"], priority=m["priority"],
            river_queue=m["river_queue"], timeout=m["timeout"], created_at=_ts(m["created_at"]),
            scheduled_at=_ts(m["scheduled_at"]), attempted_at=_ts(m["attempted_at"]),
            finalized_at=_ts(m["finalized_at"]), attempted_by=list(m["attempted_by"]),
            errors=[(a, _ts(at), text) for a, at, text in m["errors"]], output=output,
            cancel_requested=bool(m["cancel_requested"]), tags=list(m.get("tags") or []),
        )

    @property
    def final(self) -> bool:
        """Completed, cancelled or discarded."""
        return self.state in FINAL_STATES

    @property
    def ok(self) -> bool:
        """Completed with a result."""
        return self.state == "completed"

    @property
    def elapsed(self) -> float:
        """The last attempt's run time in seconds (0 when not final)."""
        if self.attempted_at is None or self.finalized_at is None:
            return 0.0
        return max(0.0, (self.finalized_at - self.attempted_at).total_seconds())

    def value(self) -> Any:
        """The run's result: a CrewOutput (rebuilt from its JSON form) or the
        JSON value the crew returned. Raises ``RunFailedError`` for a run that
        did not complete, ``InvalidArgumentError`` for one not final yet."""
        if self.ok:
            return crews.decode_result((self.output or {}).get("result"))
        if not self.final:
            raise InvalidArgumentError(f"run {self.id} is {self.state}, not final yet")
        from crewcore.errors import RunFailedError

        raise RunFailedError(self.failure(), None)

    def failure(self) -> RunFailure:
        """This run as a ``RunFailure`` (kind "error", "timeout" or "cancelled")."""
        rec = self.output or {}
        err = rec.get("error") or {}
        text = self.errors[-1][2] if self.errors else ""
        etype, _, msg = text.partition(": ")
        etype = err.get("type") or (etype if msg else "") or "RunCancelled"
        msg = err.get("message") or msg or text or f"run {self.id} was {self.state}"
        if self.state == "cancelled" and not rec.get("permanent"):
            kind = "cancelled"
        elif etype == "RunTimeout" or rec.get("stopped") == "timeout":
            kind = "timeout"
        else:
            kind = "error"
        return RunFailure(self.index, kind, etype, msg, self.elapsed, self.attempted_at is not None, None)


@dataclass(frozen=True)
class QueueStats:
    """Counts per River state and figures of the newest completed runs
    (``sample`` of them): run time p50/p95/max in seconds, throughput in
    runs per second over their span; ``failures`` are the newest failed runs."""

    counts: dict[str, int]
    sample: int
    p50: float
    p95: float
    max: float
    throughput: float
    failures: list[RunInfo]


class Queue:
    """An open run queue: a SQLite file (default: CrewAI's storage dir) or a
    ``postgresql://`` DSN. Opening creates the file or the schema and River's
    tables when missing (a SQLite file's directory must exist).

    Raises ``QueueNotFoundError`` (no such directory or database),
    ``QueueAccessError`` (read-only, refused login), ``QueueUnavailableError``
    (server down), ``QueueCorruptError`` (not a queue).
    """

    def __init__(self, queue: Any = None, *, connect_timeout: float = 5.0) -> None:
        self._lock = threading.Lock()
        self._h: int | None = None
        self.spec = _spec(queue)
        self._h = _call(["runq_open", 0, self.spec, float(connect_timeout)])

    def _handle(self) -> int:
        h = self._h
        if h is None:
            raise QueueClosedError(f"the queue {self.spec} is closed")
        return h

    def close(self) -> None:
        """Release the connections (idempotent)."""
        with self._lock:
            h, self._h = self._h, None
        if h is not None:
            _call(["runq_close", h])

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at interpreter exit the bridge may be gone
            pass

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Queue({self.spec!r})"

    # -- submitting ----------------------------------------------------------
    def submit(
        self,
        crew: str,
        inputs: Iterable[dict[str, Any]],
        *,
        priority: int = 1,
        attempts: int = 3,
        timeout: float | None = None,
        scheduled_at: datetime | float | None = None,
        delay: float | None = None,
        key: str | None = None,
        batch: str | None = None,
        river_queue: str = "crewcore",
        check_crew: bool = True,
    ) -> RunBatch:
        """Queue one run per input; see :func:`submit`."""
        crews.check_spec(crew)
        texts = crews.encode_inputs(inputs)
        if check_crew:
            crews.resolve(crew)
        for name, v in (("priority", priority), ("attempts", attempts)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise InvalidArgumentError(f"{name} must be an int, got {v!r}")
        t = 0.0 if timeout is None else _seconds("timeout", timeout)
        if t == 0 and timeout is not None:
            raise InvalidArgumentError("timeout must be > 0 seconds (None: the worker's default)")
        at = 0.0
        if scheduled_at is not None and delay is not None:
            raise InvalidArgumentError("give scheduled_at or delay, not both")
        if isinstance(scheduled_at, datetime):
            if scheduled_at.tzinfo is None:
                raise InvalidArgumentError("scheduled_at must be an aware datetime (or a Unix time)")
            at = scheduled_at.timestamp()
        elif scheduled_at is not None:
            at = _seconds("scheduled_at", scheduled_at)
        elif delay is not None:
            at = time.time() + _seconds("delay", delay)
        for name, v in (("key", key), ("batch", batch), ("river_queue", river_queue)):
            if v is not None and not isinstance(v, str):
                raise InvalidArgumentError(f"{name} must be a string, got {type(v).__name__}")
        if not texts:
            return RunBatch(self, "", [])
        bid, rows = _call([
            "runq_submit", self._handle(), crew, texts, river_queue, priority, attempts, t, at, key or "", batch or "",
        ])
        return RunBatch(self, bid, [RunHandle(self, i, idx, dup) for idx, (i, _state, dup) in enumerate(rows)])

    # -- reading ---------------------------------------------------------------
    def get(self, run_id: int) -> RunInfo:
        """The run with that id (``RunNotFoundError`` if none)."""
        return RunInfo._from(_call(["runq_get", self._handle(), _id(run_id)]))

    def list(self, state: str | Iterable[str] | None = None, batch: str | None = None,
             limit: int = 100, river_queue: str | None = None) -> list[RunInfo]:
        """Runs, newest first, filtered by River state(s), batch, River queue."""
        states = [state] if isinstance(state, str) else list(state or [])
        rows = _call(["runq_list", self._handle(), states, batch or "", river_queue or "", int(limit)])
        return [RunInfo._from(m) for m in rows]

    def wait(self, run_ids: Iterable[int], timeout: float = 1.0) -> list[RunInfo]:
        """The final runs among ``run_ids``, waiting up to ``timeout`` seconds
        for at least one (an empty list if none ended meanwhile)."""
        if type(run_ids) is list and all(type(i) is int for i in run_ids):
            ids = run_ids  # already ids (wait_all's pending set): no per-item conversion
        else:
            ids = [_id(i) for i in run_ids]
        end = time.monotonic() + max(0.0, float(timeout))
        while True:
            left = end - time.monotonic()
            rows = _call(["runq_wait", self._handle(), ids, max(0.0, min(left, 0.25))])
            if rows or left <= 0.25:
                return [RunInfo._from(m) for m in rows]

    def stats(self, batch: str | None = None, sample: int = 1000, failures: int = 10) -> QueueStats:
        """What ``crewcore runs stats`` prints: counts per state, run-time
        percentiles and throughput of the newest completed runs, failures."""
        m = _call(["runq_stats", self._handle(), batch or "", int(sample), int(failures)])
        return QueueStats(
            counts=dict(m["counts"]), sample=m["sample"], p50=m["p50"], p95=m["p95"], max=m["max"],
            throughput=m["throughput"], failures=[RunInfo._from(f) for f in m["failures"]],
        )

    # -- acting ----------------------------------------------------------------
    def cancel(self, run_id: int) -> RunInfo:
        """Cancel a run: a pending one never starts; a running one stops at its
        next LLM or tool call (its worker is told); a final one stays."""
        return RunInfo._from(_call(["runq_cancel", self._handle(), _id(run_id)]))

    def cancel_batch(self, batch: str) -> int:
        """Cancel every run of a batch that is not final; returns how many."""
        return int(_call(["runq_cancel_batch", self._handle(), str(batch)]))

    def retry(self, run_id: int) -> RunInfo:
        """Make a final run available again at once (River's JobRetry)."""
        return RunInfo._from(_call(["runq_retry", self._handle(), _id(run_id)]))


def _id(v: Any) -> int:
    if isinstance(v, RunHandle):
        return v.id
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidArgumentError(f"a run id is an int, got {v!r}")
    return v


def _seconds(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v < 0 or v == float("inf"):
        raise InvalidArgumentError(f"{name} must be a number of seconds >= 0, got {v!r}")
    return float(v)


class RunHandle:
    """One queued run: ``id`` (River's job id), ``index`` (its input's
    position in the submit call), ``duplicate`` (an earlier run with the
    same key was found instead of queuing a new one)."""

    __slots__ = ("queue", "id", "index", "duplicate")

    def __init__(self, queue: Queue, run_id: int, index: int, duplicate: bool = False) -> None:
        self.queue = queue
        self.id = run_id
        self.index = index
        self.duplicate = duplicate

    def info(self) -> RunInfo:
        return self.queue.get(self.id)

    @property
    def state(self) -> str:
        return self.info().state

    def wait(self, timeout: float | None = None) -> RunInfo:
        """Wait until the run is final; ``TimeoutError`` after ``timeout`` s."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 1.0 if end is None else end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"run {self.id} is not final after {timeout} s")
            got = self.queue.wait([self.id], min(1.0, left))
            if got:
                return got[0]

    def result(self, timeout: float | None = None) -> Any:
        """Wait, then the run's result (see ``RunInfo.value``)."""
        return self.wait(timeout).value()

    def cancel(self) -> RunInfo:
        return self.queue.cancel(self.id)

    def retry(self) -> RunInfo:
        return self.queue.retry(self.id)

    def __repr__(self) -> str:
        return f"RunHandle(id={self.id}, index={self.index}{', duplicate' if self.duplicate else ''})"


class RunBatch(list):
    """The handles of one submit call, in input order; ``batch`` is its id
    (a River tag) and ``queue`` its Queue."""

    def __init__(self, queue: Queue, batch: str, handles: list[RunHandle]) -> None:
        super().__init__(handles)
        self.queue = queue
        self.batch = batch

    @property
    def ids(self) -> list[int]:
        return [h.id for h in self]

    def cancel(self) -> int:
        """Cancel every run of the batch that is not final."""
        return self.queue.cancel_batch(self.batch) if self.batch else 0

    def stats(self) -> QueueStats:
        return self.queue.stats(batch=self.batch)

    def wait(self, timeout: float | None = None, progress: Any = None) -> list[RunInfo]:
        """Wait until every run is final; their RunInfo in input order.
        ``TimeoutError`` after ``timeout`` seconds. ``progress(done, total)``
        is called whenever runs end."""
        return wait_all(self.queue, self, timeout=timeout, progress=progress)

    def results(self, timeout: float | None = None) -> ManyResults:
        """Wait, then a ``ManyResults`` in input order: the result of each
        completed run, a ``RunFailure`` for each other one."""
        t0 = time.monotonic()
        infos = self.wait(timeout)
        return to_results(infos, time.monotonic() - t0)

    def __repr__(self) -> str:
        return f"RunBatch({self.batch!r}, {len(self)} runs, {self.queue.spec!r})"


_queues: dict[str, Queue] = {}
_queues_lock = threading.Lock()
_queues_pid = os.getpid()


def open_queue(queue: Any = None) -> Queue:
    """A Queue shared by this process's calls with the same spec."""
    global _queues_pid
    if isinstance(queue, Queue):
        return queue
    spec = _spec(queue)
    with _queues_lock:
        if _queues_pid != os.getpid():  # forked: the parent's handles are not ours
            _queues.clear()
            _queues_pid = os.getpid()
        q = _queues.get(spec)
        if q is None or q._h is None:
            q = Queue(spec)
            _queues[spec] = q
        return q


def submit(
    crew: str,
    inputs: Iterable[dict[str, Any]],
    queue: Any = None,
    *,
    priority: int = 1,
    attempts: int = 3,
    timeout: float | None = None,
    scheduled_at: datetime | float | None = None,
    delay: float | None = None,
    key: str | None = None,
    batch: str | None = None,
    river_queue: str = "crewcore",
    check_crew: bool = True,
) -> RunBatch:
    """Queue one run of ``crew`` per input and return their handles at once.

    - ``crew``: the factory, ``"package.module:function"``, returning a Crew
      (or anything with ``kickoff(inputs=...)``). It is imported here first
      (``check_crew=False`` skips that, for a module only workers have), so a
      name that cannot be imported raises ``CrewFactoryError`` before anything
      is queued.
    - ``inputs``: dicts of JSON values (``InvalidArgumentError`` naming the
      first that is not).
    - ``queue``: a SQLite file, a ``postgresql://`` DSN, or a ``Queue``
      (default: CrewAI's storage dir's ``crewcore/runs.db``).
    - ``priority``: 1 (first, the default) to 4 (last).
    - ``attempts``: tries per run, the first included (default 3); failed
      attempts are retried with River's backoff (about 1 s, 16 s, 81 s, ...:
      attempt^4 seconds). A worker that dies mid-run costs its run an attempt.
    - ``timeout``: seconds per attempt (default: the worker's ``--timeout``).
    - ``scheduled_at`` (an aware datetime or a Unix time) or ``delay``
      (seconds): do not start before then.
    - ``key``: a caller's key; input i is queued under ``f"{key}#{i}"``, and
      submitting the same key again returns the existing runs
      (``handle.duplicate``) instead of queuing them twice, while they are
      not cancelled or discarded.
    - ``batch``: the batch id (a River tag; default: a random one).
    - ``river_queue``: the River queue (workers work one each).
    """
    q = open_queue(queue)
    return q.submit(
        crew, inputs, priority=priority, attempts=attempts, timeout=timeout, scheduled_at=scheduled_at,
        delay=delay, key=key, batch=batch, river_queue=river_queue, check_crew=check_crew,
    )
