"""Crews of the durable run queue: factories named ``"package.module:attr"``,
JSON inputs, and results in their JSON form.

A ``Crew`` cannot be pickled, so a queued run names the function that
builds it. A worker process calls the factory once and runs every input on
a ``crew.copy()`` (as ``kickoff_many`` and CrewAI's ``kickoff_for_each``
do); a factory whose result has no ``copy()`` is called for every run.

Results travel as JSON: a ``CrewOutput`` as its ``model_dump(mode="json")``
(rebuilt into a ``CrewOutput`` on the submitting side), another pydantic
model as its dump, a JSON value as itself, anything else as its ``str()``.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import threading
from typing import Any, Iterable

from crewcore.errors import CrewFactoryError, InvalidArgumentError

_SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

#: The longest input (JSON bytes) a run may carry (runq.MaxInputBytes).
MAX_INPUT_BYTES = 8 << 20


def check_spec(crew: Any) -> str:
    """The factory spec, checked for its form (``"package.module:attr"``)."""
    if not isinstance(crew, str):
        raise CrewFactoryError(
            f"a queued crew is named by its factory, 'package.module:function' (a Crew cannot be "
            f"sent to another process), not a {type(crew).__name__}"
        )
    if not _SPEC.match(crew):
        raise CrewFactoryError(f"crew {crew!r} must name a factory as 'package.module:function'")
    return crew


def resolve(crew: str) -> Any:
    """Import the factory named by ``crew``; raise CrewFactoryError saying why not."""
    check_spec(crew)
    mod_name, _, attr = crew.partition(":")
    try:
        obj: Any = importlib.import_module(mod_name)
    except Exception as e:  # noqa: BLE001 - any import failure is the factory's
        raise CrewFactoryError(
            f"crew factory {crew!r}: module {mod_name!r} cannot be imported: {type(e).__name__}: {e} "
            f"(is it on sys.path? workers take --crew-path DIR)"
        ) from e
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CrewFactoryError(f"crew factory {crew!r}: {mod_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise CrewFactoryError(f"crew factory {crew!r} is a {type(obj).__name__}, not a callable")
    return obj


def encode_inputs(inputs: Iterable[Any]) -> list[str]:
    """Each input as JSON text; raise InvalidArgumentError naming the first
    input that is not a JSON object with string keys."""
    if isinstance(inputs, (str, bytes, dict)):
        raise InvalidArgumentError("inputs must be a list of dicts (one run each), not a single " + type(inputs).__name__)
    out = []
    for i, inp in enumerate(inputs):
        if not isinstance(inp, dict):
            raise InvalidArgumentError(f"input {i} is a {type(inp).__name__}, not a dict")
        try:
            text = json.dumps(inp, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as e:
            raise InvalidArgumentError(f"input {i} is not JSON (queued runs take JSON inputs): {e}") from None
        if len(text.encode()) > MAX_INPUT_BYTES:
            raise InvalidArgumentError(f"input {i} is {len(text.encode())} bytes of JSON (at most {MAX_INPUT_BYTES})")
        if any(not isinstance(k, str) for k in inp):
            raise InvalidArgumentError(f"input {i} has a key that is not a string (JSON would change it)")
        out.append(text)
    return out


# -- results ----------------------------------------------------------------


def _qualname(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def encode_result(value: Any) -> dict[str, Any]:
    """A run's return value as ``{"type": ..., "value": <JSON>}``."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return {"type": _qualname(value), "value": dump(mode="json")}
        except Exception:  # noqa: BLE001 - fall through to str()
            pass
    try:
        json.dumps(value, allow_nan=False)
        return {"type": "json", "value": value}
    except (TypeError, ValueError):
        return {"type": "str", "value": str(value)}


_CREW_OUTPUT = "crewai.crews.crew_output.CrewOutput"


def decode_result(result: Any) -> Any:
    """The value a worker recorded: a CrewOutput rebuilt from its JSON form
    (its ``pydantic`` model becomes None: the class is the crew's; the
    data is in ``json_dict``), other values as their JSON."""
    if not isinstance(result, dict):
        return result
    typ, value = result.get("type"), result.get("value")
    if typ == _CREW_OUTPUT and isinstance(value, dict):
        try:
            from crewai.crews.crew_output import CrewOutput

            v = dict(value)
            pyd = v.get("pydantic")
            v["pydantic"] = None
            if pyd is not None and v.get("json_dict") is None and isinstance(pyd, dict):
                v["json_dict"] = pyd
            tasks = []
            for t in v.get("tasks_output") or []:
                t = dict(t)
                t["pydantic"] = None
                tasks.append(t)
            v["tasks_output"] = tasks
            return CrewOutput.model_validate(v)
        except Exception:  # noqa: BLE001 - the JSON form is still the result
            return value
    return value


# -- the worker side ----------------------------------------------------------

_built: dict[str, Any] = {}
_build_lock = threading.Lock()


def crew_for(crew: str) -> tuple[Any, bool]:
    """(the object to run, whether it is a shared crew to copy per run): the
    factory's result, built once per process when it can be copied."""
    with _build_lock:
        hit = _built.get(crew)
    if hit is not None:
        return hit, True
    factory = resolve(crew)
    obj = factory()
    if callable(getattr(obj, "copy", None)) and callable(getattr(obj, "kickoff", None)):
        with _build_lock:
            obj = _built.setdefault(crew, obj)
        return obj, True
    if not callable(getattr(obj, "kickoff", None)):
        raise CrewFactoryError(f"crew factory {crew!r} returned a {type(obj).__name__}, which has no kickoff()")
    return obj, False


def error_record(e: BaseException) -> dict[str, Any]:
    """A failure as JSON: type, module, message and the last frames."""
    import traceback

    tb = "".join(traceback.format_exception(type(e), e, e.__traceback__, limit=-8))
    return {
        "type": type(e).__name__,
        "module": type(e).__module__,
        "message": str(e)[:20_000],
        "traceback": tb[-8_000:],
    }


def add_crew_path(dirs: str) -> None:
    """Put the ``os.pathsep``-separated directories first on sys.path."""
    for d in reversed([d for d in dirs.split(":") if d]):
        if d not in sys.path:
            sys.path.insert(0, d)
