"""crewcore.kickoff_many / akickoff_many against CrewAI's real classes and
HTTP client, talking to `crewcore mockllm` (20 ms latency) on 127.0.0.1.

The server runs with a small script: a task mentioning HANG_PY or HANG_C
makes the model call a tool that hangs (in Python code, or blocked in C).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
from pathlib import Path
import socket
import subprocess
import threading
import time
import urllib.request
from typing import Any, Iterator

import pytest

import crewcore
from crewcore.runs import batch, context, fallback
from crewcore.errors import InvalidArgumentError, RunFailedError
from conftest import REPO

os.environ.setdefault("CREWAI_DISABLE_TRACKING", "true")
os.environ.setdefault("CREWAI_DISABLE_VERSION_CHECK", "true")

SCRIPT = [
    {"match": "HANG_PY", "in": "last_user", "tool_calls": [{"name": "hang_in_python", "arguments": {}}]},
    {"match": "HANG_C", "in": "last_user", "tool_calls": [{"name": "hang_in_c", "arguments": {}}]},
]


def _binary() -> str:
    for p in (REPO / "python/crewcore/_lib/crewcore", REPO / "bin/crewcore"):
        if p.exists():
            return str(p)
    pytest.fail("the crewcore command is not built (make build)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    d = tmp_path_factory.mktemp("mockllm")
    script = d / "script.json"
    script.write_text(json.dumps(SCRIPT))
    os.environ.setdefault("CREWAI_STORAGE_DIR", str(d / "crewai"))
    proc = subprocess.Popen(
        [_binary(), "mockllm", "--addr", "127.0.0.1:0", "--latency", "20ms", "--script", str(script)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("mockllm listening on "), line
    url = line.split("mockllm listening on ", 1)[1].strip()
    logging.getLogger("crewai.llms.base_llm").setLevel(logging.ERROR)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url[: -len("/v1")] + "/stats", timeout=10) as r:
        return json.load(r)


def make_crew(url: str, tasks: int = 1, tools: list[Any] | None = None, memory: Any = None) -> Any:
    from crewai import LLM, Agent, Crew, Task

    llm = LLM(model="gpt-4o-mini", base_url=url, api_key="sk-mockllm")
    agent = Agent(
        role="Researcher", goal="Research {topic}", backstory="You research.", llm=llm,
        tools=tools or [], verbose=False, max_iter=3,
    )
    ts = [
        Task(description=f"Step {k}: write one line about {{topic}}.", expected_output="One line.", agent=agent)
        for k in range(tasks)
    ]
    if memory is not None:
        return Crew(agents=[agent], tasks=ts, verbose=False, memory=memory)
    return Crew(agents=[agent], tasks=ts, verbose=False)


def topics(n: int, prefix: str = "item") -> list[dict[str, str]]:
    return [{"topic": f"{prefix}-{i:05d}"} for i in range(n)]


def assert_in_order(results: Any, inputs: list[dict[str, str]]) -> None:
    assert len(results) == len(inputs)
    for i, (r, inp) in enumerate(zip(results, inputs)):
        assert r, f"run {i} failed: {r!r}"
        assert inp["topic"] in r.raw, f"result {i} is not input {i}'s: {r.raw!r}"


def tcp_to(url: str) -> set[str]:
    """Inodes of this process's open TCP connections to the server at url."""
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            mine.add(link[len("socket:[") : -1])
    out = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            f = ln.split()
            if int(f[2].rsplit(":", 1)[1], 16) == port and f[9] in mine:
                out.add(f[9])
    return out


def ours() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("crewcore-sched")]


# --------------------------------------------------------------------------


def test_thousand_runs_complete_in_order(server: str) -> None:
    crew = make_crew(server)
    inputs = topics(1000)
    before = stats(server)["chat"]
    results = crewcore.kickoff_many(crew, inputs, concurrency=64, timeout=120, progress=False)
    assert isinstance(results, crewcore.ManyResults) and isinstance(results, list)
    assert_in_order(results, inputs)
    s = results.summary
    assert (s.total, s.done, s.failed, s.timed_out, s.cancelled, s.abandoned) == (1000, 1000, 0, 0, 0, 0)
    assert 0 < s.p50 <= s.p95 <= s.max and s.throughput > 0
    assert results.failures == [] and len(results.outputs) == 1000
    # One call per run; OpenAI's client may retry a request now and then.
    assert 1000 <= stats(server)["chat"] - before <= 1010
    assert ours() == []


