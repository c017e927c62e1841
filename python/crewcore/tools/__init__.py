"""crewcore's tool executor: deadlines, budgets, loop detection, caching.

    import crewcore
    crewcore.install(tools=crewcore.ToolPolicy(timeout=20, max_calls_per_task=30))

puts every tool call of every agent under a :class:`ToolPolicy`, and

    safe_search = crewcore.guard(search_tool, timeout=5, isolate=True)

wraps one tool with its own policy.

How it plugs into CrewAI (1.15, read from the installed wheel):

* ``install(tools=...)`` replaces, while installed, the methods CrewAI runs
  tools through on all its execution paths: ``BaseTool.run`` / ``Tool.run``
  (native function calling), ``CrewStructuredTool.invoke`` (the ReAct text
  path), ``arun`` / ``ainvoke`` (async), and ``CacheHandler.read`` (to count
  the calls CrewAI's own cache answers). Each call inside a CrewAI execution
  makes one C call (``crewcore_tool_begin``) in which the Go engine checks
  depth, argument size, loop detection, per-task and per-run budgets, the
  result cache and the rate limit; then CrewAI's own method runs under the
  deadline (on a worker thread, or the tool in a subprocess for
  ``isolate=True``), and the result (or a structured
  :class:`~crewai.tools.tool_failure.ToolFailure`) is returned to CrewAI as
  the tool's result: CrewAI formats it, records failures on the task output
  and emits its events as for any call. No CrewAI hook is registered (each
  one costs every tool call a HookDispatchedEvent).
* ``guard(tool)`` returns a ``BaseTool`` whose ``_run`` goes through the same
  executor with the tool's own policy; the installed policy leaves it alone.

Go owns the policy state, the clock and the result cache; Python owns the
threads and subprocesses that run Python code.
"""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass, fields, replace
import inspect
import logging
import math
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import traceback
from typing import Any, Callable, ClassVar

from crewcore.errors import (
    ToolArgumentsError,
    ToolPolicyError,
)

log = logging.getLogger("crewcore.tools")

__all__ = [
    "FetchTool",
    "FileListTool",
    "FileReadTool",
    "GuardedTool",
    "ToolPolicy",
    "guard",
    "tool_stats",
]

# --------------------------------------------------------------------------
# the policy

_MiB = 1 << 20


