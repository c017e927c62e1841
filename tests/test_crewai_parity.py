"""crewcore behaves like CrewAI where it stands in for it: the tool executor
(issue 17).

Each scenario runs twice through CrewAI's public classes (a real ``Crew``,
``Agent`` and ``Task``, CrewAI's real HTTP client against ``crewcore
mockllm``): once without crewcore, once with ``crewcore.install(tools=
ToolPolicy(...))``, and the observable outcomes must be the same: the
exception (or output) of the run, the model calls (counted by the server),
CrewAI's tool events, its error counts and the tool failures it records.

* A tool's own exception reaches CrewAI unchanged (same type, same events,
  same retries), run inline, on a worker thread, or in an isolated process.
* A run that keeps repeating one call with one result is stopped by CrewAI
  (5 identical calls) no later than without crewcore: crewcore's loop limit
  never prolongs it (before the fix: 15 model calls against 5).

Memory's close() and reuse are in tests/test_crewai_parity_memory.py.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
import json
import logging
import os
from pathlib import Path
import subprocess
from typing import Any, Iterator
import urllib.request

import pytest

import crewcore
from crewcore import ToolPolicy
from conftest import REPO
import parity_helpers

os.environ.setdefault("CREWAI_DISABLE_TRACKING", "true")
os.environ.setdefault("CREWAI_DISABLE_VERSION_CHECK", "true")

REACT_FINAL = "Thought: I now know the final answer\nFinal Answer: the records service is down"
REACT_ACTION = 'Thought: I should look it up.\nAction: flaky_lookup\nAction Input: {"query": "invoices"}'

# Rules without "times": every run of a scenario gets the same answers.
SCRIPT = [
    # ReAct text path: once the observation names the failure, answer.
    {"match": "records service down", "reply": REACT_FINAL},
    {"match": "REACTRAISE", "in": "last_user", "reply": REACT_ACTION},
    # Native function calling: call the failing tool once, then answer.
    {"match": "RAISETASK", "in": "last_user",
     "tool_calls": [{"name": "flaky_lookup", "arguments": {"query": "invoices"}}]},
    # A stubborn model: the same call again after every result (or refusal)
    # naming the tool, until something stops the run.
    {"match": "REPEATTASK", "in": "last_user",
     "tool_calls": [{"name": "same_lookup", "arguments": {"query": "meaning"}}]},
    {"match": "same_lookup", "in": "last",
     "tool_calls": [{"name": "same_lookup", "arguments": {"query": "meaning"}}]},
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
    proc = subprocess.Popen([_binary(), "mockllm", "--addr", "127.0.0.1:0", "--script", str(script)],
                            stdout=subprocess.PIPE, text=True)
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
def tool_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where parity_helpers' tools log their runs (any process)."""
    p = tmp_path / "tool_runs.log"
    monkeypatch.setenv("CREWCORE_PARITY_LOG", str(p))
    return p


def _model_calls(url: str) -> int:
    with urllib.request.urlopen(url + "/stats", timeout=10) as r:
        return int(json.load(r)["chat"])


@dataclass
class Outcome:
    """What a user of CrewAI can observe of one run."""

    model_calls: int
    tool_runs: int
    error: str | None  # "Type: message" of the exception kickoff raised
    repeated_call: bool  # that exception is CrewAI's repeated-call stop
    raw: str | None
    events: Counter[str] = field(default_factory=Counter)
    tool_errors: list[str] = field(default_factory=list)  # ToolUsageErrorEvent.error
    tools_errors: int = 0  # Task.tools_errors
    failures: list[tuple[str, str | None, str]] = field(default_factory=list)  # TaskOutput.tool_failures


