"""kickoff_many(..., processes=N) with stores that do not survive fork
(python/crewcore/runs/relay.py): CrewAI's LanceDB memory and ChromaDB
knowledge, with crewcore.install() before and after building the crew,
against CrewAI's real classes and HTTP client and `crewcore mockllm`.

Before the relay, a crew built before install() (its memory on LanceDB)
lost every run to workers killed by SIGSEGV, and a crew with knowledge
(ChromaDB, whatever the order) hung its workers for good. Now each worker
relays the calls on those stores to the parent, so the runs succeed, the
knowledge reaches the model, and the memories the runs save land in the
crew's own store.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
import subprocess
from typing import Any, Iterator

import pytest

import crewcore
from crewcore.errors import InvalidArgumentError
from test_scheduler import _binary, assert_in_order, ours, topics
from test_scheduler_procs import children

FACT = "ZEBRA-FACT-7"
SCRIPT = [{"match": FACT, "reply": "Thought: I now know the final answer\nFinal Answer: knowledge-seen"}]
N = 16


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    d = tmp_path_factory.mktemp("mockllm-fork")
    script = d / "script.json"
    script.write_text(json.dumps(SCRIPT))
    proc = subprocess.Popen([_binary(), "mockllm", "--addr", "127.0.0.1:0", "--latency", "20ms",
                             "--script", str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("mockllm listening on "), line
    logging.getLogger("crewai.llms.base_llm").setLevel(logging.ERROR)
    try:
        yield line.split("mockllm listening on ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture
def env(mock: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """CrewAI's defaults (OpenAI LLM and embedder) pointed at the mock server,
    a fresh storage dir, and crewcore not installed when the test starts."""
    monkeypatch.setenv("OPENAI_BASE_URL", mock)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-mockllm")
    monkeypatch.setenv("CREWAI_STORAGE_DIR", str(tmp_path / "crewai"))
    monkeypatch.chdir(tmp_path)  # LanceDB's default path follows the project directory
    before = children()
    crewcore.uninstall()
    try:
        yield mock
    finally:
        crewcore.uninstall()
        assert children() == before, "a worker process outlived its batch"
        assert ours() == []


def build(url: str, what: str) -> Any:
    from crewai import LLM, Agent, Crew, Task

    llm = LLM(model="gpt-4o-mini", base_url=url, api_key="sk-mockllm")
    agent = Agent(role="Researcher", goal="Research {topic}", backstory="b", llm=llm, verbose=False, max_iter=3)
    task = Task(description="Write one line about {topic}.", expected_output="One line.", agent=agent)
    if what == "memory":
        return Crew(agents=[agent], tasks=[task], verbose=False, memory=True)
    from crewai.knowledge.source.string_knowledge_source import StringKnowledgeSource

    return Crew(
        agents=[agent], tasks=[task], verbose=False,
        knowledge_sources=[StringKnowledgeSource(content=f"{FACT}: zebras research every topic.")],
        embedder={"provider": "openai", "config": {"model": "text-embedding-3-small", "api_key": "sk-mockllm",
                                                   "api_base": url}},
    )


def run(crew: Any, inputs: list[dict[str, str]]) -> Any:
    # The per-run timeout bounds a worker that hangs (ChromaDB before the relay).
    return crewcore.kickoff_many(crew, inputs, concurrency=8, processes=2, timeout=60, stop_grace=0.5,
                                 progress=False)


@pytest.mark.parametrize("order", ["install_first", "crew_first"])
def test_memory_crew_in_worker_processes(env: str, order: str) -> None:
    if order == "install_first":
        crewcore.install()
        crew = build(env, "memory")
    else:
        crew = build(env, "memory")
        crewcore.install()
    storage = crew._memory._storage
    kind = type(storage).__name__
    assert kind == ("MemoryStorage" if order == "install_first" else "LanceDBStorage")
    inputs = topics(N, f"mem-{order}")
    res = run(crew, inputs)
    failures = [(f.index, f.error_type, f.message[:120]) for f in res.failures]
    assert failures == [], failures
    assert_in_order(res, inputs)
    # What the runs remembered (in the workers) is in the crew's own store,
    # the LanceDB table included: its calls ran in this process.
    texts = " ".join(r.content for r in storage.list_records(limit=10_000))
    missing = [i["topic"] for i in inputs if i["topic"] not in texts]
    assert missing == [], f"{kind}: memories of {len(missing)} runs are missing: {missing[:5]}"


@pytest.mark.parametrize("order,store", [("install_first", "chroma"), ("crew_first", "chroma"),
                                         ("install_first", "crewcore")])
def test_knowledge_crew_in_worker_processes(env: str, order: str, store: str) -> None:
    """ChromaDB (CrewAI's default knowledge store; install(knowledge=False)
    keeps it) in both orders, and crewcore's knowledge store."""
    kw = {"knowledge": False} if store == "chroma" else {}
    if order == "install_first":
        crewcore.install(**kw)
        crew = build(env, "knowledge")
    else:
        crew = build(env, "knowledge")
        crewcore.install(**kw)
    from crewai.knowledge.storage import factory

    # Crew copies build their knowledge through CrewAI's factory: ChromaDB
    # unless crewcore's is installed.
    assert bool(getattr(factory._factory, "crewcore", False)) == (store == "crewcore")
    # Fewer runs: every crew copy adds the sources to ChromaDB again (CrewAI's
    # Crew.copy() rebuilds Knowledge), which takes most of a run's time.
    n = N // 2
    inputs = topics(n, f"zebras research topic {order}")
    res = run(crew, inputs)
    failures = [(f.index, f.error_type, f.message[:120]) for f in res.failures]
    assert failures == [], failures
    # The knowledge (ChromaDB, in this process) reached the model in every run.
    assert [r.raw for r in res] == ["knowledge-seen"] * n