@dataclass(frozen=True)
class ToolPolicy:
    """Limits applied to tool calls. ``None`` (or 0) disables a limit.

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
            1 vs 1.0 do not matter) is allowed this many times within the
            last ``loop_window`` calls of a task; further repeats are refused
            with a message telling the model to use what it has (default 3).
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
# the Go engine behind one policy


_gil_lib_handle: Any = None
#: bytes of the per-thread buffer tool_begin responses are written into
#: (larger ones come in C memory that is freed after copying)
_BUF_CAP = 16384


def _gil_lib() -> Any:
    """The library loaded through ``ctypes.PyDLL``: calls keep the GIL.

    A policy check takes microseconds in Go. Releasing the GIL around it (as
    ``ctypes.CDLL`` does) lets any other runnable Python thread -- CrewAI's
    event-bus workers run on every tool call -- take the GIL, and getting it
    back can take up to the 5 ms switch interval: measured, that turned a
    10 us call into 2 ms. Long calls (fetch, file reads) go through the
    ordinary CDLL binding, which releases the GIL.
    """
    global _gil_lib_handle
    if _gil_lib_handle is None:
        import ctypes

        from crewcore import _bridge

        lib = ctypes.PyDLL(str(_bridge.library_path()))
        lib.crewcore_free.argtypes = [ctypes.c_void_p]
        lib.crewcore_free.restype = None
        # int64 crewcore_tool_begin(h, req, len, buf, cap, &resp, &resp_len): see cabi/tools_fast.go
        lib.crewcore_tool_begin.argtypes = [
            ctypes.c_int64,
            ctypes.c_char_p,
            ctypes.c_int64,
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.POINTER(ctypes.c_int64),
        ]
        lib.crewcore_tool_begin.restype = ctypes.c_int64
        _gil_lib_handle = lib
    return _gil_lib_handle


class _Engine:
    """One policy's state in the Go engine (a handle)."""

    def __init__(self, policy: ToolPolicy) -> None:
        from crewcore import _bridge

        self.policy = policy
        self._bridge = _bridge
        try:
            self.h = int(_bridge.call(["tool_policy_new", 0, policy._wire()]))
        except ToolPolicyError as e:
            raise ToolPolicyError(f"invalid ToolPolicy: {e}") from None
        _bridge.load()
        self._lib = _gil_lib()
        import msgpack

        self._packb = msgpack.packb
        self._unpackb = msgpack.unpackb
        self._begin_fn = self._lib.crewcore_tool_begin
        # the engine's deadline is start + the policy timeout (tools.Engine.Begin)
        # (the same float arithmetic as cabi's ms(): timeout_ms * 1e6, truncated)
        self._timeout_ns = int((policy.timeout or 0) * 1000.0 * 1e6)
        self._buf = threading.local()

    def close(self) -> None:
        h, self.h = self.h, 0
        if h and not self._bridge.forked():
            try:
                self._bridge.call(["tool_policy_free", h])
            except Exception:  # pragma: no cover - best effort at shutdown
                pass

    def __del__(self) -> None:  # pragma: no cover - finalizer
        try:
            self.close()
        except Exception:
            pass

    def begin(self, tool: str, args: Any, task: str, run: str, depth: int, flags: int = 0) -> list[Any]:
        """One bridge call: the engine's verdict for a call (see cabi/tools_fast.go).

        An allowed call without a cache key (the common case) comes back as
        the start time alone: no response buffer, no MessagePack decoding.
        """
        if self._bridge._forked:
            return self._twin().begin(tool, args, task, run, depth, flags)
        st = self._buf.__dict__
        refs = st.get("refs")
        if refs is None:
            refs = self._refs(st)
        try:
            # This thread's Packer: msgpack.packb builds one (and its
            # buffer) per call, which costs ~7 us more inside CrewAI's path.
            req = refs[3]((tool, args, task, run, depth, flags))
        except (TypeError, ValueError, OverflowError) as e:
            raise ToolArgumentsError(_args_problem(tool, args, e)) from None
        r = self._begin_fn(self.h, req, len(req), refs[2], _BUF_CAP, refs[0], refs[1])
        if r >= 0:
            return [0, r, r + self._timeout_ns if self._timeout_ns else 0, None]
        if r == -3:  # the cached value itself, still encoded (the executor decodes it)
            return [1, 0, 0, self._raw(st)]
        raw = self._raw(st)
        resp = self._unpackb(raw, raw=False) if raw else None
        if r == -2:
            raise self._bridge._error(resp)
        return resp

    def _refs(self, st: dict[str, Any]) -> tuple[Any, Any, int, Callable[[Any], bytes]]:
        """This thread's response slots and buffer, and its request packer
        (a Packer is not thread-safe; autoreset leaves it empty after an
        error too)."""
        import ctypes

        import msgpack

        out = st["out"] = ctypes.c_void_p()
        n = st["n"] = ctypes.c_int64()
        buf = st["buf"] = ctypes.create_string_buffer(_BUF_CAP)
        st["view"] = memoryview(buf).cast("B")
        pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
        refs = st["refs"] = (ctypes.byref(out), ctypes.byref(n), ctypes.addressof(buf), pack)
        return refs

    def _raw(self, st: dict[str, Any]) -> Any:
        """The response the last call left: in this thread's buffer (a view
        valid until the thread's next call) or in C memory (copied, freed)."""
        import ctypes

        n = st["n"].value
        p = st["out"].value
        if not p:
            return st["view"][:n]
        try:
            return ctypes.string_at(p, n)
        finally:
            self._lib.crewcore_free(p)

    def _twin(self) -> _PyEngine:
        """After fork() the Go runtime is unusable here: a fresh Python engine."""
        tw = self.__dict__.get("_tw")
        if tw is None:
            log.warning("crewcore: forked after the native library was loaded; tool policies run in Python here")
            tw = self.__dict__["_tw"] = _PyEngine(self.policy)
        return tw

    def end(self, start: int, outcome: int, key: bytes | None, result: bytes | None) -> tuple[int, bool]:
        if self._bridge._forked:
            return self._twin().end(start, outcome, key, result)
        el, stored = self._bridge.call(["tool_end", self.h, start, outcome, key, result])
        return int(el), bool(stored)

    def clock(self) -> int:
        if self._bridge._forked:
            return self._twin().clock()
        return int(self._bridge.call(["tool_clock", self.h]))

    def reset(self, key: str = "") -> None:
        if self._bridge._forked:
            return self._twin().reset(key)
        self._bridge.call(["tool_reset", self.h, key])

    def stats(self) -> dict[str, Any]:
        if self._bridge._forked:
            return self._twin().stats()
        st = dict(self._bridge.call(["tool_stats", self.h]))
        st["engine"] = "native"
        return st


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
                    0, f"tool {tool!r} was called at nesting depth {depth}; the limit is {p.max_depth}",
                    "do not delegate or call tools from inside tools any deeper; answer with what you have at this level")
            size = len(enc.encode("utf-8"))
            if p.max_arg_bytes and size > p.max_arg_bytes:
                return self._refuse(now, deadline, "max_arg_bytes", p.max_arg_bytes, size, 0,
                    f"the arguments of tool {tool!r} are {size} bytes; the limit is {p.max_arg_bytes}",
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
                    return self._refuse(now, deadline, "loop", p.loop_threshold, same, 0,
                        f"tool {tool!r} was called with the same arguments {same} times within the last"
                        f" {p.loop_window} calls; the result will not change",
                        "use the result you already received, call the tool with different arguments, or give your final answer now")
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
                        f"tool {tool!r} is limited to {self._rate:g} calls per second",
                        f"wait about {int(wait_ms) + 1} ms before calling {tool!r} again, or do something else first")
                b[0] -= 1
            self._stats["calls"] += 1
            self._stats["allowed"] += 1
        return [0, now, deadline, key if self._ttl_ns else None]

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


def _make_engine(policy: ToolPolicy) -> Any:
    """The Go engine, or the Python twin when the library cannot be used."""
    from crewcore import _backend

    return _Engine(policy) if _backend.use_native() else _PyEngine(policy)


def _args_problem(tool: str, args: Any, e: Exception) -> str:
    if isinstance(e, RecursionError) or (isinstance(e, ValueError) and ("recursion" in str(e) or "Circular" in str(e))):
        why = "they contain a recursive (self-referencing) structure or are nested too deeply"
    elif isinstance(e, OverflowError):
        why = "they contain an integer outside the 64-bit range"
    else:
        why = f"they are not JSON-serializable ({e})"
    return f"the arguments of tool {tool!r} cannot be encoded: {why}"


# --------------------------------------------------------------------------
# structured failures


def _failure(
    tool: str,
    limit: str,
    message: str,
    hint: str,
    *,
    reason: str = "usage_limit",
    code: str | None = None,
    retryable: bool = False,
    **details: Any,
) -> Any:
    """A CrewAI ToolFailure carrying the structured error the model sees."""
    from crewai.tools.tool_failure import ToolFailure, ToolFailureReason

    details = {"tool": tool, "limit": limit, "hint": hint, **details}
    text = f"crewcore refused or stopped tool '{tool}' ({limit}): {message}. What to do: {hint}."
    if "elapsed_ms" in details:
        text += f" [elapsed {details['elapsed_ms']:.0f} ms]"
    return ToolFailure(
        message=text,
        reason=ToolFailureReason(reason),
        code=code or f"crewcore.{limit}",
        retryable=retryable,
        details=details,
    )


_HERE = os.path.abspath(__file__)
_CREWAI_TOOLS = os.sep + os.path.join("crewai", "tools") + os.sep


def _internal_frame(filename: str) -> bool:
    """crewcore's executor and CrewAI's tool wrappers: not the tool's own frames."""
    return filename == _HERE or _CREWAI_TOOLS in filename or filename.endswith(os.sep + "_bridge.py")


