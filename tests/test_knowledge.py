"""crewcore's knowledge store behind CrewAI's real Knowledge and source
classes, on both engines: ingestion, dedup, the three search modes, scores,
reset, async, bad input with typed errors, the file shared by both engines,
and keyword search without FTS5."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
import sys
import threading

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import child_env, run_py  # noqa: E402
from knowledge_helpers import EMBEDDER, hash_embed  # noqa: E402

import crewcore  # noqa: E402
from crewcore.errors import (  # noqa: E402
    CollectionNotFoundError,
    InvalidArgumentError,
    KeywordSearchUnavailableError,
    KnowledgeDimensionError,
    KnowledgeDocumentError,
)
from crewcore.knowledge import KnowledgeStore  # noqa: E402

ENGINES = ["native", "python"]

DOCS = {
    "pump.txt": "The Zephyr pump model ZP-9 has a warranty period of five years. Service it yearly.",
    "valve.md": "# Valves\n\nValve VX-200 must be replaced every two years. It handles water pressure.",
}


@pytest.fixture(params=ENGINES)
def kn(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """install(knowledge={path, engine}) with CrewAI's storage dir in tmp."""
    monkeypatch.setenv("CREWAI_STORAGE_DIR", str(tmp_path / "crewai"))
    path = str(tmp_path / f"kn-{request.param}.db")
    crewcore.install(knowledge={"path": path, "engine": request.param}, locks=False, task_outputs=False, flows=False)
    yield path, request.param
    crewcore.uninstall()


def _knowledge(sources, name="crew", embedder=EMBEDDER):
    from crewai.knowledge.knowledge import Knowledge

    return Knowledge(collection_name=name, sources=sources, embedder=embedder)


