"""CrewAI kickoff task outputs through crewcore.

:class:`TaskOutputStorage` is a drop-in for CrewAI's
``KickoffTaskOutputsSQLiteStorage``: the same file
(``<CrewAI storage dir>/latest_kickoff_task_outputs.db``), table and column
formats, so ``crewai log-tasks-outputs``, ``crewai replay`` and
``Crew.replay(task_id)`` read what it writes. It keeps the database open
(pooled connections in the Go engine, one connection in the fallback) instead
of reconnecting per call, and ``crewcore.install()`` makes
``TaskOutputStorageHandler`` use it without the full ``load()`` CrewAI runs
before every per-task add.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from crewcore import _bridge
from crewcore.errors import InvalidArgumentError
from crewcore.storage import engine as eng
from crewcore.storage.fallback_db import PyTaskOutputs as _PyEngine

__all__ = ["TaskOutputStorage", "default_path", "install", "uninstall"]

FILE_NAME = "latest_kickoff_task_outputs.db"

_COLUMNS = frozenset(
    {"task_id", "task_key", "expected_output", "output", "task_index", "inputs", "was_replayed", "timestamp"}
)


def default_path() -> str:
    """CrewAI's task outputs file."""
    return os.path.join(eng.storage_dir(), FILE_NAME)


def _dumps(value: Any) -> str:
    # CrewJSONEncoder only adds a default() for types json cannot encode, so
    # for plain JSON values its output is json.dumps's: try that first (it
    # also spares importing crewai's encoder module).
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        from crewai.utilities.crew_json_encoder import CrewJSONEncoder

        return json.dumps(value, cls=CrewJSONEncoder)


def _loads(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str):
        return value  # NUMERIC affinity stored a bare JSON number
    return json.loads(value)


def _timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or math.isnan(timeout) or timeout <= 0:
        raise InvalidArgumentError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    return float(timeout)


class _NativeEngine:
    """The Go engine (package ``taskoutputs``): a handle on the file, pooled
    connections behind it; the methods of the pure-Python ``_PyEngine``."""

    __slots__ = ("h",)

    def __init__(self, path: str, timeout: float | None) -> None:
        self.h = _bridge.call(["to_open", 0, path, timeout])

    def add(self, row: tuple[Any, ...]) -> None:
        _bridge.call(["to_add", self.h, *row])

    def update(self, task_index: int, cols: list[str], vals: list[Any]) -> None:
        _bridge.call(["to_update", self.h, task_index, cols, vals])

    def load(self) -> list[Any]:
        return _bridge.call(["to_load", self.h])

    def delete_all(self) -> None:
        _bridge.call(["to_delete_all", self.h])


class TaskOutputStorage:
    """Drop-in for ``KickoffTaskOutputsSQLiteStorage(db_path=None)``.

    ``timeout`` bounds every call while another process holds the database
    (default 30 s); past it ``StoreTimeoutError`` names the file.
    """

    def __init__(self, db_path: str | None = None, *, timeout: float | None = None) -> None:
        if db_path is not None and (not isinstance(db_path, (str, os.PathLike)) or not str(db_path)):
            raise InvalidArgumentError(f"db_path must be a non-empty path, got {db_path!r}")
        self.db_path = os.path.abspath(str(db_path) if db_path is not None else default_path())
        self._timeout = _timeout(timeout)
        self._native = eng.use_native()
        self._engine: _NativeEngine | _PyEngine = (
            _NativeEngine(self.db_path, self._timeout)
            if self._native
            else _PyEngine.shared(self.db_path, self._timeout)
        )

    @property
    def engine(self) -> str:
        """"native" or "python"."""
        return "native" if self._native else "python"

    def add(
        self,
        task: Any,
        output: dict[str, Any],
        task_index: int,
        was_replayed: bool = False,
        inputs: dict[str, Any] | None = None,
    ) -> None:
        """Insert or replace the output of ``task`` (CrewAI's signature)."""
        inputs = inputs or {}
        if isinstance(task_index, bool) or not isinstance(task_index, int):
            raise InvalidArgumentError(f"task_index must be an int, got {task_index!r}")
        try:
            row = (
                str(task.id),
                getattr(task, "key", None),
                getattr(task, "expected_output", None),
                _dumps(output),
                task_index,
                _dumps(inputs),
                bool(was_replayed),
            )
        except (TypeError, ValueError) as e:
            raise InvalidArgumentError(f"task output cannot be stored as JSON: {e}") from None
        self._engine.add(row)

    def update(self, task_index: int, **kwargs: Any) -> None:
        """Set columns of the row with ``task_index``; dict values are stored as JSON."""
        cols, vals = [], []
        for k, v in kwargs.items():
            if k not in _COLUMNS:
                raise InvalidArgumentError(f"update task output: unknown column {k!r} (known: {sorted(_COLUMNS)})")
            cols.append(k)
            vals.append(_dumps(v) if isinstance(v, dict) else v)
        if not cols:
            return
        self._engine.update(task_index, cols, vals)

    def load(self) -> list[dict[str, Any]]:
        """Every stored output, ordered by task_index (CrewAI's row dicts)."""
        rows = self._engine.load()
        return [
            {
                "task_id": r[0],
                "task_key": r[1],
                "expected_output": r[2],
                "output": _loads(r[3]),
                "task_index": r[4],
                "inputs": _loads(r[5]),
                "was_replayed": r[6],
                "timestamp": r[7],
            }
            for r in rows
        ]

    def delete_all(self) -> None:
        """Remove every stored output."""
        self._engine.delete_all()


# ---- TaskOutputStorageHandler ------------------------------------------------

_orig: dict[str, Any] = {}


def _handler_init(self: Any) -> None:
    self.storage = TaskOutputStorage()


def _handler_update(self: Any, task_index: int, log: dict[str, Any]) -> None:
    # CrewAI's own update() first load()s every stored output (a full SELECT
    # and JSON decode per task); the result is only checked against None,
    # which load() never returns, so the add goes straight through.
    if log.get("was_replayed", False):
        replayed = {
            "task_id": str(log["task"].id),
            "task_key": log["task"].key,
            "expected_output": log["task"].expected_output,
            "output": log["output"],
            "was_replayed": log["was_replayed"],
            "inputs": log["inputs"],
        }
        self.storage.update(task_index, **replayed)
    else:
        self.storage.add(**log)


def install() -> None:
    """Make ``TaskOutputStorageHandler`` (every Crew's) store through crewcore."""
    from crewai.utilities.task_output_storage_handler import TaskOutputStorageHandler as H

    if "init" not in _orig:
        _orig["init"] = H.__init__
        _orig["update"] = H.update
    H.__init__ = _handler_init  # type: ignore[method-assign]
    H.update = _handler_update  # type: ignore[method-assign]


def uninstall() -> None:
    """Restore CrewAI's own handler (crews created later use CrewAI's storage)."""
    from crewai.utilities.task_output_storage_handler import TaskOutputStorageHandler as H

    if "init" in _orig:
        H.__init__ = _orig.pop("init")  # type: ignore[method-assign]
        H.update = _orig.pop("update")  # type: ignore[method-assign]
