"""The run engine's native binding: ``_NativeEngine``, the Go scheduler
(package ``sched``) addressed by a handle through the bridge. Its pure-Python
twin is :mod:`crewcore.runs.fallback`; :func:`crewcore.runs.batch._engine`
picks one."""

from __future__ import annotations

from typing import Any

from crewcore.runs.results import _STATE_NAMES


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
