"""The pure-Python engine (the fallback): the twin of the Go ``tools.Engine``."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from crewcore.errors import ToolArgumentsError
from crewcore.tools.failures import _args_problem
from crewcore.tools.policy import _COUNT_ONLY, _FAILED, _OK, _TIMEDOUT, ToolPolicy

#: The hint of every loop refusal (tools.LoopHint).
LOOP_HINT = "use the result you already received, call the tool with different arguments, or give your final answer now"


def loop_message(tool: str, threshold: int, window: int) -> str:
    """The text of a loop refusal (tools.LoopMessage): the tool and the policy
    only, so identical calls are refused with identical text."""
    return (
        f"tool {_go_quote(tool)} was called with the same arguments more than {threshold} times"
        f" within the last {window} calls; the result will not change"
    )


def _go_quote(s: str) -> str:
    """``s`` quoted as Go's %q quotes it for printable text (the Go engine's
    messages), so both engines refuse with the same bytes."""
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


class _PyEngine:
    """The pure-Python twin of the Go ``tools.Engine``, with the same verdicts.

    Used when the native library cannot load (or ``CREWCORE_FORCE_PYTHON=1``)
    and in a child forked after the library was loaded. Keys are canonical
    JSON (sorted keys, integral floats as integers) instead of MessagePack.
    """

    def __init__(self, policy: ToolPolicy) -> None:
        import msgpack

        self.policy = policy
        self._packb = msgpack.packb
        self._unpackb = msgpack.unpackb
        self._lock = threading.Lock()
        self._t0 = time.monotonic_ns()
        self._scopes: dict[str, list[Any]] = {}
        self._buckets: dict[str, list[float]] = {}
        from collections import OrderedDict

        self._cache: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        self._cache_bytes = 0
        self._stats: dict[str, Any] = dict(
            calls=0, allowed=0, cached=0, refused=0, timeouts=0, errors=0, cache_hits=0, cache_evictions=0
        )
        self._refused_by: dict[str, int] = {}
        self._timeout_ns = int((policy.timeout or 0) * 1e9)
        self._ttl_ns = int((policy.cache_ttl or 0) * 1e9)
        rate = policy.rate_limit or 0.0
        self._rate = rate
        self._burst = policy.rate_burst or max(1, math.ceil(rate)) if rate else 0

    def clock(self) -> int:
        return time.monotonic_ns() - self._t0

    def close(self) -> None:
        pass

    def _scope(self, k: str, now: int) -> list[Any]:
        sc = self._scopes.get(k)
        if sc is None:
            if len(self._scopes) >= 8192:
                for old in sorted(self._scopes, key=lambda x: self._scopes[x][3])[: len(self._scopes) // 2]:
                    del self._scopes[old]
            sc = self._scopes[k] = [0, None, 0, now]
        sc[3] = now
        return sc

    def _refuse(self, start: int, deadline: int, limit: str, mx: float, count: float, retry_ms: float, message: str, hint: str) -> list[Any]:
        self._stats["calls"] += 1
        self._stats["refused"] += 1
        self._refused_by[limit] = self._refused_by.get(limit, 0) + 1
        return [2, start, deadline, limit, float(mx), float(count), float(retry_ms), message, hint]

    def begin(self, tool: str, args: Any, task: str, run: str, depth: int, flags: int = 0) -> list[Any]:
        import json

        p = self.policy
        now = self.clock()
        deadline = now + self._timeout_ns if self._timeout_ns else 0
        try:
            enc = json.dumps(_canon_json(args), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError, RecursionError, OverflowError) as e:
            raise ToolArgumentsError(_args_problem(tool, args, e)) from None
        with self._lock:
            if p.max_depth and depth > p.max_depth:
                return self._refuse(now, deadline, "max_depth", p.max_depth, depth,
                    0, f"tool {_go_quote(tool)} was called at nesting depth {depth}; the limit is {p.max_depth}",
                    "do not delegate or call tools from inside tools any deeper; answer with what you have at this level")
            size = len(enc.encode("utf-8"))
            if p.max_arg_bytes and size > p.max_arg_bytes:
                return self._refuse(now, deadline, "max_arg_bytes", p.max_arg_bytes, size, 0,
                    f"the arguments of tool {_go_quote(tool)} are {size} bytes; the limit is {p.max_arg_bytes}",
                    "pass a shorter input (a reference, a summary or a smaller slice) instead of the whole content")
            key = tool + "\x00" + enc
            ts = self._scope("t:" + task, now) if task else None
            rs = self._scope("r:" + run, now) if run else None
            if p.loop_threshold:
                ls = ts or rs or self._scope("g:", now)
                if ls[1] is None:
                    ls[1] = [None] * p.loop_window
                same = 1 + sum(1 for x in ls[1] if x == key)
                ls[1][ls[2]] = key
                ls[2] = (ls[2] + 1) % len(ls[1])
                if same > p.loop_threshold:
                    # No running count in the text (tools.LoopMessage): identical
                    # calls get identical refusals.
                    return self._refuse(now, deadline, "loop", p.loop_threshold, same, 0,
                        loop_message(tool, p.loop_threshold, p.loop_window), LOOP_HINT)
            if ts is not None and p.max_calls_per_task and ts[0] >= p.max_calls_per_task:
                return self._refuse(now, deadline, "max_calls_per_task", p.max_calls_per_task, ts[0], 0,
                    f"this task already made {ts[0]} tool calls; the limit is {p.max_calls_per_task}",
                    "stop calling tools and give your final answer with the information you have")
            if rs is not None and p.max_calls_per_run and rs[0] >= p.max_calls_per_run:
                return self._refuse(now, deadline, "max_calls_per_run", p.max_calls_per_run, rs[0], 0,
                    f"this crew run already made {rs[0]} tool calls; the limit is {p.max_calls_per_run}",
                    "stop calling tools and give your final answer with the information you have")
            if ts is not None:
                ts[0] += 1
            if rs is not None:
                rs[0] += 1
            if flags & _COUNT_ONLY:
                self._stats["calls"] += 1
                self._stats["cached"] += 1
                return [1, now, deadline, None]
            if self._ttl_ns:
                hit = self._cache.get(key)
                if hit is not None:
                    if now < hit[0]:
                        self._cache.move_to_end(key)
                        self._stats["calls"] += 1
                        self._stats["cached"] += 1
                        self._stats["cache_hits"] += 1
                        return [1, now, deadline, hit[1]]
                    self._drop(key)
            if self._rate:
                b = self._buckets.get(tool)
                if b is None:
                    b = self._buckets[tool] = [float(self._burst), now]
                b[0] = min(float(self._burst), b[0] + (now - b[1]) / 1e9 * self._rate)
                b[1] = now
                if b[0] < 1:
                    wait_ms = (1 - b[0]) / self._rate * 1000
                    if ts is not None:
                        ts[0] -= 1
                    if rs is not None:
                        rs[0] -= 1
                    return self._refuse(now, deadline, "rate_limit", self._rate, self._burst, wait_ms,
                        f"tool {_go_quote(tool)} is limited to {self._rate:g} calls per second",
                        f"wait about {int(wait_ms) + 1} ms before calling {_go_quote(tool)} again, or do something else first")
                b[0] -= 1
            self._stats["calls"] += 1
            self._stats["allowed"] += 1
        return [0, now, deadline, key if self._ttl_ns else None]

    def forget(self, tool: str, args: Any, task: str, run: str) -> None:
        """Take the most recent occurrence of this call out of its loop window
        (tools.Engine.Forget: a call whose tool raised is not a repeat)."""
        if not self.policy.loop_threshold:
            return
        import json

        try:
            key = tool + "\x00" + json.dumps(_canon_json(args), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError, RecursionError, OverflowError) as e:
            raise ToolArgumentsError(_args_problem(tool, args, e)) from None
        with self._lock:
            sc = self._scopes.get("t:" + task if task else "r:" + run if run else "g:")
            if sc is None or sc[1] is None:
                return
            ring, n = sc[1], len(sc[1])
            for i in range(1, n + 1):
                j = (sc[2] - i) % n
                if ring[j] == key:
                    ring[j] = None
                    return

    def _drop(self, key: str) -> None:
        e = self._cache.pop(key)
        self._cache_bytes -= len(key) + len(e[1])

    def end(self, start: int, outcome: int, key: Any, result: bytes | None) -> tuple[int, bool]:
        el = self.clock() - start
        p = self.policy
        stored = False
        with self._lock:
            if outcome == _TIMEDOUT:
                self._stats["timeouts"] += 1
            elif outcome == _FAILED:
                self._stats["errors"] += 1
            if outcome == _OK and self._ttl_ns and key and result is not None:
                size = len(key) + len(result)
                limit = 4 * (p.max_result_chars or 0)
                if size <= p.cache_max_bytes and (not limit or len(result) <= limit):
                    if key in self._cache:
                        self._drop(key)
                    self._cache[key] = (self.clock() + self._ttl_ns, bytes(result))
                    self._cache_bytes += size
                    while self._cache_bytes > p.cache_max_bytes or len(self._cache) > p.cache_max_entries:
                        self._drop(next(iter(self._cache)))
                        self._stats["cache_evictions"] += 1
                    stored = True
        return el, stored

    def reset(self, key: str = "") -> None:
        with self._lock:
            if key:
                self._scopes.pop(key, None)
            else:
                self._scopes.clear()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            st = dict(self._stats)
            st["cache_entries"] = len(self._cache)
            st["cache_bytes"] = self._cache_bytes
            st["refused_by"] = dict(self._refused_by)
            st["engine"] = "python"
        return st


def _canon_json(v: Any) -> Any:
    """Arguments in the form whose JSON encoding is the canonical key."""
    if isinstance(v, float):
        if v == v and v not in (float("inf"), float("-inf")) and v == int(v) and abs(v) < 9.2e18:
            return int(v)
        return v
    if isinstance(v, int) and not isinstance(v, bool) and not (-(2**63) <= v < 2**64):
        raise OverflowError("integer out of range")
    if isinstance(v, dict):
        return {str(k): _canon_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_canon_json(x) for x in v]
    if isinstance(v, (bytes, bytearray)):
        return {"$bytes": bytes(v).hex()}
    return v
