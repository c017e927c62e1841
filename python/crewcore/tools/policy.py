"""ToolPolicy: the limits applied to tool calls, and the codes an engine
exchanges with the executor about one call."""

from __future__ import annotations

from dataclasses import dataclass, fields
import math
from typing import Any

from crewcore.errors import ToolPolicyError

# --------------------------------------------------------------------------
# the policy

_MiB = 1 << 20


#: Limits whose 0 is refused (see ToolPolicy).
_NO_ZERO = frozenset({"max_calls_per_task", "max_calls_per_run", "max_depth", "max_arg_bytes", "max_result_chars"})

@dataclass(frozen=True)
class ToolPolicy:
    """Limits applied to tool calls. ``None`` disables a limit. A count or a
    size (``max_calls_per_task``, ``max_calls_per_run``, ``max_depth``,
    ``max_arg_bytes``, ``max_result_chars``) of 0 is refused with
    ``ToolPolicyError``: it would read as "nothing allowed" (use None for no
    limit). For ``timeout``, ``rate_limit`` and ``cache_ttl``, 0 means off,
    as None does.

    Attributes:
        timeout: seconds one call may take. A Python tool runs on a worker
            thread; at the deadline the agent gets a timeout error and the
            thread is abandoned (Python threads cannot be killed). With
            ``isolate=True`` the tool runs in a subprocess that is killed at
            the deadline instead. Default 30 s.
        max_calls_per_task: tool calls allowed within one task (default 100).
        max_calls_per_run: tool calls allowed within one crew run, across its
            tasks (default 500).
        max_depth: nesting of tool calls: 1 is a call an agent makes; a tool
            or a delegation that runs tools from inside a tool is one deeper
            (default 5).
        loop_threshold: the same tool with equivalent arguments (key order,
            1 vs 1.0 do not matter) is run this many times within the last
            ``loop_window`` calls of a task (default 3). Further repeats are
            not run: each gets the result the same call returned last time
            (so CrewAI's own stop after 5 identical calls with identical
            results comes exactly when it would without crewcore), or, when
            there is none, a refusal whose text is the same for every repeat.
            A call whose tool raised is not counted as a repeat (CrewAI
            retries failed calls itself).
        loop_window: how many recent calls loop detection looks at (default 10).
        rate_limit: calls per second allowed per tool (default none);
            ``rate_burst`` calls may be made at once.
        cache_ttl: seconds a result is served again for an equivalent call
            (default none: no cache). Results that are ToolFailures or that
            MessagePack cannot encode are not cached.
        cache_max_bytes, cache_max_entries: bounds of the result cache (LRU).
        max_arg_bytes: encoded size of a call's arguments above which the
            call is refused (default 1 MiB).
        max_result_chars: a text result longer than this is cut, and the cut
            is stated in the result (default 100,000 characters).
        max_abandoned_threads: how many worker threads stuck in calls that
            timed out may exist at once; past it, calls are refused until one
            finishes (default 8).
        isolate: run tools in a subprocess killed at the deadline. The tool's
            function (or the tool object) must be picklable and importable
            by a fresh interpreter.
    """

    timeout: float | None = 30.0
    max_calls_per_task: int | None = 100
    max_calls_per_run: int | None = 500
    max_depth: int | None = 5
    loop_threshold: int | None = 3
    loop_window: int = 10
    rate_limit: float | None = None
    rate_burst: int | None = None
    cache_ttl: float | None = None
    cache_max_bytes: int = 32 * _MiB
    cache_max_entries: int = 4096
    max_arg_bytes: int | None = _MiB
    max_result_chars: int | None = 100_000
    max_abandoned_threads: int = 8
    isolate: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "isolate":
                if not isinstance(v, bool):
                    raise ToolPolicyError(f"ToolPolicy.isolate must be True or False, got {v!r}")
                continue
            if v is None:
                if f.name in ("loop_window", "cache_max_bytes", "cache_max_entries", "max_abandoned_threads"):
                    raise ToolPolicyError(f"ToolPolicy.{f.name} cannot be None")
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ToolPolicyError(
                    f"ToolPolicy.{f.name} must be a number or None, got {type(v).__name__} {v!r}"
                )
            if isinstance(v, float) and not math.isfinite(v):
                raise ToolPolicyError(f"ToolPolicy.{f.name} must be finite, got {v!r}")
            if v < 0:
                raise ToolPolicyError(f"ToolPolicy.{f.name} must be >= 0, got {v!r}")
            if v == 0 and f.name in _NO_ZERO:
                raise ToolPolicyError(
                    f"ToolPolicy.{f.name}=0 is refused: 0 would read as 'none allowed', but the engine"
                    " takes 0 as 'no limit'; give None for no limit, or a number >= 1"
                )
            if f.name not in ("timeout", "rate_limit", "cache_ttl") and v != int(v):
                raise ToolPolicyError(f"ToolPolicy.{f.name} must be a whole number, got {v!r}")
        if self.timeout is not None and 0 < self.timeout < 0.001:
            raise ToolPolicyError(f"ToolPolicy.timeout must be at least 0.001 s, got {self.timeout!r}")
        if self.isolate and not self.timeout:
            raise ToolPolicyError("ToolPolicy.isolate needs a timeout: the subprocess is killed at the deadline")
        if self.max_abandoned_threads < 1:
            raise ToolPolicyError("ToolPolicy.max_abandoned_threads must be at least 1")
        if self.loop_threshold == 1:
            raise ToolPolicyError("ToolPolicy.loop_threshold must be None/0 (off) or >= 2: 1 would refuse every first call")
        if self.loop_threshold and self.loop_window < self.loop_threshold:
            raise ToolPolicyError(
                f"ToolPolicy.loop_window ({self.loop_window}) must be >= loop_threshold ({self.loop_threshold})"
            )
        if self.loop_window > 10000:
            raise ToolPolicyError(f"ToolPolicy.loop_window must be at most 10000, got {self.loop_window}")
        if self.max_calls_per_task and self.max_calls_per_run and self.max_calls_per_task > self.max_calls_per_run:
            raise ToolPolicyError(
                f"ToolPolicy.max_calls_per_task ({self.max_calls_per_task}) is larger than"
                f" max_calls_per_run ({self.max_calls_per_run})"
            )
        if self.cache_ttl and (self.cache_max_bytes <= 0 or self.cache_max_entries <= 0):
            raise ToolPolicyError("ToolPolicy: a cache (cache_ttl) needs cache_max_bytes and cache_max_entries > 0")

    def _wire(self) -> dict[str, float]:
        def n(v: Any) -> float:
            return 0 if v is None else v

        return {
            "timeout_ms": n(self.timeout) * 1000.0,
            "max_calls_per_task": int(n(self.max_calls_per_task)),
            "max_calls_per_run": int(n(self.max_calls_per_run)),
            "max_depth": int(n(self.max_depth)),
            "loop_threshold": int(n(self.loop_threshold)),
            "loop_window": int(self.loop_window) if self.loop_threshold else 0,
            "rate_per_sec": float(n(self.rate_limit)),
            "rate_burst": int(n(self.rate_burst)),
            "cache_ttl_ms": n(self.cache_ttl) * 1000.0,
            "cache_max_bytes": int(self.cache_max_bytes),
            "cache_max_entries": int(self.cache_max_entries),
            "max_arg_bytes": int(n(self.max_arg_bytes)),
            "max_result_bytes": 4 * int(n(self.max_result_chars)),
        }


# --------------------------------------------------------------------------
# the codes of one call between the executor and an engine (Go's or the twin)

_OK, _FAILED, _TIMEDOUT = 0, 1, 2
#: tool_begin flag: count the call (budgets, loop window, depth) but neither
#: look it up in the cache nor take a rate-limit token: another cache answers it.
_COUNT_ONLY = 1
