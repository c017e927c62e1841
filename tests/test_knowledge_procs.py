"""Knowledge across processes and against CrewAI's default: 8 processes
ingesting and searching one store, the same chunks as ChromaDB in vector
mode, and a real crew with knowledge sources against ``crewcore mockllm``."""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))
from conftest import child_env, last_json, run_py  # noqa: E402

WORKER = """
import json, sys, time
sys.path.insert(0, {tests!r})
from knowledge_helpers import corpus, hash_embed
from crewcore.knowledge import KnowledgeStore
from crewcore.errors import CollectionNotFoundError
w, engine = int(sys.argv[1]), sys.argv[2]
s = KnowledgeStore({path!r}, engine=engine)
docs = corpus(400)
errors, searches, found = [], 0, 0  # found: keyword searches that ranked the chunk first
# every worker ingests an overlapping slice (dedup across processes) and
# searches between batches
mine = docs[w * 40: w * 40 + 120]
for i in range(0, len(mine), 20):
    try:
        s.add("shared", mine[i:i + 20], hash_embed, batch_size=10)
        for mode in ("vector", "keyword", "hybrid"):
            q = mine[i].split(" notes")[0]
            hits = s.search("shared", q, hash_embed([q])[0], mode=mode, limit=3)
            if mode == "keyword":  # the product code in q is in that chunk only
                searches += 1
                found += bool(hits) and hits[0]["content"] == mine[i]
    except Exception as e:
        errors.append(f"{{type(e).__name__}}: {{e}}")
print(json.dumps({{"errors": errors, "searches": searches, "found": found, "engine": s.engine}}))
"""


