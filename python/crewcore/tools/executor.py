"""The executor: one call of one tool under one policy (the engine's verdict,
the run under the deadline, then the result, the tool's own exception raised
as it was, or a ToolFailure for one of crewcore's own limits)."""

from __future__ import annotations

import asyncio
from collections import deque
import contextvars
import inspect
import json
import logging
import threading
from typing import Any, Callable

from crewcore.errors import ToolArgumentsError
from crewcore.tools import runner
from crewcore.tools.failures import _failure, _rebuild_isolated
from crewcore.tools.fallback import _canon_json, _PyEngine
from crewcore.tools.native import _Engine
from crewcore.tools.policy import _COUNT_ONLY, _FAILED, _OK, _TIMEDOUT, ToolPolicy
from crewcore.tools.runner import _IsolatedError, _run_isolated, _Saturated

log = logging.getLogger("crewcore.tools")

# --------------------------------------------------------------------------
# the executor: one call of one tool under one policy

_depth: contextvars.ContextVar[int] = contextvars.ContextVar("crewcore_tool_depth", default=0)
#: The policy timeout of the Go-native tool call in progress (seconds, or None):
#: the built-in tools pass min(their own timeout, this) to Go as the context deadline.
_native_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("crewcore_native_deadline", default=None)


def _native_timeout(own: float) -> float:
    d = _native_deadline.get()
    return own if d is None else min(own, d)


def _never() -> Any:  # pragma: no cover - isolated calls run isolate_fn instead
    raise RuntimeError("not called")


def _retrieve(fut: Any) -> None:
    """Done callback of a cancelled tool task: fetch its outcome so asyncio
    does not log 'exception was never retrieved'."""
    if not fut.cancelled():
        fut.exception()


def _make_engine(policy: ToolPolicy) -> Any:
    """The Go engine, or the Python twin when the library cannot be used."""
    from crewcore import _backend

    return _Engine(policy) if _backend.use_native() else _PyEngine(policy)


#: Marks "no earlier result to give again" (None is a result).
_NONE = object()
#: Loop scopes whose recent results are kept (the oldest half is dropped past it).
_MAX_RECENT_SCOPES = 1024


def _loop_scope(task: str, run: str) -> str:
    """The scope whose loop window a call counts in (the engines' rule)."""
    return "t:" + task if task else "r:" + run if run else "g:"


def _canon(args: Any) -> str | None:
    try:
        return json.dumps(_canon_json(args), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError, OverflowError):
        return None


