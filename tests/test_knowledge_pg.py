"""crewcore's knowledge store on PostgreSQL (pgvector + tsvector) behind
CrewAI's Knowledge: install(knowledge="postgresql://...#schema"), the same
answers as the embedded store in vector mode, keyword and hybrid, reset,
several processes on one schema."""

from __future__ import annotations

from pathlib import Path
import subprocess
import sys

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import child_env, last_json, script  # noqa: E402
from knowledge_helpers import EMBEDDER, corpus, hash_embed  # noqa: E402
from pg_support import drop_schema, server_dsn  # noqa: E402

import crewcore  # noqa: E402
from crewcore.knowledge import KnowledgeStore  # noqa: E402


@pytest.fixture
def pg(tmp_path: Path):
    dsn = server_dsn()
    schema = f"kn_py_{abs(hash(str(tmp_path))) % 10**8}"
    yield f"{dsn}#{schema}"
    drop_schema(dsn, schema)


def test_crewai_knowledge_on_postgres(pg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from crewai.knowledge.knowledge import Knowledge
    from crewai.knowledge.source.string_knowledge_source import StringKnowledgeSource

    monkeypatch.setenv("CREWAI_STORAGE_DIR", str(tmp_path / "crewai"))
    docs = corpus(60)
    crewcore.install(knowledge=pg, locks=False, task_outputs=False, flows=False)
    try:
        k = Knowledge(collection_name="crew", sources=[StringKnowledgeSource(content=d) for d in docs],
                      embedder=EMBEDDER)
        k.add_sources()
        k.add_sources()  # dedup
    finally:
        crewcore.uninstall()
    store = KnowledgeStore(pg)
    assert store.engine == "native"
    assert store.stats()[0]["chunks"] == 60
    local = KnowledgeStore(str(tmp_path / "local.db"))
    local.add("knowledge_crew", docs, hash_embed)
    for q in ("pump warranty", "battery voltage notes", "drone firmware"):
        v = hash_embed([q])[0]
        a = [(h["id"], round(h["score"], 5)) for h in store.search("knowledge_crew", q, v, limit=5)]
        b = [(h["id"], round(h["score"], 5)) for h in local.search("knowledge_crew", q, v, limit=5)]
        assert a == b
    code = docs[17].split(" model ")[1].split()[0]
    for mode in ("keyword", "hybrid"):
        hits = k.storage.search([f"notes for {code}"], mode=mode, score_threshold=0.0)
        assert hits and code in hits[0]["content"], (mode, hits)
    k.reset()
    assert k.query(["pump"]) == []


def test_processes_share_one_schema(pg: str) -> None:
    code = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from knowledge_helpers import corpus, hash_embed
from crewcore.knowledge import KnowledgeStore
w = int(sys.argv[1])
s = KnowledgeStore({pg!r})
docs = corpus(120)[w * 20: w * 20 + 40]
n = s.add("shared", docs, hash_embed, batch_size=10)
hits = s.search("shared", docs[0], hash_embed([docs[0]])[0], mode="hybrid", limit=3)
print(json.dumps({{"added": n, "first": hits[0]["content"] == docs[0]}}))
"""
    procs = [subprocess.Popen([sys.executable, "-c", script(code), str(w)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=child_env()) for w in range(4)]
    outs = []
    for p in procs:
        so, se = p.communicate(timeout=300)
        assert p.returncode == 0, se
        outs.append(last_json(so))
    assert all(o["first"] for o in outs)
    assert KnowledgeStore(pg).stats()[0]["chunks"] == 3 * 20 + 40


def test_postgres_needs_the_go_engine(pg: str) -> None:
    from crewcore.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="Go engine"):
        KnowledgeStore(pg + "x", engine="python")
