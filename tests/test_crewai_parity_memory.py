"""crewcore behaves like CrewAI where it stands in for it: ``Memory.close()``
and what comes after (issue 17).

CrewAI's ``Memory.close()`` drains pending saves, calls ``storage.close()``
and shuts its save pool down; CrewAI's own stores stay usable afterwards
(LanceDB's has no close(); saves after close run synchronously). The same
scenario runs through CrewAI's real ``Memory`` and a real ``Crew`` (CrewAI's
HTTP client against ``crewcore mockllm`` for the LLM and the embeddings)
without crewcore (LanceDB) and with ``crewcore.install()`` on each crewcore
engine (Go, the pure-Python fallback, PostgreSQL), and every step must give
the same result. A closed crewcore store still holds no file open.
"""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import threading
from typing import Any, Iterator

import pytest

import crewcore
from conftest import REPO

os.environ.setdefault("CREWAI_DISABLE_TRACKING", "true")
os.environ.setdefault("CREWAI_DISABLE_VERSION_CHECK", "true")

FACTS = [
    ("The billing service stores invoices in PostgreSQL on port 5433", "/project/billing", ["infra"], 0.8),
    ("Deploys are frozen during the last week of December", "/project/release", ["policy"], 0.9),
    ("Alice prefers concise status reports every Friday afternoon", "/people/alice", ["preference"], 0.6),
    ("The mobile app crashes when the camera permission is revoked", "/project/mobile", ["bug"], 0.7),
]


