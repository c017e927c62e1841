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

from typing import Any

from crewcore.tools import builtin, guarded
# install_tools and installed_policy are crewcore.install's (not in __all__)
from crewcore.tools.dispatch import install_tools, installed_policy, tool_stats  # noqa: F401
from crewcore.tools.guarded import guard
from crewcore.tools.policy import ToolPolicy

__all__ = [
    "FetchTool",
    "FileListTool",
    "FileReadTool",
    "GuardedTool",
    "ToolPolicy",
    "guard",
    "tool_stats",
]

# The package's modules, from the bottom up (each imports only modules listed
# before it):
#
#   policy     ToolPolicy, and the codes of one call (outcomes, flags)
#   failures   the ToolFailures a call returns, and which traceback frames are crewcore's
#   fallback   _PyEngine: the pure-Python twin of the Go engine
#   native     _Engine: the Go engine through the bridge (its twin after fork)
#   runner     worker threads and isolated subprocesses under a deadline
#   executor   _Executor: one call under one policy; the engine choice (_make_engine)
#   guarded    guard() and GuardedTool
#   dispatch   install_tools(): wrappers at CrewAI's tool dispatch; installed_policy, tool_stats
#   builtin    FetchTool, FileReadTool, FileListTool (Go-native)
#
# FetchTool, FileReadTool, FileListTool and GuardedTool import CrewAI: they are
# built on first use, by __getattr__ below.

_native_cache: tuple[Any, Any, Any] | None = None


def __getattr__(name: str) -> Any:
    global _native_cache
    if name in ("FetchTool", "FileReadTool", "FileListTool"):
        if _native_cache is None:
            _native_cache = builtin._native_tools()
        return dict(zip(("FetchTool", "FileReadTool", "FileListTool"), _native_cache))[name]
    if name == "GuardedTool":
        return guarded._guarded_tool_cls()
    raise AttributeError(name)
