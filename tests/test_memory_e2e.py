"""End to end: CrewAI's real ``crewai.memory.Memory`` on crewcore.

No LLM is involved: remember() gets explicit scope, categories and importance
(EncodingFlow's "fields provided, nothing similar" path makes no LLM call) and
recall() uses depth="shallow" (embed + one vector search). The embedder is a
deterministic callable: a hashed bag of words, 64 dimensions, unit length.
"""

from __future__ import annotations

from datetime import datetime, timedelta
import hashlib
import math
from pathlib import Path
import re

import pytest

import crewcore
from crewcore import MemoryStorage
from conftest import child_env, last_json, run_py

EMB_DIM = 64


def embed(texts: list[str]) -> list[list[float]]:
    """Hashed bag of words (deterministic across processes)."""
    out = []
    for t in texts:
        v = [0.0] * EMB_DIM
        for w in re.findall(r"[a-z0-9]+", t.lower()):
            h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
            v[h % EMB_DIM] += 1.0 if (h >> 32) & 1 else -1.0
        n = math.sqrt(sum(x * x for x in v)) or 1.0
        out.append([x / n for x in v])
    return out


FACTS = [
    ("The billing service stores invoices in PostgreSQL on port 5433", "/project/billing", ["infra"], 0.8),
    ("Alice prefers concise status reports every Friday afternoon", "/people/alice", ["preference"], 0.6),
    ("Deploys are frozen during the last week of December", "/project/release", ["policy"], 0.9),
    ("The mobile app crashes when the camera permission is revoked", "/project/mobile", ["bug"], 0.7),
]


