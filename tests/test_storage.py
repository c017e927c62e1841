"""The storage layer (issue 3): named locks, kickoff task outputs and flow
state, on both engines (native Go, pure-Python fallback), against CrewAI's
real classes and files, with bad input and faults.

Within one process the Go engine and Python's sqlite3 never open the same
file: every test has its own tmp_path, and whenever CrewAI's own sqlite3 code
must read or write a file crewcore touched, it runs in a child process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import pytest

from crewcore import flows, locks, task_outputs
from crewcore.errors import (
    InvalidArgumentError,
    LockTimeoutError,
    StorageFullError,
    StoreAccessError,
    StoreCorruptError,
    StoreTimeoutError,
)
from conftest import REPO, child_env, read_only, run_py

ENGINES = ["native", "python"]


@pytest.fixture(params=ENGINES)
def eng(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Selects the engine and gives the test its own lock dir and CrewAI storage dir."""
    if request.param == "python":
        monkeypatch.setenv("CREWCORE_FORCE_PYTHON", "1")
    else:
        monkeypatch.delenv("CREWCORE_FORCE_PYTHON", raising=False)
    monkeypatch.setenv("CREWCORE_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("CREWAI_STORAGE_DIR", str(tmp_path / "crewai"))
    return request.param


def env_for(eng: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = child_env(
        CREWCORE_LOCK_DIR=str(tmp_path / "locks"), CREWAI_STORAGE_DIR=str(tmp_path / "crewai"), **extra
    )
    if eng == "python":
        env["CREWCORE_FORCE_PYTHON"] = "1"
    return env


class FakeTask:
    """What the storage reads from a crewai Task: id, key, expected_output."""

    def __init__(self, i: int) -> None:
        self.id = uuid.UUID(int=i + 1)
        self.key = f"key-{i}"
        self.expected_output = f"expected {i}"


def _output(i: int) -> dict:
    return {"description": f"task {i}", "agent": "a", "raw": f"result {i}", "pydantic": None,
            "json_dict": None, "output_format": "raw", "summary": "s", "name": None, "messages": []}


# ---------------------------------------------------------------- locks


def test_lock_excludes_and_releases_from_another_thread(eng: str, tmp_path: Path) -> None:
    held = locks.acquire("res", timeout=1)
    with pytest.raises(LockTimeoutError) as ei:
        locks.acquire("res", timeout=0)
    assert locks.lock_file("res") in str(ei.value) and "res" in str(ei.value)
    t0 = time.monotonic()
    with pytest.raises(LockTimeoutError):
        locks.acquire("res", timeout=0.2)
    assert time.monotonic() - t0 >= 0.15
    t = threading.Thread(target=held.release)
    t.start()
    t.join()
    with pytest.raises(InvalidArgumentError):
        held.release()
    with locks.lock("res", timeout=0):
        pass
    with locks.lock("res", timeout=None):
        pass
    assert Path(locks.lock_file("res")).parent == tmp_path / "locks"


@pytest.mark.parametrize("bad", [-1, -0.5, float("nan"), "1", True])
def test_lock_bad_timeout(eng: str, bad: object) -> None:
    with pytest.raises(InvalidArgumentError):
        locks.acquire("x", timeout=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", None, 3, "a\udc80"])
def test_lock_bad_name(eng: str, bad: object) -> None:
    with pytest.raises(InvalidArgumentError):
        locks.acquire(bad, timeout=1)  # type: ignore[arg-type]


def test_lock_threads_take_turns(eng: str) -> None:
    inside = []
    errors = []

    def work() -> None:
        for _ in range(30):
            with locks.lock("turns", timeout=30):
                inside.append(1)
                if len(inside) != 1:
                    errors.append("two holders")
                inside.pop()

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


HOLD = """
import sys, time
from crewcore import locks
l = locks.acquire(sys.argv[1], timeout=5)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


@pytest.mark.parametrize("holder", ENGINES)
def test_lock_across_processes_and_engines(eng: str, holder: str, tmp_path: Path) -> None:
    """A lock held by another process (either engine) excludes this one until
    it exits; the two engines use the same lock files."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, "xproc", "1.5"], stdout=subprocess.PIPE, text=True,
                         env=env_for(holder, tmp_path), cwd=str(tmp_path))
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "held"
        with pytest.raises(LockTimeoutError):
            locks.acquire("xproc", timeout=0)
        t0 = time.monotonic()
        with locks.lock("xproc", timeout=30):
            assert time.monotonic() - t0 > 0.2
    finally:
        p.kill()
        p.wait()


def test_crewai_locks_go_through_crewcore(eng: str, tmp_path: Path) -> None:
    import crewcore
    from crewai_core import lock_store

    crewcore.install(locks=True, task_outputs=False, flows=False)
    try:
        assert lock_store._backend is locks.crewai_lock_backend
        name = f"sqlite:{tmp_path}/x.db"
        with lock_store.lock(name, timeout=5):
            assert Path(locks.lock_file(name)).exists()
            with pytest.raises(LockTimeoutError):
                with lock_store.lock(name, timeout=0):
                    pass
        # CrewAI's async paths release in another thread than the taker.
        cm = lock_store.lock(name, timeout=5)
        cm.__enter__()
        t = threading.Thread(target=cm.__exit__, args=(None, None, None))
        t.start()
        t.join()
        with lock_store.lock(name, timeout=0):
            pass
        crewcore.install(locks=False, task_outputs=False, flows=False)
        assert lock_store._backend is None
    finally:
        crewcore.uninstall()
    assert lock_store._backend is None


# ---------------------------------------------------------------- task outputs


def test_task_outputs_round_trip(eng: str, tmp_path: Path) -> None:
    st = task_outputs.TaskOutputStorage(tmp_path / "to.db")
    assert st.engine == eng
    for i in range(3):
        st.add(FakeTask(i), _output(i), i, inputs={"topic": "x"})
    st.update(1, output={"raw": "replayed"}, was_replayed=True, inputs={"topic": "y"})
    rows = st.load()
    assert [r["task_index"] for r in rows] == [0, 1, 2]
    assert rows[0]["task_id"] == str(uuid.UUID(int=1)) and rows[0]["task_key"] == "key-0"
    assert rows[0]["output"] == _output(0) and rows[0]["was_replayed"] == 0
    assert rows[1]["output"] == {"raw": "replayed"} and rows[1]["was_replayed"] == 1
    assert rows[1]["inputs"] == {"topic": "y"}
    assert len(rows[0]["timestamp"]) == 19  # CrewAI's 'YYYY-MM-DD HH:MM:SS'
    with pytest.raises(InvalidArgumentError):
        st.update(0, **{"output = 1; DROP TABLE x --": 1})
    with pytest.raises(InvalidArgumentError):
        st.add(FakeTask(9), {"x": object()}, 9)
    with pytest.raises(InvalidArgumentError):
        st.add(FakeTask(9), {}, "nine")  # type: ignore[arg-type]
    assert len(st.load()) == 3
    st.delete_all()
    assert st.load() == []


CREWAI_READ_WRITE = """
import json, sys, uuid
from crewai.memory.storage.kickoff_task_outputs_storage import KickoffTaskOutputsSQLiteStorage
from crewai_cli.task_outputs import load_task_outputs
rows = KickoffTaskOutputsSQLiteStorage(sys.argv[1]).load()
cli = load_task_outputs(sys.argv[1])
class T:
    def __init__(self, i):
        self.id = uuid.UUID(int=i + 1); self.key = f"key-{i}"; self.expected_output = f"expected {i}"
s = KickoffTaskOutputsSQLiteStorage(sys.argv[2])
for i in range(2):
    s.add(T(i), {"raw": f"crewai {i}"}, i, False, {"topic": "z"})
print(json.dumps({"rows": rows, "cli": cli}))
"""


def test_task_outputs_file_is_crewais(eng: str, tmp_path: Path) -> None:
    """CrewAI's own storage and CLI reader read what crewcore wrote, and
    crewcore reads what CrewAI wrote (CrewAI's code runs in a child)."""
    path = tmp_path / "crewai" / task_outputs.FILE_NAME
    st = task_outputs.TaskOutputStorage(path)
    for i in range(3):
        st.add(FakeTask(i), _output(i), i, inputs={"topic": "x"})
    other = tmp_path / "other.db"
    out = run_py(CREWAI_READ_WRITE, str(path), str(other), light=False, env=env_for(eng, tmp_path)).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert got["rows"] == st.load()
    assert [r["task_id"] for r in got["cli"]] == [r["task_id"] for r in got["rows"]]
    assert got["cli"][2]["output"]["raw"] == "result 2"

    rows = task_outputs.TaskOutputStorage(other).load()
    assert [r["output"]["raw"] for r in rows] == ["crewai 0", "crewai 1"]
    assert rows[0]["inputs"] == {"topic": "z"} and rows[0]["was_replayed"] == 0


def test_handler_is_replaced_and_skips_the_reload(eng: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import crewcore
    from crewai.utilities.task_output_storage_handler import TaskOutputStorageHandler

    crewcore.install(locks=False, task_outputs=True, flows=False)
    try:
        h = TaskOutputStorageHandler()
        assert isinstance(h.storage, task_outputs.TaskOutputStorage)
        assert h.storage.db_path == str(tmp_path / "crewai" / task_outputs.FILE_NAME)
        loads = []
        monkeypatch.setattr(h.storage, "load", lambda: loads.append(1) or [])
        for i in range(3):
            h.update(i, {"task": FakeTask(i), "output": _output(i), "task_index": i, "inputs": {}, "was_replayed": False})
        assert loads == []  # CrewAI's handler would have loaded 3 times
        monkeypatch.undo()
    finally:
        crewcore.uninstall()
    h2 = TaskOutputStorageHandler()
    assert not isinstance(h2.storage, task_outputs.TaskOutputStorage)


# ---------------------------------------------------------------- flow state


def test_flow_persistence_round_trip(eng: str, tmp_path: Path) -> None:
    from pydantic import BaseModel

    class S(BaseModel):
        id: str = "f1"
        n: int = 0

    p = flows.CrewcoreFlowPersistence(str(tmp_path / "flows.db"))
    assert p.engine == eng
    assert p.load_state("f1") is None
    p.save_state("f1", "a", S(n=1))
    p.save_state("f1", "b", {"id": "f1", "n": 2, "when": time.gmtime(0)[:3]})
    assert p.load_state("f1") == {"id": "f1", "n": 2, "when": [1970, 1, 1]}
    for bad in [("", "m", {}), ("f", "", {}), ("f", "m", [1, 2])]:
        with pytest.raises(InvalidArgumentError):
            p.save_state(*bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        p.save_state("f1", "c", {"x": float("nan")})  # not JSON (CrewAI would store NaN)
    assert p.load_state("f1")["n"] == 2


READ_FLOWS_WITH_CREWAI = """
import json, sys
from crewai.flow.persistence.sqlite import SQLiteFlowPersistence
p = SQLiteFlowPersistence(sys.argv[1])
print(json.dumps(p.load_state(sys.argv[2])))
"""

PERSIST_FLOW = """
import json, os, sys
import crewcore
crewcore.install()
from crewai.flow.flow import Flow, start, listen
from crewai.flow.persistence import persist
from pydantic import BaseModel

class Counter(BaseModel):
    id: str = ""
    count: int = 0
    log: list[str] = []

@persist()
class CountFlow(Flow[Counter]):
    @start()
    def one(self):
        self.state.count += 1
        self.state.log.append("one")

    @listen(one)
    def two(self):
        self.state.count += 10
        self.state.log.append("two")

f = CountFlow()
f.kickoff()
first = f.state.count
g = CountFlow()  # a new instance resumes the saved state by id
g.kickoff(inputs={"id": f.state.id})
from crewai.flow.persistence.factory import default_flow_persistence
p = default_flow_persistence()
print(json.dumps({"id": f.state.id, "first": first, "second_id": g.state.id, "count": g.state.count,
                  "type": type(p).__name__, "engine": p.engine}))
"""


def test_persist_flow_saves_and_restores_through_crewcore(eng: str, tmp_path: Path) -> None:
    """A real @persist Flow under crewcore.install(): its state is saved after
    each method, a new instance kicked off with the same id restores it, and
    CrewAI's own SQLiteFlowPersistence reads the file (another process)."""
    env = env_for(eng, tmp_path, CREWAI_DISABLE_TRACKING="true", CREWAI_DISABLE_VERSION_CHECK="true")
    got = json.loads(run_py(PERSIST_FLOW, light=False, env=env, timeout=240).stdout.strip().splitlines()[-1])
    assert got["first"] == 11 and got["type"] == "CrewcoreFlowPersistence" and got["engine"] == eng
    assert got["second_id"] == got["id"] and got["count"] == 22
    db = tmp_path / "crewai" / flows.FILE_NAME
    out = run_py(READ_FLOWS_WITH_CREWAI, str(db), got["id"], light=False, env=env).stdout
    state = json.loads(out.strip().splitlines()[-1])
    assert state["count"] == 22 and state["log"] == ["one", "two", "one", "two"]


def test_install_switches_flows(eng: str) -> None:
    import crewcore
    from crewai.flow.persistence.factory import default_flow_persistence
    from crewai.flow.persistence.sqlite import SQLiteFlowPersistence

    crewcore.install(locks=False, task_outputs=False, flows=True)
    try:
        assert isinstance(default_flow_persistence(), flows.CrewcoreFlowPersistence)
        crewcore.install(locks=False, task_outputs=False, flows=False)
        from crewai.flow.persistence import factory

        assert factory._factory is None
    finally:
        crewcore.uninstall()
    assert SQLiteFlowPersistence  # CrewAI's default is back (not opened here: same-process rule)


# ---------------------------------------------------------------- faults


def test_corrupt_file_is_refused_untouched(eng: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    junk = b"definitely not sqlite\x00" * 100
    bad.write_bytes(junk)
    with pytest.raises(StoreCorruptError) as ei:
        task_outputs.TaskOutputStorage(bad)
    assert str(bad) in str(ei.value)
    with pytest.raises(StoreCorruptError):
        flows.CrewcoreFlowPersistence(str(bad))
    assert bad.read_bytes() == junk
    with pytest.raises(StoreCorruptError):
        task_outputs.TaskOutputStorage(tmp_path)  # a directory


FOREIGN_WRITER = """
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
c.execute("ROLLBACK")
"""


def test_database_locked_by_foreign_process_times_out_naming_file(eng: str, tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    st = task_outputs.TaskOutputStorage(path, timeout=0.5)
    st.add(FakeTask(0), _output(0), 0)
    p = subprocess.Popen([sys.executable, "-c", FOREIGN_WRITER, str(path), "30"], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        with pytest.raises(StoreTimeoutError) as ei:
            st.add(FakeTask(1), _output(1), 1)
        assert str(path) in str(ei.value)
        assert time.monotonic() - t0 < 20
        assert len(st.load()) == 1  # reads go on under a foreign writer (WAL)
    finally:
        p.kill()
        p.wait()
    st.add(FakeTask(1), _output(1), 1)
    assert len(st.load()) == 2


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "5"])
def test_bad_db_timeout(eng: str, tmp_path: Path, bad: object) -> None:
    with pytest.raises(InvalidArgumentError):
        task_outputs.TaskOutputStorage(tmp_path / "t.db", timeout=bad)  # type: ignore[arg-type]


DISK_FULL = """
import json, resource, sys, uuid
from crewcore import task_outputs
from crewcore.errors import StorageFullError
class T:
    def __init__(self, i):
        self.id = uuid.UUID(int=i + 1); self.key = "k"; self.expected_output = "e"
st = task_outputs.TaskOutputStorage(sys.argv[1])
st.add(T(0), {"raw": "small"}, 0)
resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
err = None
try:
    st.add(T(1), {"raw": "x" * (2 * 1024 * 1024)}, 1)
except StorageFullError as e:
    err = str(e)
rows = st.load()
print(json.dumps({"err": err, "rows": [r["output"]["raw"] for r in rows]}))
"""


def test_disk_full_is_a_clear_error_and_keeps_data(eng: str, tmp_path: Path) -> None:
    """A file size limit (RLIMIT_FSIZE) in a child makes the write fail:
    StorageFullError naming the file; what was stored stays readable."""
    path = tmp_path / "full.db"
    out = run_py(DISK_FULL, str(path), env=env_for(eng, tmp_path)).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert got["err"] and str(path) in got["err"], got
    assert got["rows"] == ["small"]


RO_CHILD = """
import json, sys, uuid
from crewcore import task_outputs
class T:
    def __init__(self, i):
        self.id = uuid.UUID(int=i + 1); self.key = "k"; self.expected_output = "e"
out = {}
try:
    st = task_outputs.TaskOutputStorage(sys.argv[1])
    out["open"] = "ok"
    try:
        st.add(T(5), {"raw": "new"}, 5)
        out["add"] = "ok"
    except Exception as e:
        out["add"] = type(e).__name__ + ": " + str(e)
except Exception as e:
    out["open"] = type(e).__name__ + ": " + str(e)
print(json.dumps(out))
"""

WRITE_ONE = """
import sys, uuid
from crewcore import task_outputs
class T:
    id = uuid.UUID(int=1); key = "k"; expected_output = "e"
task_outputs.TaskOutputStorage(sys.argv[1]).add(T(), {"raw": "kept"}, 0)
"""


def test_read_only_directory(eng: str, tmp_path: Path) -> None:
    """A read-only directory (a read-only bind mount: root ignores chmod):
    a new database, or writing to an existing one from a process that opens
    it there, raises StoreAccessError naming the file; nothing is lost."""
    ro = tmp_path / "ro"
    ro.mkdir()
    existing = ro / "existing.db"
    env = env_for(eng, tmp_path)
    run_py(WRITE_ONE, str(existing), env=env)
    with read_only(ro):
        with pytest.raises(StoreAccessError) as ei:
            task_outputs.TaskOutputStorage(ro / "new.db")
        assert "new.db" in str(ei.value)
        with pytest.raises(StoreAccessError):
            flows.CrewcoreFlowPersistence(str(ro / "flows.db"))
        got = json.loads(run_py(RO_CHILD, str(existing), env=env).stdout.strip().splitlines()[-1])
        failure = got.get("add") if got["open"] == "ok" else got["open"]
        assert failure.startswith("StoreAccessError") and "existing.db" in failure, got
    st = task_outputs.TaskOutputStorage(existing)
    assert [r["output"]["raw"] for r in st.load()] == ["kept"]