class _Recent:
    """The results of the last calls that ran in each loop scope (as many as
    the loop window), so that a repeat the loop limit refuses gets the result
    the same call returned last time.

    Why: CrewAI stops a run after 5 identical calls with identical results
    (``check_repeated_tool_call``). A refusal text in place of that result
    would split CrewAI's count between the result and the refusal, and the
    looping run would go on longer than without crewcore; the same result
    again keeps CrewAI's count, so its stop comes exactly when it would.
    """

    def __init__(self, window: int) -> None:
        self._window = window
        self._scopes: dict[str, deque[tuple[str, Any, Any]]] = {}
        self._lock = threading.Lock()

    def add(self, scope: str, tool: str, args: Any, value: Any) -> None:
        ring = self._scopes.get(scope)
        if ring is None:
            with self._lock:
                if len(self._scopes) >= _MAX_RECENT_SCOPES:
                    for k in list(self._scopes)[: _MAX_RECENT_SCOPES // 2]:
                        del self._scopes[k]
                ring = self._scopes.setdefault(scope, deque(maxlen=self._window))
        ring.append((tool, args, value))

    def last(self, scope: str, tool: str, args: Any) -> Any:
        """The result of the most recent equivalent call (same tool, same
        canonical arguments) in the scope's window, or _NONE."""
        ring = self._scopes.get(scope)
        if not ring:
            return _NONE
        want = _canon(args)
        if want is None:
            return _NONE
        for t, a, v in reversed(list(ring)):
            if t == tool and (a is args or _canon(a) == want):
                return v
        return _NONE


class _Executor:
    def __init__(self, policy: ToolPolicy) -> None:
        self.policy = policy
        self.engine = _make_engine(policy)
        self._timeout = policy.timeout or None
        self._cache = bool(policy.cache_ttl)
        self._maxchars = policy.max_result_chars or 0
        self._cap = policy.max_abandoned_threads
        self._recent = _Recent(policy.loop_window) if policy.loop_threshold else None

    def _begin(self, tool: str, args: dict[str, Any], task: str, run: str, depth: int, flags: int = 0) -> Any:
        """The engine's verdict: a tuple (start, deadline, key) for an allowed
        call, or the final result (a cached value, the earlier result of a
        repeat refused by the loop limit, or a ToolFailure) in a list of one."""
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
        if limit == "loop":
            # A repeat past the loop limit is not run. It gets the result the
            # same call gave before (CrewAI's own cached value when CrewAI's
            # cache answered it), so CrewAI's stop after 5 identical calls with
            # identical results comes exactly when it would without crewcore.
            # Only without an earlier result does it get the refusal text,
            # identical for identical calls.
            again = None if flags & _COUNT_ONLY else self._recent.last(_loop_scope(task, run), tool, args)  # type: ignore[union-attr]
            if again is not _NONE:
                log.warning("crewcore: tool %r repeated past the loop limit: not run, its earlier result given again (%s)", tool, message)
                return [again]
        details: dict[str, Any] = {"max": mx, "count": count}
        if retry_ms:
            details["retry_after_ms"] = retry_ms
        reason = "repeated_call" if limit == "loop" else "usage_limit"
        f = _failure(tool, limit, message, hint, reason=reason, retryable=limit == "rate_limit", **details)
        log.warning("crewcore: tool %r refused (%s): %s", tool, limit, message)
        return [f]

    def count_only(self, tool: str, args: dict[str, Any], *, task: str = "", run: str = "") -> Any:
        """Count a call another cache answered (no execution, no rate limit, no
        cache lookup): a ToolFailure when the policy refuses it, else None (the
        other cache's value stands; also for a repeat past the loop limit)."""
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
        """Run one call under the policy: returns the result or a ToolFailure
        of one of crewcore's limits; an exception the tool raises is raised."""
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
            except BaseException as e:  # noqa: BLE001 - recorded, then raised by _finish
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
                ok, val, timed_out = runner._runner.run(fn, ctx, timeout, self._cap)
            except _Saturated as s:
                return self._saturated(tool, start, s.args[0])
        return self._finish((tool, args, task, run), start, deadline, key, ok, val, timed_out,
                            "isolated" if isolate_fn is not None else "thread")

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
        call = (tool, args, task, run)
        timeout = self._timeout
        tok = _depth.set(depth)
        try:
            try:
                aw = make()
                fut = asyncio.ensure_future(aw)  # the task copies this context (depth)
            except BaseException as e:  # noqa: BLE001 - make() itself failed: raised by _finish
                return self._finish(call, start, deadline, key, False, e, False, "task")
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
            return self._finish(call, start, deadline, key, False, None, True, "task")
        if fut.cancelled():
            # Cancelled by someone else than crewcore: the caller sees what it
            # would see awaiting the tool itself.
            return self._finish(call, start, deadline, key, False, asyncio.CancelledError(), False, "task")
        e = fut.exception()
        if e is not None:
            return self._finish(call, start, deadline, key, False, e, False, "task")
        return self._finish(call, start, deadline, key, True, fut.result(), False, "task")

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

    def _finish(self, call: tuple[str, Any, str, str], start: int, deadline: int, key: Any, ok: bool, val: Any,
                timed_out: bool, how: str) -> Any:
        """The result of an allowed call that ran: the value, a timeout
        ToolFailure, or the tool's own exception raised again."""
        tool = call[0]
        if timed_out:
            el, _ = self.engine.end(start, _TIMEDOUT, None, None)
            if how == "isolated":
                what = "its process was killed"
                extra: dict[str, Any] = {"killed": True, "pid": val}
            elif how == "task":
                what = "its coroutine was cancelled"
                extra = {"cancelled": True}
            else:
                what = (
                    "it keeps running in an abandoned thread"
                    f" ({runner._runner.abandoned} abandoned now, cap {self._cap})"
                )
                extra = {"abandoned_threads": runner._runner.abandoned, "abandoned_cap": self._cap}
            log.warning("crewcore: tool %r timed out after %.0f ms", tool, el / 1e6)
            return _failure(
                tool,
                "timeout",
                what,  # failures.py heads it with "timed out after N s"
                "try again with a smaller or simpler request, use another tool, or answer without this result",
                reason="tool_reported",
                retryable=True,
                elapsed_ms=el / 1e6,
                deadline_ms=(deadline - start) / 1e6,
                overshoot_ms=max(0.0, (el - (deadline - start)) / 1e6),
                **extra,
            )
        if not ok:
            self._failed(call, start)
            if isinstance(val, _IsolatedError):
                val = _rebuild_isolated(tool, val.qual, val.name, val.msg, val.tb, val.is_exc)
            # The tool's own exception, as CrewAI would see it without crewcore
            # (its error events, its retries); from a worker thread or an
            # isolated process alike.
            raise val
        val = self._cap_result(tool, val)
        if self._recent is not None:
            self._recent.add(_loop_scope(call[2], call[3]), tool, call[1], val)
        if self._cache and key is not None and _cacheable(val):
            try:
                blob = self.engine._packb(val, use_bin_type=True)
            except (TypeError, ValueError, OverflowError):
                blob = None
            self.engine.end(start, _OK, key, blob)
        return val

    def _failed(self, call: tuple[str, Any, str, str], start: int) -> None:
        """Record a call whose tool raised: an error in the stats, and out of
        its loop window (a failed call is not a repeat; CrewAI retries it)."""
        try:
            self.engine.end(start, _FAILED, None, None)
            if self._recent is not None:
                self.engine.forget(*call)
        except Exception:  # pragma: no cover - bookkeeping never hides the tool's exception
            log.debug("crewcore: recording a failed tool call failed", exc_info=True)

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
