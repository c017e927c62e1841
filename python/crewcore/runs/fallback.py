"""The run engine in pure Python: ``_PyEngine``, the twin of the Go scheduler
(:mod:`crewcore.runs.native`) for processes without the native library (the
same queue, slots, deadlines, cancellation and adaptive limit)."""

from __future__ import annotations

import threading
import time
from typing import Any

from crewcore.runs.results import _STATE_NAMES


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
