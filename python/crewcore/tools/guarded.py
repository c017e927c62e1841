"""guard(): one tool with its own policy, run through a GuardedTool."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable
import weakref

from crewcore.errors import ToolPolicyError
from crewcore.tools.executor import _Executor
from crewcore.tools.policy import ToolPolicy

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


def _guarded_tool_cls() -> Any:
    """The GuardedTool class (built on first use: it imports CrewAI)."""
    global _guarded_cls
    if _guarded_cls is None:
        _guarded_cls = _make_guarded_cls()
    return _guarded_cls


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


#: The executors of the guard() tools alive in this process (tool_stats()
#: without an installed policy sums them).
GUARDED: "weakref.WeakSet[_Executor]" = weakref.WeakSet()


def guard(tool: Any, policy: ToolPolicy | None = None, **overrides: Any) -> Any:
    """Wrap one tool (a CrewAI ``BaseTool`` or a plain function) with its own policy.

    ``policy`` defaults to ``ToolPolicy()``; keyword arguments override its
    fields (``guard(t, timeout=5, isolate=True)``). The returned tool has the
    same name, description and argument schema; calls that hit a limit
    return a CrewAI ``ToolFailure`` with the structured error. An exception
    the tool raises is raised to the caller unchanged (from a worker thread
    or an isolated process too), as CrewAI expects of a tool.
    """
    guarded_cls = _guarded_tool_cls()
    try:
        pol = replace(policy or ToolPolicy(), **overrides)
    except TypeError as e:
        raise ToolPolicyError(f"guard(): {e}") from None
    BaseTool = _base_tool_cls()
    if isinstance(tool, guarded_cls):
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
        from crewcore.tools.isolate import isolate_target

        isolate_fn = isolate_target(tool, _BoundRun)  # refuses here what cannot be isolated
    g = guarded_cls(
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
    GUARDED.add(g._executor)
    g._isolate_fn = isolate_fn
    return g


class _BoundRun:
    """Picklable ``tool._run`` for isolating a BaseTool instance."""

    def __init__(self, tool: Any) -> None:
        self.tool = tool

    def __call__(self, **kwargs: Any) -> Any:
        return self.tool._run(**kwargs)