@pytest.fixture(autouse=True)
def _no_llm(monkeypatch):
    """Any accidental LLM call fails fast instead of reaching the network."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_BASE", "http://127.0.0.1:9/v1")


@pytest.fixture
def restore_factory():
    yield
    crewcore.uninstall()
    from crewai.memory.storage.factory import set_memory_storage_factory

    set_memory_storage_factory(None)


def _memory(storage):
    from crewai.memory import Memory

    return Memory(storage=storage, embedder=embed)


def _remember_facts(m):
    recs = []
    for content, scope, cats, imp in FACTS:
        r = m.remember(content, scope=scope, categories=cats, importance=imp)
        assert r is not None, content
        recs.append(r)
    return recs


def test_embedder_keeps_facts_apart():
    """Guard: the facts are far apart, so remember() never triggers the
    (LLM) consolidation path (threshold 0.85 on 1/(1+d^2))."""
    vs = embed([f[0] for f in FACTS])
    for i in range(len(vs)):
        for j in range(i + 1, len(vs)):
            d2 = sum((a - b) ** 2 for a, b in zip(vs[i], vs[j]))
            assert 1 / (1 + d2) < 0.7


@pytest.mark.parametrize("eng", ["native", "python"])
def test_memory_remember_recall_forget_reset(eng, tmp_path):
    storage = MemoryStorage(tmp_path / "mem", engine=eng)
    assert storage.backend == eng
    m = _memory(storage)
    try:
        recs = _remember_facts(m)
        assert storage.count() == len(FACTS)
        stored = storage.get_record(recs[0].id)
        assert stored.content == FACTS[0][0]
        assert stored.scope == "/project/billing"
        assert stored.categories == ["infra"]
        assert stored.importance == pytest.approx(0.8)
        assert stored.embedding is not None and len(stored.embedding) == EMB_DIM

        before = stored.last_accessed
        matches = m.recall("which port does PostgreSQL for invoices use", depth="shallow", limit=3)
        assert matches, "recall found nothing"
        assert matches[0].record.content == FACTS[0][0]
        assert "semantic" in " ".join(matches[0].match_reasons)
        # recall() touches what it returned
        assert storage.get_record(recs[0].id).last_accessed >= before

        scoped = m.recall("camera permission crash", scope="/project", depth="shallow", limit=5)
        assert scoped and scoped[0].record.content == FACTS[3][0]
        assert all(x.record.scope.startswith("/project/") for x in scoped)
        people = m.recall("status reports", scope="/people", depth="shallow", limit=5)
        assert [x.record.content for x in people] == [FACTS[1][0]]
        cat = m.recall("deploys", categories=["policy"], depth="shallow", limit=5)
        assert [x.record.content for x in cat] == [FACTS[2][0]]

        # browsing
        assert m.list_scopes() == ["/people", "/project"]
        assert m.list_scopes("/project") == ["/project/billing", "/project/mobile", "/project/release"]
        info = m.info("/project")
        assert info.record_count == 3
        assert info.categories == ["bug", "infra", "policy"]
        assert info.child_scopes == ["/project/billing", "/project/mobile", "/project/release"]
        tree = m.tree()
        assert "/ (4 records)" in tree and "/project (3 records)" in tree
        assert "/project/mobile (1 records)" in tree
        assert m.list_categories() == {"infra": 1, "preference": 1, "policy": 1, "bug": 1}
        assert {r.id for r in m.list_records()} == {r.id for r in recs}

        # update re-embeds new content
        m.update(recs[3].id, content="The tablet app freezes when storage is full")
        hit = m.recall("tablet freezes storage full", depth="shallow", limit=1)
        assert hit[0].record.id == recs[3].id

        # privacy as Memory defines it
        m.remember("Bob's salary review is in March", scope="/people/bob", categories=["hr"],
                   importance=0.5, source="bob", private=True)
        assert not [x for x in m.recall("salary review march", depth="shallow") if x.record.private]
        mine = m.recall("salary review march", depth="shallow", source="bob")
        assert mine and mine[0].record.source == "bob"

        # forget and reset
        assert m.forget(scope="/people") == 2
        assert storage.count() == 3
        assert m.forget(record_ids=[recs[0].id]) == 1
        assert m.recall("PostgreSQL invoices port", scope="/project/billing", depth="shallow") == []
        assert m.forget(older_than=datetime.utcnow() + timedelta(days=1), categories=["policy"]) == 1
        m.reset("/project")
        assert storage.count() == 0
        m.remember("Something new after reset", scope="/x", categories=[], importance=0.5)
        assert storage.count() == 1
        m.reset()
        assert storage.count() == 0
        assert m.tree() == "/ (0 records)"
    finally:
        m.close()


@pytest.mark.parametrize("eng", ["native", "python"])
def test_memory_persists_across_instances(eng, tmp_path):
    m1 = _memory(MemoryStorage(tmp_path / "mem", engine=eng))
    recs = _remember_facts(m1)
    m1.close()
    st2 = MemoryStorage(tmp_path / "mem", engine=eng)
    m2 = _memory(st2)
    try:
        assert st2.count() == len(FACTS)
        got = m2.recall("Friday status reports Alice", depth="shallow", limit=2)
        assert got[0].record.id == recs[1].id
    finally:
        m2.close()


def test_remember_many_then_recall(tmp_path):
    st = MemoryStorage(tmp_path / "mem")
    m = _memory(st)
    try:
        m.remember_many([f[0] for f in FACTS], scope="/bulk", categories=["b"], importance=0.5)
        got = m.recall("frozen deploys december", depth="shallow", limit=1)  # drains writes first
        assert got and got[0].record.content == FACTS[2][0]
        assert st.count("/bulk") == len(FACTS)
    finally:
        m.close()


# --------------------------------------------------------------------------
# install()


def test_install_routes_default_memory(tmp_path, monkeypatch, restore_factory):
    from crewai.memory import Memory

    monkeypatch.setenv("CREWAI_STORAGE_DIR", str(tmp_path))
    crewcore.install()
    crewcore.install()  # twice is harmless
    assert crewcore._install.installed().get("memory") is True
    m = Memory(embedder=embed)  # storage="lancedb", CrewAI's default
    try:
        st = m._storage
        assert isinstance(st, MemoryStorage)
        assert Path(st.path) == (tmp_path / "crewcore" / "memory.db").resolve()
        assert st.backend == "native"
        _remember_facts(m)
        assert m.recall("camera permission revoked", depth="shallow", limit=1)[0].record.content == FACTS[3][0]
        assert (tmp_path / "crewcore" / "memory.db").is_file()
        assert not (tmp_path / "memory").exists(), "LanceDB's folder was touched"

        explicit = Memory(storage="lancedb", embedder=embed)
        assert isinstance(explicit._storage, MemoryStorage)
        assert explicit._storage.count() == len(FACTS)  # same default store
        explicit.close()
    finally:
        m.close()

    crewcore.uninstall()
    crewcore.uninstall()  # twice is harmless
    assert not crewcore._install.installed().get("memory")
    from crewai.memory.storage.lancedb_storage import LanceDBStorage

    back = Memory(embedder=embed)
    assert isinstance(back._storage, LanceDBStorage)
    assert (tmp_path / "memory").is_dir()


def test_install_crewcore_spec(tmp_path, restore_factory):
    from crewai.memory import Memory

    crewcore.install(replace_default_memory=False)
    target = tmp_path / "spec-store"
    m = Memory(storage=f"crewcore:{target}", embedder=embed)
    try:
        assert isinstance(m._storage, MemoryStorage)
        assert Path(m._storage.path) == (target / "memory.db").resolve()
        m.remember("Spec strings route to crewcore", scope="/s", categories=["c"], importance=0.5)
        assert m._storage.count() == 1
    finally:
        m.close()
    file_spec = tmp_path / "named.db"
    m2 = Memory(storage=f"crewcore:{file_spec}", embedder=embed)
    assert Path(m2._storage.path) == file_spec.resolve()
    m2.close()
    # Not replacing the default: "lancedb" stays LanceDB.
    from crewai.memory.storage.lancedb_storage import LanceDBStorage

    lance = Memory(storage=str(tmp_path / "lance-dir"), embedder=embed)
    assert isinstance(lance._storage, LanceDBStorage)
    # An explicit storage object always wins.
    own = MemoryStorage(tmp_path / "own")
    assert Memory(storage=own, embedder=embed)._storage is own
    own.close()


# --------------------------------------------------------------------------
# engine selection


_BACKEND_PROBE = """
    import json, sys, warnings
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        import crewcore
        b = crewcore.backend()
        s = crewcore.MemoryStorage(sys.argv[1])
        from crewai.memory.types import MemoryRecord
        s.save([MemoryRecord(id="x", content="x", embedding=[1.0, 0.0])])
        n = s.count()
    print(json.dumps({
        "backend": b, "store": s.backend, "count": n,
        "reason": crewcore._backend.reason(),
        "warnings": [[c.category.__name__, str(c.message)] for c in w
                     if "crewcore" in str(c.message)],
    }))