def test_cancel_midway_leaves_no_thread_or_connection(server: str) -> None:
    crew = make_crew(server, tasks=2)
    # Warm up CrewAI's own lazily grown pools (its event bus threads), then
    # take the baseline.
    crewcore.kickoff_many(crew, topics(8, "warm"), concurrency=16, progress=False)
    time.sleep(0.5)
    threads_before = {t.ident for t in threading.enumerate()}
    gc.collect()
    socks_before = tcp_to(server)

    inputs = topics(400, "cancel")
    handle = crewcore.start_many(crew, inputs, concurrency=16, progress=False)
    while handle.summary().done < 10:
        time.sleep(0.05)
    assert handle.cancel() is True
    results = handle.result(timeout=60)
    s = results.summary
    assert s.stop == "cancelled" and s.abandoned == 0
    assert s.done >= 10 and s.cancelled > 0 and s.done + s.cancelled + s.failed == 400
    assert s.failed == 0
    for i, r in enumerate(results):
        if r:
            assert inputs[i]["topic"] in r.raw
        else:
            assert r.kind == "cancelled" and r.error_type == "RunCancelled", r
    # Runs stopped mid-way were stopped by the hook, not left running.
    assert any(r.started for r in results.failures) or s.cancelled == 400 - s.done

    assert ours() == []
    # No new thread; connections to the server: only the LLM client's own
    # keep-alive pool (at most one idle connection per concurrent run).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        # CrewAI's event bus keeps one process-wide pool ("CrewAISyncHandler_N")
        # that grows on demand and never shrinks: it is not the batch's.
        leftover = [
            t for t in threading.enumerate()
            if t.ident not in threads_before and not t.name.startswith("CrewAISyncHandler_")
        ]
        gc.collect()
        socks_after = tcp_to(server)
        if not leftover and len(socks_after) <= max(len(socks_before), 16):
            break
        time.sleep(0.1)
    assert leftover == [], f"threads left behind: {[t.name for t in leftover]}"
    assert len(socks_after) <= max(len(socks_before), 16), (socks_before, socks_after)
    # The hooks are unregistered once no batch is active.
    from crewai.hooks import InterceptionPoint, get_hooks

    assert context._pre_call_hook not in get_hooks(InterceptionPoint.PRE_MODEL_CALL)


def _hang_tools() -> tuple[list[Any], dict[str, Any]]:
    from crewai.tools import tool

    state: dict[str, Any] = {"py_entered": 0, "py_interrupted": 0, "release": threading.Event()}

    @tool("hang_in_python")
    def hang_in_python() -> str:
        """Waits for an event that never comes, polling in Python."""
        state["py_entered"] += 1
        try:
            while True:
                time.sleep(0.01)
        except BaseException:
            state["py_interrupted"] += 1
            raise

    @tool("hang_in_c")
    def hang_in_c() -> str:
        """Blocks in one C call (a lock wait) until the test releases it."""
        state["release"].wait()
        return "released"

    return [hang_in_python, hang_in_c], state


def test_run_hanging_in_a_tool_is_stopped_by_its_timeout(server: str) -> None:
    tools, state = _hang_tools()
    crew = make_crew(server, tools=tools)
    inputs = [{"topic": "fine-0"}, {"topic": "HANG_PY now"}, {"topic": "fine-1"}]
    results = crewcore.kickoff_many(crew, inputs, concurrency=3, timeout=2, stop_grace=0.3, progress=False)
    assert results[0] and "fine-0" in results[0].raw
    assert results[2] and "fine-1" in results[2].raw
    hung = results[1]
    assert not hung and hung.kind == "timeout" and hung.error_type == "RunTimeout", hung
    assert hung.elapsed >= 2
    assert state["py_entered"] == 1 and state["py_interrupted"] == 1
    s = results.summary
    assert (s.done, s.timed_out, s.abandoned) == (2, 1, 0)
    assert ours() == []


