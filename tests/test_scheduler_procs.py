"""crewcore.kickoff_many(..., processes=N): runs in forked worker processes,
against CrewAI's real classes and HTTP client and `crewcore mockllm` (the
module-scoped server of test_scheduler, 20 ms latency, with its hang script).
"""

from __future__ import annotations

import os
from pathlib import Path
import signal
import threading
import time
from typing import Any

import pytest

import crewcore
from crewcore.errors import InvalidArgumentError, WorkerProcessError
from test_scheduler import (  # noqa: F401 - server is a fixture
    _embed,
    _hang_tools,
    assert_in_order,
    make_crew,
    ours,
    server,
    stats,
    topics,
)


@pytest.fixture(autouse=True)
def installed(request: pytest.FixtureRequest) -> Any:
    """Run as a crewcore user does: crewcore.install() (CrewAI's locks and
    kickoff task outputs through crewcore's storage; in the workers, its
    Python engine on the same files)."""
    if "no_install" in request.keywords:
        yield
        return
    crewcore.install()
    try:
        yield
    finally:
        crewcore.uninstall()


def children() -> set[int]:
    """Live (not zombie-reaped) child processes of this process."""
    me = str(os.getpid())
    out = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            st = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        fields = st.rsplit(")", 1)[1].split()
        if fields[1] == me:
            out.add(int(d))
    return out


def pid_crew(url: str, log: Path, cpus: bool = False) -> Any:
    """A one-task crew whose task callback records which process ran it
    (with cpus: and the CPUs its thread may run on, after a space)."""
    from crewai import LLM, Agent, Crew, Task

    def note(output: Any) -> None:
        where = f" {','.join(str(c) for c in sorted(os.sched_getaffinity(0)))}" if cpus else ""
        with open(log, "a") as f:
            f.write(f"{os.getpid()}{where}\n")

    llm = LLM(model="gpt-4o-mini", base_url=url, api_key="sk-mockllm")
    agent = Agent(role="Researcher", goal="Research {topic}", backstory="b", llm=llm, verbose=False, max_iter=3)
    task = Task(description="Write one line about {topic}.", expected_output="One line.", agent=agent, callback=note)
    return Crew(agents=[agent], tasks=[task], verbose=False)


def test_runs_execute_in_worker_processes_in_order(server: str, tmp_path: Path) -> None:
    before_children = children()
    log = tmp_path / "pids"
    crew = pid_crew(server, log)
    crew.copy().kickoff(inputs={"topic": "warm"})  # the parent's HTTP pool now holds a live connection
    log.write_text("")
    inputs = topics(60, "proc")
    chat0 = stats(server)["chat"]
    res = crewcore.kickoff_many(crew, inputs, concurrency=8, processes=2, progress=False)
    assert_in_order(res, inputs)
    s = res.summary
    assert (s.total, s.done, s.failed, s.timed_out, s.cancelled, s.abandoned) == (60, 60, 0, 0, 0, 0)
    assert 60 <= stats(server)["chat"] - chat0 <= 62
    pids = [int(x) for x in log.read_text().split()]
    assert len(pids) == 60
    assert os.getpid() not in pids
    assert len(set(pids)) == 2, f"runs were not spread over 2 worker processes: {set(pids)}"
    # The workers are gone (reaped) and the batch left no thread behind.
    assert children() == before_children
    assert ours() == [] and not [t for t in threading.enumerate() if t.name.startswith("crewcore-proc")]
    # processes="auto" is one per CPU.
    res = crewcore.kickoff_many(crew, topics(4, "auto"), processes="auto", progress=False)
    assert_in_order(res, topics(4, "auto"))


def test_hanging_tool_in_a_worker_is_stopped_by_the_timeout(server: str) -> None:
    tools, _ = _hang_tools()
    crew = make_crew(server, tools=tools)
    inputs = [{"topic": "fine-0"}, {"topic": "HANG_PY now"}, {"topic": "fine-1"}]
    res = crewcore.kickoff_many(crew, inputs, concurrency=3, timeout=2, stop_grace=0.3, processes=2, progress=False)
    assert res[0] and "fine-0" in res[0].raw
    assert res[2] and "fine-1" in res[2].raw
    hung = res[1]
    assert not hung and hung.kind == "timeout" and hung.error_type == "RunTimeout", hung
    assert 2 <= hung.elapsed < 10
    # Stopped inside its worker (the stop exception was raised in its thread
    # there), not abandoned.
    assert (res.summary.done, res.summary.timed_out, res.summary.abandoned) == (2, 1, 0)


def test_run_stuck_in_c_in_a_worker_is_abandoned_and_its_process_ended(server: str) -> None:
    before_children = children()
    tools, _ = _hang_tools()  # the release event lives in the worker: nobody sets it
    crew = make_crew(server, tools=tools)
    inputs = [{"topic": "HANG_C now"}] + topics(6, "after")
    res = crewcore.kickoff_many(crew, inputs, concurrency=2, timeout=1, stop_grace=0.2, processes=2, progress=False)
    assert not res[0] and res[0].kind == "timeout" and "abandoned" in res[0].message
    assert_in_order(res[1:], inputs[1:])
    assert res.summary.abandoned == 1 and res.summary.done == 6
    # The worker holding the stuck thread was ended with the batch.
    assert children() == before_children