def _exception_failure(tool: str, exc: BaseException, elapsed_ms: float) -> Any:
    """A ToolFailure that keeps the exception's type, message and last frames."""
    from crewai.tools.tool_failure import ToolFailure, ToolFailureReason

    t = type(exc)
    qual = f"{t.__module__}.{t.__qualname__}" if t.__module__ != "builtins" else t.__qualname__
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _internal_frame(f.filename)][-5:]
    tb = "".join(traceback.format_list(frames)).rstrip()
    msg = str(exc) or t.__name__
    extra = ""
    if not isinstance(exc, Exception):
        extra = (
            f" ({qual} derives from BaseException, not Exception; crewcore reports it as a"
            " tool failure instead of letting it stop the agent)"
        )
    text = f"Tool '{tool}' raised {qual}: {msg}{extra}"
    if tb:
        text += f"\nLast frames:\n{tb}"
    return ToolFailure(
        message=text,
        reason=ToolFailureReason.EXCEPTION,
        code=t.__name__,
        details={
            "tool": tool,
            "exception_type": qual,
            "exception_message": msg,
            "traceback": tb,
            "elapsed_ms": elapsed_ms,
        },
    )


# --------------------------------------------------------------------------
# running Python code under a deadline


class _Worker:
    __slots__ = ("go", "done", "fn", "ctx", "ok", "value", "finished", "abandoned", "thread")

    def __init__(self) -> None:
        self.go = threading.Lock()
        self.go.acquire()
        self.done = threading.Lock()
        self.done.acquire()
        self.fn: Callable[[], Any] | None = None
        self.ctx: contextvars.Context | None = None
        self.ok = False
        self.value: Any = None
        self.finished = False
        self.abandoned = False


class _Saturated(Exception):
    pass


class _Runner:
    """Worker threads that run tool calls under a deadline.

    Handing a call to an idle worker is two lock operations (no queue, no
    future). A call that passes its deadline leaves its worker running
    ("abandoned"); when it finishes, the worker comes back to the pool. At
    most ``max_abandoned`` workers may be abandoned at once: past that, new
    calls are refused (_Saturated) rather than starting more threads.
    """

    MAX_IDLE = 16

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self.abandoned = 0
        self.threads = 0
        self.abandoned_total = 0

    def _loop(self, w: _Worker) -> None:
        while True:
            w.go.acquire()
            fn, ctx = w.fn, w.ctx
            if fn is None:  # retire
                return
            try:
                assert ctx is not None
                v = ctx.run(fn)
                if inspect.iscoroutine(v):
                    v = asyncio.run(v)
                w.ok, w.value = True, v
            except BaseException as e:  # noqa: BLE001 - a tool's BaseException is reported, not raised
                w.ok, w.value = False, e
            w.fn = w.ctx = None
            with self._lock:
                w.finished = True
                if not w.abandoned:
                    w.done.release()
                    continue
                # Nobody waits for this result any more: recycle the worker.
                self.abandoned -= 1
                w.abandoned = False
                w.value = None
                if len(self._idle) >= self.MAX_IDLE:
                    self.threads -= 1
                    return
                self._idle.append(w)

    def run(self, fn: Callable[[], Any], ctx: contextvars.Context, timeout: float | None, cap: int) -> tuple[bool, Any, bool]:
        """Run fn in ctx on a worker: (ok, value or exception, timed_out)."""
        with self._lock:
            if self._idle:
                w = self._idle.pop()
            else:
                if self.abandoned >= cap:
                    raise _Saturated(self.abandoned)
                w = _Worker()
                self.threads += 1
                w.thread = threading.Thread(target=self._loop, args=(w,), name="crewcore-tool", daemon=True)
                w.thread.start()
        w.finished = False
        w.fn, w.ctx = fn, ctx
        w.go.release()
        try:
            got = w.done.acquire(timeout=-1 if timeout is None else timeout)
        except BaseException:
            # Ctrl-C (or another async exception) while waiting: nobody will
            # collect this result; the worker recycles itself when it ends.
            with self._lock:
                if w.finished:
                    w.done.acquire()
                    w.value = None
                    self._idle.append(w)
                else:
                    w.abandoned = True
                    self.abandoned += 1
                    self.abandoned_total += 1
            raise
        if got:
            ok, v = w.ok, w.value
            w.value = None
            with self._lock:
                self._idle.append(w)
            return ok, v, False
        with self._lock:
            if w.finished:  # finished in the instant between the wait and the lock
                w.done.acquire()
                ok, v = w.ok, w.value
                w.value = None
                self._idle.append(w)
                return ok, v, False
            w.abandoned = True
            self.abandoned += 1
            self.abandoned_total += 1
        return False, None, True


_runner = _Runner()


def _new_runner_in_child() -> None:
    # The workers' threads do not exist in a forked child (and the pool's
    # lock may have been held at fork time): start from an empty pool.
    global _runner
    _runner = _Runner()


os.register_at_fork(after_in_child=_new_runner_in_child)

# --------------------------------------------------------------------------
# isolated calls: a subprocess killed at the deadline

_CHILD = r"""
import sys, pickle, traceback, asyncio, inspect
data = sys.stdin.buffer.read()
path, payload = pickle.loads(data)
sys.path[:0] = [p for p in path if p not in sys.path]
out = sys.stdout.buffer
try:
    fn, kwargs = pickle.loads(payload)
    v = fn(**kwargs)
    if inspect.iscoroutine(v):
        v = asyncio.run(v)
    try:
        res = pickle.dumps(("ok", v))
    except Exception as e:
        res = pickle.dumps(("ok", repr(v)))
except BaseException as e:
    t = type(e)
    qual = t.__qualname__ if t.__module__ == "builtins" else t.__module__ + "." + t.__qualname__
    tb = "".join(traceback.format_list(traceback.extract_tb(e.__traceback__)[-5:])).rstrip()
    res = pickle.dumps(("err", qual, t.__name__, str(e), tb, isinstance(e, Exception)))
out.write(res)
out.flush()
"""


class _IsolatedError(Exception):
    def __init__(self, qual: str, name: str, msg: str, tb: str, is_exc: bool) -> None:
        super().__init__(msg)
        self.qual, self.name, self.msg, self.tb, self.is_exc = qual, name, msg, tb, is_exc


