"""crewcore's tool executor (issue 4): crewcore.install(tools=ToolPolicy(...))
and crewcore.guard(tool, ...), against CrewAI's real classes, hooks and HTTP
client talking to `crewcore mockllm` on 127.0.0.1, real threads, real
subprocesses and real sockets/files.
"""

from __future__ import annotations

import contextvars
import http.server
import json
import logging
import os
from pathlib import Path
import subprocess
import threading
import time
from typing import Any, Iterator

import pytest

import crewcore
from crewcore import ToolPolicy, guard, tool_stats
from crewcore.errors import ToolFileNotFoundError, ToolPolicyError, ToolRefusedError, ToolTimeoutError
from conftest import REPO
import tools_helpers

os.environ.setdefault("CREWAI_DISABLE_TRACKING", "true")
os.environ.setdefault("CREWAI_DISABLE_VERSION_CHECK", "true")

# The mock model: a task naming a marker starts calling a tool, and every
# tool result (or crewcore refusal) naming that tool makes it call again.
SCRIPT = [
    {"match": "LOOPTASK", "in": "last_user", "times": 1,
     "tool_calls": [{"name": "lookup_loop", "arguments": {"query": "same", "n": 1}}]},
    {"match": "lookup_loop", "in": "last", "times": 6,
     "tool_calls": [{"name": "lookup_loop", "arguments": {"n": 1.0, "query": "same"}}]},
    {"match": "BUDGETTASK", "in": "last_user", "times": 1,
     "tool_calls": [{"name": "lookup_budget", "arguments": {"query": "q0"}}]},
    {"match": "lookup_budget", "in": "last", "times": 5,
     "tool_calls": [{"name": "lookup_budget", "arguments": {"query": "next"}}]},
    {"match": "HANGTASK", "in": "last_user", "times": 1,
     "tool_calls": [{"name": "hang_forever", "arguments": {"why": "test"}}]},
    {"match": "CACHETASK", "in": "last_user", "times": 1,
     "tool_calls": [{"name": "lookup_cached", "arguments": {"query": "c"}}]},
    {"match": "lookup_cached", "in": "last", "times": 3,
     "tool_calls": [{"name": "lookup_cached", "arguments": {"query": "c"}}]},
    # The ReAct (text) path: a model without native function calling (CrewAI
    # treats any model name containing "o1" so) writes Action / Action Input;
    # CrewAI puts the observation in the assistant message, then asks the model
    # to analyze it (a user message), so the chain matches the first observation.
    {"match": "REACTTASK", "in": "last_user", "times": 1,
     "reply": "Thought: I should look it up.\nAction: lookup_react\nAction Input: {\"query\": \"q0\"}"},
    {"match": "Observation: lookup_react: result for q0", "times": 1,
     "reply": "Thought: I need more.\nAction: lookup_react\nAction Input: {\"query\": \"q1\"}"},
    {"match": "Observation: lookup_react: result for q0", "times": 1,
     "reply": "Thought: I need more.\nAction: lookup_react\nAction Input: {\"query\": \"q2\"}"},
    {"match": "Observation: lookup_react: result for q0", "times": 1,
     "reply": "Thought: I need more.\nAction: lookup_react\nAction Input: {\"query\": \"q3\"}"},
    {"match": "Observation: lookup_react: result for q0", "times": 1,
     "reply": "Thought: I need more.\nAction: lookup_react\nAction Input: {\"query\": \"q4\"}"},
    {"match": "Observation: lookup_react: result for q0", "times": 1,
     "reply": "Thought: I need more.\nAction: lookup_react\nAction Input: {\"query\": \"q5\"}"},
    {"match": "Observation: lookup_react: result for q0", "times": 1,
     "reply": "Thought: I now know the final answer\nFinal Answer: done"},
    {"match": "ASYNCTASK", "in": "last_user", "times": 1,
     "tool_calls": [{"name": "lookup_async", "arguments": {"query": "a"}},
                    {"name": "hang_async", "arguments": {"query": "h"}}]},
    {"match": "TASKWITHCREWCACHE", "in": "last_user", "times": 1,
     "tool_calls": [{"name": "lookup_crewcached", "arguments": {"query": "c"}}]},
    {"match": "lookup_crewcached", "in": "last", "times": 3,
     "tool_calls": [{"name": "lookup_crewcached", "arguments": {"query": "c"}}]},
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
        [_binary(), "mockllm", "--addr", "127.0.0.1:0", "--script", str(script)],
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


@pytest.fixture(params=["native", "python"])
def tool_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a guard() test against the Go engine and against its Python twin."""
    if request.param == "python":
        monkeypatch.setenv("CREWCORE_FORCE_PYTHON", "1")
    else:
        monkeypatch.delenv("CREWCORE_FORCE_PYTHON", raising=False)
    return request.param


@pytest.fixture
def no_policy() -> Iterator[None]:
    yield
    crewcore.tools.install_tools(None)


def run_crew(url: str, marker: str, tool: Any, *, cache: bool = True, model: str = "gpt-4o-mini") -> Any:
    from crewai import LLM, Agent, Crew, Task

    llm = LLM(model=model, base_url=url, api_key="sk-mockllm")
    agent = Agent(role="Researcher", goal="Research", backstory="You research.", llm=llm,
                  tools=[tool], verbose=False, max_iter=12)
    task = Task(description=f"{marker}: look it up and answer in one line.", expected_output="One line.",
                agent=agent)
    crew = Crew(agents=[agent], tasks=[task], verbose=False, cache=cache)
    return crew.kickoff()


def failures(out: Any) -> list[Any]:
    fs = []
    for t in out.tasks_output:
        fs.extend(getattr(t, "tool_failures", None) or [])
    return fs


def counting_tool(name: str, calls: list[dict[str, Any]]) -> Any:
    from crewai.tools import BaseTool
    from pydantic import BaseModel

    class Args(BaseModel):
        query: str
        n: int = 0

    class Lookup(BaseTool):
        def _run(self, query: str, n: int = 0) -> str:
            calls.append({"query": query, "n": n})
            return f"{name}: result for {query}"

    return Lookup(name=name, description=f"Look up a fact ({name}).", args_schema=Args)


# --------------------------------------------------------------------------
# policies


@pytest.mark.parametrize(
    "kw, needle",
    [
        ({"timeout": -1}, "timeout"),
        ({"timeout": float("nan")}, "finite"),
        ({"max_calls_per_task": "ten"}, "max_calls_per_task"),
        ({"max_calls_per_task": 2.5}, "whole number"),
        ({"max_depth": True}, "max_depth"),
        ({"loop_threshold": 1}, "loop_threshold"),
        ({"loop_threshold": 5, "loop_window": 3}, "loop_window"),
        ({"max_calls_per_task": 50, "max_calls_per_run": 10}, "max_calls_per_run"),
        ({"cache_ttl": 10, "cache_max_entries": 0}, "cache"),
        ({"isolate": True, "timeout": None}, "isolate"),
        ({"max_abandoned_threads": 0}, "max_abandoned_threads"),
    ],
)
def test_nonsensical_policy_is_refused_at_install(kw: dict[str, Any], needle: str, no_policy: None) -> None:
    from crewai.hooks import get_before_tool_call_hooks

    before = len(get_before_tool_call_hooks())
    with pytest.raises(ToolPolicyError, match=needle):
        crewcore.tools.install_tools(ToolPolicy(**kw))
    assert len(get_before_tool_call_hooks()) == before  # nothing installed
    with pytest.raises(ToolPolicyError):
        guard(tools_helpers.double, **kw)
    with pytest.raises(ToolPolicyError, match="ToolPolicy"):
        crewcore.tools.install_tools({"timeout": 3})  # type: ignore[arg-type]


def test_install_wraps_crewai_dispatch_and_uninstall_restores_it(no_policy: None) -> None:
    """install(tools=...) registers no CrewAI hook (each costs every tool call a
    HookDispatchedEvent): it replaces CrewAI's dispatch methods, and only while
    installed; user code calling a tool outside any CrewAI execution is not governed."""
    from crewai.agents.cache.cache_handler import CacheHandler
    from crewai.hooks import get_after_tool_call_hooks, get_before_tool_call_hooks
    from crewai.tools.base_tool import BaseTool, Tool
    from crewai.tools.structured_tool import CrewStructuredTool

    targets = [(BaseTool, "run"), (Tool, "run"), (BaseTool, "arun"), (Tool, "arun"),
               (CrewStructuredTool, "invoke"), (CrewStructuredTool, "ainvoke"), (CacheHandler, "read")]
    before = {t: t[0].__dict__[t[1]] for t in targets}
    n, n_after = len(get_before_tool_call_hooks()), len(get_after_tool_call_hooks())
    crewcore.tools.install_tools(ToolPolicy())
    crewcore.tools.install_tools(ToolPolicy(timeout=5))  # replaces, does not stack
    assert (len(get_before_tool_call_hooks()), len(get_after_tool_call_hooks())) == (n, n_after)
    for t in targets:
        w = t[0].__dict__[t[1]]
        assert w is not before[t] and w.__wrapped__ is before[t], t  # wrapped once
    assert crewcore.tools.installed_policy() == ToolPolicy(timeout=5)

    calls: list[dict[str, Any]] = []
    tool = counting_tool("direct", calls)
    crewcore.tools.install_tools(ToolPolicy(max_calls_per_task=1, max_calls_per_run=1, loop_threshold=None))

    def outside_then_in_a_task() -> None:
        # outside any CrewAI execution (no task, no event scope): not governed
        assert [tool.run(query="a") for _ in range(3)] == ["direct: result for a"] * 3
        from crewai.context import reset_current_task_id, set_current_task_id

        tok = set_current_task_id("task-direct")  # what Task.execute sets around an agent's work
        try:
            assert tool.run(query="b") == "direct: result for b"
            r = tool.run(query="c")
            assert getattr(r, "code", None) == "crewcore.max_calls_per_task", r
        finally:
            reset_current_task_id(tok)

    # A fresh context: an earlier test's crew may have left CrewAI's event-scope
    # stack non-empty in this thread (CrewAI pops it only on the finished event).
    contextvars.Context().run(outside_then_in_a_task)
    assert len(calls) == 4
    crewcore.tools.install_tools(None)
    for t in targets:
        assert t[0].__dict__[t[1]] is before[t], t


# --------------------------------------------------------------------------
# deadlines


def test_hanging_tool_times_out_on_time_and_the_thread_cap_holds(tool_engine: str) -> None:
    release = threading.Event()

    def hang(why: str) -> str:
        """Hang until released."""
        release.wait(600)
        return "released"

    cap = 4
    g = guard(hang, timeout=0.05, loop_threshold=None, max_calls_per_task=None,
              max_calls_per_run=None, max_abandoned_threads=cap)
    def workers() -> int:
        return sum(1 for t in threading.enumerate() if t.name == "crewcore-tool")

    threads_before = workers()
    try:
        results = []
        peak = 0
        for i in range(100):
            results.append(g.run(why=f"call {i}"))
            peak = max(peak, workers() - threads_before)
    finally:
        release.set()
    timeouts = [r for r in results if getattr(r, "code", None) == "crewcore.timeout"]
    saturated = [r for r in results if getattr(r, "code", None) == "crewcore.max_abandoned_threads"]
    assert len(timeouts) == cap, [getattr(r, "code", r) for r in results[:10]]
    assert len(saturated) == 100 - cap
    assert peak <= cap, f"{peak} new threads for a cap of {cap}"
    # The engine's own clock: the agent got the error within timeout + 100 ms. On this
    # shared 2-core machine (load averages of 20 seen) the process itself can go without
    # CPU for 100 ms, so one call of the four may miss the bound, never by a second.
    on_time = [r.details["elapsed_ms"] < r.details["deadline_ms"] + 100 for r in timeouts]
    assert sum(on_time) >= cap - 1, [r.details for r in timeouts]
    for r in timeouts:
        d = r.details
        assert d["deadline_ms"] == pytest.approx(50.0)
        assert d["deadline_ms"] <= d["elapsed_ms"] < d["deadline_ms"] + 1000, d
        assert d["abandoned_threads"] <= cap
        assert "abandoned thread" in r.message and "What to do" in r.message
    assert "abandoned threads" in saturated[0].message and saturated[0].details["abandoned_threads"] == cap
    # Released workers come back: the tool works again.
    deadline = time.monotonic() + 10
    while tool_stats(g)["abandoned_threads"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert tool_stats(g)["abandoned_threads"] == 0
    assert g.run(why="after") == "released"
    st = tool_stats(g)
    assert st["timeouts"] == cap and st["threads"] <= cap + 2


def test_isolated_hanging_tool_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    g = guard(tools_helpers.hang_and_report, timeout=3.0, isolate=True)
    r = g.run(pid_file=str(pid_file))
    assert r.code == "crewcore.timeout", r
    assert r.details["killed"] is True and "killed" in r.message
    pid = r.details["pid"]
    if pid_file.exists():  # the child got as far as the tool (not a given on a loaded machine)
        assert int(pid_file.read_text()) == pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone, and reaped (no zombie either)
    # Isolated calls that finish return their value or raise their exception
    # (rebuilt here with its type and message; the child's frames as a note).
    assert guard(tools_helpers.double, timeout=30, isolate=True).run(x=21) == 42
    with pytest.raises(LookupError) as ei:
        guard(tools_helpers.fail, timeout=30, isolate=True).run(msg="nope")
    assert type(ei.value) is LookupError and str(ei.value) == "nope"
    assert "raise LookupError" in "".join(ei.value.__notes__)


# --------------------------------------------------------------------------
# bad input


def test_bad_input_becomes_structured_failures(tool_engine: str) -> None:
    def echo(value: Any = None) -> str:
        """Echo."""
        return "ok"

    g = guard(echo, max_arg_bytes=1000)
    r = g.run(value=object())
    assert r.reason.value == "invalid_input" and "JSON-serializable" in r.message
    rec: dict[str, Any] = {}
    rec["self"] = rec
    assert "recursive" in g.run(value=rec).message
    assert "64-bit" in g.run(value=2**80).message
    # the thread's request packer is left empty by the failures above
    assert g.run(value={"a": [1, 2]}) == "ok"
    big = g.run(value="x" * 5000)
    assert big.code == "crewcore.max_arg_bytes" and big.details["count"] > 1000

    class Halt(BaseException):
        pass

    def halts() -> str:
        """Raise a BaseException subclass."""
        raise Halt("stop everything")

    with pytest.raises(Halt, match="stop everything"):  # the tool's own exception, as CrewAI would see it
        guard(halts).run()

    async def coro(x: int) -> int:
        return x + 1

    def returns_coroutine(x: int) -> Any:
        """Return a coroutine."""
        return coro(x)

    assert guard(returns_coroutine).run(x=1) == 2

    def huge() -> str:
        """A huge result."""
        return "y" * 500_000

    out = guard(huge, max_result_chars=1000).run()
    assert len(out) < 1200 and "cut at 1000 of 500000 characters" in out

    def raises() -> str:
        """Raise."""
        raise ValueError("bad value 42")

    with pytest.raises(ValueError, match="bad value 42"):
        guard(raises).run()


def test_guard_cache_and_equivalent_arguments(tool_engine: str) -> None:
    calls: list[int] = []

    def square(x: float, label: str = "") -> float:
        """Square x."""
        calls.append(1)
        return x * x

    g = guard(square, cache_ttl=60, loop_threshold=None)
    assert g.run(x=3, label="a") == 9
    assert g.run(label="a", x=3.0) == 9  # same call: key order, 3 vs 3.0
    assert g.run(x=4, label="a") == 16
    assert len(calls) == 2
    st = tool_stats(g)
    assert st["cached"] == 1 and st["cache_entries"] == 2
    assert st["engine"] == tool_engine

    # a cached result larger than the bridge's per-thread response buffer (16 KiB)
    big_calls: list[int] = []

    def big(n: int) -> str:
        """A long text."""
        big_calls.append(n)
        return "z" * n

    gb = guard(big, cache_ttl=60, loop_threshold=None)
    assert gb.run(n=40_000) == "z" * 40_000 and gb.run(n=40_000) == "z" * 40_000
    assert gb.run(n=10) == "z" * 10 and gb.run(n=10) == "z" * 10
    assert big_calls == [40_000, 10]


CALLS = [
    # (tool, args, task, run, depth)
    ("a", {"q": 1}, "t1", "r1", 1),
    ("a", {"q": 1.0}, "t1", "r1", 1),
    ("a", {"q": 1}, "t1", "r1", 1),  # loop
    ("b", {"q": 1}, "t1", "r1", 1),
    ("b", {"q": 2}, "t1", "r1", 1),  # task budget (4 counted calls)
    ("b", {"q": 3}, "t2", "r1", 1),
    ("b", {"q": 4}, "t3", "r1", 1),
    ("b", {"q": 5}, "t4", "r1", 1),  # run budget
    ("c", {"q": 5}, "t5", "r2", 6),  # depth
    ("c", {"x": "y" * 300}, "t5", "r2", 1),  # argument size
    ("d", {"q": 1}, "t6", "r3", 1),
    ("d", {"q": 2}, "t6", "r3", 1),  # rate (burst 1)
]


def test_python_twin_gives_the_go_engine_verdicts() -> None:
    from crewcore.tools.fallback import _PyEngine
    from crewcore.tools.native import _Engine

    pol = ToolPolicy(loop_threshold=2, loop_window=5, max_calls_per_task=3, max_calls_per_run=5,
                     max_depth=5, max_arg_bytes=200)
    rate = ToolPolicy(rate_limit=0.001, rate_burst=1, loop_threshold=None)
    verdicts = {}
    for cls in (_Engine, _PyEngine):
        e, r = cls(pol), cls(rate)
        verdicts[cls.__name__] = [
            (v[0], v[3] if v[0] == 2 else None)
            for v in [e.begin(*c) for c in CALLS[:-2]] + [r.begin(*c) for c in CALLS[-2:]]
        ]
    assert verdicts["_Engine"] == verdicts["_PyEngine"]
    assert [lim for _, lim in verdicts["_Engine"] if lim] == [
        "loop", "max_calls_per_task", "max_calls_per_run", "max_depth", "max_arg_bytes", "rate_limit"
    ]


def test_guard_loop_and_depth(tool_engine: str) -> None:
    def ping(n: int) -> str:
        """Ping."""
        return "pong"

    g = guard(ping, loop_threshold=2, loop_window=5)
    assert g.run(n=1) == "pong" and g.run(n=1) == "pong"
    # A repeat past the limit is not run: it gets the earlier result again
    # (so CrewAI's own stop after 5 identical results is not delayed).
    assert g.run(n=1) == "pong"
    assert tool_stats(g)["refused_by"] == {"loop": 1} and tool_stats(g)["allowed"] == 2
    assert g.run(n=2) == "pong"

    holder: dict[str, Any] = {}

    def recurse(level: int) -> Any:
        """Call itself."""
        return holder["g"].run(level=level + 1)

    holder["g"] = guard(recurse, max_depth=3, loop_threshold=None)
    r = holder["g"].run(level=1)
    assert r.code == "crewcore.max_depth" and r.details["count"] == 4


# --------------------------------------------------------------------------
# built-in Go-native tools


@pytest.fixture(scope="module")
def local_http() -> Iterator[str]:
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/hang":
                time.sleep(5)
            body = b"local page " + self.path.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()


def test_fetch_refuses_private_addresses(local_http: str) -> None:
    from crewcore.tools import FetchTool

    port = local_http.rsplit(":", 1)[1]
    for url in (local_http + "/x", f"http://localhost:{port}/x", f"http://[::ffff:127.0.0.1]:{port}/x"):
        with pytest.raises(ToolRefusedError, match="private"):  # the tool's own error, raised
            guard(FetchTool()).run(url=url)
    with pytest.raises(ToolRefusedError):
        guard(FetchTool()).run(url="file:///etc/passwd")
    ok = guard(FetchTool(allow_private=True)).run(url=local_http + "/hello")
    assert "local page /hello" in ok and "Status: 200" in ok
    # The policy's deadline reaches Go as the fetch's context deadline.
    t0 = time.monotonic()
    with pytest.raises(ToolTimeoutError, match="300ms"):
        guard(FetchTool(allow_private=True, timeout=30), timeout=0.3).run(url=local_http + "/hang")
    assert time.monotonic() - t0 < 4  # cancelled, not waited out (the server sleeps 5 s)


def test_file_tools_stay_in_their_root(tmp_path: Path) -> None:
    from crewcore.tools import FileListTool, FileReadTool

    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha")
    (tmp_path / "secret.txt").write_text("secret")
    (root / "link").symlink_to(tmp_path / "secret.txt")
    (root / "dirlink").symlink_to(tmp_path)
    read = guard(FileReadTool(root=str(root)), loop_threshold=None)
    assert read.run(path="a.txt") == "alpha"
    assert read.run(path="sub/../a.txt") == "alpha"
    for bad in ("../secret.txt", "sub/../../secret.txt", "link", "dirlink/secret.txt", str(tmp_path / "secret.txt")):
        with pytest.raises(ToolRefusedError) as ei:
            read.run(path=bad)
        assert "secret" not in str(ei.value).split(":", 1)[0], (bad, ei.value)
    with pytest.raises(ToolFileNotFoundError):
        read.run(path="missing.txt")
    ls = guard(FileListTool(root=str(root)), loop_threshold=None)
    listing = ls.run(path=".")
    assert "a.txt" in listing and "sub/" in listing
    with pytest.raises(ToolRefusedError):
        ls.run(path="..")


# --------------------------------------------------------------------------
# through a real Crew run


def test_loop_detection_in_a_crew_run(server: str, no_policy: None) -> None:
    calls: list[dict[str, Any]] = []
    from crewai.tools.tool_failure import ToolExecutionFailedError

    crewcore.install(tools=ToolPolicy(loop_threshold=2, loop_window=10, timeout=10))
    try:
        with pytest.raises(ToolExecutionFailedError, match="same arguments 5 times") as ei:
            run_crew(server, "LOOPTASK", counting_tool("lookup_loop", calls))
        st = tool_stats()
    finally:
        crewcore.uninstall()
    # The 3rd and later equivalent calls were not run; they got the earlier
    # result again, so CrewAI's own stop (5 identical calls with identical
    # results: the 2nd to 6th) ended the run where it ends without crewcore
    # (tests/test_crewai_parity.py compares the two).
    assert len(calls) == 2, calls
    assert ei.value.record.failure.reason.value == "repeated_call"
    assert st["refused_by"] == {"loop": 4}, st


def test_max_calls_per_task_in_a_crew_run(server: str, no_policy: None) -> None:
    calls: list[dict[str, Any]] = []
    crewcore.install(tools=ToolPolicy(max_calls_per_task=3, loop_threshold=None, timeout=10))
    try:
        # CrewAI's cache off: every allowed call runs (with it on, the repeated
        # "next" calls are CrewAI cache hits, counted but not run)
        out = run_crew(server, "BUDGETTASK", counting_tool("lookup_budget", calls), cache=False)
        st = tool_stats()
    finally:
        crewcore.uninstall()
    assert len(calls) == 3, calls
    assert st["refused_by"].get("max_calls_per_task", 0) >= 1, st
    codes = [f.failure.code for f in failures(out)]
    assert "crewcore.max_calls_per_task" in codes, codes
    assert out.raw


def test_hanging_tool_in_a_crew_run_times_out_and_the_run_continues(server: str, no_policy: None) -> None:
    from crewai.tools import tool

    release = threading.Event()

    @tool("hang_forever")
    def hang_forever(why: str) -> str:
        """A tool that never returns."""
        release.wait(600)
        return "late"

    crewcore.install(tools=ToolPolicy(timeout=0.3))
    try:
        t0 = time.monotonic()
        out = run_crew(server, "HANGTASK", hang_forever)
        took = time.monotonic() - t0
    finally:
        release.set()
        crewcore.uninstall()
    fs = [f for f in failures(out) if f.failure.code == "crewcore.timeout"]
    assert len(fs) == 1, failures(out)
    d = fs[0].failure.details
    # (the tight timeout + 100 ms bound is checked over several calls in the guard test)
    assert d["deadline_ms"] <= d["elapsed_ms"] < d["deadline_ms"] + 1000, d
    assert out.raw and took < 60


def test_max_calls_per_task_on_the_react_text_path(server: str, no_policy: None) -> None:
    """The policy applies on CrewAI's ReAct path too (CrewStructuredTool.invoke):
    the model writes Action / Action Input text instead of native tool calls."""
    from crewai.tools.structured_tool import CrewStructuredTool

    calls: list[dict[str, Any]] = []
    invoked: list[str] = []
    orig = CrewStructuredTool.invoke
    crewcore.install(tools=ToolPolicy(max_calls_per_task=3, loop_threshold=None, timeout=10))
    wrapped = CrewStructuredTool.invoke
    try:
        def spy(self: Any, input: Any, config: Any = None, **kw: Any) -> Any:  # noqa: A002
            invoked.append(self.name)  # proves the text path ran (native calls go to BaseTool.run)
            return wrapped(self, input, config, **kw)

        CrewStructuredTool.invoke = spy  # type: ignore[method-assign]
        out = run_crew(server, "REACTTASK", counting_tool("lookup_react", calls), cache=False, model="o1-mini")
        st = tool_stats()
    finally:
        CrewStructuredTool.invoke = wrapped  # type: ignore[method-assign]
        crewcore.uninstall()
    assert CrewStructuredTool.invoke is orig
    assert invoked and set(invoked) == {"lookup_react"}, invoked
    assert [c["query"] for c in calls] == ["q0", "q1", "q2"], calls
    assert st["refused_by"].get("max_calls_per_task", 0) >= 1, st
    fs = [f for f in failures(out) if f.failure.code == "crewcore.max_calls_per_task"]
    assert fs and "final answer" in fs[0].failure.details["hint"], failures(out)
    assert out.raw


def test_async_tools_in_a_crew_run(server: str, no_policy: None) -> None:
    """Tools whose implementation is a coroutine (an async @tool function, a
    BaseTool whose _run is async def) run on crewcore's worker thread under the
    policy (CrewAI's own run() drives the coroutine with asyncio.run there):
    results come back, a hanging one times out and the run goes on."""
    import asyncio

    from crewai.tools import BaseTool, tool
    from pydantic import BaseModel

    ran: list[str] = []
    release = threading.Event()

    @tool("lookup_async")
    async def lookup_async(query: str) -> str:
        """Look something up, asynchronously."""
        await asyncio.sleep(0.01)
        ran.append(query)
        return f"async result for {query}"

    class Q(BaseModel):
        query: str

    class HangAsync(BaseTool):
        name: str = "hang_async"
        description: str = "Never returns (async)."
        args_schema: type[BaseModel] = Q

        async def _run(self, query: str) -> str:  # type: ignore[override]
            while not release.is_set():  # (released at the end: the abandoned worker comes back)
                await asyncio.sleep(0.01)
            return "late"

    from crewai import LLM, Agent, Crew, Task

    crewcore.install(tools=ToolPolicy(timeout=0.5))
    try:
        llm = LLM(model="gpt-4o-mini", base_url=server, api_key="sk-mockllm")
        agent = Agent(role="Researcher", goal="Research", backstory="You research.", llm=llm,
                      tools=[lookup_async, HangAsync()], verbose=False, max_iter=5)
        task = Task(description="ASYNCTASK: look it up.", expected_output="One line.", agent=agent)
        t0 = time.monotonic()
        out = Crew(agents=[agent], tasks=[task], verbose=False).kickoff()
        took = time.monotonic() - t0
        st = tool_stats()
    finally:
        release.set()
        crewcore.uninstall()
    assert ran == ["a"]
    codes = [f.failure.code for f in failures(out)]
    assert codes == ["crewcore.timeout"], codes
    assert st["allowed"] == 2 and st["timeouts"] == 1, st
    assert out.raw and took < 60


def test_async_dispatch_is_governed_and_cancelled_at_the_deadline(no_policy: None) -> None:
    """await tool.arun(...) / structured.ainvoke(...) inside a CrewAI execution:
    the policy applies, and a coroutine past its deadline is cancelled (no
    thread is left running)."""
    import asyncio

    from crewai.context import reset_current_task_id, set_current_task_id
    from crewai.tools import BaseTool
    from crewai.tools.structured_tool import CrewStructuredTool
    from pydantic import BaseModel

    class Q(BaseModel):
        query: str

    events: list[str] = []

    class AsyncOnly(BaseTool):
        name: str = "async_only"
        description: str = "Has only an async implementation."
        args_schema: type[BaseModel] = Q

        def _run(self, query: str) -> str:
            raise NotImplementedError("async only")

        async def _arun(self, query: str) -> str:
            if query == "hang":
                try:
                    await asyncio.sleep(600)
                finally:
                    events.append("cancelled")
            events.append(query)
            return f"async {query}"

    async def afunc(query: str) -> str:
        return f"afunc {query}"

    def sfunc(query: str) -> str:
        return f"sfunc {query}"

    t = AsyncOnly()
    st_async = CrewStructuredTool.from_function(afunc, name="afunc", description="async function")
    st_sync = CrewStructuredTool.from_function(sfunc, name="sfunc", description="sync function")

    async def main() -> list[Any]:
        return [
            await t.arun(query="a"),
            await t.arun(query="hang"),
            await st_async.ainvoke({"query": "x"}),
            await st_sync.ainvoke({"query": "y"}),
            await t.arun(query="b"),  # the 5th call of the task: over the budget
        ]

    deadline = time.monotonic() + 10  # workers abandoned by earlier tests come back once released
    while crewcore.tools.runner._runner.abandoned and time.monotonic() < deadline:
        time.sleep(0.01)
    abandoned = crewcore.tools.runner._runner.abandoned
    crewcore.install(tools=ToolPolicy(timeout=0.3, max_calls_per_task=4, loop_threshold=None))
    tok = set_current_task_id("async-task")
    try:
        res = asyncio.run(main())
        st = tool_stats()
    finally:
        reset_current_task_id(tok)
        crewcore.uninstall()
    assert res[0] == "async a" and res[2] == "afunc x" and res[3] == "sfunc y", res
    assert res[1].code == "crewcore.timeout" and res[1].details["cancelled"] is True, res[1]
    assert "coroutine was cancelled" in res[1].message
    assert res[4].code == "crewcore.max_calls_per_task", res[4]
    assert events == ["a", "cancelled"], events
    assert st["timeouts"] == 1 and st["abandoned_threads"] == abandoned, st
    # outside any CrewAI execution, arun is CrewAI's own
    assert asyncio.run(t.arun(query="c")) == "async c"


@pytest.mark.parametrize("crew_cache", [False, True], ids=["crewcore_cache", "crewai_cache"])
def test_cached_results_in_a_crew_run(server: str, no_policy: None, crew_cache: bool) -> None:
    """Crew(cache=False): crewcore's cache (cache_ttl) answers the repeats; with
    CrewAI's own cache on (the default) CrewAI answers them, and crewcore counts
    them (they still count against the budgets and loop window)."""
    calls: list[dict[str, Any]] = []
    crewcore.install(tools=ToolPolicy(cache_ttl=60, loop_threshold=None, timeout=10))
    try:
        if crew_cache:
            out = run_crew(server, "TASKWITHCREWCACHE", counting_tool("lookup_crewcached", calls), cache=True)
        else:
            out = run_crew(server, "CACHETASK", counting_tool("lookup_cached", calls), cache=False)
        st = tool_stats()
    finally:
        crewcore.uninstall()
    assert len(calls) == 1, calls  # 4 equivalent calls, 1 execution
    assert st["cached"] == 3 and st["allowed"] == 1, st
    assert st["cache_hits"] == (0 if crew_cache else 3), st
    assert not failures(out)


def test_guarded_tool_in_a_forked_child() -> None:
    """After fork the Go runtime is unusable in the child: the policy goes on in Python."""
    def slow(seconds: float) -> str:
        """Sleep."""
        time.sleep(seconds)
        return "done"

    g = guard(slow, timeout=2.0, loop_threshold=2)
    assert g.run(seconds=0) == "done"  # the worker pool and the library are in use
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            out = [g.run(seconds=0), getattr(g.run(seconds=30), "code", "?"), getattr(g.run(seconds=0), "code", "?"),
                   tool_stats(g)["engine"]]
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = os.read(r, 4096)
    os.close(r)
    os.waitpid(pid, 0)
    assert json.loads(data) == ["done", "crewcore.timeout", "?", "python"]


def test_guard_budget_follows_crewai_current_task(tool_engine: str) -> None:
    from crewai.context import reset_current_task_id, set_current_task_id

    def ping(n: int) -> str:
        """Ping."""
        return "pong"

    g = guard(ping, max_calls_per_task=2, loop_threshold=None)
    tok = set_current_task_id("task-a")
    try:
        assert [g.run(n=i) for i in range(2)] == ["pong", "pong"]
        r = g.run(n=3)
        assert r.code == "crewcore.max_calls_per_task" and "final answer" in r.message
    finally:
        reset_current_task_id(tok)
    tok = set_current_task_id("task-b")
    try:
        assert g.run(n=4) == "pong"  # another task has its own budget
    finally:
        reset_current_task_id(tok)