def _binary() -> str:
    for p in (REPO / "python/crewcore/_lib/crewcore", REPO / "bin/crewcore"):
        if p.exists():
            return str(p)
    pytest.fail("the crewcore command is not built (make build)")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    proc = subprocess.Popen([_binary(), "mockllm", "--addr", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("mockllm listening on "), line
    try:
        yield line.split("mockllm listening on ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def engine_kind(mem: Any) -> str:
    return getattr(mem._storage, "backend", "lancedb")


def _attempt(fn: Any) -> Any:
    """A step's result, or its exception as "Type: message" (compared too)."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - the outcome under comparison
        return f"raised {type(e).__name__}: {e}"


def _contents(matches: Any) -> Any:
    if isinstance(matches, str):
        return matches
    return sorted(m.record.content for m in matches)


def scenario(url: str) -> tuple[dict[str, Any], Any, Any]:
    """Close a Memory, then keep using it: reads, saves (one by one and in a
    batch), a crew run with it, close again, reset, close again. Returns
    each step's result, the Memory's storage and (crewcore's Go engines) the
    bridge handle of the store it used last, for the resource checks."""
    from crewai import LLM, Agent, Crew, Task
    from crewai.memory import Memory

    llm = LLM(model="gpt-4o-mini", base_url=url, api_key="sk-mockllm")
    embedder = {"provider": "openai",
                "config": {"api_key": "sk-mockllm", "api_base": url, "model_name": "text-embedding-3-small"}}
    mem = Memory(llm=llm, embedder=embedder)
    out: dict[str, Any] = {}

    def remember(i: int) -> str:
        content, scope, cats, imp = FACTS[i]
        return mem.remember(content, scope=scope, categories=cats, importance=imp).content

    out["remember"] = _attempt(lambda: remember(0))
    mem.close()
    out["count after close"] = _attempt(lambda: len(mem.list_records()))
    out["info after close"] = _attempt(lambda: mem.info("/project").record_count)
    out["recall after close"] = _attempt(lambda: _contents(mem.recall("invoices PostgreSQL port", depth="shallow")))
    out["remember after close"] = _attempt(lambda: remember(1))
    out["remember_many after close"] = _attempt(lambda: mem.remember_many(
        [FACTS[2][0], FACTS[3][0]], scope="/bulk", categories=["bulk"], importance=0.5) and None)
    out["scopes"] = _attempt(lambda: mem.list_scopes("/"))
    out["count"] = _attempt(lambda: len(mem.list_records()))

    # A second crew using the same Memory after close().
    agent = Agent(role="Researcher", goal="Research {topic}", backstory="You research.", llm=llm,
                  verbose=False, max_iter=3)
    task = Task(description="Write one line about {topic}.", expected_output="One line.", agent=agent)
    crew = Crew(agents=[agent], tasks=[task], verbose=False, memory=mem)
    out["crew run"] = _attempt(lambda: crew.kickoff(inputs={"topic": "release freezes"}).raw)
    mem.drain_writes()
    out["count after crew"] = _attempt(lambda: len(mem.list_records(limit=1000)))
    mem.close()
    out["recall after second close"] = _attempt(
        lambda: _contents(mem.recall("frozen deploys December", scope="/project", depth="shallow")))
    out["reset after close"] = _attempt(lambda: mem.reset("/project"))
    out["count after reset"] = _attempt(lambda: len(mem.list_records(limit=1000)))
    handle = mem._storage._e()._h if hasattr(mem._storage, "_e") and engine_kind(mem) != "python" else None
    mem.close()
    return out, mem._storage, handle


@pytest.fixture(scope="module")
def crewai_outcome(server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The scenario without crewcore: CrewAI's default LanceDB store."""
    crewcore.uninstall()
    mp = pytest.MonkeyPatch()
    mp.setenv("CREWAI_STORAGE_DIR", str(tmp_path_factory.mktemp("crewai")))
    try:
        out, storage, _ = scenario(server)
    finally:
        mp.undo()
    assert type(storage).__name__ == "LanceDBStorage", type(storage)
    return out


def _fds_under(root: Path | str) -> list[str]:
    """This process's open descriptors of files whose path starts with root
    (a directory, or a database file: then its -wal and -shm too)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(root)):
            found.append(target)
    return found


@pytest.mark.parametrize("engine", ["native", "python", "postgres"])
def test_memory_is_usable_after_close_as_in_crewai(
    engine: str, server: str, crewai_outcome: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREWAI_STORAGE_DIR", str(tmp_path))
    kw: dict[str, Any] = {}
    if engine == "python":
        monkeypatch.setenv("CREWCORE_FORCE_PYTHON", "1")
    elif engine == "postgres":
        from pg_support import drop_schema, schema_for, server_dsn

        dsn, schema = server_dsn(), schema_for(tmp_path)
        drop_schema(dsn, schema)
        kw["memory"] = f"{dsn}#{schema}"
    threads_before = set(threading.enumerate())
    crewcore.install(**kw)
    try:
        ours, storage, handle = scenario(server)
    finally:
        crewcore.uninstall()
    assert type(storage).__name__ == "MemoryStorage" and storage.backend == engine, storage
    # Every step gives what it gives without crewcore (before the fix every
    # step after the first close() raised StoreClosedError).
    assert ours == crewai_outcome
    # The scenario did its work: 4 facts, the crew's memory, 2 left outside /project.
    assert (ours["count"], ours["count after crew"], ours["count after reset"]) == (4, 5, 3), ours
    assert "Deploys are frozen" in ours["crew run"], ours  # the crew recalled from the closed Memory
    # Closed, the store holds nothing: no file of it open, no thread of ours.
    # (Other seams install() routes, e.g. the kickoff task outputs, keep
    # their own files open: they are not the memory store.)
    assert storage._shared is None
    if engine != "postgres":
        assert Path(storage.path).is_file() and _fds_under(storage.path) == []
    else:
        # The Go store behind the handle is closed (its pgx pool with it) and gone.
        from crewcore._bridge import call
        from crewcore.errors import StoreClosedError

        assert handle is not None
        with pytest.raises(StoreClosedError):
            call(["pg_count", handle, None])
    left = [t.name for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    assert not [n for n in left if "crewcore" in n], left
    if engine == "postgres":
        drop_schema(dsn, schema)


def test_storage_reopens_after_close_on_every_engine(tmp_path: Path) -> None:
    """MemoryStorage directly: close() releases the engine (no descriptor of
    the database left), the next call reopens it with everything stored."""
    from crewai.memory.types import MemoryRecord

    from crewcore import MemoryStorage

    for engine in ("native", "python"):
        d = tmp_path / engine
        s = MemoryStorage(d, engine=engine)
        s.save([MemoryRecord(content=f"fact {i}", embedding=[float(i), 1.0, 0.0]) for i in range(3)])
        s.close()
        assert _fds_under(d) == [] and s.backend == engine and "closed" in repr(s)
        s.close()  # twice is harmless
        assert s.count() == 3  # reopened
        assert _fds_under(d) != []
        s.save([MemoryRecord(content="fact 3", embedding=[3.0, 1.0, 0.0])])
        s.close()
        assert _fds_under(d) == []
        assert [r.content for r, _ in s.search([3.0, 1.0, 0.0], limit=1)] == ["fact 3"]
        s.close()
