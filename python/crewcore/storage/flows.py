"""CrewAI flow state through crewcore.

:class:`CrewcoreFlowPersistence` is a ``FlowPersistence`` on the file and
tables of CrewAI's ``SQLiteFlowPersistence`` (``<CrewAI storage
dir>/flow_states.db``: ``flow_states`` and ``pending_feedback``), so flows
saved by one resume under the other. ``crewcore.install()`` registers it with
``set_flow_persistence_factory``: every ``@persist`` without an explicit
``persistence=`` and the flow runtime's pause/resume paths then use it.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from crewai.flow.persistence.base import FlowPersistence
from pydantic import BaseModel, Field, PrivateAttr

from crewcore import _bridge
from crewcore.errors import InvalidArgumentError
from crewcore.storage import engine as eng
from crewcore.storage.fallback_db import PyFlowState as _PyEngine

if TYPE_CHECKING:
    from crewai.flow.async_feedback.types import PendingFeedbackContext

__all__ = ["CrewcoreFlowPersistence", "default_path", "flow_persistence_factory", "install", "uninstall"]

FILE_NAME = "flow_states.db"


def default_path() -> str:
    """CrewAI's flow state file."""
    return os.path.join(eng.storage_dir(), FILE_NAME)


def _json_default(obj: Any) -> Any:
    # The same conversions CrewAI's SQLite persistence applies.
    if isinstance(obj, BaseModel):
        try:
            return obj.model_dump(mode="json")
        except Exception:  # noqa: BLE001
            return obj.model_dump(mode="python")
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, (date, datetime)):
        return obj.isoformat()
    return str(obj)


def _state_dict(state_data: Any) -> dict[str, Any]:
    if isinstance(state_data, BaseModel):
        try:
            return state_data.model_dump(mode="json")
        except Exception:  # noqa: BLE001
            return state_data.model_dump(mode="python")
    if isinstance(state_data, dict):
        return state_data
    raise InvalidArgumentError(
        f"state_data must be either a Pydantic BaseModel or dict, got {type(state_data)}"
    )


def _dumps(v: Any) -> str:
    try:
        return json.dumps(v, default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"flow state cannot be stored as JSON: {e}") from None


def _check_id(flow_uuid: Any, what: str = "flow_uuid") -> str:
    if not isinstance(flow_uuid, str) or not flow_uuid:
        raise InvalidArgumentError(f"{what} must be a non-empty str, got {flow_uuid!r}")
    return flow_uuid


class _NativeEngine:
    """The Go engine (package ``flowstate``): a handle on the file; the methods
    of the pure-Python ``_PyEngine``."""

    __slots__ = ("h",)

    def __init__(self, path: str) -> None:
        self.h = _bridge.call(["flow_open", 0, path, None])

    def save(self, flow_uuid: str, method_name: str, state: str) -> None:
        _bridge.call(["flow_save", self.h, flow_uuid, method_name, state])

    def load(self, flow_uuid: str) -> str | None:
        return _bridge.call(["flow_load", self.h, flow_uuid])

    def save_pending(self, flow_uuid: str, method_name: str, ctx: str, state: str) -> None:
        _bridge.call(["flow_save_pending", self.h, flow_uuid, method_name, ctx, state])

    def load_pending(self, flow_uuid: str) -> Any:
        return _bridge.call(["flow_load_pending", self.h, flow_uuid])

    def clear_pending(self, flow_uuid: str) -> None:
        _bridge.call(["flow_clear_pending", self.h, flow_uuid])


class CrewcoreFlowPersistence(FlowPersistence):
    """FlowPersistence on CrewAI's flow_states.db format, through crewcore."""

    persistence_type: str = Field(default="CrewcoreFlowPersistence")
    db_path: str = Field(default_factory=default_path)
    _native: bool = PrivateAttr(default=False)
    _engine: Any = PrivateAttr(default=None)  # _NativeEngine or _PyEngine

    def __init__(self, db_path: str | None = None, /, **kwargs: Any) -> None:
        if db_path is not None:
            kwargs["db_path"] = db_path
        super().__init__(**kwargs)
        self.db_path = os.path.abspath(self.db_path)
        self.init_db()

    def init_db(self) -> None:
        self._native = eng.use_native()
        self._engine = _NativeEngine(self.db_path) if self._native else _PyEngine.shared(self.db_path)

    @property
    def engine(self) -> str:
        return "native" if self._native else "python"

    def save_state(self, flow_uuid: str, method_name: str, state_data: dict[str, Any] | BaseModel) -> None:
        _check_id(flow_uuid)
        _check_id(method_name, "method_name")
        state = _dumps(_state_dict(state_data))
        self._engine.save(flow_uuid, method_name, state)

    def load_state(self, flow_uuid: str) -> dict[str, Any] | None:
        _check_id(flow_uuid)
        raw = self._engine.load(flow_uuid)
        if raw is None:
            return None
        result = json.loads(raw)
        return result if isinstance(result, dict) else None

    def save_pending_feedback(
        self, flow_uuid: str, context: PendingFeedbackContext, state_data: dict[str, Any] | BaseModel
    ) -> None:
        _check_id(flow_uuid)
        state = _dumps(_state_dict(state_data))
        ctx = _dumps(context.to_dict())
        self._engine.save_pending(flow_uuid, context.method_name, ctx, state)

    def load_pending_feedback(self, flow_uuid: str) -> tuple[dict[str, Any], PendingFeedbackContext] | None:
        from crewai.flow.async_feedback.types import PendingFeedbackContext

        _check_id(flow_uuid)
        row = self._engine.load_pending(flow_uuid)
        if not row:
            return None
        return json.loads(row[0]), PendingFeedbackContext.from_dict(json.loads(row[1]))

    def clear_pending_feedback(self, flow_uuid: str) -> None:
        _check_id(flow_uuid)
        self._engine.clear_pending(flow_uuid)


_factory_mu = threading.Lock()
_instances: dict[str, CrewcoreFlowPersistence] = {}


def flow_persistence_factory() -> CrewcoreFlowPersistence:
    """The factory for ``set_flow_persistence_factory``: one instance per file
    (CrewAI's storage dir may change between calls) and process."""
    path = os.path.abspath(default_path())
    with _factory_mu:
        p = _instances.get(path)
        if p is None or (p._native and eng.use_native() is False):
            p = _instances[path] = CrewcoreFlowPersistence(path)
        return p


flow_persistence_factory.crewcore = True  # type: ignore[attr-defined]


def install() -> None:
    """Make crewcore the default flow persistence."""
    from crewai.flow.persistence.factory import set_flow_persistence_factory

    set_flow_persistence_factory(flow_persistence_factory)


def uninstall() -> None:
    """Restore CrewAI's default (if crewcore's factory is in place)."""
    from crewai.flow.persistence import factory

    if getattr(factory, "_factory", None) is flow_persistence_factory:
        factory.set_flow_persistence_factory(None)
