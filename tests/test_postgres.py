"""The PostgreSQL + pgvector store from Python: CrewAI's Memory on it through
``crewcore.install(memory=dsn)``, many processes x threads on one database,
a server restart mid-run, and the errors a user sees.

The conformance suite against Postgres is tests/test_postgres_conformance.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys
import time
import uuid

import pytest

import crewcore
from conftest import child_env, last_json, rec, run_py, script, vec
from pg_support import drop_schema, pgctl, server_dsn


@pytest.fixture
def dsn() -> str:
    return server_dsn()


@pytest.fixture
def schema(dsn):
    name = "py_" + uuid.uuid4().hex[:16]
    yield name
    drop_schema(dsn, name)


@pytest.fixture(autouse=True)
def _no_llm(monkeypatch):
    """Any accidental LLM call fails fast instead of reaching the network."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_BASE", "http://127.0.0.1:9/v1")


def test_install_memory_dsn_routes_crewai_memory(dsn, schema, tmp_path, monkeypatch):
    """crewcore.install(memory="postgresql://...#schema"): CrewAI's default
    Memory stores in Postgres; a second Memory (another worker) sees it."""
    from crewai.memory import Memory
    from crewai.memory.storage.factory import set_memory_storage_factory
    from test_memory_e2e import FACTS, _remember_facts, embed

    monkeypatch.setenv("CREWAI_STORAGE_DIR", str(tmp_path))
    crewcore.install(memory=f"{dsn}#{schema}")
    try:
        assert crewcore._install.installed()["memory_target"].endswith(f"#{schema}")
        m = Memory(embedder=embed)
        try:
            assert m._storage.backend == "postgres"
            assert schema in m._storage.path
            _remember_facts(m)
            hit = m.recall("camera permission revoked", depth="shallow", limit=1)[0]
            assert hit.record.content == FACTS[3][0]
            other = Memory(storage="crewcore", embedder=embed)
            assert other._storage.count() == len(FACTS)
            assert other._storage.list_scopes("/project") == ["/project/billing", "/project/mobile", "/project/release"]
            other.close()
        finally:
            m.close()
        assert not (tmp_path / "crewcore").exists(), "a local store was created"
    finally:
        crewcore.uninstall()
        set_memory_storage_factory(None)


def test_dsn_as_path_and_arguments(dsn, schema):
    s = crewcore.MemoryStorage(f"{dsn}#{schema}", vector_dim=3)
    try:
        assert s.backend == "postgres"
        s.save([rec("a", [1.0, 0.0, 0.0])])
        with pytest.raises(crewcore.InvalidArgumentError):
            crewcore.MemoryStorage(dsn=dsn, schema=schema, engine="native")
        with pytest.raises(crewcore.InvalidArgumentError):
            crewcore.MemoryStorage(dsn="mysql://x", schema=schema)
        from crewai.memory.storage.backend import EmbeddingDimensionMismatchError

        with pytest.raises(EmbeddingDimensionMismatchError):
            s.save([rec("b", [1.0, 0.0])])
        with pytest.raises(crewcore.InvalidRecordError):
            s.save([rec("nul", [1.0, 0.0, 0.0], content="a\x00b")])
        assert s.count() == 1
    finally:
        s.close()


def test_unreachable_server_is_a_clear_error():
    from crewcore.memory.postgres import PgStore

    t = time.monotonic()
    with pytest.raises(crewcore.StoreUnavailableError) as ei:
        PgStore("postgresql://nobody:pw@127.0.0.1:1/none?connect_timeout=1", "x", retry_seconds=1)
    assert "127.0.0.1:1" in str(ei.value) and ":pw@" not in str(ei.value)
    assert isinstance(ei.value, ConnectionError)
    assert time.monotonic() - t < 60


