"""The storage layer's pure-Python engine on SQLite files: CrewAI's kickoff
task outputs and flow state through Python's sqlite3, used when
:func:`crewcore.storage.engine.use_native` says no.

The same files, tables, SQL and typed errors as the Go engine (packages
``taskoutputs`` and ``flowstate`` on ``sqlitedb``), so either engine reads
what the other wrote. :class:`PyTaskOutputs` and :class:`PyFlowState` have the
methods of the native bindings beside their public classes
(:mod:`~crewcore.storage.task_outputs`, :mod:`~crewcore.storage.flows`); what
they share is here once: the file checks (:func:`check_db_file`), the error
mapping (:func:`py_error`) and one connection per file with its mutex and
transactions (:class:`PyDb`).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, ClassVar, Self, TypeVar

from crewcore.errors import InvalidArgumentError

__all__ = ["PyDb", "PyFlowState", "PyTaskOutputs", "check_db_file", "py_error"]

_T = TypeVar("_T")


def check_db_file(path: str) -> None:
    """Refuse a path that is a directory or a non-SQLite file (never modified),
    and an uncreatable one, with crewcore's typed errors (Python engine)."""
    from crewcore.errors import StoreAccessError, StoreCorruptError

    d = os.path.dirname(path) or "."
    try:
        os.makedirs(d, exist_ok=True)
    except OSError as e:
        raise StoreAccessError(f"open database {path}: cannot create directory {d}: {e}") from None
    if os.path.isdir(path):
        raise StoreCorruptError(f"open database {path}: path is a directory")
    from crewcore._sqlitedb import not_sqlite

    try:
        st = os.stat(path)
    except FileNotFoundError:
        if not os.access(d, os.W_OK) or _readonly_fs(d):
            raise StoreAccessError(f"open database {path}: directory {d} is not writable") from None
        return
    except OSError as e:
        raise StoreAccessError(f"open database {path}: {e}") from None
    if not os.access(path, os.R_OK):
        raise StoreAccessError(f"open database {path}: the file is not readable")
    # Never through open(): see not_sqlite.
    if st.st_size and not_sqlite(path):
        raise StoreCorruptError(f"open database {path}: the file is not a SQLite database")