def _run_isolated(fn: Callable[..., Any], kwargs: dict[str, Any], timeout: float) -> tuple[bool, Any, bool]:
    """Run fn(**kwargs) in a fresh interpreter; kill its process group at the deadline."""
    try:
        payload = pickle.dumps((fn, kwargs))
    except Exception as e:
        raise ToolArgumentsError(f"isolate=True needs a picklable tool function and arguments: {e}") from None
    data = pickle.dumps((list(sys.path), payload))
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.kill()
        proc.communicate()
        return False, proc.pid, True
    finally:
        if proc.poll() is None:  # an exception of our own: never leave it running
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    try:
        res = pickle.loads(out)
    except Exception:
        tail = err.decode("utf-8", "replace")[-2000:]
        return False, RuntimeError(f"isolated tool process exited with status {proc.returncode}: {tail}"), False
    if res[0] == "ok":
        return True, res[1], False
    return False, _IsolatedError(*res[1:]), False


# --------------------------------------------------------------------------
# the executor: one call of one tool under one policy

_depth: contextvars.ContextVar[int] = contextvars.ContextVar("crewcore_tool_depth", default=0)
#: The policy timeout of the Go-native tool call in progress (seconds, or None):
#: the built-in tools pass min(their own timeout, this) to Go as the context deadline.
_native_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("crewcore_native_deadline", default=None)


def _native_timeout(own: float) -> float:
    d = _native_deadline.get()
    return own if d is None else min(own, d)


_OK, _FAILED, _TIMEDOUT = 0, 1, 2
#: tool_begin flag: count the call (budgets, loop window, depth) but neither
#: look it up in the cache nor take a rate-limit token: another cache answers it.
_COUNT_ONLY = 1


def _never() -> Any:  # pragma: no cover - isolated calls run isolate_fn instead
    raise RuntimeError("not called")


def _retrieve(fut: Any) -> None:
    """Done callback of a cancelled tool task: fetch its outcome so asyncio
    does not log 'exception was never retrieved'."""
    if not fut.cancelled():
        fut.exception()


class _Executor:
    def __init__(self, policy: ToolPolicy) -> None:
        self.policy = policy
        self.engine = _make_engine(policy)
        self._timeout = policy.timeout or None
        self._cache = bool(policy.cache_ttl)
        self._maxchars = policy.max_result_chars or 0
        self._cap = policy.max_abandoned_threads

    def _begin(self, tool: str, args: dict[str, Any], task: str, run: str, depth: int, flags: int = 0) -> Any:
        """The engine's verdict: a tuple (start, deadline, key) for an allowed
        call, or the final result (a cached value or a ToolFailure) in a list
        of one."""
        try:
            v = self.engine.begin(tool, args, task, run, depth, flags)
        except ToolArgumentsError as e:
            return [_failure(tool, "arguments", str(e), "call the tool again with plain JSON values (strings, numbers, lists, objects)", reason="invalid_input")]
        verdict = v[0]
        if verdict == 0:
            return v[1], v[2], v[3]
        if verdict == 1:
            if flags & _COUNT_ONLY:
                return [None]
            return [self.engine._unpackb(v[3], raw=False)]
        _, start, _, limit, mx, count, retry_ms, message, hint = v
        details: dict[str, Any] = {"max": mx, "count": count}
        if retry_ms:
            details["retry_after_ms"] = retry_ms
        reason = "repeated_call" if limit == "loop" else "usage_limit"
        f = _failure(tool, limit, message, hint, reason=reason, retryable=limit == "rate_limit", **details)
        log.warning("crewcore: tool %r refused (%s): %s", tool, limit, message)
        return [f]

    def count_only(self, tool: str, args: dict[str, Any], *, task: str = "", run: str = "") -> Any:
        """Count a call another cache answered (no execution, no rate limit, no
        cache lookup): a ToolFailure when the policy refuses it, else None."""
        v = self._begin(tool, args, task, run, _depth.get() + 1, _COUNT_ONLY)
        return v[0] if isinstance(v, list) else None

    def execute(
        self,
        tool: str,
        args: dict[str, Any],
        fn: Callable[[], Any],
        *,
        task: str = "",
        run: str = "",
        native: bool = False,
        isolate_fn: Callable[..., Any] | None = None,
    ) -> Any:
        """Run one call under the policy; returns the result or a ToolFailure."""
        depth = _depth.get() + 1
        v = self._begin(tool, args, task, run, depth)
        if isinstance(v, list):
            return v[0]
        start, deadline, key = v
        timeout = self._timeout
        if native or timeout is None:
            # Go-native tools carry their own deadline (a context in Go) and
            # hold no GIL while they run; without a timeout there is nothing
            # to enforce. Both run on the calling thread.
            tok = _depth.set(depth)
            tok2 = _native_deadline.set(timeout) if native else None
            try:
                r = fn()
                if inspect.iscoroutine(r):
                    r = asyncio.run(r)
                ok, val, timed_out = True, r, False
            except KeyboardInterrupt:
                raise  # inline on the caller's thread: a real Ctrl-C, not the tool's doing
            except BaseException as e:  # noqa: BLE001
                ok, val, timed_out = False, e, False
            finally:
                _depth.reset(tok)
                if tok2 is not None:
                    _native_deadline.reset(tok2)
        elif isolate_fn is not None:
            ok, val, timed_out = _run_isolated(isolate_fn, args, timeout)
        else:
            ctx = contextvars.copy_context()
            ctx.run(_depth.set, depth)
            try:
                ok, val, timed_out = _runner.run(fn, ctx, timeout, self._cap)
            except _Saturated as s:
                return self._saturated(tool, start, s.args[0])
        return self._finish(tool, start, deadline, key, ok, val, timed_out, "isolated" if isolate_fn is not None else "thread")

    async def aexecute(
        self,
        tool: str,
        args: dict[str, Any],
        make: Callable[[], Any],
        *,
        task: str = "",
        run: str = "",
        isolate_fn: Callable[..., Any] | None = None,
    ) -> Any:
        """The async twin of execute for a coroutine tool: ``make()`` returns
        the awaitable. At the deadline the coroutine is cancelled (no thread
        is left running)."""
        depth = _depth.get() + 1
        if isolate_fn is not None:
            import functools

            ctx = contextvars.copy_context()
            fn = functools.partial(ctx.run, self.execute, tool, args, _never, task=task, run=run, isolate_fn=isolate_fn)
            return await asyncio.get_running_loop().run_in_executor(None, fn)
        v = self._begin(tool, args, task, run, depth)
        if isinstance(v, list):
            return v[0]
        start, deadline, key = v
        timeout = self._timeout
        tok = _depth.set(depth)
        try:
            try:
                aw = make()
                fut = asyncio.ensure_future(aw)  # the task copies this context (depth)
            except BaseException as e:  # noqa: BLE001 - make() itself failed
                return self._finish(tool, start, deadline, key, False, e, False, "task")
        finally:
            _depth.reset(tok)
        try:
            done, _ = await asyncio.wait((fut,), timeout=timeout)
        except BaseException:
            fut.cancel()  # the caller was cancelled: so is the tool
            raise
        if not done:
            fut.cancel()
            fut.add_done_callback(_retrieve)
            return self._finish(tool, start, deadline, key, False, None, True, "task")
        if fut.cancelled():
            return self._finish(tool, start, deadline, key, False, asyncio.CancelledError("the tool's task was cancelled"), False, "task")
        e = fut.exception()
        if e is not None:
            return self._finish(tool, start, deadline, key, False, e, False, "task")
        return self._finish(tool, start, deadline, key, True, fut.result(), False, "task")

    def _saturated(self, tool: str, start: int, n: int) -> Any:
        el, _ = self.engine.end(start, _FAILED, None, None)
        hint = "use another tool or answer with what you have; do not call this tool again for now"
        return _failure(
            tool,
            "max_abandoned_threads",
            f"{n} earlier tool calls passed their deadline and are still running in"
            f" abandoned threads (the cap is {self._cap}), so no new call is started",
            hint,
            elapsed_ms=el / 1e6,
            abandoned_threads=n,
        )

    def _finish(self, tool: str, start: int, deadline: int, key: Any, ok: bool, val: Any, timed_out: bool, how: str) -> Any:
        """The result of an allowed call that ran: the value, or a ToolFailure."""
        if timed_out:
            el, _ = self.engine.end(start, _TIMEDOUT, None, None)
            t = self._timeout or 0.0
            if how == "isolated":
                what = "its process was killed"
                extra: dict[str, Any] = {"killed": True, "pid": val}
            elif how == "task":
                what = "its coroutine was cancelled"
                extra = {"cancelled": True}
            else:
                what = (
                    "it keeps running in an abandoned thread"
                    f" ({_runner.abandoned} abandoned now, cap {self._cap})"
                )
                extra = {"abandoned_threads": _runner.abandoned, "abandoned_cap": self._cap}
            log.warning("crewcore: tool %r timed out after %.0f ms", tool, el / 1e6)
            return _failure(
                tool,
                "timeout",
                f"the call did not finish within {t:g} s; {what}",
                "try again with a smaller or simpler request, use another tool, or answer without this result",
                reason="tool_reported",
                retryable=True,
                elapsed_ms=el / 1e6,
                deadline_ms=(deadline - start) / 1e6,
                overshoot_ms=max(0.0, (el - (deadline - start)) / 1e6),
                **extra,
            )
        if not ok:
            el = self.engine.end(start, _FAILED, None, None)[0]
            if isinstance(val, _IsolatedError):
                return _isolated_failure(tool, val)
            return _exception_failure(tool, val, el / 1e6)
        val = self._cap_result(tool, val)
        if self._cache and key is not None and _cacheable(val):
            try:
                blob = self.engine._packb(val, use_bin_type=True)
            except (TypeError, ValueError, OverflowError):
                blob = None
            self.engine.end(start, _OK, key, blob)
        return val

    def _cap_result(self, tool: str, val: Any) -> Any:
        m = self._maxchars
        if not m:
            return val
        if isinstance(val, str) and len(val) > m:
            return val[:m] + f"\n[crewcore: the result of '{tool}' was cut at {m} of {len(val)} characters]"
        if isinstance(val, (bytes, bytearray)) and len(val) > m:
            return bytes(val[:m]) + f"\n[crewcore: the result of '{tool}' was cut at {m} of {len(val)} bytes]".encode()
        return val


