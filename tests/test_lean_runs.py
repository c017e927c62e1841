"""install(lean_runs=True): per-run work CrewAI repeats with the same result,
removed (crewcore/runs/lean.py), checked with CrewAI's real flows and agent
executors, the OpenAI SDK's real structured-output classes, and whole crews
against `crewcore mockllm`."""

from __future__ import annotations

import contextvars
import subprocess
import threading
from typing import Any, Iterator

import pytest

from conftest import REPO

import crewcore
from crewcore._install import installed
from crewcore.runs import lean


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    exe = next((str(p) for p in (REPO / "python/crewcore/_lib/crewcore", REPO / "bin/crewcore") if p.exists()), None)
    assert exe, "the crewcore command is not built (make build)"
    proc = subprocess.Popen([exe, "mockllm", "--addr", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().split("mockllm listening on ", 1)[1].strip()
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, server: str, tmp_path: Any) -> Iterator[str]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-mockllm")
    monkeypatch.setenv("OPENAI_BASE_URL", server)
    monkeypatch.setenv("CREWAI_STORAGE_DIR", str(tmp_path))
    monkeypatch.setenv("CREWCORE_EMBED_CACHE", str(tmp_path / "embeddings.db"))
    yield server
    crewcore.uninstall()


def _executor() -> Any:
    from crewai import LLM, Agent, Task

    agent = Agent(role="Writer", goal="Write", backstory="You write.", llm=LLM(model="gpt-4o-mini"), verbose=False)
    task = Task(description="Write one line.", expected_output="One line.", agent=agent)
    agent.create_agent_executor(task=task)
    return agent.agent_executor


def _fields(state: Any) -> dict[str, Any]:
    d = state.model_dump()
    d.pop("id")
    return d


def test_agent_executor_state_class_built_once_and_equal_to_crewai(env: str) -> None:
    from crewai.agents.agent_executor import AgentExecutor, AgentExecutorState
    from crewai.flow.runtime import FlowState

    crewcore.install(lean_runs=False)
    assert not lean.installed()
    ex = _executor()
    theirs = [ex._create_initial_state() for _ in range(2)]
    assert type(theirs[0]) is not type(theirs[1])  # CrewAI: a new class every time

    crewcore.install()
    assert lean.installed() and installed()["lean_runs"]
    assert getattr(AgentExecutor.__dict__["_create_default_extension_state"], "crewcore", False)
    ex2 = _executor()
    ours = [ex._create_initial_state(), ex2._create_initial_state(), ex2._create_initial_state()]
    assert len({type(s) for s in ours}) == 1  # one class for every executor
    cls = type(ours[0])
    assert issubclass(cls, FlowState) and issubclass(cls, AgentExecutorState)
    assert list(cls.model_fields) == list(type(theirs[0]).model_fields)
    assert cls.model_json_schema() == type(theirs[0]).model_json_schema()
    assert all(_fields(s) == _fields(theirs[0]) for s in ours)
    assert len({s.id for s in ours}) == 3 and all(s.id for s in ours)

    crewcore.uninstall()
    assert not lean.installed() and "_create_default_extension_state" not in AgentExecutor.__dict__
    again = [ex._create_initial_state() for _ in range(2)]
    assert type(again[0]) is not type(again[1]) and type(again[0]) is not cls


def test_users_flows_are_left_to_crewai(env: str) -> None:
    from crewai.flow.flow import Flow, start
    from pydantic import BaseModel

    class Counter(BaseModel):
        n: int = 3

    class MyFlow(Flow[Counter]):
        @start()
        def go(self) -> int:
            return self.state.n

    crewcore.install()
    a, b = MyFlow(), MyFlow()
    assert type(a.state) is not type(b.state)  # CrewAI's own path: a class per flow, as without crewcore
    assert a.state.n == 3 and a.state.id != b.state.id
    assert a.kickoff() == 3


def _parsed_class() -> type:
    from openai.lib._parsing._completions import ParsedChatCompletion, ResponseFormatT

    return ParsedChatCompletion[ResponseFormatT]  # type: ignore[valid-type]


def _in_thread(fn: Any) -> Any:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def test_copied_contexts_share_parametrized_generics() -> None:
    # A fresh thread whose context has no cache: every copy of its context
    # (what asyncio.run and to_thread run CrewAI's steps in) builds its own class.
    def without() -> tuple[type, type]:
        return (contextvars.copy_context().run(_parsed_class), contextvars.copy_context().run(_parsed_class))

    a, b = _in_thread(without)
    assert a is not b

    def with_shared() -> tuple[type, type]:
        lean.share_generic_types()
        return (contextvars.copy_context().run(_parsed_class), contextvars.copy_context().run(_parsed_class))

    c, d = _in_thread(with_shared)
    e, f = _in_thread(with_shared)  # another thread: the process's one cache
    assert c is d is e is f
    assert c.model_fields.keys() == a.model_fields.keys()


def _crew() -> Any:
    from crewai import LLM, Agent, Crew, Task

    agents = [Agent(role=r, goal=f"{r} on {{topic}}", backstory=f"You are the {r}.", llm=LLM(model="gpt-4o-mini"),
                    verbose=False) for r in ("Researcher", "Writer")]
    tasks = [Task(description="Find one fact about {topic}.", expected_output="One fact.", agent=agents[0]),
             Task(description="Summarize {topic} in one line.", expected_output="One line.", agent=agents[1])]
    return Crew(agents=agents, tasks=tasks, memory=True, verbose=False)


def test_kickoff_many_outputs_equal_with_and_without(env: str, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Any) -> None:
    # One run at a time, each side with its own store: the outputs echo the
    # memories recalled, which must be the same on both sides.
    inputs = [{"topic": f"topic-{i}"} for i in range(3)]
    outs = {}
    for lean_runs in (False, True):
        monkeypatch.setenv("CREWAI_STORAGE_DIR", str(tmp_path / f"lean-{lean_runs}"))
        crewcore.install(lean_runs=lean_runs)
        res = crewcore.kickoff_many(_crew(), inputs, concurrency=1, progress=False)
        assert res.summary.done == 3, res.summary
        outs[lean_runs] = [r.raw for r in res]
        crewcore.uninstall()
    assert outs[True] == outs[False]
    assert all(f"topic-{i}" in o for i, o in enumerate(outs[True]))
