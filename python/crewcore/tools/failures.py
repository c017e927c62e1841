"""Structured failures: the CrewAI ToolFailure a call refused or stopped by one
of crewcore's own limits returns to the model, the message for arguments no
engine can encode, and the exception of an isolated tool rebuilt in this
process (a tool's own exception is raised, never turned into a ToolFailure)."""

from __future__ import annotations

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
    if limit == "timeout":
        # A call that ran out of time was not refused: say what happened.
        after = round(float(details.get("deadline_ms", 0.0)) / 1000, 3)
        text = f"crewcore: tool '{tool}' timed out after {after:g} s: {message}. What to do: {hint}."
    else:
        text = f"crewcore refused tool '{tool}' ({limit}): {message}. What to do: {hint}."
    if "elapsed_ms" in details:
        text += f" [elapsed {details['elapsed_ms']:.0f} ms]"
    return ToolFailure(
        message=text,
        reason=ToolFailureReason(reason),
        code=code or f"crewcore.{limit}",
        retryable=retryable,
        details=details,
    )


def _resolve_class(qual: str) -> type | None:
    """The exception class an isolated child named (``module.Qual.Name``, or
    ``Name`` for builtins), looked up in the modules this process has already
    imported (the tool's own module is: its function was pickled here). None
    when it is not there or is not an exception class."""
    import builtins
    import sys

    parts = qual.split(".")
    candidates = [(builtins, parts)] if len(parts) == 1 else []
    for i in range(len(parts) - 1, 0, -1):
        mod = sys.modules.get(".".join(parts[:i]))
        if mod is not None:
            candidates.append((mod, parts[i:]))
    for obj, path in candidates:
        for name in path:
            obj = getattr(obj, name, None)
            if obj is None:
                break
        if isinstance(obj, type) and issubclass(obj, BaseException):
            return obj
    return None


def _rebuild_isolated(tool: str, qual: str, name: str, msg: str, tb: str, is_exc: bool) -> BaseException:
    """The exception a tool raised in its isolated process, rebuilt in this
    one with the same type and message (to be raised as CrewAI would see it
    without crewcore). The child's last frames travel as a note. A class whose
    constructor wants more than a message is raised as a subclass of itself
    whose text is the message; a class this process cannot find is stood in
    for by a class of the same name and module, derived from Exception (or
    BaseException)."""
    cls = _resolve_class(qual)
    exc: BaseException | None = None
    if cls is not None:
        try:
            exc = cls(msg)
        except Exception:  # a constructor that wants more than a message
            exc = None
    if exc is None and cls is not None:
        # A constructor that wants more than a message (UnicodeDecodeError):
        # a subclass of the real class (caught where it would be) whose text
        # is the message.
        try:
            sub = type(cls.__name__, (cls,), {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                                              "__str__": lambda self: str(self.args[0]) if self.args else ""})
            exc = sub.__new__(sub)
            exc.args = (msg,)
        except Exception:
            exc = None
    if exc is None:
        # Not importable here: a stand-in of the same name and module.
        base: type = Exception if is_exc else BaseException
        module, _, qn = qual.rpartition(".")
        stand_in = type(name, (base,), {"__module__": module or "builtins", "__qualname__": qn or name})
        exc = stand_in(msg)
    note = f"crewcore: raised by tool {tool!r} in its isolated process"
    if tb:
        note += f"; its last frames:\n{tb}"
    exc.add_note(note)
    return exc


def _args_problem(tool: str, args: Any, e: Exception) -> str:
    if isinstance(e, RecursionError) or (isinstance(e, ValueError) and ("recursion" in str(e) or "Circular" in str(e))):
        why = "they contain a recursive (self-referencing) structure or are nested too deeply"
    elif isinstance(e, OverflowError):
        why = "they contain an integer outside the 64-bit range"
    else:
        why = f"they are not JSON-serializable ({e})"
    return f"the arguments of tool {tool!r} cannot be encoded: {why}"