def _cacheable(val: Any) -> bool:
    from crewai.tools.tool_failure import ToolFailure

    return val is not None and not isinstance(val, ToolFailure)


def _isolated_failure(tool: str, e: _IsolatedError) -> Any:
    from crewai.tools.tool_failure import ToolFailure, ToolFailureReason

    text = f"Tool '{tool}' raised {e.qual}: {e.msg or e.name}"
    if e.tb:
        text += f"\nLast frames:\n{e.tb}"
    return ToolFailure(
        message=text,
        reason=ToolFailureReason.EXCEPTION,
        code=e.name,
        details={"tool": tool, "exception_type": e.qual, "exception_message": e.msg, "traceback": e.tb, "isolated": True},
    )


# --------------------------------------------------------------------------
# guard(): one tool with its own policy


def _base_tool_cls() -> Any:
    from crewai.tools import BaseTool

    return BaseTool


def _make_guarded_cls() -> Any:
    from pydantic import PrivateAttr

    BaseTool = _base_tool_cls()

    class GuardedTool(BaseTool):  # type: ignore[misc, valid-type]
        """A tool run through crewcore's executor with its own policy."""

        _inner: Any = PrivateAttr(default=None)
        _executor: Any = PrivateAttr(default=None)
        _isolate_fn: Any = PrivateAttr(default=None)
        _fn: Any = PrivateAttr(default=None)
        _native: bool = PrivateAttr(default=False)
        _name: str = PrivateAttr(default="")

        def _run(self, *args: Any, **kwargs: Any) -> Any:
            if args:
                names = list(getattr(self.args_schema, "model_fields", {}).keys())
                kwargs.update(zip(names, args))
            # One dict read instead of pydantic's __getattr__ per private attribute.
            p = self.__pydantic_private__
            fn = p["_fn"]
            return p["_executor"].execute(
                p["_name"],
                kwargs,
                lambda: fn(**kwargs),
                task=_current_task(),
                native=p["_native"],
                isolate_fn=p["_isolate_fn"],
            )

    return GuardedTool


_guarded_cls: Any = None


_task_id_getter: Any = None