def test_run_stuck_in_c_is_abandoned_and_replaced(server: str) -> None:
    tools, state = _hang_tools()
    crew = make_crew(server, tools=tools)
    inputs = [{"topic": "HANG_C now"}] + topics(6, "after")
    try:
        results = crewcore.kickoff_many(crew, inputs, concurrency=1, timeout=1, stop_grace=0.2, progress=False)
        assert not results[0] and results[0].kind == "timeout" and "abandoned" in results[0].message
        # Its slot went to a new worker: the inputs behind it still ran.
        assert_in_order(results[1:], inputs[1:])
        assert results.summary.abandoned == 1 and results.summary.done == 6
    finally:
        state["release"].set()
    # Released, the abandoned thread ends at its next LLM call and exits.
    deadline = time.monotonic() + 10
    while ours() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ours() == []


def test_overall_deadline(server: str) -> None:
    crew = make_crew(server, tasks=2)
    results = crewcore.kickoff_many(crew, topics(200, "dl"), concurrency=2, timeout=None, deadline=1.5, progress=False)
    s = results.summary
    assert s.stop == "deadline" and s.done > 0 and s.done < 200
    assert s.done + s.timed_out + s.cancelled == 200
    not_started = [r for r in results.failures if not r.started]
    assert not_started and all(r.kind == "deadline" for r in not_started)
    assert all(r.kind == "deadline" for r in results.failures if r.started)


def test_on_error_policies(server: str) -> None:
    crew = make_crew(server)
    # An input without the {topic} variable makes CrewAI raise.
    inputs = topics(3, "ok") + [{"other": "x"}] + topics(3, "ok2")
    res = crewcore.kickoff_many(crew, inputs, concurrency=1, progress=False)
    bad = res[3]
    assert not bad and bad.kind == "error" and bad.index == 3 and bad.error_type and bad.message
    assert isinstance(bad.exception, Exception)
    assert res.summary.failed == 1 and res.summary.done == 6

    res = crewcore.kickoff_many(crew, inputs, concurrency=1, on_error="cancel", progress=False)
    assert res.summary.failed == 1 and res.summary.done == 3 and res.summary.cancelled == 3
    assert [r.kind for r in res.failures] == ["error", "cancelled", "cancelled", "cancelled"]

    with pytest.raises(RunFailedError) as ei:
        crewcore.kickoff_many(crew, inputs, concurrency=1, on_error="raise", progress=False)
    assert ei.value.failure.index == 3 and len(ei.value.results) == 7


@pytest.mark.parametrize(
    "kw, what",
    [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 2.5}, "concurrency"),
        ({"timeout": -1}, "timeout"),
        ({"deadline": float("nan")}, "deadline"),
        ({"on_error": "ignore"}, "on_error"),
        ({"stop_grace": -1}, "stop_grace"),
    ],
)
def test_bad_arguments_raise_typed_errors(server: str, kw: dict[str, Any], what: str) -> None:
    crew = make_crew(server)
    with pytest.raises(InvalidArgumentError, match=what):
        crewcore.kickoff_many(crew, topics(2), progress=False, **kw)


def test_bad_inputs_and_crew(server: str) -> None:
    with pytest.raises(InvalidArgumentError, match="inputs"):
        crewcore.kickoff_many(make_crew(server), {"topic": "x"})
    with pytest.raises(InvalidArgumentError, match=r"inputs\[1\]"):
        crewcore.kickoff_many(make_crew(server), [{"topic": "x"}, "y"])
    with pytest.raises(InvalidArgumentError, match="crew"):
        crewcore.kickoff_many(object(), [{"topic": "x"}])
    empty = crewcore.kickoff_many(make_crew(server), [], progress=False)
    assert empty == [] and empty.summary.total == 0


