"""Messages a user meets (issue 12, "found by trying bad input").

Each test here failed before its fix: a password echoed back, a message
naming the wrong cause, a store that could not be opened, a CLI that mangled
its argument. Real parts only: the PostgreSQL test server, real files, the
real ``crewcore`` command, CrewAI's own classes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
import subprocess
import sys
from typing import Any, Callable

import pytest

from conftest import REPO, child_env  # type: ignore[import-not-found]
import crewcore
from crewcore import errors as E
from crewcore._redact import redact_dsn, scrub

CLI = REPO / "python" / "crewcore" / "_lib" / "crewcore"
SECRET = "hunter2"


def _pg() -> str:
    from pg_support import server_dsn  # type: ignore[import-not-found]

    return str(server_dsn())


def _with_password(dsn: str, user: str | None = None, password: str = SECRET) -> str:
    """The test server's DSN with a user and a password (the server trusts
    127.0.0.1, so any password is accepted: the store opens)."""
    scheme, rest = dsn.split("://", 1)
    hostpart = rest.split("@", 1)[-1]
    name = user or (rest.split("@", 1)[0].split(":")[0] if "@" in rest else "crewcore")
    return f"{scheme}://{name}:{password}@{hostpart}"


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=timeout,
                          env=child_env(), cwd=str(REPO))


# ---------------------------------------------------------------- 1. passwords

#: DSNs that do not parse (or name no server): each used to come back verbatim
#: in crewcore's own error prefix.
BAD_DSNS = [
    "postgresql://bob:hunter2@127.0.0.1:notaport/db",
    "postgresql://bob:hunter2@[::1/db",
    "postgresql://bob:hun%ter2@127.0.0.1:15432/db",
    "postgres://bob:hunter2@127.0.0.1:15432/db?sslmode=bogus",
]


@pytest.mark.parametrize("value", BAD_DSNS + [
    "postgresql://bob@/db?host=/tmp&password=hunter2",
    "host=127.0.0.1 user=bob password=hunter2 dbname=x",
    "host=127.0.0.1 password='hunter2 x'",
])
def test_redact_dsn_hides_every_password(value: str) -> None:
    shown = redact_dsn(value)
    assert "ter2" not in shown, shown
    assert "xxxxx" in shown
    pw = "hun%ter2" if "hun%ter2" in value else ("hunter2 x" if "'hunter2 x'" in value else "hunter2")
    assert "ter2" not in scrub(f"failed: {value} (password {pw})", value)


def _leaks(text: str) -> bool:
    return "hunter2" in text or "hun%ter2" in text


def _raise_text(fn: Callable[[], Any]) -> str:
    try:
        obj = fn()
    except Exception as e:  # noqa: BLE001 - any failure is what we read
        assert isinstance(e, E.CrewcoreError), f"untyped {type(e).__name__}: {e}"
        return f"{type(e).__name__}: {e} {e!r}"
    raise AssertionError(f"accepted a bad DSN: {obj!r}")


@pytest.mark.parametrize("dsn", BAD_DSNS)
def test_bad_dsn_never_echoes_the_password(dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    from crewcore.knowledge import KnowledgeStore
    from crewcore.runs import Queue

    caplog.set_level(logging.DEBUG)
    texts = [
        _raise_text(lambda: crewcore.MemoryStorage(dsn)),
        _raise_text(lambda: crewcore.MemoryStorage(dsn=dsn)),
        _raise_text(lambda: KnowledgeStore(dsn)),
        _raise_text(lambda: Queue(dsn)),
    ]
    for t in texts:
        assert not _leaks(t), t
    assert not _leaks(caplog.text), caplog.text


def test_unknown_role_never_echoes_the_password(tmp_path: Path) -> None:
    """A DSN that parses and reaches the server, whose login is refused."""
    from crewcore.knowledge import KnowledgeStore
    from crewcore.runs import Queue

    dsn = _with_password(_pg(), user="nobody_here")
    for fn in (lambda: crewcore.MemoryStorage(dsn), lambda: KnowledgeStore(dsn), lambda: Queue(dsn)):
        t = _raise_text(fn)
        assert not _leaks(t), t
        assert "nobody_here" in t  # the message still says who was refused


def test_open_store_repr_and_stats_hide_the_password() -> None:
    from crewcore.knowledge import KnowledgeStore

    dsn = _with_password(_pg())
    s = crewcore.MemoryStorage(dsn + "#py_messages_redact")
    try:
        shown = " ".join([repr(s), str(s), str(s.path), str(s.get_scope_info("/"))])
        assert not _leaks(shown), shown
        assert "xxxxx" in shown
    finally:
        s.close()
    k = KnowledgeStore(dsn + "#py_messages_redact_kn")
    shown = " ".join([repr(k), str(k.path), str(k.stats())])
    assert not _leaks(shown), shown


def test_cli_never_echoes_the_password() -> None:
    good = _with_password(_pg())
    runs = [
        cli("memory", "stats", "--path", BAD_DSNS[0]),
        cli("memory", "stats", "--path", good + "#py_messages_cli"),
        cli("memory", "migrate", "--from", BAD_DSNS[1], "--to", "/nonexistent/x.db"),
        cli("embeddings", "stats", "--dsn", BAD_DSNS[0]),
        cli("runs", "list", "--queue", BAD_DSNS[1]),
        cli("runs", "list", "--queue", _with_password(_pg(), user="nobody_here")),
        cli("knowledge", "stats", "--path", BAD_DSNS[0]),
    ]
    for r in runs:
        out = r.stdout + r.stderr
        assert not _leaks(out), out


# ---------------------------------------------------------------- 4. real causes


def test_path_and_dsn_together_are_refused(tmp_path: Path) -> None:
    dsn = _with_password(_pg())
    with pytest.raises(E.InvalidArgumentError, match="path or dsn, not both") as ei:
        crewcore.MemoryStorage(path=tmp_path, dsn=dsn)
    assert str(tmp_path) in str(ei.value) and not _leaks(str(ei.value))
    assert not list(tmp_path.iterdir())  # nothing created at the ignored path


@pytest.mark.parametrize("engine", ["native", "python"])
def test_a_store_under_a_file_says_not_a_directory(tmp_path: Path, engine: str) -> None:
    f = tmp_path / "file"
    f.write_text("keep me")
    for target in (f / "memory.db", f / "sub"):
        with pytest.raises(E.StoreAccessError) as ei:
            crewcore.MemoryStorage(target, engine=engine)
        msg = str(ei.value)
        assert f"not a directory: {f} is a file" in msg, msg
        assert "not writable" not in msg, msg
    assert f.read_text() == "keep me"


def test_a_refused_login_says_so(tmp_path: Path) -> None:
    dsn = _with_password(_pg(), user="nobody_here")
    with pytest.raises(E.StoreAccessError) as ei:
        crewcore.MemoryStorage(dsn)
    msg = str(ei.value)
    assert "refused the login" in msg and "nobody_here" in msg, msg
    assert "not writable" not in msg, msg
    from crewai.memory.types import MemoryRecord

    src = crewcore.MemoryStorage(tmp_path / "src.db", engine="python")  # the CLI's Go opens it next
    src.save([MemoryRecord(id="r1", content="c", embedding=[1.0, 0.0])])
    src.close()
    r = cli("memory", "migrate", "--from", str(tmp_path / "src.db"), "--to", dsn)
    assert r.returncode == 1 and "refused the login" in r.stderr, r.stderr
    assert "not writable" not in r.stderr and not _leaks(r.stderr), r.stderr


# ---------------------------------------------------------------- tools and runs


def _slow(seconds: float) -> str:
    """Sleep a while."""
    import time

    time.sleep(seconds)
    return "done"


def test_a_timed_out_tool_says_timed_out() -> None:
    g = crewcore.guard(_slow, timeout=0.2)
    out = g.run(seconds=2.0)
    text = str(getattr(out, "message", out))
    assert "timed out after 0.2 s" in text, text
    assert "refused" not in text, text


def test_a_refused_tool_says_refused() -> None:
    def _echo(x: str) -> str:
        """Echo."""
        return x

    g = crewcore.guard(_echo, timeout=5, max_arg_bytes=64)
    assert g.run(x="short") == "short"
    text = str(getattr(g.run(x="y" * 200), "message", ""))
    assert "refused tool '_echo' (max_arg_bytes)" in text, text
    assert "timed out" not in text


@pytest.mark.parametrize("field", ["max_calls_per_task", "max_calls_per_run", "max_depth",
                                   "max_arg_bytes", "max_result_chars"])
def test_a_zero_limit_is_refused(field: str) -> None:
    with pytest.raises(E.ToolPolicyError, match=f"{field}=0 is refused.*None for no limit"):
        crewcore.ToolPolicy(**{field: 0})
    with pytest.raises(E.ToolPolicyError, match=f"{field}=0"):
        crewcore.guard(_slow, **{field: 0})
    crewcore.ToolPolicy(**{field: None})  # None stays the way to say "no limit"


def test_tool_stats_with_only_guard_tools() -> None:
    from crewcore.tools import dispatch

    if dispatch._installed is not None:
        pytest.fail("a tool policy is installed by an earlier test: this test needs none")
    before = crewcore.tool_stats()  # used to raise ToolPolicyError("no tool policy is installed")
    assert before["source"] == "guards"

    def _cat(a: str, b: str) -> str:
        """Concatenate."""
        return a + b

    g1 = crewcore.guard(_cat, timeout=5)
    g2 = crewcore.guard(_cat, timeout=5, max_arg_bytes=64)
    assert g1.run(a="1", b="2") == "12"
    assert g2.run(a="2", b="2") == "22"
    g2.run(a="3" * 200, b="2")  # refused
    st = crewcore.tool_stats()
    assert st["source"] == "guards"
    assert st["guarded_tools"] >= 2
    assert st["calls"] - before.get("calls", 0) == 3
    assert st["refused"] - before.get("refused", 0) == 1
    assert sum(st["refused_by"].values()) - sum(before.get("refused_by", {}).values()) == 1
    assert crewcore.tool_stats(g2)["source"] == "tool"


def test_kickoff_many_refuses_an_agent_at_once() -> None:
    from crewai import Agent, Crew, Task

    agent = Agent(role="r", goal="g", backstory="b", llm="gpt-4o-mini")
    with pytest.raises(E.InvalidArgumentError, match="crew must be a crewai.Crew.*got Agent.*Crew\\(agents=\\[agent\\]"):
        crewcore.kickoff_many(agent, [{"x": 1}])
    # A real Crew passes the check (the run itself is not made here: no inputs).
    crew = Crew(agents=[agent], tasks=[Task(description="d", expected_output="o", agent=agent)])
    assert len(crewcore.kickoff_many(crew, [])) == 0


# ---------------------------------------------------------------- 9. kickoff_many's output

_HANG_SCRIPT = [{"match": "HANG_C", "in": "last_user", "tool_calls": [{"name": "hang_in_c", "arguments": {}}]}]

_ABANDON = r"""
import atexit, os, sys, threading, time
import crewcore
from crewai import LLM, Agent, Crew, Task
from crewai.tools import tool