def _current_task() -> str:
    """CrewAI's current task id (a context variable Task.execute sets), or ""."""
    global _task_id_getter
    g = _task_id_getter
    if g is None:
        try:
            from crewai.context import get_current_task_id as g
        except ImportError:  # pragma: no cover - older CrewAI
            g = lambda: None  # noqa: E731
        _task_id_getter = g
    return g() or ""


def _inner_callable(inner: Any) -> Callable[..., Any]:
    """What a guarded tool calls: the inner tool's own function.

    ``GuardedTool.run`` has already validated the arguments against the same
    schema and counted the use (``max_usage_count`` is copied), so going
    through ``inner.run`` again would only validate twice.
    """
    from crewai.tools.base_tool import Tool

    if isinstance(inner, Tool):
        return inner.func
    fn = getattr(inner, "_run", None)
    if fn is not None:
        return fn
    return lambda **kw: inner.invoke(kw)


def guard(tool: Any, policy: ToolPolicy | None = None, **overrides: Any) -> Any:
    """Wrap one tool (a CrewAI ``BaseTool`` or a plain function) with its own policy.

    ``policy`` defaults to ``ToolPolicy()``; keyword arguments override its
    fields (``guard(t, timeout=5, isolate=True)``). The returned tool has the
    same name, description and argument schema; calls that hit a limit
    return a CrewAI ``ToolFailure`` with the structured error.
    """
    global _guarded_cls
    if _guarded_cls is None:
        _guarded_cls = _make_guarded_cls()
    try:
        pol = replace(policy or ToolPolicy(), **overrides)
    except TypeError as e:
        raise ToolPolicyError(f"guard(): {e}") from None
    BaseTool = _base_tool_cls()
    if isinstance(tool, _guarded_cls):
        tool = tool._inner
    if not isinstance(tool, BaseTool):
        if not callable(tool):
            raise ToolPolicyError(f"guard() takes a CrewAI tool or a function, got {type(tool).__name__}")
        from crewai.tools import tool as tool_decorator

        fn = tool
        if not (fn.__doc__ or "").strip():
            fn.__doc__ = f"Tool {getattr(fn, '__name__', 'tool')}."
        tool = tool_decorator(fn)
    isolate_fn = None
    if pol.isolate:
        isolate_fn = getattr(tool, "func", None)
        if isolate_fn is None:
            isolate_fn = _BoundRun(tool)
    g = _guarded_cls(
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema,
        result_as_answer=getattr(tool, "result_as_answer", False),
        max_usage_count=getattr(tool, "max_usage_count", None),
    )
    g._inner = tool
    g._name = tool.name
    g._fn = _inner_callable(tool)
    g._native = bool(getattr(tool, "_crewcore_native", False))
    g._executor = _Executor(pol)
    g._isolate_fn = isolate_fn
    return g


class _BoundRun:
    """Picklable ``tool._run`` for isolating a BaseTool instance."""

    def __init__(self, tool: Any) -> None:
        self.tool = tool

    def __call__(self, **kwargs: Any) -> Any:
        return self.tool._run(**kwargs)


# --------------------------------------------------------------------------
# install(tools=...): wrappers at CrewAI's tool dispatch
#
# CrewAI runs a tool through one of a few methods, whatever the execution
# path: the native function-calling paths call ``BaseTool.run`` (``Tool.run``
# for ``@tool`` functions), the ReAct text path calls
# ``CrewStructuredTool.invoke``, and async code awaits ``BaseTool.arun`` /
# ``CrewStructuredTool.ainvoke``. Before any of them CrewAI asks the agent's
# cache (``CacheHandler.read``). While a policy is installed these methods are
# replaced on those classes by wrappers that run the call through the
# executor, and ``CacheHandler.read`` counts the calls CrewAI's own cache
# answers (so loop detection and budgets see every call the model makes).
# uninstall restores the originals. No CrewAI hook is registered: every
# registered hook costs each tool call a HookDispatchedEvent (measured
# ~75-240 us per call, more than the whole executor).


def _load_context_vars() -> tuple[Any, Any]:
    """CrewAI's current-task and event-scope context variables."""
    from crewai.context import _current_task_id

    try:
        from crewai.events.event_context import _event_id_stack
    except ImportError:  # pragma: no cover - another CrewAI layout
        _event_id_stack = contextvars.ContextVar("crewcore_no_event_stack", default=())
    return _current_task_id, _event_id_stack


_task_var: Any = None
_stack_var: Any = None


def _call_scope() -> tuple[str, str] | None:
    """(task key, run id) of the CrewAI execution the calling code is in, or
    None outside any (a tool called directly by user code is not governed by
    the installed policy).

    The run is the innermost crew kickoff on CrewAI's event-scope stack (the
    id of its CrewKickoffStartedEvent, which is ``Crew._kickoff_event_id``),
    else the outermost scope (a standalone agent or flow); the task is
    CrewAI's current task id (a context variable ``Task`` sets, copied into
    the threads CrewAI runs parallel tool calls on).
    """
    stack = _stack_var.get()
    tid = _task_var.get()
    if not stack:
        if tid is None:
            return None
        return f"/{tid}", ""
    run = ""
    for eid, etype in reversed(stack):
        if etype == "crew_kickoff_started":
            run = eid
            break
    else:
        run = stack[0][0]
    return (f"{run}/{tid}" if tid else ""), run