"""


def test_backend_native_by_default(tmp_path):
    out = last_json(run_py(_BACKEND_PROBE, str(tmp_path / "s")).stdout)
    assert out["backend"] == "native" and out["store"] == "native"
    assert out["count"] == 1 and out["warnings"] == []
    assert crewcore.backend() == "native"


def test_backend_forced_python(tmp_path):
    out = last_json(run_py(_BACKEND_PROBE, str(tmp_path / "s"), env=child_env(CREWCORE_FORCE_PYTHON="1")).stdout)
    assert out["backend"] == "python" and out["store"] == "python"
    assert out["count"] == 1
    assert "CREWCORE_FORCE_PYTHON" in out["reason"]


def test_backend_missing_library_falls_back_with_warning(tmp_path):
    out = last_json(run_py(_BACKEND_PROBE, str(tmp_path / "s"), env=child_env(CREWCORE_LIB="/nonexistent")).stdout)
    assert out["backend"] == "python" and out["store"] == "python"
    assert out["count"] == 1
    warns = [m for c, m in out["warnings"] if c == "RuntimeWarning"]
    assert len(warns) == 1, out["warnings"]
    assert "/nonexistent" in warns[0]
    assert "pure-Python" in warns[0]


# --------------------------------------------------------------------------
# interop: one file, both engines, separate processes


_INTEROP = """
    import json, sys
    from datetime import datetime
    from crewai.memory.types import MemoryRecord
    from crewcore import MemoryStorage

    mode, eng, path = sys.argv[1], sys.argv[2], sys.argv[3]
    s = MemoryStorage(path, engine=eng)
    assert s.backend == eng
    DIM = 16

    def v(i):
        return [((i * 7 + k * 3) % 11 - 5) / 4 for k in range(DIM)]

    def view():
        Q = v(5)
        r = s.get_record("r3")
        info = s.get_scope_info("/s1")
        return {
            "count": s.count(), "count_s1": s.count("/s1"),
            "search": [[x.id, round(sc, 5)] for x, sc in s.search(Q, limit=12)],
            "search_f": [[x.id, round(sc, 5)] for x, sc in
                         s.search(Q, scope_prefix="/s1", categories=["even"], limit=5)],
            "list": [x.id for x in s.list_records(limit=500)],
            "page": [x.id for x in s.list_records(scope_prefix="/s2", limit=3, offset=2)],
            "scopes": s.list_scopes("/"), "scopes_s1": s.list_scopes("/s1"),
            "cats": s.list_categories(),
            "info": [info.record_count, info.categories, str(info.oldest_record),
                     str(info.newest_record), info.child_scopes],
            "r3": None if r is None else [r.content, r.scope, r.categories, r.metadata, r.importance,
                                           str(r.created_at), str(r.last_accessed), r.source, r.private,
                                           [round(x, 6) for x in r.embedding]],
            "noemb": s.get_record("noemb") is not None,
        }

    if mode == "write":
        recs = [MemoryRecord(id=f"r{i}", content=f"record {i} é✓", scope=f"/s{i % 3}/sub{i % 2}" if i % 4 else f"/s{i % 3}",
                             categories=["even" if i % 2 == 0 else "odd", f"k{i % 5}"],
                             metadata={"i": i, "tag": f"t{i % 3}"}, importance=(i % 10) / 10,
                             created_at=datetime(2024, 1, 1, 0, 0, i % 60, i * 1000),
                             last_accessed=datetime(2024, 2, 1, 0, 0, 0, i),
                             source=f"src{i % 2}" if i % 3 else None, private=bool(i % 7 == 0),
                             embedding=v(i)) for i in range(60)]
        s.save(recs)
        s.save([MemoryRecord(id="noemb", content="no vector", scope="/s1", embedding=None,
                             created_at=datetime(2023, 1, 1))])
    elif mode == "modify":
        s.delete(record_ids=["r1", "r2"])
        old = s.get_record("r3")
        s.update(old.model_copy(update={"content": "changed by " + eng, "embedding": None}))
        s.save([MemoryRecord(id="r100", content="added by " + eng, scope="/s1/new", categories=["even"],
                             created_at=datetime(2025, 1, 1), embedding=v(100))])
        s.reset("/s2/sub1")
    print(json.dumps(view()))
"""


@pytest.mark.parametrize("writer,reader", [("native", "python"), ("python", "native")])
def test_interop_across_processes(tmp_path, writer, reader):
    path = str(tmp_path / "shared")
    written = last_json(run_py(_INTEROP, "write", writer, path).stdout)
    assert written["count"] == 61 and written["noemb"]
    assert len(written["search"]) == 12
    read = last_json(run_py(_INTEROP, "read", reader, path).stdout)
    assert read == written
    modified = last_json(run_py(_INTEROP, "modify", reader, path).stdout)
    assert modified["r3"][0] == f"changed by {reader}"
    assert modified["r3"][-1] == written["r3"][-1], "update without embedding kept the vector"
    assert "r1" not in modified["list"] and "r100" in modified["list"]
    back = last_json(run_py(_INTEROP, "read", writer, path).stdout)
    assert back == modified