def run(url: str, marker: str, fn: Any, log: Path, *, policy: ToolPolicy | None, model: str = "gpt-4o-mini",
        cache: bool = False) -> Outcome:
    """One crew run; with crewcore installed when ``policy`` is given."""
    from crewai import LLM, Agent, Crew, Task
    from crewai.events.event_bus import crewai_event_bus
    from crewai.events.types.tool_usage_events import (
        ToolUsageErrorEvent,
        ToolUsageFinishedEvent,
        ToolUsageStartedEvent,
    )
    from crewai.tools import tool
    from crewai.tools.tool_failure import ToolExecutionFailedError, ToolFailureReason

    events: Counter[str] = Counter()
    errors: list[str] = []

    def on_event(source: Any, event: Any) -> None:
        events[type(event).__name__] += 1
        if isinstance(event, ToolUsageErrorEvent):
            errors.append(f"{type(event.error).__name__}: {event.error}")

    kinds = (ToolUsageStartedEvent, ToolUsageFinishedEvent, ToolUsageErrorEvent)
    for k in kinds:
        crewai_event_bus.register_handler(k, on_event)
    log.write_text("")
    llm = LLM(model=model, base_url=url, api_key="sk-mockllm")
    agent = Agent(role="Researcher", goal="Research", backstory="You research.", llm=llm,
                  tools=[tool(fn)], verbose=False, max_iter=25)
    task = Task(description=f"{marker}: look it up and answer in one line.", expected_output="One line.", agent=agent)
    crew = Crew(agents=[agent], tasks=[task], verbose=False, cache=cache)
    before = _model_calls(url)
    if policy is not None:
        crewcore.install(tools=policy)
    out, err = None, None
    try:
        out = crew.kickoff()
    except Exception as e:  # the run's outcome, compared below
        err = e
    finally:
        if policy is not None:
            crewcore.uninstall()
        crewai_event_bus.flush()
        for k in kinds:
            crewai_event_bus.off(k, on_event)
    fails = [(f.failure.reason.value, f.failure.code, f.failure.message)
             for t in (out.tasks_output if out else []) for f in (t.tool_failures or [])]
    return Outcome(
        model_calls=_model_calls(url) - before,
        tool_runs=len(log.read_text().splitlines()),
        error=None if err is None else f"{type(err).__name__}: {err}",
        repeated_call=isinstance(err, ToolExecutionFailedError)
        and err.record.failure.reason == ToolFailureReason.REPEATED_CALL,
        raw=out.raw if out else None,
        events=events,
        tool_errors=errors,
        tools_errors=task.tools_errors,
        failures=fails,
    )


# --------------------------------------------------------------------------
# a tool's own exception


POLICIES = {
    "inline": ToolPolicy(timeout=None),  # on the calling thread
    "thread": ToolPolicy(timeout=30),  # on a worker thread, waited for until the deadline
    "isolated": ToolPolicy(timeout=30, isolate=True),  # in a fresh interpreter
}


@pytest.mark.parametrize("how", list(POLICIES))
def test_tool_exception_reaches_crewai_unchanged(server: str, tool_log: Path, how: str) -> None:
    """Native function calling: CrewAI catches the tool's LookupError itself,
    emits its tool-error event (not tool-finished), counts the error on the
    task, records a failure of reason "exception" and shows the model
    "Error executing tool: ..."."""
    crewai = run(server, "RAISETASK", parity_helpers.flaky_lookup, tool_log, policy=None)
    ours = run(server, "RAISETASK", parity_helpers.flaky_lookup, tool_log, policy=POLICIES[how])
    assert crewai.tool_errors == ["LookupError: records service down for invoices"], crewai
    assert crewai.events == Counter(ToolUsageStartedEvent=1, ToolUsageErrorEvent=1), crewai
    assert ours == crewai


def test_tool_exception_is_retried_by_crewai_on_the_react_path(server: str, tool_log: Path) -> None:
    """ReAct text path: CrewAI retries a raising tool itself (three attempts,
    two invocations each). Every retry runs the tool, as without crewcore:
    a failed call is not a repeat for crewcore's loop limit (default 3)."""
    crewai = run(server, "REACTRAISE", parity_helpers.flaky_lookup, tool_log, policy=None, model="o1-mini")
    ours = run(server, "REACTRAISE", parity_helpers.flaky_lookup, tool_log, policy=ToolPolicy(), model="o1-mini")
    assert crewai.tool_runs == 6 and crewai.events["ToolUsageErrorEvent"] == 3, crewai
    assert crewai.raw and "records service is down" in crewai.raw, crewai
    assert ours == crewai


# --------------------------------------------------------------------------
# repeated identical calls


@pytest.mark.parametrize(
    "engine, cache, policy",
    [
        ("native", False, ToolPolicy()),
        ("native", True, ToolPolicy()),  # CrewAI's own cache answers the repeats
        ("native", False, ToolPolicy(loop_threshold=2, loop_window=4)),
        ("native", False, ToolPolicy(cache_ttl=60)),  # crewcore's cache answers them
        ("python", False, ToolPolicy()),
    ],
    ids=["default", "crewai-cache", "threshold-2", "crewcore-cache", "python-engine"],
)
def test_repeated_calls_stop_no_later_than_without_crewcore(
    server: str, tool_log: Path, monkeypatch: pytest.MonkeyPatch, engine: str, cache: bool, policy: ToolPolicy
) -> None:
    """A model that repeats one call forever: CrewAI stops the run at the 5th
    identical call with an identical result (ToolExecutionFailedError,
    reason repeated_call). With crewcore the run stops the same way after no
    more model calls (before the fix: 15, because every loop refusal carried
    a running count and so differed from the last)."""
    if engine == "python":
        monkeypatch.setenv("CREWCORE_FORCE_PYTHON", "1")
    crewai = run(server, "REPEATTASK", parity_helpers.same_lookup, tool_log, policy=None, cache=cache)
    ours = run(server, "REPEATTASK", parity_helpers.same_lookup, tool_log, policy=policy, cache=cache)
    assert crewai.repeated_call and crewai.model_calls == 5, crewai
    assert ours.repeated_call, ours
    assert ours.model_calls <= crewai.model_calls, (ours.model_calls, crewai.model_calls)
    # The same stop, the same events, and no more tool runs than CrewAI makes.
    assert (ours.model_calls, ours.error, ours.events) == (crewai.model_calls, crewai.error, crewai.events)
    assert ours.tool_runs <= crewai.tool_runs