class _Installed:
    def __init__(self, policy: ToolPolicy) -> None:
        global _guarded_cls, _task_var, _stack_var
        self.executor = _Executor(policy)
        if _guarded_cls is None:
            _guarded_cls = _make_guarded_cls()
        if _task_var is None:
            _task_var, _stack_var = _load_context_vars()
        self.guarded_cls = _guarded_cls
        self._infos: dict[int, tuple[Any, tuple[str, bool, Any, bool]]] = {}

    def info(self, tool: Any) -> tuple[str, bool, Any, bool]:
        """(CrewAI's sanitized name, Go-native?, isolate function, skip?) of a
        BaseTool or CrewStructuredTool, cached per object: CrewAI's name
        sanitizer and pydantic's private-attribute lookups cost microseconds."""
        hit = self._infos.get(id(tool))
        if hit is not None and hit[0] is tool:
            return hit[1]
        from crewai.utilities.string_utils import sanitize_tool_name

        priv = getattr(tool, "__pydantic_private__", None) or {}
        target = priv.get("_original_tool") or tool
        native = bool(getattr(type(target), "_crewcore_native", False))
        iso = None
        if self.executor.policy.isolate:
            iso = getattr(target, "func", None) or _BoundRun(target)
        skip = isinstance(target, self.guarded_cls)  # it has its own policy
        res = (sanitize_tool_name(tool.name), native, iso, skip)
        if len(self._infos) >= 4096:
            self._infos.clear()
        self._infos[id(tool)] = (tool, res)
        return res

    def call(self, tool: Any, scope: tuple[str, str], args: dict[str, Any], fn: Callable[[], Any]) -> Any:
        name, native, iso, skip = self.info(tool)
        if skip:
            return fn()
        return self.executor.execute(name, args, fn, task=scope[0], run=scope[1], native=native, isolate_fn=iso)

    async def acall(self, tool: Any, scope: tuple[str, str], args: dict[str, Any], make: Callable[[], Any]) -> Any:
        name, native, iso, skip = self.info(tool)
        if skip:
            return await make()
        return await self.executor.aexecute(name, args, make, task=scope[0], run=scope[1], isolate_fn=iso)

    def cached_elsewhere(self, tool: str, input_str: str, scope: tuple[str, str]) -> Any:
        """CrewAI's own cache answers this call: count it against the budgets
        and the loop window. Returns a ToolFailure if the policy refuses the
        call, else None (CrewAI's cached value stands)."""
        args = _input_args(input_str) if input_str else {}
        return self.executor.count_only(tool, args, task=scope[0], run=scope[1])