def test_crewai_knowledge_sources_end_to_end(kn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from crewai.knowledge.source.csv_knowledge_source import CSVKnowledgeSource
    from crewai.knowledge.source.json_knowledge_source import JSONKnowledgeSource
    from crewai.knowledge.source.string_knowledge_source import StringKnowledgeSource
    from crewai.knowledge.source.text_file_knowledge_source import TextFileKnowledgeSource

    path, engine = kn
    # CrewAI's file sources read from ./knowledge
    monkeypatch.chdir(tmp_path)
    (tmp_path / "knowledge").mkdir()
    for name, text in DOCS.items():
        (tmp_path / "knowledge" / name).write_text(text)
    (tmp_path / "knowledge" / "parts.csv").write_text("part,price\ngasket GX-77,12\nbearing BR-5,30\n")
    (tmp_path / "knowledge" / "spec.json").write_text(json.dumps({"model": "TR-1 turbine", "rpm": 3000}))
    sources = [
        StringKnowledgeSource(content="Kettle KT-3 boils water in ninety seconds."),
        TextFileKnowledgeSource(file_paths=list(DOCS)),
        CSVKnowledgeSource(file_paths=["parts.csv"]),
        JSONKnowledgeSource(file_paths=["spec.json"]),
    ]
    k = _knowledge(sources)
    from crewcore.knowledge import CrewcoreKnowledgeStorage

    assert isinstance(k.storage, CrewcoreKnowledgeStorage)
    k.add_sources()
    store = KnowledgeStore(path, engine=engine)
    stats = {s["name"]: s for s in store.stats()}
    assert stats["knowledge_crew"]["chunks"] == 5 and stats["knowledge_crew"]["dim"] == 64
    assert stats["knowledge_crew"]["indexed"]

    res = k.query(["warranty of the Zephyr pump ZP-9"])  # CrewAI's defaults: 5 results, threshold 0.6
    assert res and "ZP-9" in res[0]["content"]
    assert all(r["score"] >= 0.6 for r in res)
    assert set(res[0]) >= {"id", "content", "metadata", "score"}

    # re-adding the same sources stores nothing twice
    _knowledge(sources).add_sources()
    assert {s["name"]: s for s in store.stats()}["knowledge_crew"]["chunks"] == 5

    # per call: keyword and hybrid find the code
    hits = k.storage.search(["GX-77"], limit=3, score_threshold=0.0, mode="keyword")
    assert hits and "GX-77" in hits[0]["content"]
    hits = k.storage.search(["price of GX-77"], limit=2, score_threshold=0.0, mode="hybrid")
    assert any("GX-77" in h["content"] for h in hits)

    # crewai reset-memories --knowledge goes through Knowledge.reset()
    k.reset()
    assert k.query(["warranty"]) == []
    assert "knowledge_crew" not in {s["name"] for s in store.stats()}


def test_async_api(kn) -> None:
    from crewai.knowledge.source.string_knowledge_source import StringKnowledgeSource

    k = _knowledge([StringKnowledgeSource(content="Drone DR-8 flies for forty minutes.")], name="Pilot")

    async def go():
        await k.aadd_sources()
        res = await k.aquery(["how long does drone DR-8 fly"])
        await k.areset()
        return res, await k.aquery(["drone"])

    res, after = asyncio.run(go())
    assert res and "DR-8" in res[0]["content"] and after == []


def test_scores_and_threshold(kn) -> None:
    """Vector scores are ChromaDB's 0.5 + 0.5*cos: identical text scores 1,
    the threshold drops lower scores, limit and metadata filters apply."""
    path, engine = kn
    store = KnowledgeStore(path, engine=engine)
    docs = ["alpha beta gamma", "alpha beta", "delta epsilon", "zeta eta theta"]
    metas = [{"lang": "en"}, {"lang": "fr"}, {"lang": "en", "n": 1}, None]
    assert store.add("c", docs, hash_embed, metas) == 4
    q = hash_embed(["alpha beta gamma"])[0]
    hits = store.search("c", "alpha beta gamma", q, limit=4)
    assert hits[0]["content"] == "alpha beta gamma" and abs(hits[0]["score"] - 1.0) < 1e-6
    vecs = hash_embed(docs)
    for h in hits:
        cos = float(vecs[docs.index(h["content"])] @ q)
        assert abs(h["score"] - (0.5 + 0.5 * cos)) < 1e-5
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    thr = store.search("c", "", q, limit=4, score_threshold=0.75)
    assert thr and all(h["score"] >= 0.75 for h in thr) and len(thr) < 4
    only_en = store.search("c", "", q, limit=4, metadata_filter={"lang": "en"})
    assert {h["content"] for h in only_en} == {"alpha beta gamma", "delta epsilon"}
    assert store.search("c", "", q, limit=4, metadata_filter={"n": 1.0})[0]["metadata"] == {"lang": "en", "n": 1}
    assert store.search("c", "", q, limit=0) == []


def test_bad_input_typed_errors_nothing_lost(kn) -> None:
    path, engine = kn
    store = KnowledgeStore(path, engine=engine)
    assert store.add("c", ["keep this chunk"], hash_embed) == 1
    bad = [
        ([""], KnowledgeDocumentError),
        (["  \n"], KnowledgeDocumentError),
        (["ok", "nul\x00byte"], KnowledgeDocumentError),
        (["x" * (100 << 20)], KnowledgeDocumentError),  # a 100 MB document as one chunk
        (["bad \ud800 surrogate"], KnowledgeDocumentError),
        ([b"bytes"], KnowledgeDocumentError),
        ("a string, not a list", KnowledgeDocumentError),
    ]
    for docs, err in bad:
        with pytest.raises(err):
            store.add("c", docs, hash_embed)
    with pytest.raises(KnowledgeDimensionError) as ei:
        store.add("c", ["another chunk"], lambda ts: [[1.0, 2.0]] * len(ts))
    assert "dimension mismatch" in str(ei.value).lower() and ei.value.stored_dim == 64 and ei.value.new_dim == 2
    with pytest.raises(KnowledgeDimensionError):
        store.search("c", "", [1.0, 2.0])
    with pytest.raises(KnowledgeDocumentError):
        store.add("c", ["nan chunk"], lambda ts: [[float("nan")] * 64] * len(ts))
    with pytest.raises(CollectionNotFoundError):
        store.search("nope", "x", hash_embed(["x"])[0])
    for kw in ({"mode": "fuzzy"}, {"limit": -1}, {"metadata_filter": {"$or": []}}, {"rrf_k": 0}):
        with pytest.raises(InvalidArgumentError):
            store.search("c", "x", hash_embed(["x"])[0], **kw)
    with pytest.raises(InvalidArgumentError):
        store.search("", "x", hash_embed(["x"])[0])
    with pytest.raises(InvalidArgumentError):
        store.search("c", "x")  # vector mode without an embedding
    stats = store.stats()
    assert len(stats) == 1 and stats[0]["chunks"] == 1  # nothing of a refused batch was stored

    # through CrewAI: the same errors; an unknown collection is empty knowledge
    k = _knowledge([], name="empty")
    assert k.query(["anything"]) == []
    with pytest.raises(KnowledgeDocumentError):
        k.storage.save(["fine", ""])
    k.storage.save([])  # CrewAI's no-op


def test_large_document_through_a_source(kn) -> None:
    """A 4 MB document through CrewAI's StringKnowledgeSource: chunked by
    CrewAI (4,000 characters, 200 overlap), stored whole, searchable."""
    from crewai.knowledge.source.string_knowledge_source import StringKnowledgeSource

    path, engine = kn
    words = [f"w{i % 5000}" for i in range(700_000)]
    words[350_000] = "NEEDLE-4242"
    text = " ".join(words)
    k = _knowledge([StringKnowledgeSource(content=text)], name="big")
    k.add_sources()
    n = len(range(0, len(text), 3800))
    assert KnowledgeStore(path, engine=engine).stats()[0]["chunks"] == n
    hits = k.storage.search(["NEEDLE-4242"], limit=3, mode="keyword")
    assert hits and all("NEEDLE-4242" in h["content"] for h in hits)


def test_reset_during_search(kn) -> None:
    """Searches racing resets and re-adds: every search answers (full or
    empty), none fails."""
    path, engine = kn
    store = KnowledgeStore(path, engine=engine)
    docs = [f"document number {i} about pumps" for i in range(200)]
    store.add("c", docs, hash_embed)
    q = hash_embed(["pumps document"])[0]
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher(mode: str) -> None:
        while not stop.is_set():
            try:
                store.search("c", "pumps document", q, mode=mode, limit=5)
            except CollectionNotFoundError:
                pass  # reset between two searches (or during one)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
                return

    threads = [threading.Thread(target=searcher, args=(m,)) for m in ("vector", "hybrid", "keyword")]
    for t in threads:
        t.start()
    for _ in range(15):
        store.reset("c")
        store.add("c", docs, hash_embed)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert store.stats()[0]["chunks"] == 200


def test_both_engines_read_one_file(tmp_path: Path) -> None:
    """The Go engine writes, the Python engine (another process) answers
    the same searches with the same chunks and scores, and the other way."""
    path = str(tmp_path / "shared.db")
    code = """
import json, sys
sys.path.insert(0, {tests!r})
from knowledge_helpers import hash_embed
from crewcore.knowledge import KnowledgeStore
s = KnowledgeStore({path!r}, engine={engine!r})
if {write!r}:
    s.add("c", [f"chunk {{i}} about {{w}}" for i, w in enumerate(["pumps", "valves", "kettles"] * 40)], hash_embed)
out = []
for mode in ("vector", "keyword", "hybrid"):
    q = "valves chunk 7"
    hits = s.search("c", q, hash_embed([q])[0], mode=mode, limit=5)
    out.append([(h["id"], round(h["score"], 5)) for h in hits])
print(json.dumps(out))
"""
    tests = str(Path(__file__).resolve().parent)
    a = run_py(code.format(tests=tests, path=path, engine="native", write=True))
    b = run_py(code.format(tests=tests, path=path, engine="python", write=False))
    assert a.returncode == 0, a.stderr
    assert b.returncode == 0, b.stderr
    assert json.loads(a.stdout.strip().splitlines()[-1]) == json.loads(b.stdout.strip().splitlines()[-1])


def test_forked_child_switches_to_the_python_engine(tmp_path: Path) -> None:
    """A child forked after the Go library loaded reopens the file on the
    Python engine (its Go runtime is gone) and answers the same search."""
    path = str(tmp_path / "fork.db")
    code = f"""
import os, sys, warnings
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
warnings.simplefilter("ignore")
from knowledge_helpers import hash_embed
from crewcore.knowledge import KnowledgeStore
s = KnowledgeStore({path!r})
assert s.engine == "native", s.engine
s.add("c", ["pump manual PX-1", "valve notes"], hash_embed)
want = [h["id"] for h in s.search("c", "PX-1", hash_embed(["pump"])[0], mode="hybrid")]
pid = os.fork()
if pid == 0:
    c = KnowledgeStore({path!r})
    ok = c.engine == "python" and [h["id"] for h in c.search("c", "PX-1", hash_embed(["pump"])[0], mode="hybrid")] == want
    c.add("c", ["added by the child"], hash_embed)
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert s.stats()[0]["chunks"] == 3
print("ok")
"""
    r = run_py(code, timeout=300)
    assert r.stdout.strip().endswith("ok"), r.stdout + r.stderr


def test_without_fts5_vector_works_keyword_says_so(tmp_path: Path) -> None:
    """An interpreter without FTS5 (simulated): vector search and ingestion
    work, keyword search raises KeywordSearchUnavailableError, and the Go
    engine indexes the queued chunks later."""
    path = str(tmp_path / "nofts.db")
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from knowledge_helpers import hash_embed
from crewcore.knowledge import KnowledgeStore
from crewcore.errors import KeywordSearchUnavailableError
s = KnowledgeStore({path!r}, engine="python")
assert not s.keyword_search
s.add("c", ["the pump PX-1 manual", "a valve"], hash_embed)
assert s.search("c", "", hash_embed(["pump"])[0], limit=1)[0]["content"] == "the pump PX-1 manual"
try:
    s.search("c", "pump", mode="keyword")
except KeywordSearchUnavailableError as e:
    print("refused:", e)
else:
    raise SystemExit("keyword search without FTS5 did not fail")
assert s.stats()[0]["indexed"] is False
"""
    r = run_py(code, env=child_env(CREWCORE_KNOWLEDGE_NO_FTS5="1"))
    assert r.returncode == 0, r.stderr
    assert "FTS5" in r.stdout
    store = KnowledgeStore(path, engine="native")
    hits = store.search("c", "PX-1", mode="keyword")
    assert [h["content"] for h in hits] == ["the pump PX-1 manual"]
    assert store.stats()[0]["indexed"]


def test_install_modes_and_uninstall(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from crewai.knowledge.storage import factory as kf
    from crewai.knowledge.storage.knowledge_storage import KnowledgeStorage

    from crewcore.knowledge import CrewcoreKnowledgeStorage, set_mode

    monkeypatch.setenv("CREWAI_STORAGE_DIR", str(tmp_path))
    with pytest.raises(InvalidArgumentError):
        crewcore.install(knowledge={"mode": "semantic"})
    crewcore.install(knowledge={"modes": {"crew": "hybrid"}}, locks=False, task_outputs=False, flows=False)
    try:
        a = _knowledge([], name="crew")
        b = _knowledge([], name="Researcher")
        assert isinstance(a.storage, CrewcoreKnowledgeStorage) and a.storage.mode == "hybrid"
        assert b.storage.mode == "vector"
        assert crewcore._install.installed()["knowledge"]["modes"] == {"crew": "hybrid"}
        set_mode(b, "keyword")
        assert b.storage.mode == "keyword"
        assert a.storage.store.path == str(tmp_path / "crewcore" / "knowledge.db")
    finally:
        crewcore.uninstall()
    assert kf._factory is None
    crewcore.install(knowledge=False, locks=False, task_outputs=False, flows=False)
    try:
        assert kf._factory is None
        assert isinstance(_knowledge([], name="x").storage, KnowledgeStorage)
    finally:
        crewcore.uninstall()
