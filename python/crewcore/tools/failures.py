"""Structured failures: the CrewAI ToolFailure a refused, stopped or failing
call returns to the model, and the message for arguments no engine can encode."""

from __future__ import annotations

import os
import traceback
from typing import Any

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


#: The tools package's own directory: a frame of any of its modules (executor,
#: runner, guarded, dispatch wrappers) is crewcore's, not the tool's.
_HERE = os.path.dirname(os.path.abspath(__file__))
_CREWAI_TOOLS = os.sep + os.path.join("crewai", "tools") + os.sep


def _internal_frame(filename: str) -> bool:
    """crewcore's executor and CrewAI's tool wrappers: not the tool's own frames."""
    return os.path.dirname(filename) == _HERE or _CREWAI_TOOLS in filename or filename.endswith(os.sep + "_bridge.py")


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


def _args_problem(tool: str, args: Any, e: Exception) -> str:
    if isinstance(e, RecursionError) or (isinstance(e, ValueError) and ("recursion" in str(e) or "Circular" in str(e))):
        why = "they contain a recursive (self-referencing) structure or are nested too deeply"
    elif isinstance(e, OverflowError):
        why = "they contain an integer outside the 64-bit range"
    else:
        why = f"they are not JSON-serializable ({e})"
    return f"the arguments of tool {tool!r} cannot be encoded: {why}"
