"""install(tools=...): CrewAI's tool dispatch methods replaced by wrappers that
run each call through the installed policy's executor; installed_policy() and
tool_stats()."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from typing import Any, Callable

from crewcore.errors import ToolPolicyError
from crewcore.tools import runner
from crewcore.tools.executor import _Executor
from crewcore.tools.guarded import GUARDED, _BoundRun, _guarded_tool_cls
from crewcore.tools.policy import ToolPolicy

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
        global _task_var, _stack_var
        self.executor = _Executor(policy)
        guarded_cls = _guarded_tool_cls()
        if _task_var is None:
            _task_var, _stack_var = _load_context_vars()
        self.guarded_cls = guarded_cls
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
    the worker threads (``threads``, ``abandoned_threads``). Without an
    installed policy, the sums over every ``guard()`` tool alive (all zero
    when there is none); ``source`` says which: "policy", "tool" or "guards"."""
    if tool is not None:
        ex = getattr(tool, "_executor", None)
        if ex is None:
            raise ToolPolicyError("tool_stats(tool): the tool is not a crewcore.guard() tool")
        st, source = ex.engine.stats(), "tool"
    elif _installed is not None:
        st, source = _installed.executor.engine.stats(), "policy"
    else:
        st, source = _sum_stats([ex.engine.stats() for ex in list(GUARDED)]), "guards"
    st["source"] = source
    st["threads"] = runner._runner.threads
    st["abandoned_threads"] = runner._runner.abandoned
    st["abandoned_total"] = runner._runner.abandoned_total
    return st


def _sum_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The counters of several executors added up (``guarded_tools``: how many)."""
    out: dict[str, Any] = {"guarded_tools": len(parts)}
    for st in parts:
        for k, v in st.items():
            if isinstance(v, bool) or not isinstance(v, (int, float, dict)):
                out.setdefault(k, v)
            elif isinstance(v, dict):
                d = out.setdefault(k, {})
                for kk, vv in v.items():
                    d[kk] = d.get(kk, 0) + vv
            else:
                out[k] = out.get(k, 0) + v
    return out