def test_loop_refusals_are_identical_in_both_engines() -> None:
    """When there is no earlier result to give again, a repeat gets crewcore's
    loop refusal: the same text every time (no running count) and the same
    text from the Go engine and its Python twin."""
    from crewcore.tools.fallback import _PyEngine
    from crewcore.tools.native import _Engine

    pol = ToolPolicy(loop_threshold=2, loop_window=4)
    texts = {}
    for cls in (_Engine, _PyEngine):
        e = cls(pol)
        # equivalent arguments: key order and 1.0 == 1 do not matter
        calls = [{"query": "meaning", "n": 1}, {"n": 1.0, "query": "meaning"}] * 4
        verdicts = [e.begin("same_lookup", a, "t", "r", 1) for a in calls]
        assert [v[0] for v in verdicts] == [0, 0] + [2] * 6
        refusals = {(v[3], v[7], v[8]) for v in verdicts[2:]}
        assert len(refusals) == 1, refusals
        texts[cls.__name__] = refusals.pop()
        assert [v[5] for v in verdicts[2:]] == [3, 4, 5, 5, 5, 5]  # the count stays in the verdict
    assert texts["_Engine"] == texts["_PyEngine"]
    limit, message, _ = texts["_Engine"]
    assert limit == "loop" and message == (
        'tool "same_lookup" was called with the same arguments more than 2 times within the last 4 calls;'
        " the result will not change"
    )


def test_a_raising_call_is_not_a_repeat_in_both_engines() -> None:
    """A call whose tool raised leaves the loop window (CrewAI retries it), in
    the Go engine and its Python twin alike; budgets still count it."""
    from crewcore.tools.fallback import _PyEngine
    from crewcore.tools.native import _Engine

    pol = ToolPolicy(loop_threshold=2, loop_window=4, max_calls_per_task=5)
    for cls in (_Engine, _PyEngine):
        e = cls(pol)
        seen = []
        for _ in range(3):
            seen.append(e.begin("flaky_lookup", {"query": "x"}, "t", "", 1)[0])
            e.forget("flaky_lookup", {"query": "x"}, "t", "")
        seen += [e.begin("flaky_lookup", {"query": "x"}, "t", "", 1)[0] for _ in range(2)]
        v = e.begin("flaky_lookup", {"query": "y"}, "t", "", 1)  # the 6th call of the task
        assert seen == [0] * 5 and (v[0], v[3]) == (2, "max_calls_per_task"), (cls.__name__, seen, v)


@pytest.mark.parametrize(
    "fn, cls_name, module, message",
    [
        (parity_helpers.flaky_lookup, "LookupError", "builtins", "records service down for q"),
        (parity_helpers.records_error, "RecordsError", "parity_helpers", "503: records service unavailable for q"),
        (parity_helpers.decode_error, "UnicodeDecodeError", "builtins",
         "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
        (parity_helpers.lazy_module_error, "Error", "wave", "bad header in q"),
    ],
)
def test_isolated_exception_keeps_its_type_and_message(fn: Any, cls_name: str, module: str, message: str) -> None:
    """From an isolated process the exception is rebuilt here: its class when
    this process has it (a subclass of it when its constructor wants more
    than a message), else a stand-in of the same name and module."""
    import sys

    from crewcore import guard

    with pytest.raises(BaseException) as ei:
        guard(fn, timeout=30, isolate=True, loop_threshold=None).run(query="q")
    e = ei.value
    assert (type(e).__name__, type(e).__module__, str(e)) == (cls_name, module, message)
    real = getattr(sys.modules.get(module) or parity_helpers, cls_name, None)
    if real is not None:
        assert isinstance(e, real)
    assert "raise" in "".join(e.__notes__) or "decode" in "".join(e.__notes__)