def _readonly_fs(d: str) -> bool:
    try:
        return bool(os.statvfs(d).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def py_error(op: str, path: str, e: BaseException) -> Exception:
    """Map a sqlite3 error of the Python engine to crewcore's typed errors."""
    from crewcore.errors import (
        StorageFullError,
        StoreAccessError,
        StoreCorruptError,
        StoreTimeoutError,
    )

    msg = str(e).lower()
    text = f"{op} {path}: {e}"
    if "locked" in msg or "busy" in msg:
        return StoreTimeoutError(f"{op} {path}: database locked past deadline: the database stayed locked by another connection or process: {e}")
    if "full" in msg or "too big" in msg or getattr(e, "errno", None) in (28, 27, 122):
        return StorageFullError(f"{op} {path}: disk full: {e}")
    if "not a database" in msg or "malformed" in msg or "corrupt" in msg:
        return StoreCorruptError(f"{op} {path}: database corrupt or not a SQLite file: {e}")
    if "readonly" in msg or "read-only" in msg or "unable to open" in msg or "permission" in msg:
        return StoreAccessError(f"{op} {path}: database not writable: {e}")
    if "disk i/o" in msg:
        return StorageFullError(text) if _dir_full(path) else OSError(text)
    return OSError(text)


def _dir_full(path: str) -> bool:
    import resource

    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        if soft != resource.RLIM_INFINITY:
            return True
        st = os.statvfs(os.path.dirname(path) or ".")
        return st.f_bavail * st.f_frsize < 1 << 20
    except OSError:
        return False


# ---- one connection per file ----------------------------------------------------


class PyDb:
    """One sqlite3 connection (WAL) on one file, its calls serialized by a
    mutex; each subclass keeps one per file and process (:meth:`shared`)."""

    _shared_mu: ClassVar[threading.Lock] = threading.Lock()
    _shared: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._shared_mu = threading.Lock()
        cls._shared = {}

    @classmethod
    def shared(cls, path: str, *args: Any) -> Self:
        """This process's engine on ``path`` (opened by the first caller, with
        its arguments)."""
        with cls._shared_mu:
            e = cls._shared.get(path)
            if e is None:
                e = cls._shared[path] = cls(path, *args)
            return e

    def __init__(self, path: str, timeout: float) -> None:
        check_db_file(path)
        self.path = path
        self.timeout = timeout
        self.mu = threading.Lock()
        try:
            self.conn = sqlite3.connect(path, timeout=self.timeout, check_same_thread=False, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as e:
            raise py_error("open database", path, e) from None

    def run(self, op: str, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """``fn(connection)`` under the mutex, a sqlite3 error raised as
        crewcore's typed error for ``op``."""
        with self.mu:
            try:
                return fn(self.conn)
            except sqlite3.Error as e:
                raise py_error(op, self.path, e) from None

    def write(self, op: str, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """``fn(connection)`` in one ``BEGIN IMMEDIATE`` transaction, rolled
        back when it raises (the error is ``fn``'s, never the rollback's)."""

        def tx(c: sqlite3.Connection) -> _T:
            c.execute("BEGIN IMMEDIATE")
            try:
                out = fn(c)
                c.execute("COMMIT")
                return out
            except BaseException:
                try:
                    c.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise

        return self.run(op, tx)


# ---- kickoff task outputs -------------------------------------------------------

_TO_SCHEMA = """CREATE TABLE IF NOT EXISTS latest_kickoff_task_outputs (
    task_id TEXT PRIMARY KEY,
    task_key TEXT,
    expected_output TEXT,
    output JSON,
    task_index INTEGER,
    inputs JSON,
    was_replayed BOOLEAN,
    timestamp DATETIME DEFAULT CURRENT_TIMESTAMP
)"""

_TO_LOAD = """SELECT task_id, task_key, expected_output, output, task_index, inputs, was_replayed, timestamp
FROM latest_kickoff_task_outputs ORDER BY task_index"""


class PyTaskOutputs(PyDb):
    """The pure-Python engine: one sqlite3 connection per file per process."""

    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__(path, timeout or 30.0)

        def init(c: sqlite3.Connection) -> None:
            c.execute(_TO_SCHEMA)
            cols = {r[1] for r in c.execute("PRAGMA table_info(latest_kickoff_task_outputs)")}
            if "task_key" not in cols:
                c.execute("ALTER TABLE latest_kickoff_task_outputs ADD COLUMN task_key TEXT")

        self.write("open database", init)

    def add(self, row: tuple[Any, ...]) -> None:
        self.write(
            "add task output",
            lambda c: c.execute(
                "INSERT OR REPLACE INTO latest_kickoff_task_outputs "
                "(task_id, task_key, expected_output, output, task_index, inputs, was_replayed) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                row,
            ),
        )

    def update(self, task_index: int, cols: list[str], vals: list[Any]) -> int:
        for v in vals:
            if v is not None and not isinstance(v, (str, int, float, bool)):
                raise InvalidArgumentError(f"update task output: value of type {type(v).__name__} cannot be stored")
        q = f"UPDATE latest_kickoff_task_outputs SET {', '.join(c + ' = ?' for c in cols)} WHERE task_index = ?"  # noqa: S608  (whitelisted columns)
        return int(self.write("update task output", lambda c: c.execute(q, (*vals, task_index)).rowcount))

    def load(self) -> list[tuple[Any, ...]]:
        return self.run("load task outputs", lambda c: c.execute(_TO_LOAD).fetchall())

    def delete_all(self) -> None:
        self.write("delete task outputs", lambda c: c.execute("DELETE FROM latest_kickoff_task_outputs"))


# ---- flow state -----------------------------------------------------------------

_FLOW_SCHEMA = """
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

_SAVE = "INSERT INTO flow_states (flow_uuid, method_name, timestamp, state_json) VALUES (?, ?, ?, ?)"


class PyFlowState(PyDb):
    """The pure-Python engine of CrewAI's flow_states.db: one sqlite3
    connection per file per process."""

    def __init__(self, path: str) -> None:
        super().__init__(path, 30.0)
        # One script (its own BEGIN/COMMIT): executescript() would first commit
        # a transaction opened by write().
        self.run("open database", lambda c: c.executescript("BEGIN IMMEDIATE;" + _FLOW_SCHEMA + "COMMIT;"))

    def save(self, flow_uuid: str, method_name: str, state: str) -> None:
        ts = datetime.now(timezone.utc).isoformat()
        self.write("save flow state", lambda c: c.execute(_SAVE, (flow_uuid, method_name, ts, state)))

    def load(self, flow_uuid: str) -> str | None:
        row = self.run(
            "load flow state",
            lambda c: c.execute(
                "SELECT state_json FROM flow_states WHERE flow_uuid = ? ORDER BY id DESC LIMIT 1", (flow_uuid,)
            ).fetchone(),
        )
        return row[0] if row else None

    def save_pending(self, flow_uuid: str, method_name: str, ctx: str, state: str) -> None:
        ts = datetime.now(timezone.utc).isoformat()

        def save(c: sqlite3.Connection) -> None:
            c.execute(_SAVE, (flow_uuid, method_name, ts, state))
            c.execute(
                "INSERT OR REPLACE INTO pending_feedback (flow_uuid, context_json, state_json, created_at) VALUES (?, ?, ?, ?)",
                (flow_uuid, ctx, state, ts),
            )

        self.write("save pending feedback", save)

    def load_pending(self, flow_uuid: str) -> tuple[str, str] | None:
        return self.run(
            "load pending feedback",
            lambda c: c.execute(
                "SELECT state_json, context_json FROM pending_feedback WHERE flow_uuid = ?", (flow_uuid,)
            ).fetchone(),
        )

    def clear_pending(self, flow_uuid: str) -> None:
        self.write("clear pending feedback", lambda c: c.execute("DELETE FROM pending_feedback WHERE flow_uuid = ?", (flow_uuid,)))