release = threading.Event()

@tool("hang_in_c")
def hang_in_c() -> str:
    '''Blocks in one C call (a lock wait) until released.'''
    release.wait()
    return "released"

llm = LLM(model="gpt-4o-mini", base_url=sys.argv[1], api_key="sk-mockllm")
agent = Agent(role="Researcher", goal="Research {topic}", backstory="You research.", llm=llm,
              tools=[hang_in_c], verbose=False, max_iter=3)
crew = Crew(agents=[agent], tasks=[Task(description="Write one line about {topic}.", expected_output="One line.",
                                        agent=agent)], verbose=False)
res = crewcore.kickoff_many(crew, [{"topic": "HANG_C now"}, {"topic": "a"}, {"topic": "b"}],
                            concurrency=1, timeout=5, stop_grace=0.2)
print("RESULT", res.summary.done, res.summary.abandoned, flush=True)
if sys.argv[2] == "now":
    # The abandoned run ends after its batch closed (it used to raise
    # SchedulerClosedError in its worker thread).
    release.set()
    deadline = time.monotonic() + 20
    while any(t.name == "crewcore-sched-worker" and t.is_alive() for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the abandoned thread did not end"
        time.sleep(0.05)
    print("ENDED", flush=True)
else:
    # Released while the interpreter exits (it waits for CrewAI's tool
    # thread, which is not a daemon): the run ends during shutdown.
    t = threading.Timer(0.3, release.set)
    t.daemon = True
    t.start()
"""


@pytest.fixture(scope="module")
def hang_llm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import json

    d = tmp_path_factory.mktemp("mockllm_hang")
    (d / "script.json").write_text(json.dumps(_HANG_SCRIPT))
    proc = subprocess.Popen([str(CLI), "mockllm", "--addr", "127.0.0.1:0", "--latency", "5ms", "--script",
                             str(d / "script.json")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("mockllm listening on "), line
    try:
        yield line.split("mockllm listening on ", 1)[1].strip(), d
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.mark.parametrize("when", ["now", "at_exit"])
def test_kickoff_many_off_a_tty_summary_and_no_leaked_traceback(hang_llm: Any, when: str) -> None:
    url, d = hang_llm
    env = child_env(CREWAI_STORAGE_DIR=str(d / f"crewai_{when}"), OPENAI_API_KEY="sk-mockllm",
                    CREWAI_DISABLE_TRACKING="true", CREWAI_DISABLE_VERSION_CHECK="true")
    r = subprocess.run([sys.executable, "-c", _ABANDON, url, when], capture_output=True, text=True,
                       timeout=120, env=env, cwd=str(REPO))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "RESULT 2 1" in r.stdout, r.stdout + r.stderr
    if when == "now":
        assert "ENDED" in r.stdout
    # Off a terminal: the one summary line, no progress bar.
    assert "crewcore: 2/3 done, 0 failed, 1 timed out, 0 cancelled" in r.stderr, r.stderr
    assert "[####" not in r.stderr
    for bad in ("Traceback", "SchedulerClosedError", "Exception in thread", "Exception ignored"):
        assert bad not in r.stderr, r.stderr


_EXIT_WAIT = r"""
import threading, time
from crewcore.runs import quiet

came_back = threading.Event()

def run():
    came_back.wait()          # "stuck in C" until the main thread ends
    time.sleep(0.5)           # the run's last steps, in Python
    print("RUN ENDED", flush=True)

t = threading.Thread(target=run, name="crewcore-sched-worker", daemon=True)
t.start()
quiet.abandoned(t.ident)
threading.Timer(0.1, came_back.set).start()
print("MAIN DONE", flush=True)
"""


@pytest.mark.parametrize("wait,ended", [("", True), ("0", False)])
def test_exit_waits_for_an_abandoned_run_that_came_back(wait: str, ended: bool) -> None:
    # An abandoned daemon thread still running Python when the interpreter
    # finalizes is killed by pthread_exit, which aborts the process (SIGABRT)
    # when it is inside pydantic-core's Rust frames: crewcore waits for it at
    # exit (CREWCORE_EXIT_WAIT, default 5 s; 0 turns the wait off).
    env = child_env(CREWCORE_EXIT_WAIT=wait)
    r = subprocess.run([sys.executable, "-c", _EXIT_WAIT], capture_output=True, text=True, timeout=60, env=env,
                       cwd=str(REPO))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "MAIN DONE" in r.stdout
    assert ("RUN ENDED" in r.stdout) is ended, r.stdout + r.stderr


# ---------------------------------------------------------------- 11. documents


def test_readme_links_are_relative_and_resolve() -> None:
    import re

    text = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    assert targets
    for t in targets:
        if t.startswith(("http://", "https://")):
            assert "github.com/crewcore" not in t, f"a link into this repository must be relative: {t}"
            continue
        assert not t.startswith("/"), t
        assert (REPO / t.split("#", 1)[0]).exists(), f"README links to {t}, which does not exist"
    # Every document the README names is a link.
    for m in re.finditer(r"(?<![\[(/])\b(docs/[a-z_]+\.md)(?![\])])", text):
        raise AssertionError(f"README names {m.group(1)} without linking it")


def test_contributing_is_a_guide_and_keeps_the_parallel_rules() -> None:
    text = (REPO / "CONTRIBUTING.md").read_text()
    for heading in ("## Build", "## Test", "## Benchmark", "## Where things are", "## Adding a bridge op",
                    "## Adding a capability", "## Working with others in the same tree"):
        assert heading in text, heading
    rules = text.split("## Working with others in the same tree", 1)[1]
    for rule in ("never `git add -A`", "small additive str_replace edits", "stage only your own paths",
                 "Commit early and often"):
        assert rule in rules, rule


# ---------------------------------------------------------------- 5. isolation of CrewAI's tool kinds

_ISO_MODULE = '''
from crewai.tools import BaseTool, tool


@tool("adder")
def adder(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


class Mul(BaseTool):
    name: str = "mul"
    description: str = "Multiply two numbers."

    def _run(self, a: int, b: int) -> int:
        import os
        return a * b * (1 if os.getpid() else 0)


class NeedsArgs(BaseTool):
    name: str = "needs"
    description: str = "Needs a factor."
    factor: int

    def _run(self, a: int) -> int:
        return a * self.factor
'''

_ISO_MAIN = r"""
import sys
sys.path.insert(0, sys.argv[1])
import crewcore, isotools
from crewcore import errors as E
print("ADD", crewcore.guard(isotools.adder, timeout=20, isolate=True).run(a=2, b=3))
print("MUL", crewcore.guard(isotools.Mul(), timeout=20, isolate=True).run(a=2, b=3))

def local(a: int) -> int:
    '''Local.'''
    return a

for label, t in (("MAIN", local), ("ARGS", isotools.NeedsArgs(factor=2))):
    try:
        crewcore.guard(t, timeout=20, isolate=True)
        print(label, "ACCEPTED")
    except E.ToolPolicyError as e:
        print(label, "REFUSED", e)
"""


def test_isolate_works_for_crewai_tool_kinds_and_refuses_at_guard_time(tmp_path: Path) -> None:
    (tmp_path / "isotools.py").write_text(_ISO_MODULE)
    r = subprocess.run([sys.executable, "-c", _ISO_MAIN, str(tmp_path)], capture_output=True, text=True,
                       timeout=180, env=child_env(PYTHONPATH=str(tmp_path)), cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "ADD 5" in out and "MUL 6" in out, out + r.stderr  # were "Can't pickle ..." at call time
    assert "MAIN REFUSED" in out and "__main__" in out, out
    assert "ARGS REFUSED" in out and "without arguments" in out, out