def test_python_engine_twin(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pure-Python engine (no native library) behaves the same."""
    monkeypatch.setattr(batch, "_engine", lambda *a: fallback._PyEngine(*a))
    crew = make_crew(server)
    inputs = topics(40, "py")
    res = crewcore.kickoff_many(crew, inputs, concurrency=8, progress=False)
    assert_in_order(res, inputs)
    h = crewcore.start_many(crew, topics(200, "pyc"), concurrency=4, progress=False)
    while h.summary().done < 4:
        time.sleep(0.05)
    h.cancel()
    s = h.result(timeout=60).summary
    assert s.stop == "cancelled" and s.done >= 4 and s.cancelled > 0 and s.failed == 0


def test_akickoff_many_in_order_and_cancel(server: str) -> None:
    crew = make_crew(server)
    inputs = topics(60, "async")

    async def main() -> Any:
        res = await crewcore.akickoff_many(crew, inputs, concurrency=16, progress=False)
        # Cancelling the awaiting task cancels the batch.
        task = asyncio.ensure_future(crewcore.akickoff_many(crew, topics(300, "acancel"), concurrency=8, progress=False))
        while True:
            await asyncio.sleep(0.05)
            if stats(server)["chat"] - start >= 60 + 8:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return res

    start = stats(server)["chat"]
    res = asyncio.run(main())
    assert_in_order(res, inputs)
    assert res.summary.done == 60
    assert ours() == []


def test_progress_bar_only_on_a_terminal(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    crewcore.kickoff_many(make_crew(server), topics(3, "quiet"), progress=True)
    err = capsys.readouterr().err  # stderr is not a TTY here
    assert "crewcore [" not in err and "\r" not in err  # no bar
    # ... but one final summary line (issue 12: off a TTY it printed nothing).
    assert [ln for ln in err.splitlines() if ln.startswith("crewcore:")] == [
        ln for ln in err.splitlines() if ln.startswith("crewcore: 3/3 done, 0 failed")
    ] and err.count("crewcore: 3/3 done") == 1, err
    crewcore.kickoff_many(make_crew(server), topics(2, "silent"), progress=False)
    assert "crewcore" not in capsys.readouterr().err


def _embed(texts: list[str]) -> list[list[float]]:
    import hashlib
    import math
    import re

    out = []
    for t in texts:
        v = [0.0] * 32
        for w in re.findall(r"[a-z0-9]+", t.lower()):
            h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
            v[h % 32] += 1.0 if (h >> 32) & 1 else -1.0
        n = math.sqrt(sum(x * x for x in v)) or 1.0
        out.append([x / n for x in v])
    return out


def test_runs_share_one_memory_safely(server: str, tmp_path: Path) -> None:
    """Every copy shares the crew's Memory (crewcore storage); concurrent runs
    save into it without a failure or a lost save."""
    from crewai import LLM
    from crewai.memory import Memory

    store = crewcore.MemoryStorage(tmp_path / "mem")
    mem = Memory(storage=store, embedder=_embed, llm=LLM(model="gpt-4o-mini", base_url=server, api_key="sk-mockllm"))
    crew = make_crew(server, memory=mem)
    assert crew.copy()._memory is mem
    inputs = topics(24, "mem")
    res = crewcore.kickoff_many(crew, inputs, concurrency=8, progress=False)
    assert_in_order(res, inputs)
    mem.drain_writes()
    texts = " ".join(r.content for r in store.list_records(limit=1000))
    missing = [i["topic"] for i in inputs if i["topic"] not in texts]
    assert missing == [], f"saves lost for {missing}"
    store.close()


def test_a_run_waits_for_its_own_memory_saves_only(server: str, tmp_path: Path) -> None:
    """Copies share the crew's Memory (one store) but not one save queue: a
    run whose save is stuck does not hold up another run's end (CrewAI's
    single save thread would: every kickoff waits for all pending saves)."""
    from crewai import LLM
    from crewai.memory import Memory

    store = crewcore.MemoryStorage(tmp_path / "mem")
    slow_started, release = threading.Event(), threading.Event()
    real_save = store.save

    def save(records: Any) -> Any:
        text = " ".join(r.content for r in records)
        if "slowtopic" in text:
            slow_started.set()
            release.wait(60)
        elif "fasttopic" in text:
            slow_started.wait(60)  # saves only while the slow save is stuck
        return real_save(records)

    store.save = save  # type: ignore[method-assign]
    mem = Memory(storage=store, embedder=_embed, llm=LLM(model="gpt-4o-mini", base_url=server, api_key="sk-mockllm"))
    crew = make_crew(server, memory=mem)
    h = crewcore.start_many(crew, [{"topic": "slowtopic"}, {"topic": "fasttopic"}], concurrency=2, progress=False)
    try:
        end = time.monotonic() + 60
        while h.summary().done < 1 and time.monotonic() < end:
            time.sleep(0.05)
        finished_first = h.summary().done
    finally:
        release.set()
    res = h.result(120)
    assert finished_first == 1, "the fast run waited for the other run's stuck save"
    assert_in_order(res, [{"topic": "slowtopic"}, {"topic": "fasttopic"}])
    mem.drain_writes()
    texts = " ".join(r.content for r in store.list_records(limit=100))
    assert "slowtopic" in texts and "fasttopic" in texts
    store.close()


CTRL_C_CHILD = r"""
import json, os, signal, sys, threading, time, logging
logging.disable(logging.WARNING)
# A user at a terminal has SIGINT at its default; a test run started with
# `cmd &` from a non-interactive shell inherits it ignored (POSIX), and
# Python then keeps it ignored: restore what a terminal gives.
signal.signal(signal.SIGINT, signal.default_int_handler)
from crewai import LLM, Agent, Crew, Task
import crewcore
url = sys.argv[1]
llm = LLM(model="gpt-4o-mini", base_url=url, api_key="sk-mockllm")
a = Agent(role="R", goal="Research {topic}", backstory="b", llm=llm, verbose=False)
crew = Crew(agents=[a], tasks=[Task(description="One line about {topic}.", expected_output="x", agent=a)], verbose=False)
inputs = [{"topic": f"sig-{i}"} for i in range(4000)]  # never all run: SIGINT comes first
t0 = time.monotonic()
try:
    crewcore.kickoff_many(crew, inputs, concurrency=8, progress=True)
    print(json.dumps({"interrupted": False}), flush=True)
