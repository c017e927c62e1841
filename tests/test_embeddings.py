"""The embedding layer (crewcore/embeddings/, Go package embed): shared
embedders, crewcore's client against `crewcore mockllm` over real HTTP,
CrewAI's own embedder classes for the "same vectors" check, real SQLite
cache files shared by real processes, and every fault through mockllm's
fault injection (POST /_mock/faults). Each case runs on the Go engine and
on its pure-Python twin.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys
import threading
from typing import Any, Iterator
import urllib.request
import warnings

import numpy as np
import pytest

from conftest import REPO, child_env, read_only

import crewcore
from crewcore import embeddings as emb
from crewcore.embeddings import shared
from crewcore.errors import (
    EmbeddingAPIError,
    EmbeddingConnectionError,
    EmbeddingDimensionError,
    EmbeddingRateLimitError,
    EmbeddingServerError,
    EmbeddingTimeoutError,
    InvalidArgumentError,
)

MODEL = "text-embedding-3-small"


def _binary() -> str:
    for p in (REPO / "python/crewcore/_lib/crewcore", REPO / "bin/crewcore"):
        if p.exists():
            return str(p)
    pytest.fail("the crewcore command is not built (make build)")


def _start(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([_binary(), "mockllm", "--addr", "127.0.0.1:0", *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("mockllm listening on "), line
    return proc, line.split("mockllm listening on ", 1)[1].strip()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    proc, url = _start()
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture(scope="module")
def slow_server() -> Iterator[str]:
    proc, url = _start("--latency", "50ms")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _root(url: str) -> str:
    return url[: -len("/v1")] if url.endswith("/v1") else url


def plan(url: str, faults: str) -> None:
    """Set mockllm's embeddings fault plan (applied in arrival order)."""
    req = urllib.request.Request(_root(url) + "/_mock/faults", data=json.dumps({"embeddings": faults}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def mock_stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(_root(url) + "/stats", timeout=10) as r:
        return json.load(r)


@pytest.fixture(params=["native", "python"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, server: str,
           tmp_path: Path) -> Iterator[str]:
    if request.param == "python":
        monkeypatch.setenv("CREWCORE_FORCE_PYTHON", "1")
    else:
        monkeypatch.delenv("CREWCORE_FORCE_PYTHON", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", server)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-mockllm")
    monkeypatch.setenv("CREWAI_STORAGE_DIR", str(tmp_path / "storage"))
    monkeypatch.delenv("CREWCORE_EMBED_CACHE", raising=False)
    plan(server, "")
    yield request.param
    plan(server, "")
    crewcore.uninstall()
    shared.reset()


def spec(model: str = MODEL, **config: Any) -> dict[str, Any]:
    return {"provider": "openai", "config": {"model_name": model, **config}}


def crewai_embedder(s: dict[str, Any]) -> Any:
    """CrewAI's own embedder for s (chromadb's OpenAIEmbeddingFunction)."""
    return shared._crewai_build()(s)


def make(s: dict[str, Any], cache: Path | None, **opts: Any) -> Any:
    o = {"max_retries": 3, "timeout": 10.0, **opts}
    if cache is None:
        o["cache"] = False
    return emb.shared_embedder(s, o, cache=str(cache) if cache else None)


# --------------------------------------------------------------------------
# same vectors, sharing


@pytest.mark.parametrize("model,dims", [(MODEL, None), (MODEL, 64), ("text-embedding-3-large", None)])
def test_same_vectors_as_crewais_own_embedder(engine: str, tmp_path: Path, model: str, dims: int | None) -> None:
    config = {} if dims is None else {"dimensions": dims}
    ref = crewai_embedder(spec(model, **config))
    ours = make(spec(model, **config), tmp_path / "e.db")
    assert ours.engine == engine
    texts = ["the Zephyr satellite launched in March", "budget review", "the Zephyr satellite launched in March"]
    want = ref(texts)
    for got in (ours(texts), ours(texts)):  # a miss, then hits from the cache
        assert len(got) == 3
        for g, w in zip(got, want):
            assert g.dtype == np.float32 and np.array_equal(g, w)
    st = emb.cache_stats(str(tmp_path / "e.db"))
    assert st["this_process"]["hits"] == 3 and st["entries"] == 2


def test_equal_configurations_share_one_embedder_different_ones_never_mix(engine: str, tmp_path: Path) -> None:
    crewcore.install(embeddings={"cache": str(tmp_path / "e.db")})
    from crewai.memory.unified_memory import Memory
    from crewai.rag.embeddings import factory

    got: list[Any] = []

    def build() -> None:
        got.append(Memory(storage=str(tmp_path / "mem"))._embedder)

    threads = [threading.Thread(target=build) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(e) for e in got}) == 1
    assert isinstance(got[0], emb.Embedder)
    small = Memory(storage=str(tmp_path / "mem"), embedder=spec(MODEL))._embedder
    large = Memory(storage=str(tmp_path / "mem"), embedder=spec("text-embedding-3-large"))._embedder
    dims = Memory(storage=str(tmp_path / "mem"), embedder=spec(MODEL, dimensions=32))._embedder
    assert large is got[0]  # CrewAI's default embedder is OpenAI text-embedding-3-large: the same configuration
    assert len({id(small), id(large), id(dims)}) == 3
    assert small is Memory(storage=str(tmp_path / "mem"), embedder=spec(MODEL))._embedder
    assert small.namespace != large.namespace != dims.namespace
    assert len(small(["x y"])[0]) == 1536 and len(large(["x y"])[0]) == 3072 and len(dims(["x y"])[0]) == 32
    # Another API key is another configuration.
    other_key = Memory(storage=str(tmp_path / "mem"), embedder=spec(MODEL, api_key="sk-other"))._embedder
    assert other_key is not small
    # So is the same dict in another environment (the provider reads OPENAI_API_KEY).
    os.environ["OPENAI_API_KEY"] = "sk-changed"
    try:
        changed = Memory(storage=str(tmp_path / "mem"))._embedder
    finally:
        os.environ["OPENAI_API_KEY"] = "sk-mockllm"
    assert changed is not got[0] and changed.namespace == got[0].namespace
    assert Memory(storage=str(tmp_path / "mem"))._embedder is got[0]
    # Callers outside CrewAI's crew and memory code get CrewAI's own function.
    assert type(factory.build_embedder(spec(MODEL))).__name__ == "OpenAIEmbeddingFunction"
    crewcore.uninstall()
    assert type(Memory(storage=str(tmp_path / "mem"))._embedder).__name__ == "OpenAIEmbeddingFunction"
    crewcore.install(embeddings=False)
    assert type(Memory(storage=str(tmp_path / "mem"))._embedder).__name__ == "OpenAIEmbeddingFunction"


def test_crew_with_memory_runs_on_the_shared_embedder(engine: str, server: str, tmp_path: Path) -> None:
    from crewai import LLM, Agent, Crew, Task

    crewcore.install(embeddings={"cache": str(tmp_path / "e.db")})

    def crew() -> Any:
        llm = LLM(model="gpt-4o-mini", base_url=server, api_key="sk-mockllm")
        a = Agent(role="Researcher", goal="Research the Zephyr project", backstory="You research.", llm=llm)
        t = Task(description="Find one fact about the Zephyr project.", expected_output="One fact.", agent=a)
        return Crew(agents=[a], tasks=[t], memory=True, verbose=False)

    c1, c2 = crew(), crew()
    assert c1._memory._embedder is c2._memory._embedder
    before = mock_stats(server)["embeddings"]
    out1 = c1.kickoff()
    c1._memory.drain_writes()
    first = mock_stats(server)["embeddings"] - before
    out2 = c2.kickoff()
    c2._memory.drain_writes()
    second = mock_stats(server)["embeddings"] - before - first
    assert out1.raw and out2.raw
    assert first > 0 and second < first  # the same texts come from the cache the second time
    st = emb.cache_stats(str(tmp_path / "e.db"))
    assert st["all_processes"]["hits"] > 0 and st["entries"] > 0


# --------------------------------------------------------------------------
# the cache


def test_cache_is_shared_by_processes(engine: str, server: str, tmp_path: Path) -> None:
    cache = tmp_path / "shared.db"
    code = f"""
import json, sys
from crewcore.embeddings import shared_embedder, cache_stats
e = shared_embedder({{"provider": "openai", "config": {{"model_name": "{MODEL}"}}}}, cache=sys.argv[1])
v = e(["one text", "two texts"])
print(json.dumps({{"engine": e.engine, "head": [float(x) for x in v[1][:4]], "stats": cache_stats(sys.argv[1])}}))
"""
    env = child_env(OPENAI_BASE_URL=server, OPENAI_API_KEY="sk-mockllm",
                    **({"CREWCORE_FORCE_PYTHON": "1"} if engine == "python" else {}))
    before = mock_stats(server)["embeddings"]
    outs = []
    for _ in range(2):
        p = subprocess.run([sys.executable, "-c", code, str(cache)], capture_output=True, text=True, env=env,
                           timeout=120, cwd=str(REPO))
        assert p.returncode == 0, p.stderr
        outs.append(json.loads(p.stdout.strip().splitlines()[-1]))
    assert mock_stats(server)["embeddings"] - before == 1  # the second process hit
    assert outs[0]["engine"] == outs[1]["engine"] == engine
    assert outs[0]["head"] == outs[1]["head"]
    assert outs[1]["stats"]["all_processes"]["calls_saved"] == 1
    assert outs[1]["stats"]["all_processes"]["tokens_saved"] > 0


def test_cache_is_bounded_least_recently_used_first(engine: str, tmp_path: Path) -> None:
    path = tmp_path / "small.db"
    one = 4 * 1536 + 200
    e = make(spec(), path, max_bytes=10 * one, memory_bytes=0)
    for i in range(10):
        e([f"text number {i}"])
    e(["text number 0"])  # used again: the newest use
    e.stats()  # flushes the uses
    for i in range(10, 14):
        e([f"text number {i}"])
    st = emb.cache_stats(str(path))
    assert st["bytes"] <= 10 * one and st["all_processes"]["evictions"] >= 3
    before = st["all_processes"]["hits"]
    e(["text number 0"])
    assert emb.cache_stats(str(path))["all_processes"]["hits"] == before + 1  # survived
    assert emb.clear_cache(str(path)) > 0
    assert emb.cache_stats(str(path))["entries"] == 0


def test_corrupt_cache_file_works_without_cache_and_says_so_once(engine: str, tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.db"
    bad.write_bytes(b"this is not a SQLite database, and must stay as it is" * 10)
    before = bad.read_bytes()
    ref = crewai_embedder(spec())
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        e = make(spec(), bad)
        for _ in range(3):
            got = e(["alpha"])
    msgs = [str(x.message) for x in w if issubclass(x.category, RuntimeWarning) and "cache" in str(x.message)]
    assert len(msgs) == 1 and "corrupt" in msgs[0], msgs
    assert np.array_equal(got[0], ref(["alpha"])[0])
    assert bad.read_bytes() == before


def test_read_only_cache_works_without_cache_and_says_so_once(engine: str, tmp_path: Path) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    with read_only(d):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            e = make(spec(), d / "e.db")
            got = [e(["beta gamma"]) for _ in range(3)]
        msgs = [str(x.message) for x in w if issubclass(x.category, RuntimeWarning) and "cache" in str(x.message)]
        assert len(msgs) == 1 and ("writable" in msgs[0] or "read" in msgs[0]), msgs
    assert np.array_equal(got[0][0], got[2][0])
    assert not (d / "e.db").exists()


# --------------------------------------------------------------------------
# faults (mockllm's fault injection) and bad input


@pytest.mark.parametrize("faults", ["429:100ms,429", "500,503", "close", "hang:3s", "dim:7"])
def test_transient_faults_are_retried(engine: str, server: str, tmp_path: Path, faults: str) -> None:
    e = make(spec(MODEL, dimensions=64), tmp_path / "e.db")
    e(["warm up"])  # the expected dimension is known from here on
    plan(server, faults)
    before = mock_stats(server)["embed_faults"]
    if faults.startswith("hang"):
        e = make(spec(MODEL, dimensions=64), tmp_path / "e2.db", attempt_timeout=0.5)
    got = e(["after the fault"])
    assert np.array_equal(got[0], crewai_embedder(spec(MODEL, dimensions=64))(["after the fault"])[0])
    assert mock_stats(server)["embed_faults"] - before == len(faults.split(","))


@pytest.mark.parametrize("faults,exc,status", [
    ("429*9", EmbeddingRateLimitError, 429),
    ("500*9", EmbeddingServerError, 500),
    ("close*9", EmbeddingConnectionError, None),
    ("dim:7*9", EmbeddingDimensionError, None),
    ("401", EmbeddingAPIError, 401),
])
def test_lasting_faults_raise_typed_errors_and_store_nothing(engine: str, server: str, tmp_path: Path,
                                                             faults: str, exc: type, status: int | None) -> None:
    path = tmp_path / "e.db"
    e = make(spec(MODEL, dimensions=64), path, max_retries=2)
    e(["warm up"])
    plan(server, faults)
    with pytest.raises(exc) as info:
        e(["never stored", "warm up"])
    msg = str(info.value)
    assert "openai" in msg and MODEL in msg
    if status is not None:
        assert info.value.status == status and f"HTTP {status}" in msg
    if exc is EmbeddingDimensionError:
        assert "7" in msg and "64" in msg
    plan(server, "")
    assert emb.cache_stats(str(path))["entries"] == 1  # only the warm-up text


def test_deadline_is_kept(engine: str, server: str, tmp_path: Path) -> None:
    e = make(spec(), tmp_path / "e.db", timeout=0.5)
    plan(server, "hang:5s*3")
    import time

    t0 = time.monotonic()
    with pytest.raises(EmbeddingTimeoutError) as info:
        e(["slow"])
    assert time.monotonic() - t0 < 4.0
    assert "openai" in str(info.value) and isinstance(info.value, TimeoutError)


def test_bad_input_and_options(engine: str, tmp_path: Path) -> None:
    e = make(spec(), tmp_path / "e.db")
    with pytest.raises(InvalidArgumentError):
        e(["fine", 3])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError):
        e(["fine", ""])
    with pytest.raises(InvalidArgumentError):
        e(["\ud800 lone surrogate"])
    assert e([]) == []
    for bad in ({"cache": 3}, {"max_bytes": -1}, {"timeout": 0}, {"rate_limit": "fast"}, {"colour": "blue"}, "yes"):
        with pytest.raises(InvalidArgumentError):
            crewcore.install(embeddings=bad)
    assert not shared.installed()  # a bad option changed nothing


# --------------------------------------------------------------------------
# concurrency: many threads, few API calls


def test_concurrent_calls_are_batched(engine: str, slow_server: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", slow_server)
    e = make(spec(), None, max_in_flight=2)
    before = mock_stats(slow_server)["embeddings"]
    results: dict[int, Any] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(32)

    def one(i: int) -> None:
        try:
            barrier.wait()
            results[i] = e([f"thread text {i}"])[0]
        except BaseException as x:  # noqa: BLE001
            errors.append(x)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    calls = mock_stats(slow_server)["embeddings"] - before
    assert calls < 16, f"{calls} API calls for 32 concurrent callers"
    ref = crewai_embedder(spec())
    for i in (0, 17, 31):
        assert np.array_equal(results[i], ref([f"thread text {i}"])[0])


def test_fork_child_switches_to_python_engine(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREWCORE_FORCE_PYTHON", raising=False)
    code = f"""
import json, os, sys, warnings
warnings.simplefilter("ignore")
from crewcore.embeddings import shared_embedder
e = shared_embedder({{"provider": "openai", "config": {{"model_name": "{MODEL}"}}}}, {{"cache": False}})
parent = e(["forked text"])[0]
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    v = e(["forked text"])[0]
    os.write(w, json.dumps({{"engine": e.engine, "same": bool((v == parent).all())}}).encode())
    os._exit(0)
os.waitpid(pid, 0)
print(os.read(r, 1000).decode())
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=str(REPO),
                       env=child_env(OPENAI_BASE_URL=server, OPENAI_API_KEY="sk-mockllm"))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out == {"engine": "python", "same": True}


def test_fork_child_uses_the_cache_the_parent_opened(server: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A child forked after the parent opened the cache with the Go engine
    (kickoff_many's worker processes) reads and writes the same cache with
    the Python engine: before, it refused to open it ("open with the native
    engine in this process") and every worker embedded without the cache."""
    monkeypatch.delenv("CREWCORE_FORCE_PYTHON", raising=False)
    cache = tmp_path / "fork-cache.db"
    code = f"""
import json, os, urllib.request, warnings
warnings.simplefilter("always")
from crewcore.embeddings import shared_embedder
def api_calls():
    with urllib.request.urlopen("{server[:-len('/v1')]}/stats", timeout=10) as r:
        return json.load(r)["embeddings"]
e = shared_embedder({{"provider": "openai", "config": {{"model_name": "{MODEL}"}}}}, cache={str(cache)!r})
parent = e(["cached by the parent"])[0]
assert e.engine == "native"
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        c0 = api_calls()
        v = e(["cached by the parent"])[0]
        hit_calls = api_calls() - c0
        e(["stored by the child"])
        e.close()
        from crewcore.embeddings.embedder import close_caches
        close_caches()
    os.write(w, json.dumps({{"engine": e.engine, "same": bool((v == parent).all()), "hit_calls": hit_calls,
                            "warnings": [str(x.message) for x in seen if "cache" in str(x.message)]}}).encode())
    os._exit(0)
os.waitpid(pid, 0)
out = json.loads(os.read(r, 100000).decode())
c0 = api_calls()
e(["stored by the child"])
out["parent_calls_for_child_text"] = api_calls() - c0
print(json.dumps(out))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=str(REPO),
                       env=child_env(OPENAI_BASE_URL=server, OPENAI_API_KEY="sk-mockllm"))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out == {"engine": "python", "same": True, "hit_calls": 0, "warnings": [],
                   "parent_calls_for_child_text": 0}


# --------------------------------------------------------------------------
# PostgreSQL cache (when memory is on PostgreSQL)


def test_postgres_cache(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pg_support import server_dsn

    dsn = server_dsn()
    monkeypatch.delenv("CREWCORE_FORCE_PYTHON", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", server)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-mockllm")
    schema = f"embt_{os.getpid()}"
    target = f"{dsn}#{schema}"
    try:
        assert emb.default_cache_target(dsn) == dsn
        e = emb.shared_embedder(spec(), {"max_retries": 1}, cache=target)
        before = mock_stats(server)["embeddings"]
        first = e(["stored in postgres"])[0]
        shared.reset()
        e2 = emb.shared_embedder(spec(), {"max_retries": 1}, cache=target)
        assert np.array_equal(e2(["stored in postgres"])[0], first)
        assert mock_stats(server)["embeddings"] - before == 1
        st = emb.cache_stats(target)
        assert st["entries"] == 1 and st["all_processes"]["hits"] == 1
        r = subprocess.run([_binary(), "embeddings", "stats", "--dsn", dsn, "--schema", schema, "--json"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and json.loads(r.stdout)["entries"] == 1, r.stderr
    finally:
        shared.reset()
        from crewcore import _bridge

        _bridge.call(["pg_drop_schema", 0, dsn, schema])