def test_eight_processes_ingest_and_search_one_store(tmp_path: Path) -> None:
    """8 processes (6 on the Go engine, 2 on the Python one) ingest
    overlapping slices of one corpus into one collection and search it
    between batches: no error, every chunk stored once, every keyword
    search ranks the chunk just stored first (its product code is unique)."""
    path = str(tmp_path / "shared.db")
    code = WORKER.format(tests=str(TESTS), path=path)
    from conftest import script

    procs = [
        subprocess.Popen([sys.executable, "-c", script(code), str(w), "python" if w >= 6 else "native"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(), cwd=str(REPO))
        for w in range(8)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        results.append(last_json(out))
    assert [r["errors"] for r in results] == [[]] * 8
    assert {r["engine"] for r in results} == {"native", "python"}
    assert all(r["found"] == r["searches"] for r in results), results
    from crewcore.knowledge import KnowledgeStore

    stats = KnowledgeStore(path, engine="native").stats()
    assert stats[0]["chunks"] == 7 * 40 + 120 and stats[0]["indexed"]  # slices overlap; each chunk once


CHROMA_VS = """
import json, os, sys
sys.path.insert(0, {tests!r})
from knowledge_helpers import EMBEDDER, corpus
import crewcore
from crewai.knowledge.knowledge import Knowledge
from crewai.knowledge.source.string_knowledge_source import StringKnowledgeSource
if sys.argv[1] == "crewcore":
    crewcore.install(knowledge={{"path": {path!r}}}, locks=False, task_outputs=False, flows=False)
docs = corpus(300, seed=3)
src = StringKnowledgeSource(content="\\n".join(docs), chunk_size=600, chunk_overlap=60)
k = Knowledge(collection_name="cmp", sources=[src], embedder=EMBEDDER)
k.add_sources()
out = []
for q in ["pump warranty PU-1004", "battery voltage maintenance", "drone firmware", "kettle cleaning",
          "sensor pressure installation", "valve weight", "heater warranty notes", "router firmware notes",
          "turbine maintenance support", "printer voltage"]:
    res = k.query([q], results_limit=5, score_threshold=0.6)
    out.append([[r["id"], round(r["score"], 4)] for r in res])
print(json.dumps({{"store": type(k.storage).__name__, "results": out}}))
"""


def test_same_chunks_as_chromadb_in_vector_mode(tmp_path: Path) -> None:
    """The same CrewAI Knowledge (a StringKnowledgeSource chunked by CrewAI,
    the same embedder, CrewAI's default limit and threshold) answers ten
    questions with the same chunk ids in the same order and the same
    scores (to 1e-4) from ChromaDB and from crewcore."""
    code = CHROMA_VS.format(tests=str(TESTS), path=str(tmp_path / "kn.db"))
    env = child_env(CREWAI_STORAGE_DIR=str(tmp_path / "crewai"))
    chroma = last_json(run_py(code, "chroma", env=env, light=False, timeout=600).stdout)
    ours = last_json(run_py(code, "crewcore", env=env, light=False, timeout=600).stdout)
    assert chroma["store"] == "KnowledgeStorage" and ours["store"] == "CrewcoreKnowledgeStorage"
    assert sum(len(r) for r in chroma["results"]) >= 20  # the questions do find chunks
    for c, o in zip(chroma["results"], ours["results"]):
        assert [x[0] for x in o] == [x[0] for x in c]
        for (_, cs), (_, os_) in zip(c, o):
            assert abs(cs - os_) <= 1e-4


CREW = """
import json, os, sys
import crewcore
crewcore.install(knowledge={{"path": {path!r}}}, locks=False, task_outputs=False, flows=False)
from crewai import LLM, Agent, Crew, Task
from crewai.knowledge.source.string_knowledge_source import StringKnowledgeSource
url = os.environ["OPENAI_BASE_URL"]
llm = LLM(model="gpt-4o-mini", base_url=url, api_key="sk-mockllm")
emb = {{"provider": "openai", "config": {{"model_name": "text-embedding-3-small", "api_key": "sk-mockllm", "api_base": url}}}}
fact = "The Zephyr pump model ZP-9 has a warranty period of five years."
agent = Agent(role="Support", goal="Answer product questions", backstory="You know the products.", llm=llm,
              knowledge_sources=[StringKnowledgeSource(content="The Orion valve OV-2 weighs two kilograms.")],
              embedder=emb, verbose=False, max_iter=2)
task = Task(description="What is the warranty period of the Zephyr pump model ZP-9?", expected_output="One line.",
            agent=agent)
crew = Crew(agents=[agent], tasks=[task], knowledge_sources=[StringKnowledgeSource(content=fact)], embedder=emb,
            verbose=False)
out = crew.kickoff()
from crewcore.knowledge import KnowledgeStore
print(json.dumps({{"raw": out.raw, "crew_ctx": agent.crew_knowledge_context or "",
                  "storage": type(crew.knowledge.storage).__name__,
                  "agent_storage": type(agent.knowledge.storage).__name__,
                  "stats": KnowledgeStore({path!r}).stats()}}))
crew.reset_memories(command_type="knowledge")
print(json.dumps({{"after_reset": KnowledgeStore({path!r}).stats()}}))
"""


@pytest.fixture(scope="module")
def mockllm(tmp_path_factory: pytest.TempPathFactory):
    binary = next((p for p in (REPO / "python/crewcore/_lib/crewcore", REPO / "bin/crewcore") if p.exists()), None)
    if binary is None:
        pytest.fail("the crewcore command is not built (make build)")
    proc = subprocess.Popen([str(binary), "mockllm", "--addr", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("mockllm listening on "), line
    try:
        yield line.split("mockllm listening on ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_crew_with_knowledge_sources_against_mockllm(tmp_path: Path, mockllm: str) -> None:
    """A real crew (crew and agent knowledge sources, CrewAI's OpenAI
    embedder and LLM client against crewcore mockllm): the chunks go to
    crewcore's store, the agent's prompt gets the crew's knowledge, and
    Crew.reset_memories("knowledge") (what `crewai reset-memories
    --knowledge` runs) empties both collections."""
    path = str(tmp_path / "kn.db")
    env = child_env(OPENAI_BASE_URL=mockllm, OPENAI_API_KEY="sk-mockllm", CREWAI_STORAGE_DIR=str(tmp_path / "crewai"),
                    CREWAI_DISABLE_TRACKING="true", CREWAI_DISABLE_VERSION_CHECK="true")
    r = run_py(CREW.format(path=path), env=env, light=False, timeout=600)
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    got, after = lines[-2], lines[-1]
    assert got["storage"] == "CrewcoreKnowledgeStorage" and got["agent_storage"] == "CrewcoreKnowledgeStorage"
    assert "ZP-9" in got["crew_ctx"] and "five years" in got["crew_ctx"]
    names = {s["name"]: s for s in got["stats"]}
    assert names["knowledge_crew"]["chunks"] == 1 and names["knowledge_Support"]["chunks"] == 1
    assert names["knowledge_crew"]["dim"] == 1536
    assert after["after_reset"] == []
