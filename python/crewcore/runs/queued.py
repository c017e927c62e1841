"""``kickoff_many(crew, inputs, queue=...)``: today's blocking interface on
top of the durable queue. The inputs are submitted as one batch, optionally
worked by a local ``crewcore worker`` started for the call (``processes``),
and the results come back in input order with ``RunFailure`` entries.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Iterable

from crewcore.errors import InvalidArgumentError, RunFailedError, WorkerStartError
from crewcore.runs import crews
from crewcore.runs.collect import to_results, wait_all
from crewcore.runs.queue import RunInfo, open_queue
from crewcore.runs.results import ManyResults


def crew_paths(crew: str) -> list[str]:
    """Directories from which the factory's module imports (for the local
    worker's processes, which do not inherit this process's sys.path)."""
    crews.resolve(crew)
    top = crew.partition(":")[0].split(".")[0]
    mod = sys.modules.get(top)
    out: list[str] = []
    path = list(getattr(mod, "__path__", None) or [])
    if path:
        out.append(os.path.dirname(os.path.abspath(path[0])))
    elif getattr(mod, "__file__", None):
        out.append(os.path.dirname(os.path.abspath(mod.__file__)))  # type: ignore[arg-type]
    cwd = os.getcwd()
    if cwd not in out:
        out.append(cwd)
    return [p for p in out if os.path.isdir(p)]


class _Progress:
    def __init__(self, total: int, on: bool) -> None:
        self.total = total
        self.on = on and sys.stderr.isatty()
        self.t0 = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        if not self.on:
            return
        el = time.monotonic() - self.t0
        rate = done / el if el > 0 else 0.0
        sys.stderr.write(f"\rcrewcore queue: {done}/{total} runs final, {rate:.1f}/s, {el:.0f}s ")
        sys.stderr.flush()

    def close(self, res: ManyResults) -> None:
        if self.on:
            s = res.summary
            sys.stderr.write(f"\rcrewcore queue: {s.done} done, {s.failed} failed, {s.timed_out} timed out, "
                             f"{s.cancelled} cancelled in {s.elapsed:.1f}s\n")
            sys.stderr.flush()


def kickoff_many_queued(
    crew: Any,
    inputs: Iterable[dict[str, Any]],
    queue: Any,
    concurrency: int = 64,
    timeout: float | None = 120,
    deadline: float | None = None,
    on_error: str = "continue",
    progress: bool = True,
    processes: int | str = 1,
    kickoff_kwargs: dict[str, Any] | None = None,
    attempts: int = 3,
) -> ManyResults:
    """``kickoff_many(..., queue=...)`` (see its docstring). Of the extra
    keyword arguments, ``attempts``, ``priority`` and ``key`` are the queue's
    (as in ``submit``); any other is refused."""
    kickoff_kwargs = dict(kickoff_kwargs or {})
    attempts = kickoff_kwargs.pop("attempts", attempts)
    priority = kickoff_kwargs.pop("priority", 1)
    key = kickoff_kwargs.pop("key", None)
    if kickoff_kwargs:
        raise InvalidArgumentError(
            f"kickoff_many(queue=...) sends only the inputs to the workers; extra kickoff arguments "
            f"({', '.join(sorted(kickoff_kwargs))}) cannot go with them"
        )
    if not isinstance(crew, str):
        crews.check_spec(crew)  # raises CrewFactoryError with the advice
    if on_error not in ("continue", "cancel", "raise"):
        raise InvalidArgumentError(f'on_error must be "continue", "cancel" or "raise", got {on_error!r}')
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidArgumentError(f"concurrency must be an int >= 1, got {concurrency!r}")
    if processes == "auto":
        nproc = os.cpu_count() or 1
    elif isinstance(processes, bool) or not isinstance(processes, int) or processes < 0:
        raise InvalidArgumentError(f'processes must be an int >= 0 or "auto" with queue=, got {processes!r}')
    else:
        nproc = processes
    if deadline is not None and (not isinstance(deadline, (int, float)) or not deadline > 0):
        raise InvalidArgumentError(f"deadline must be seconds > 0, got {deadline!r}")
    items = list(inputs)
    crews.encode_inputs(items)  # JSON check before a worker is started
    q = open_queue(queue)
    worker = None
    if nproc > 0 and items:
        from crewcore.runs.worker import Worker

        per = max(1, min(8, -(-concurrency // nproc)))
        worker = Worker(q.spec, processes=nproc, concurrency=per, crew_path=crew_paths(crew),
                        timeout=float(timeout) if timeout else 600.0)
        worker.start(wait=False)
    batch = None
    t0 = time.monotonic()
    try:
        batch = q.submit(crew, items, timeout=timeout, attempts=attempts, priority=priority, key=key)
        bar = _Progress(len(items), progress)
        state = {"first": None, "stopped": False, "deadline": False}
        end = None if deadline is None else t0 + float(deadline)

        def on_final(info: RunInfo) -> None:
            if not info.ok and state["first"] is None and on_error != "continue":
                state["first"] = info
                if not state["stopped"]:
                    state["stopped"] = True
                    batch.cancel()

        def tick(done: int, total: int) -> None:
            bar(done, total)

        def check() -> None:
            # The local worker died (or never started): no run would end.
            if worker is not None and not worker.running:
                worker.wait(5)
                raise WorkerStartError(
                    f"the local crewcore worker exited with status {worker.proc.returncode} "
                    f"while runs were pending:\n" + "".join(worker._tail)
                )

        while True:
            try:
                left = None if end is None else max(0.01, end - time.monotonic())
                infos = wait_all(q, list(batch), timeout=left, progress=tick, on_final=on_final, check=check)
                break
            except TimeoutError:
                if not state["deadline"]:
                    state["deadline"] = True
                    batch.cancel()
                end = None  # wait for the cancelled runs to end
        res = to_results(infos, time.monotonic() - t0, deadline_hit=state["deadline"])
        bar.close(res)
    except (KeyboardInterrupt, WorkerStartError):
        if batch is not None:
            try:
                batch.cancel()
            except Exception:  # noqa: BLE001 - Ctrl-C wins
                pass
        raise
    finally:
        if worker is not None:
            worker.stop(timeout=60)
    first = state["first"]
    if on_error == "raise" and first is not None:
        raise RunFailedError(first.failure(), res)
    return res
