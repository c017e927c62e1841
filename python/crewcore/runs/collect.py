"""Collecting the runs of a queued batch: waiting for all of them, and
turning final runs into ``ManyResults`` (input order, ``RunFailure``
entries) with their ``RunSummary``. Used by ``RunBatch`` and
``kickoff_many(queue=...)``; it only calls methods of the queue and run
objects it is given."""

from __future__ import annotations

from dataclasses import replace
import time
from typing import Any, Callable

from crewcore.runs.results import ManyResults, RunFailure, RunSummary


def wait_all(
    queue: Any,
    handles: list[Any],
    timeout: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_final: Callable[[Any], None] | None = None,
    check: Callable[[], None] | None = None,
) -> list[Any]:
    """Wait until every handle's run is final; RunInfo in the handles' order.
    ``timeout``: seconds, then ``TimeoutError``; ``progress(done, total)``
    after runs end; ``on_final(info)`` for each run as it ends; ``check()``
    between waits (it may raise to stop waiting)."""
    pending: dict[int, list[int]] = {}
    for pos, h in enumerate(handles):
        pending.setdefault(h.id, []).append(pos)
    out: list[Any] = [None] * len(handles)
    end = None if timeout is None else time.monotonic() + timeout
    done = 0
    while pending:
        left = 0.5 if end is None else min(0.5, end - time.monotonic())
        if left <= 0:
            raise TimeoutError(f"{len(pending)} of {len(handles)} runs not final after {timeout} s")
        if check is not None:
            check()
        got = queue.wait(list(pending), left)
        for info in got:
            for pos in pending.pop(info.id, []):
                out[pos] = info
                done += 1
            if on_final is not None:
                on_final(info)
        if got and progress is not None:
            progress(done, len(handles))
    return out  # type: ignore[return-value]


def to_results(infos: list[Any], elapsed: float, deadline_hit: bool = False) -> ManyResults:
    """ManyResults in input order from final runs."""
    items: list[Any] = []
    for info in infos:
        if info.ok:
            items.append(info.value())
            continue
        f = info.failure()
        if deadline_hit and f.kind == "cancelled":
            f = RunFailure(f.index, "deadline", "RunDeadline", "passed the overall deadline (cancelled)",
                           f.elapsed, f.started, None)
        items.append(f)
    s = summary_of(infos, elapsed)
    if deadline_hit:
        s = replace(s, stop="deadline", timed_out=sum(1 for x in items if isinstance(x, RunFailure) and x.kind in ("timeout", "deadline")),
                    cancelled=sum(1 for x in items if isinstance(x, RunFailure) and x.kind == "cancelled"))
    return ManyResults(items, s)


def summary_of(infos: list[Any], elapsed: float) -> RunSummary:
    """A RunSummary of final runs."""
    done = [r for r in infos if r.ok]
    times = sorted(r.elapsed for r in done)

    def pct(p: float) -> float:
        if not times:
            return 0.0
        return times[max(0, min(len(times) - 1, int(len(times) * p + 0.999999) - 1))]

    kinds = [r.failure().kind for r in infos if not r.ok]
    return RunSummary(
        total=len(infos), done=len(done), failed=kinds.count("error"),
        timed_out=kinds.count("timeout") + kinds.count("deadline"), cancelled=kinds.count("cancelled"),
        p50=pct(0.5), p95=pct(0.95), max=times[-1] if times else 0.0, elapsed=elapsed,
        throughput=len(done) / elapsed if elapsed > 0 else 0.0,
    )
