"""What ``guard(tool, isolate=True)`` sends to the isolated process.

The child is a fresh interpreter: it gets the tool's callable by pickle. A
plain top-level function pickles by reference. CrewAI's own tool kinds do
not: a ``@tool`` function's module attribute is the ``Tool`` object, not the
function, and a ``BaseTool`` subclass carries a generated argument-schema
class pickle cannot find. Those are sent by import path instead (the module
and qualified name, resolved again in the child). What a fresh interpreter
cannot import (a tool defined in ``__main__`` run as a script, or inside a
function) is refused when ``guard()`` is called, with the reason, instead of
failing at each call where the model would see it.
"""

from __future__ import annotations

import importlib
import pickle
from typing import Any

from crewcore.errors import ToolPolicyError


class ByPath:
    """A tool callable found again by import path in the isolated process:
    a function (or a ``@tool`` Tool, whose ``func`` is called), or a
    ``BaseTool`` class built with no arguments whose ``_run`` is called."""

    def __init__(self, module: str, qualname: str, construct: bool) -> None:
        self.module, self.qualname, self.construct = module, qualname, construct

    def resolve(self) -> Any:
        obj: Any = importlib.import_module(self.module)
        for part in self.qualname.split("."):
            obj = getattr(obj, part)
        if self.construct:
            return obj()._run
        return getattr(obj, "func", obj)

    def __call__(self, **kwargs: Any) -> Any:
        return self.resolve()(**kwargs)


def _importable(module: str | None, qualname: str | None) -> str:
    """Why a fresh interpreter cannot import module.qualname ("" if it can)."""
    if not module or not qualname:
        return "it has no module and name to import it by"
    if module == "__main__":
        return "it is defined in __main__ (the script being run), which a fresh interpreter does not run"
    if "<locals>" in qualname or "<lambda>" in qualname:
        return "it is defined inside a function (or is a lambda), which cannot be imported"
    return ""


def _picklable(obj: Any) -> bool:
    try:
        pickle.dumps(obj)
        return True
    except Exception:  # noqa: BLE001 - any pickling failure means "not by value"
        return False


def isolate_target(tool: Any, bound_run: Any) -> Any:
    """The callable to send for ``tool`` (a CrewAI BaseTool), or
    ToolPolicyError naming why it cannot be isolated. ``bound_run`` wraps a
    tool instance's ``_run`` for pickling by value."""
    name = getattr(tool, "name", type(tool).__name__)
    fn = getattr(tool, "func", None)
    if fn is not None:  # @tool, or guard() of a plain function
        if getattr(fn, "__module__", None) == "__main__":
            raise ToolPolicyError(f"guard(isolate=True) cannot isolate tool {name!r}: "
                                  f"{_importable('__main__', 'x')}; define it in an importable module")
        if _picklable(fn):
            return fn
        why = _importable(getattr(fn, "__module__", None), getattr(fn, "__qualname__", None))
        if not why:
            target = ByPath(fn.__module__, fn.__qualname__, False)
            try:
                ok = target.resolve() is fn or getattr(target.resolve(), "__wrapped__", None) is fn
            except Exception:  # noqa: BLE001 - not found again by its name
                ok = False
            if ok:
                return target
            why = f"{fn.__module__}.{fn.__qualname__} does not name it"
        raise ToolPolicyError(f"guard(isolate=True) cannot isolate tool {name!r}: {why}; "
                              "define the tool at the top level of an importable module")
    run = bound_run(tool)
    if type(tool).__module__ != "__main__" and _picklable(run):
        return run
    cls = type(tool)
    why = _importable(cls.__module__, cls.__qualname__)
    if not why:
        try:
            fresh = cls()
        except Exception as e:  # noqa: BLE001 - needs arguments the child cannot know
            why = f"{cls.__qualname__}() cannot be built without arguments in the isolated process ({e})"
        else:
            if fresh.model_dump(exclude={"args_schema"}) != tool.model_dump(exclude={"args_schema"}):
                why = f"this instance differs from {cls.__qualname__}() and cannot be pickled"
    if not why:
        return ByPath(cls.__module__, cls.__qualname__, True)
    raise ToolPolicyError(f"guard(isolate=True) cannot isolate tool {name!r}: {why}; "
                          "make it picklable, or a BaseTool subclass at the top level of a module that "
                          "builds with no arguments")