except KeyboardInterrupt:
    left = [t.name for t in threading.enumerate() if t.name.startswith("crewcore-sched")]
    from crewai.hooks import InterceptionPoint, get_hooks
    from crewcore.runs import context
    hooked = context._pre_call_hook in get_hooks(InterceptionPoint.PRE_MODEL_CALL)
    print(json.dumps({"interrupted": True, "threads": left, "hooked": hooked}), flush=True)
"""


def test_ctrl_c_cancels_cleanly_and_progress_shows_on_a_tty(server: str, tmp_path: Path) -> None:
    """A real SIGINT to a process running kickoff_many with stderr on a
    terminal: the progress line is drawn, the batch is cancelled, every
    scheduler thread is gone and the hooks are unregistered before
    KeyboardInterrupt reaches the caller."""
    import pty
    import select
    import signal

    from conftest import child_env

    script = tmp_path / "child.py"
    script.write_text(CTRL_C_CHILD)
    master, slave = pty.openpty()
    before = stats(server)["chat"]
    proc = subprocess.Popen(
        [os.environ.get("PYTHON", __import__("sys").executable), str(script), server],
        stdout=subprocess.PIPE, stderr=slave, text=True, env=child_env(), cwd=str(REPO),
    )
    os.close(slave)
    tty = b""
    try:
        # Wait until runs are under way (the server has answered some).
        deadline = time.monotonic() + 120
        while stats(server)["chat"] - before < 16 and time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                tty += os.read(master, 65536)
        while b"runs/s" not in tty and time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                tty += os.read(master, 65536)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        try:
            while True:
                r, _, _ = select.select([master], [], [], 0.1)
                if not r:
                    break
                data = os.read(master, 65536)
                if not data:
                    break
                tty += data
        except OSError:
            pass
        os.close(master)
    assert b"crewcore [" in tty and b"runs/s" in tty and b"ETA" in tty, tty[-500:]
    res = json.loads(out.strip().splitlines()[-1])
    assert res == {"interrupted": True, "threads": [], "hooked": False}
    assert stats(server)["chat"] - before < 4000  # the rest never started