class DictStorage:
    """A pure-Python memory storage kept in this process's memory: a fork
    would give each worker its own copy, the relay keeps one."""

    def __init__(self) -> None:
        self.records: dict[str, Any] = {}

    def save(self, records: list[Any]) -> None:
        for r in records:
            self.records[r.id] = r

    def search(self, query_embedding: list[float], scope_prefix: Any = None, categories: Any = None,
               metadata_filter: Any = None, limit: int = 10, min_score: float = 0.0) -> list[Any]:
        return [(r, 0.9) for r in list(self.records.values())[:limit]]

    def delete(self, **kw: Any) -> int:
        raise RuntimeError("delete is refused by this store")

    def count(self, scope_prefix: Any = None) -> int:
        return len(self.records)

    def list_records(self, scope_prefix: Any = None, limit: int = 200, offset: int = 0) -> list[Any]:
        return list(self.records.values())[offset:offset + limit]

    def reset(self, scope_prefix: Any = None) -> None:
        self.records.clear()

    def update(self, record: Any) -> None:
        self.records[record.id] = record

    def get_record(self, record_id: str) -> Any:
        return self.records.get(record_id)

    def list_scopes(self, parent: str = "/") -> list[str]:
        return []

    def list_categories(self, scope_prefix: Any = None) -> dict[str, int]:
        return {}

    def get_scope_info(self, scope: str) -> Any:
        from crewai.memory.types import ScopeInfo

        return ScopeInfo(path=scope, record_count=len(self.records), categories=[], oldest_record=None,
                         newest_record=None, child_scopes=[])

    def touch_records(self, record_ids: list[str]) -> None:
        pass