_WORKER = """
    import json, sys, threading, traceback
    from crewai.memory.types import MemoryRecord
    from crewcore import MemoryStorage

    dsn, schema, proc, threads, batches = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    s = MemoryStorage(dsn=dsn, schema=schema)
    errors, samples = [0], []
    lock = threading.Lock()

    def work(t):
        scope = f"/p{proc}/t{t}"
        try:
            for b in range(batches):
                recs = [MemoryRecord(id=f"p{proc}-t{t}-b{b}-{i}", content=f"fact {proc} {t} {b} {i}", scope=scope,
                                     categories=[f"c{i % 2}"], embedding=[float(proc), float(t), float(b), float(i), 1.0])
                        for i in range(5)]
                s.save(recs)
                got = s.search([float(proc), float(t), float(b), 0.0, 1.0], scope_prefix=scope, limit=2)
                assert got and got[0][0].id == f"p{proc}-t{t}-b{b}-0", [r.id for r, _ in got]
                assert s.count(scope) == 5 * (b + 1), s.count(scope)
                cats = s.search([0.0] * 5, scope_prefix=scope, categories=["c1"], limit=100)
                assert len(cats) == 2 * (b + 1), len(cats)
        except Exception as e:
            with lock:
                errors[0] += 1
                samples.append(traceback.format_exc()[-800:])

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in ts: th.start()
    for th in ts: th.join()
    s.close()
    print(json.dumps({"errors": errors[0], "samples": samples}))
"""


def test_four_processes_four_threads_one_database(dsn, schema):
    procs, threads, batches = 4, 4, 25
    code = script(_WORKER)
    children = [
        subprocess.Popen([sys.executable, "-c", code, dsn, schema, str(p), str(threads), str(batches)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
        for p in range(procs)
    ]
    outs = []
    for c in children:
        out, err = c.communicate(timeout=300)
        assert c.returncode == 0, err[-3000:]
        outs.append(last_json(out))
    assert [o["errors"] for o in outs] == [0] * procs, [o["samples"] for o in outs]
    s = crewcore.MemoryStorage(dsn=dsn, schema=schema)
    try:
        assert s.count() == procs * threads * batches * 5
        for p in range(procs):
            assert s.count(f"/p{p}") == threads * batches * 5
        assert s.list_categories() == {"c0": procs * threads * batches * 3, "c1": procs * threads * batches * 2}
    finally:
        s.close()


_RESTART_WORKER = """
    import json, sys, threading, time, os
    from crewai.memory.types import MemoryRecord
    import crewcore
    from crewcore import MemoryStorage

    dsn, schema, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    s = MemoryStorage(dsn=dsn, schema=schema)
    acked, errors, lock = [], {}, threading.Lock()
    end = time.monotonic() + seconds

    def work(t):
        i = 0
        while time.monotonic() < end:
            rid = f"t{t}-{i}"
            i += 1
            try:
                s.save([MemoryRecord(id=rid, content="x", scope="/r", embedding=[float(t), float(i), 1.0])])
                with lock:
                    acked.append(rid)
                s.search([1.0, 2.0, 3.0], limit=3)
            except crewcore.CrewcoreError as e:
                with lock:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
            except Exception as e:
                with lock:
                    errors["UNCLEAR " + type(e).__name__ + ": " + str(e)[:200]] = 1
            time.sleep(0.005)

    ts = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in ts: th.start()
    for th in ts: th.join()
    print(json.dumps({"acked": acked, "errors": errors}))
"""


def test_server_restart_mid_run():
    """A private server restarted under 4 writer threads: every call succeeds
    (retried) or raises a clear crewcore error, the pool recovers, and every
    acknowledged save is stored."""
    import shutil
    import tempfile

    server_dsn()  # skip or fail as the other tests do when there is no server
    # Not under tmp_path: pytest's directories are private to root, and the
    # server runs as an unprivileged user.
    top = tempfile.mkdtemp(prefix="crewcore-pg-restart-")
    os.chmod(top, 0o755)
    env = {"CREWCORE_PGDATA": os.path.join(top, "data")}
    dsn = pgctl("up", env=env)
    try:
        child = subprocess.Popen([sys.executable, "-c", script(_RESTART_WORKER), dsn, "restart", "8"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
        time.sleep(3)
        pgctl("down", env=env)
        time.sleep(0.5)
        pgctl("up", env=env)
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err[-3000:]
        res = last_json(out)
        assert not [k for k in res["errors"] if k.startswith("UNCLEAR")], res["errors"]
        assert set(res["errors"]) <= {"StoreUnavailableError", "StoreTimeoutError"}, res["errors"]
        s = crewcore.MemoryStorage(dsn=dsn, schema="restart")
        try:
            stored = {r.id for r in s.list_records(limit=100000)}
            missing = [a for a in res["acked"] if a not in stored]
            assert not missing, f"{len(missing)} acknowledged saves lost: {missing[:5]}"
            assert len(res["acked"]) > 20
            s.save([rec("after", vec(1, 2, 3, dim=3))])  # the pool recovered
        finally:
            s.close()
    finally:
        pgctl("down", env=env)
        shutil.rmtree(top, ignore_errors=True)
