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
import sqlite3
import threading
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

from crewai.flow.persistence.base import FlowPersistence
from pydantic import BaseModel, Field, PrivateAttr

from crewcore.storage import engine as eng
from crewcore.errors import InvalidArgumentError

if TYPE_CHECKING:
    from crewai.flow.async_feedback.types import PendingFeedbackContext

__all__ = ["CrewcoreFlowPersistence", "default_path", "flow_persistence_factory", "install", "uninstall"]

FILE_NAME = "flow_states.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS flow_states (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    flow_uuid TEXT NOT NULL,
    method_name TEXT NOT NULL,
    timestamp DATETIME NOT NULL,
    state_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_flow_states_uuid ON flow_states(flow_uuid);
CREATE TABLE IF NOT EXISTS pending_feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    flow_uuid TEXT NOT NULL UNIQUE,
    context_json TEXT NOT NULL,
    state_json TEXT NOT NULL,
    created_at DATETIME NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_pending_feedback_uuid ON pending_feedback(flow_uuid);
"""


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


class _PyEngine:
    def __init__(self, path: str) -> None:
        eng.check_db_file(path)
        self.path = path
        self.mu = threading.Lock()
        try:
            self.conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            with self.mu:
                self.conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
        except sqlite3.Error as e:
            raise eng.py_error("open database", path, e) from None

    def write(self, op: str, stmts: list[tuple[str, tuple[Any, ...]]]) -> None:
        with self.mu:
            c = self.conn
            try:
                c.execute("BEGIN IMMEDIATE")
                try:
                    for q, a in stmts:
                        c.execute(q, a)
                    c.execute("COMMIT")
                except BaseException:
                    c.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise eng.py_error(op, self.path, e) from None

    def one(self, op: str, q: str, a: tuple[Any, ...]) -> Any:
        with self.mu:
            try:
                return self.conn.execute(q, a).fetchone()
            except sqlite3.Error as e:
                raise eng.py_error(op, self.path, e) from None


_py_mu = threading.Lock()
_py_engines: dict[str, _PyEngine] = {}

_SAVE = "INSERT INTO flow_states (flow_uuid, method_name, timestamp, state_json) VALUES (?, ?, ?, ?)"


class CrewcoreFlowPersistence(FlowPersistence):
    """FlowPersistence on CrewAI's flow_states.db format, through crewcore."""

    persistence_type: str = Field(default="CrewcoreFlowPersistence")
    db_path: str = Field(default_factory=default_path)
    _h: int = PrivateAttr(default=0)
    _native: bool = PrivateAttr(default=False)
    _py: Any = PrivateAttr(default=None)

    def __init__(self, db_path: str | None = None, /, **kwargs: Any) -> None:
        if db_path is not None:
            kwargs["db_path"] = db_path
        super().__init__(**kwargs)
        self.db_path = os.path.abspath(self.db_path)
        self.init_db()

    def init_db(self) -> None:
        self._native = eng.use_native()
        if self._native:
            from crewcore import _bridge

            self._h = _bridge.call(["flow_open", 0, self.db_path, None])
        else:
            with _py_mu:
                e = _py_engines.get(self.db_path)
                if e is None:
                    e = _py_engines[self.db_path] = _PyEngine(self.db_path)
                self._py = e

    @property
    def engine(self) -> str:
        return "native" if self._native else "python"

    def _call(self, op: str, *args: Any) -> Any:
        from crewcore import _bridge

        return _bridge.call([op, self._h, *args])

    def save_state(self, flow_uuid: str, method_name: str, state_data: dict[str, Any] | BaseModel) -> None:
        _check_id(flow_uuid)
        _check_id(method_name, "method_name")
        state = _dumps(_state_dict(state_data))
        if self._native:
            self._call("flow_save", flow_uuid, method_name, state)
        else:
            ts = datetime.now(timezone.utc).isoformat()
            self._py.write("save flow state", [(_SAVE, (flow_uuid, method_name, ts, state))])

    def load_state(self, flow_uuid: str) -> dict[str, Any] | None:
        _check_id(flow_uuid)
        if self._native:
            raw = self._call("flow_load", flow_uuid)
        else:
            row = self._py.one(
                "load flow state",
                "SELECT state_json FROM flow_states WHERE flow_uuid = ? ORDER BY id DESC LIMIT 1",
                (flow_uuid,),
            )
            raw = row[0] if row else None
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
        if self._native:
            self._call("flow_save_pending", flow_uuid, context.method_name, ctx, state)
        else:
            ts = datetime.now(timezone.utc).isoformat()
            self._py.write(
                "save pending feedback",
                [
                    (_SAVE, (flow_uuid, context.method_name, ts, state)),
                    (
                        "INSERT OR REPLACE INTO pending_feedback (flow_uuid, context_json, state_json, created_at) VALUES (?, ?, ?, ?)",
                        (flow_uuid, ctx, state, ts),
                    ),
                ],
            )

    def load_pending_feedback(self, flow_uuid: str) -> tuple[dict[str, Any], PendingFeedbackContext] | None:
        from crewai.flow.async_feedback.types import PendingFeedbackContext

        _check_id(flow_uuid)
        if self._native:
            row = self._call("flow_load_pending", flow_uuid)
        else:
            row = self._py.one(
                "load pending feedback",
                "SELECT state_json, context_json FROM pending_feedback WHERE flow_uuid = ?",
                (flow_uuid,),
            )
        if not row:
            return None
        return json.loads(row[0]), PendingFeedbackContext.from_dict(json.loads(row[1]))

    def clear_pending_feedback(self, flow_uuid: str) -> None:
        _check_id(flow_uuid)
        if self._native:
            self._call("flow_clear_pending", flow_uuid)
        else:
            self._py.write("clear pending feedback", [("DELETE FROM pending_feedback WHERE flow_uuid = ?", (flow_uuid,))])


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