def _positional(tool: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments as one mapping (positional ones named by the schema)."""
    names = list(getattr(getattr(tool, "args_schema", None), "model_fields", {}).keys())
    d = dict(zip(names, args))
    if len(args) > len(names):
        d["__args__"] = list(args[len(names):])
    d.update(kwargs)
    return d


def _input_args(input: Any) -> dict[str, Any]:  # noqa: A002 - CrewAI's name
    if isinstance(input, dict):
        return input
    if isinstance(input, str):
        import json

        try:
            v = json.loads(input)
        except ValueError:
            return {"input": input}
        return v if isinstance(v, dict) else {"input": v}
    return {"input": input}


def _wrap_run(orig: Callable[..., Any]) -> Callable[..., Any]:
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        inst = _installed
        if inst is not None:
            sc = _call_scope()
            if sc is not None:
                a = kwargs if not args else _positional(self, args, kwargs)
                return inst.call(self, sc, a, lambda: orig(self, *args, **kwargs))
        return orig(self, *args, **kwargs)

    return _named(run, orig)


def _wrap_arun(orig: Callable[..., Any]) -> Callable[..., Any]:
    async def arun(self: Any, *args: Any, **kwargs: Any) -> Any:
        inst = _installed
        if inst is not None:
            sc = _call_scope()
            if sc is not None:
                a = kwargs if not args else _positional(self, args, kwargs)
                return await inst.acall(self, sc, a, lambda: orig(self, *args, **kwargs))
        return await orig(self, *args, **kwargs)

    return _named(arun, orig)


def _wrap_invoke(orig: Callable[..., Any]) -> Callable[..., Any]:
    def invoke(self: Any, input: Any, config: Any = None, **kwargs: Any) -> Any:  # noqa: A002
        inst = _installed
        if inst is not None:
            sc = _call_scope()
            if sc is not None:
                return inst.call(self, sc, _input_args(input), lambda: orig(self, input, config, **kwargs))
        return orig(self, input, config, **kwargs)

    return _named(invoke, orig)


def _wrap_ainvoke(orig: Callable[..., Any]) -> Callable[..., Any]:
    async def ainvoke(self: Any, input: Any, config: Any = None, **kwargs: Any) -> Any:  # noqa: A002
        inst = _installed
        if inst is not None:
            sc = _call_scope()
            if sc is not None:
                if inspect.iscoroutinefunction(self.func):
                    return await inst.acall(self, sc, _input_args(input), lambda: orig(self, input, config, **kwargs))
                # A sync function: CrewAI would run it on the loop's default
                # executor. Run the governed sync call there instead, so the
                # deadline and the abandoned-thread cap apply as for run().
                import functools

                ctx = contextvars.copy_context()
                fn = functools.partial(ctx.run, self.invoke, input, config, **kwargs)
                return await asyncio.get_running_loop().run_in_executor(None, fn)
        return await orig(self, input, config, **kwargs)

    return _named(ainvoke, orig)


def _wrap_read(orig: Callable[..., Any]) -> Callable[..., Any]:
    def read(self: Any, tool: str, input: str) -> Any:  # noqa: A002
        v = orig(self, tool, input)
        if v is not None:
            inst = _installed
            if inst is not None:
                sc = _call_scope()
                if sc is not None:
                    f = inst.cached_elsewhere(tool, input, sc)
                    if f is not None:
                        return f
        return v

    return _named(read, orig)


def _named(w: Callable[..., Any], orig: Callable[..., Any]) -> Callable[..., Any]:
    w.__name__ = orig.__name__
    w.__qualname__ = getattr(orig, "__qualname__", orig.__name__)
    w.__doc__ = orig.__doc__
    w.__wrapped__ = orig  # type: ignore[attr-defined]
    w._crewcore_wrapper = True  # type: ignore[attr-defined]
    return w


#: (class, attribute, original) of every replaced method, while installed.
_patched: list[tuple[type, str, Any]] = []


def _patch_targets() -> list[tuple[type, str, Callable[[Callable[..., Any]], Callable[..., Any]]]]:
    from crewai.agents.cache.cache_handler import CacheHandler
    from crewai.tools.base_tool import BaseTool, Tool
    from crewai.tools.structured_tool import CrewStructuredTool

    return [
        (BaseTool, "run", _wrap_run),
        (Tool, "run", _wrap_run),
        (BaseTool, "arun", _wrap_arun),
        (Tool, "arun", _wrap_arun),
        (CrewStructuredTool, "invoke", _wrap_invoke),
        (CrewStructuredTool, "ainvoke", _wrap_ainvoke),
        (CacheHandler, "read", _wrap_read),
    ]


def _patch() -> None:
    """Replace the dispatch methods (once; _installed_lock is held)."""
    if _patched:
        return
    for cls, attr, wrap in _patch_targets():
        orig = cls.__dict__.get(attr)
        if orig is None or getattr(orig, "_crewcore_wrapper", False):  # pragma: no cover - another CrewAI layout
            continue
        setattr(cls, attr, wrap(orig))
        _patched.append((cls, attr, orig))


def _unpatch() -> None:
    while _patched:
        cls, attr, orig = _patched.pop()
        setattr(cls, attr, orig)


_installed_lock = threading.Lock()
_installed: _Installed | None = None


def install_tools(policy: ToolPolicy | None) -> None:
    """Apply ``policy`` to every tool call (None removes it). Used by ``crewcore.install``."""
    global _installed

    if policy is not None and not isinstance(policy, ToolPolicy):
        raise ToolPolicyError(f"install(tools=...) takes a crewcore.ToolPolicy, got {type(policy).__name__}")
    new = _Installed(policy) if policy is not None else None  # validates in Go before anything changes
    with _installed_lock:
        _installed = new
        if new is not None:
            _patch()
        else:
            _unpatch()


def installed_policy() -> ToolPolicy | None:
    inst = _installed
    return inst.executor.policy if inst is not None else None


def tool_stats(tool: Any = None) -> dict[str, Any]:
    """Counters of the installed policy (or of a guarded tool): calls, allowed,
    cached, refused (and by which limit), timeouts, errors, cache size, and
    the worker threads (``threads``, ``abandoned_threads``)."""
    if tool is not None:
        ex = getattr(tool, "_executor", None)
        if ex is None:
            raise ToolPolicyError("tool_stats(tool): the tool is not a crewcore.guard() tool")
    else:
        inst = _installed
        if inst is None:
            raise ToolPolicyError("no tool policy is installed")
        ex = inst.executor
    st = ex.engine.stats()
    st["threads"] = _runner.threads
    st["abandoned_threads"] = _runner.abandoned
    st["abandoned_total"] = _runner.abandoned_total
    return st


# --------------------------------------------------------------------------
# built-in Go-native tools


def _native_tools() -> tuple[Any, Any, Any]:
    from pydantic import BaseModel, Field

    BaseTool = _base_tool_cls()

    class _FetchArgs(BaseModel):
        url: str = Field(description="The http(s) URL to fetch.")

    class FetchTool(BaseTool):  # type: ignore[misc, valid-type]
        """Fetch a URL over HTTP(S), in Go, without holding the GIL."""

        _crewcore_native: ClassVar[bool] = True
        name: str = "fetch_url"
        description: str = "Fetch a web page or document by URL and return its text."
        args_schema: type[BaseModel] = _FetchArgs
        timeout: float = 10.0
        max_bytes: int = _MiB
        max_redirects: int = 5
        allow_private: bool = False

        def _run(self, url: str) -> str:
            from crewcore import _bridge

            final, status, ctype, body, truncated = _bridge.call(
                [
                    "tool_fetch",
                    0,
                    str(url),
                    _native_timeout(float(self.timeout)) * 1000.0,
                    int(self.max_bytes),
                    int(self.max_redirects) if self.max_redirects else -1,
                    bool(self.allow_private),
                ]
            )
            text = body.decode("utf-8", "replace")
            head = f"URL: {final}\nStatus: {status}\nContent-Type: {ctype}\n\n"
            if truncated:
                text += f"\n[crewcore: the body was cut at {self.max_bytes} bytes]"
            return head + text

    class _ReadArgs(BaseModel):
        path: str = Field(description="Path of the file, relative to the root directory.")

    class FileReadTool(BaseTool):  # type: ignore[misc, valid-type]
        """Read a text file under a root directory (no escape via .. or symlinks)."""

        _crewcore_native: ClassVar[bool] = True
        name: str = "read_file"
        description: str = "Read a text file; the path is relative to the working directory."
        args_schema: type[BaseModel] = _ReadArgs
        root: str
        max_bytes: int = _MiB
        timeout: float = 10.0

        def _run(self, path: str) -> str:
            from crewcore import _bridge

            data, size, truncated = _bridge.call(
                ["tool_read_file", 0, os.path.abspath(self.root), str(path), int(self.max_bytes), _native_timeout(float(self.timeout)) * 1000.0]
            )
            text = data.decode("utf-8", "replace")
            if truncated:
                text += f"\n[crewcore: the file is {size} bytes; cut at {self.max_bytes}]"
            return text

    class _ListArgs(BaseModel):
        path: str = Field(default=".", description="Directory, relative to the root directory.")

    class FileListTool(BaseTool):  # type: ignore[misc, valid-type]
        """List a directory under a root directory (no escape via .. or symlinks)."""

        _crewcore_native: ClassVar[bool] = True
        name: str = "list_files"
        description: str = "List the files of a directory; the path is relative to the working directory."
        args_schema: type[BaseModel] = _ListArgs
        root: str
        max_entries: int = 1000
        timeout: float = 10.0

        def _run(self, path: str = ".") -> str:
            from crewcore import _bridge

            ents, more = _bridge.call(
                ["tool_list_dir", 0, os.path.abspath(self.root), str(path), int(self.max_entries), _native_timeout(float(self.timeout)) * 1000.0]
            )
            lines = [f"{n}/" if d else f"{n}\t{s} bytes" for n, d, s in ents]
            if more:
                lines.append(f"[crewcore: listing cut at {self.max_entries} entries]")
            return "\n".join(lines) if lines else "(empty directory)"

    return FetchTool, FileReadTool, FileListTool


_native_cache: tuple[Any, Any, Any] | None = None


def __getattr__(name: str) -> Any:
    global _native_cache
    if name in ("FetchTool", "FileReadTool", "FileListTool"):
        if _native_cache is None:
            _native_cache = _native_tools()
        return dict(zip(("FetchTool", "FileReadTool", "FileListTool"), _native_cache))[name]
    if name == "GuardedTool":
        global _guarded_cls
        if _guarded_cls is None:
            _guarded_cls = _make_guarded_cls()
        return _guarded_cls
    raise AttributeError(name)