def test_relay_reaches_the_parents_object_and_returns_its_errors(env: str, tmp_path: Path) -> None:
    """A relayed call runs on the parent's own object: the workers' writes
    are in it (a plain fork would give each worker a copy that dies with
    it), and its exceptions reach the caller in the worker."""
    from crewai import LLM, Agent, Crew, Task
    from crewai.memory import Memory

    from test_scheduler import _embed

    store = DictStorage()
    log = tmp_path / "seen"
    crew: Any = None

    def probe(output: Any) -> None:  # runs in a worker process
        m = crew._memory._storage
        try:
            m.delete(record_ids=["x"])
            got = "no error"
        except RuntimeError as e:
            got = str(e)
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {type(m).__name__}: {got}\n")

    llm = LLM(model="gpt-4o-mini", base_url=env, api_key="sk-mockllm")
    agent = Agent(role="R", goal="Research {topic}", backstory="b", llm=llm, verbose=False, max_iter=3)
    task = Task(description="One line about {topic}.", expected_output="x", agent=agent, callback=probe)
    crew = Crew(agents=[agent], tasks=[task], verbose=False, memory=Memory(storage=store, embedder=_embed, llm=llm))
    inputs = topics(8, "dict")
    res = crewcore.kickoff_many(crew, inputs, concurrency=4, processes=2, timeout=60, progress=False)
    assert_in_order(res, inputs)
    texts = " ".join(r.content for r in store.records.values())
    assert all(i["topic"] in texts for i in inputs), f"the workers' saves are not in the parent's store: {texts[:300]!r}"
    lines = log.read_text().splitlines()
    assert len(lines) == 8 and str(os.getpid()) not in {ln.split()[0] for ln in lines}
    assert {ln.split(" ", 1)[1] for ln in lines} == {"MemoryRelay: delete is refused by this store"}


def test_postgres_memory_in_worker_processes(env: str, tmp_path: Path) -> None:
    """A crewcore PostgreSQL store needs Go, which a forked worker cannot
    call: its calls are relayed to this process too."""
    from crewai import LLM, Agent, Crew, Task
    from crewai.memory import Memory

    from pg_support import drop_schema, schema_for, server_dsn
    from test_scheduler import _embed

    dsn, schema = server_dsn(), schema_for(tmp_path)
    drop_schema(dsn, schema)
    store = crewcore.MemoryStorage(dsn=dsn, schema=schema)
    try:
        assert store.crewcore_fork_safe is False
        llm = LLM(model="gpt-4o-mini", base_url=env, api_key="sk-mockllm")
        agent = Agent(role="R", goal="Research {topic}", backstory="b", llm=llm, verbose=False, max_iter=3)
        task = Task(description="One line about {topic}.", expected_output="x", agent=agent)
        crew = Crew(agents=[agent], tasks=[task], verbose=False, memory=Memory(storage=store, embedder=_embed, llm=llm))
        inputs = topics(8, "pg")
        res = run(crew, inputs)
        assert [(f.index, f.error_type) for f in res.failures] == []
        texts = " ".join(r.content for r in store.list_records(limit=1000))
        assert all(i["topic"] in texts for i in inputs), "the workers' saves are not in the PostgreSQL store"
    finally:
        store.close()
        drop_schema(dsn, schema)


def test_unpicklable_knowledge_embedder_is_refused_at_once(env: str) -> None:
    """What the relay cannot carry is refused before any fork, saying what to do."""
    from crewai import LLM, Agent, Crew, Task
    from crewai.knowledge.source.string_knowledge_source import StringKnowledgeSource

    from test_scheduler import _embed

    from chromadb.api.types import EmbeddingFunction

    class LocalEmbedder(EmbeddingFunction):  # a class defined in a function does not pickle
        def __init__(self) -> None:
            pass

        def __call__(self, input: Any) -> Any:
            import numpy as np

            return [np.asarray(v, dtype=np.float32) for v in _embed(list(input))]

    llm = LLM(model="gpt-4o-mini", base_url=env, api_key="sk-mockllm")
    agent = Agent(role="R", goal="Research {topic}", backstory="b", llm=llm, verbose=False, max_iter=3)
    task = Task(description="One line about {topic}.", expected_output="x", agent=agent)
    crew = Crew(agents=[agent], tasks=[task], verbose=False,
                knowledge_sources=[StringKnowledgeSource(content="facts")],
                embedder={"provider": "custom", "config": {"embedding_callable": LocalEmbedder}})
    before = children()
    with pytest.raises(InvalidArgumentError) as ei:
        crewcore.kickoff_many(crew, topics(2), processes=2, progress=False)
    assert "processes" in str(ei.value) and "threads" in str(ei.value)
    assert children() == before
    res = crewcore.kickoff_many(crew, topics(2), progress=False)  # threads: fine
    assert res.summary.done == 2