def test_a_killed_worker_fails_only_its_runs(server: str) -> None:
    crew = make_crew(server, tasks=2)
    inputs = topics(80, "kill")
    h = crewcore.start_many(crew, inputs, concurrency=8, processes=2, progress=False)
    while h.summary().done < 10:
        time.sleep(0.02)
    victim = h._procs.workers[0].pid
    os.kill(victim, signal.SIGKILL)
    res = h.result(timeout=120)
    s = res.summary
    assert s.total == 80 and s.done + s.failed == 80 and s.cancelled == 0
    died = res.failures
    assert died, "the killed worker held no run"
    for f in died:
        assert f.kind == "error" and f.error_type == "WorkerProcessError", f
        assert isinstance(f.exception, WorkerProcessError)
        assert str(victim) in f.message and "signal 9" in f.message
    for i, r in enumerate(res):
        if r:
            assert inputs[i]["topic"] in r.raw
    # The other worker took every input after the kill.
    assert s.done >= 80 - 8


def test_cancel_stops_every_worker(server: str) -> None:
    before_children = children()
    crew = make_crew(server, tasks=2)
    h = crewcore.start_many(crew, topics(300, "c"), concurrency=8, processes=2, progress=False)
    while h.summary().done < 8:
        time.sleep(0.02)
    assert h.cancel() is True
    res = h.result(timeout=60)
    s = res.summary
    assert s.stop == "cancelled" and s.done >= 8 and s.cancelled > 0 and s.failed == 0
    assert s.done + s.cancelled == 300 and s.abandoned == 0
    assert all(f.kind == "cancelled" for f in res.failures)
    assert children() == before_children


def test_workers_save_into_the_parents_memory_store(server: str, tmp_path: Path) -> None:
    """Each worker reopens the store with the Python engine over the same
    files; every save reaches the parent's (native) store."""
    from crewai import LLM
    from crewai.memory import Memory

    store = crewcore.MemoryStorage(tmp_path / "mem")
    mem = Memory(storage=store, embedder=_embed, llm=LLM(model="gpt-4o-mini", base_url=server, api_key="sk-mockllm"))
    crew = make_crew(server, memory=mem)
    # A run in the parent first: Memory's save pool now has idle threads,
    # which exist only in the parent (a worker must start its own).
    crew.copy().kickoff(inputs={"topic": "parent-run"})
    inputs = topics(16, "pmem")
    res = crewcore.kickoff_many(crew, inputs, concurrency=4, processes=2, timeout=15, stop_grace=0.5, progress=False)
    assert_in_order(res, inputs)
    texts = " ".join(r.content for r in store.list_records(limit=1000))
    missing = [i["topic"] for i in inputs + [{"topic": "parent-run"}] if i["topic"] not in texts]
    assert missing == [], f"saves lost for {missing}"
    store.close()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "two", None])
def test_bad_processes_raise_a_typed_error(server: str, bad: Any) -> None:
    crew = make_crew(server)
    with pytest.raises(InvalidArgumentError, match="processes"):
        crewcore.kickoff_many(crew, topics(2), processes=bad, progress=False)


@pytest.mark.no_install
def test_without_install_warns_about_crewais_file_lock(server: str) -> None:
    crew = make_crew(server)
    with pytest.warns(RuntimeWarning, match="0.25 s between processes"):
        res = crewcore.kickoff_many(crew, topics(4, "w"), concurrency=2, processes=2, progress=False)
    assert_in_order(res, topics(4, "w"))


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="pinning needs 2 CPUs or more (Linux)")
@pytest.mark.parametrize("pin", ["auto", "off"])
def test_workers_are_pinned_one_per_cpu_when_they_are_as_many_as_the_cpus(
        server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pin: str) -> None:
    allowed = sorted(os.sched_getaffinity(0))
    monkeypatch.setenv("CREWCORE_PIN", pin)
    log = tmp_path / "cpus"
    res = crewcore.kickoff_many(pid_crew(server, log, cpus=True), topics(4 * len(allowed)), processes="auto",
                                concurrency=2 * len(allowed), progress=False)
    assert all(res), res
    seen: dict[int, set[str]] = {}
    for row in log.read_text().splitlines():
        pid, cpus = row.split()
        seen.setdefault(int(pid), set()).add(cpus)
    assert os.getpid() not in seen and len(seen) >= 2, seen
    full = ",".join(str(c) for c in allowed)
    if pin == "off":
        assert all(s == {full} for s in seen.values()), seen
    else:
        # each worker on one CPU of its own, every run of it there
        assert all(len(s) == 1 and len(next(iter(s)).split(",")) == 1 for s in seen.values()), seen
        assert len({next(iter(s)) for s in seen.values()}) == len(seen), seen
    assert sorted(os.sched_getaffinity(0)) == allowed  # the parent stays unpinned
