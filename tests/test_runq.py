"""Durable crew runs on River (crewcore.runs.submit / Queue / Worker,
kickoff_many(queue=...), crewcore worker, crewcore runs): real SQLite files,
the real PostgreSQL of `make pg-up`, real worker processes, CrewAI's real
classes and HTTP client against `crewcore mockllm`.

The long versions (1,000 runs; 500 runs with 10 kills) are tests/stress_runq.py
under `make stress`; here: 200 runs over 2 processes, 120 runs with 3 kills.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time
from typing import Any, Iterator

import pytest

import crewcore
import crewcore.runs as runs
from crewcore.errors import (
    CrewFactoryError,
    InvalidArgumentError,
    QueueAccessError,
    QueueCorruptError,
    QueueNotFoundError,
    QueueUnavailableError,
    RunFailedError,
    RunNotFoundError,
    WorkerStartError,
)
from conftest import read_only
from runq_support import (
    TESTS,
    binary,
    check_kill_trial,
    executions,
    kill_trial,
    llm_requests,
    mockllm,
    tail,
    topics,
    worker,
)


@pytest.fixture(scope="module")
def llm() -> Iterator[str]:
    with mockllm("20ms") as url:
        yield url


@pytest.fixture
def qpath(tmp_path: Path) -> str:
    return str(tmp_path / "runs.db")


def _plain_worker(queue: str, tmp_path: Path, **kw: Any) -> Any:
    kw.setdefault("install", False)
    kw.setdefault("processes", 1)
    kw.setdefault("concurrency", 2)
    return worker(queue, tmp_path / "worker.log", **kw)


# ---------------------------------------------------------------- bad input


def test_bad_input_is_refused_at_submit_with_typed_errors(tmp_path: Path, qpath: str) -> None:
    with pytest.raises(CrewFactoryError, match="no_such_module_xyz"):
        runs.submit("no_such_module_xyz.crews:build", [{}], queue=qpath)
    with pytest.raises(CrewFactoryError, match="has no attribute 'nope'"):
        runs.submit("runq_crews:nope", [{}], queue=qpath)
    with pytest.raises(CrewFactoryError, match="package.module:function"):
        runs.submit("runq_crews", [{}], queue=qpath)
    with pytest.raises(CrewFactoryError, match="cannot be sent to another process"):
        runs.submit(object(), [{}], queue=qpath)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="input 1 is not JSON"):
        runs.submit("runq_crews:plain", [{"a": 1}, {"b": object()}], queue=qpath)
    with pytest.raises(InvalidArgumentError, match="input 0 is a list"):
        runs.submit("runq_crews:plain", [[1, 2]], queue=qpath)
    with pytest.raises(InvalidArgumentError, match="not JSON"):
        runs.submit("runq_crews:plain", [{"x": float("nan")}], queue=qpath)
    with pytest.raises(InvalidArgumentError, match="priority"):
        runs.submit("runq_crews:plain", [{}], queue=qpath, priority=9)
    with pytest.raises(InvalidArgumentError, match="timeout"):
        runs.submit("runq_crews:plain", [{}], queue=qpath, timeout=-1)
    # Nothing was queued by the refused calls.
    q = runs.Queue(qpath)
    assert q.list() == []
    # wait() takes run ids or handles; a list of plain ints skips the
    # per-item conversion, and anything else in it is still refused.
    for bad in ([1, True], [1, "2"], [1.0]):
        with pytest.raises(InvalidArgumentError, match="a run id is an int"):
            q.wait(bad, timeout=0)
    assert q.wait([123456789], timeout=0) == []


def test_bad_queues_are_refused_with_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(QueueNotFoundError, match="does not exist"):
        runs.submit("runq_crews:plain", [{}], queue=str(tmp_path / "missing" / "runs.db"))
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database " * 100)
    with pytest.raises(QueueCorruptError):
        runs.Queue(str(junk))
    assert junk.read_bytes() == b"this is not a database " * 100
    ro = tmp_path / "ro"
    ro.mkdir()
    with read_only(ro):
        with pytest.raises(QueueAccessError):
            runs.Queue(str(ro / "runs.db"))
    assert not (ro / "runs.db").exists()
    t0 = time.monotonic()
    with pytest.raises(QueueUnavailableError):
        runs.Queue("postgresql://crewcore@127.0.0.1:1/crewcore?connect_timeout=2", connect_timeout=2)
    assert time.monotonic() - t0 < 30
    with pytest.raises(InvalidArgumentError):
        runs.Queue("   ")
    with pytest.raises(RunNotFoundError):
        runs.Queue(str(tmp_path / "ok.db")).get(12345)


def test_a_run_whose_crew_fails_in_the_worker_is_a_failed_run_with_the_reason(tmp_path: Path, qpath: str) -> None:
    # The factory's module exists here but not in the worker's processes.
    (tmp_path / "only_here").mkdir()
    (tmp_path / "only_here" / "only_here_crews.py").write_text("def build():\n    return None\n")
    sys.path.insert(0, str(tmp_path / "only_here"))
    try:
        missing = runs.submit("only_here_crews:build", [{}], queue=qpath)
        not_a_crew = runs.submit("only_here_crews:build", [{}], queue=qpath, check_crew=False)
    finally:
        sys.path.remove(str(tmp_path / "only_here"))
    failing = runs.submit("runq_crews:plain", [{"fail": "boom"}], queue=qpath, attempts=1)
    with _plain_worker(qpath, tmp_path):
        infos = [b.wait(timeout=120)[0] for b in (missing, not_a_crew, failing)]
    for info in infos[:2]:
        assert info.state == "cancelled" and info.attempt == 1, info  # permanent: not retried
        f = info.failure()
        assert f.kind == "error" and f.error_type == "CrewFactoryError", f
        assert "only_here_crews" in f.message
    f = infos[2].failure()
    assert infos[2].state == "discarded" and f.kind == "error" and f.error_type == "ValueError"
    assert "asked to fail: boom" in f.message
    with pytest.raises(RunFailedError, match="asked to fail"):
        infos[2].value()


# ---------------------------------------------------------------- semantics


def test_unique_keys_priorities_schedules_and_periodic_crews(tmp_path: Path, qpath: str) -> None:
    q = runs.Queue(qpath)
    a = q.submit("runq_crews:plain", [{"n": 1}, {"n": 2}], key="nightly-1")
    b = q.submit("runq_crews:plain", [{"n": 1}, {"n": 2}], key="nightly-1")
    assert [h.duplicate for h in a] == [False, False] and [h.duplicate for h in b] == [True, True]
    assert a.ids == b.ids
    low = q.submit("runq_crews:plain", [{"p": 4, "i": i} for i in range(4)], priority=4)
    high = q.submit("runq_crews:plain", [{"p": 1, "i": i} for i in range(4)], priority=1)
    later = q.submit("runq_crews:plain", [{"later": True}], delay=2.0)
    periodic = [{"id": "tick", "crew": "runq_crews:plain", "every": 1, "inputs": {"tick": True}, "run_on_start": True}]
    with _plain_worker(qpath, tmp_path, concurrency=1, periodic=periodic):
        first = a.wait(timeout=120)
        assert [i.value()["echo"]["n"] for i in first] == [1, 2]
        # Same key after completion: still the same runs, with their results.
        again = q.submit("runq_crews:plain", [{"n": 1}, {"n": 2}], key="nightly-1")
        assert again.ids == a.ids and all(h.duplicate for h in again)
        lo, hi = low.wait(timeout=120), high.wait(timeout=120)
        assert max(i.attempted_at for i in hi) < min(i.attempted_at for i in lo)  # type: ignore[type-var]
        (lt,) = later.wait(timeout=120)
        assert (lt.attempted_at - lt.created_at).total_seconds() >= 1.9  # type: ignore[operator]
        end = time.monotonic() + 60
        while len([r for r in q.list(batch="p-tick", state="completed")]) < 2:
            assert time.monotonic() < end, "periodic crew did not run twice within 60 s"
            time.sleep(0.2)


def test_cancel_retry_stats_and_the_cli(tmp_path: Path, qpath: str) -> None:
    q = runs.Queue(qpath)
    spin = q.submit("runq_crews:plain", [{"spin": 120}])
    with _plain_worker(qpath, tmp_path):
        end = time.monotonic() + 120
        while spin[0].state != "running":
            assert time.monotonic() < end
            time.sleep(0.05)
        info = spin[0].cancel()
        assert info.cancel_requested or info.state == "cancelled"
        (info,) = spin.wait(timeout=60)
        assert info.state == "cancelled" and info.failure().kind == "cancelled"
        ok = q.submit("runq_crews:plain", [{"i": i} for i in range(5)])
        ok.results(timeout=60)
        bad = q.submit("runq_crews:plain", [{"fail": "x"}], attempts=1)
        bad.wait(timeout=60)
        info = q.retry(bad[0].id)
        assert info.state in ("available", "running", "completed", "retryable", "discarded")
        bad.wait(timeout=60)
    st = q.stats()
    assert st.counts["completed"] == 5 and st.counts["cancelled"] == 1 and st.counts["discarded"] == 1
    assert st.sample == 5 and 0 < st.p50 <= st.p95 <= st.max and st.throughput > 0
    assert {f.id for f in st.failures} >= {bad[0].id}

    def cli(*args: str) -> str:
        r = subprocess.run([binary(), "runs", *args, "--queue", qpath], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    js = json.loads(cli("stats", "--json"))
    assert js["counts"] == st.counts and js["sample"] == 5
    assert abs(js["p50"] - st.p50) < 1e-6 and abs(js["p95"] - st.p95) < 1e-6
    assert any("asked to fail" in e["error"] for f in js["failures"] for e in f["errors"])
    text = cli("stats")
    assert "completed  5" in text and "p50" in text and "latest failures" in text
    listed = json.loads(cli("list", "--json", "--state", "completed"))
    assert sorted(r["id"] for r in listed) == sorted(ok.ids)
    shown = json.loads(cli("show", str(bad[0].id)))
    assert shown["state"] == "discarded" and shown["output"]["error"]["type"] == "ValueError"
    assert shown["inputs"] == {"fail": "x"} and len(shown["errors"]) == 2  # retried once
    pending = q.submit("runq_crews:plain", [{}, {}], delay=3600)
    assert "2 runs cancelled" in cli("cancel", "--batch", pending.batch)
    assert all(h.state == "cancelled" for h in pending)
    r = subprocess.run([binary(), "runs", "show", "999999", "--queue", qpath], capture_output=True, text=True)
    assert r.returncode == 1 and "no run 999999" in r.stderr


def test_worker_sigterm_returns_running_jobs_and_a_second_sigint_stops_at_once(tmp_path: Path, qpath: str) -> None:
    q = runs.Queue(qpath)
    b = q.submit("runq_crews:plain", [{"spin": 120}])
    log = tmp_path / "worker.log"
    with worker(qpath, log, install=False, shutdown_grace=0.5, stop_grace=0.3) as w:
        end = time.monotonic() + 120
        while b[0].state != "running":
            assert time.monotonic() < end, tail(log)
            time.sleep(0.05)
        t0 = time.monotonic()
        assert w.stop(60) == 0, tail(log)
        assert time.monotonic() - t0 < 15
    info = b[0].info()
    assert info.state == "available" and info.attempt == 0, info  # back, no attempt spent
    # SIGINT twice: the second stops at once (a grace of an hour is not awaited).
    with worker(qpath, log, install=False, shutdown_grace=3600, stop_grace=0.3) as w:
        end = time.monotonic() + 120
        while b[0].state != "running":
            assert time.monotonic() < end, tail(log)
            time.sleep(0.05)
        w.signal(signal.SIGINT)
        time.sleep(0.5)
        assert w.running
        t0 = time.monotonic()
        w.signal(signal.SIGINT)
        assert w.wait(60) is not None, tail(log)
        assert time.monotonic() - t0 < 20
    assert "stopping now" in tail(log)
    assert b[0].info().state == "available"


def test_kickoff_many_queue_deadline_on_error_and_worker_arguments(tmp_path: Path, qpath: str) -> None:
    with _plain_worker(qpath, tmp_path, concurrency=2):
        res = crewcore.kickoff_many("runq_crews:plain", [{"i": 0}, {"spin": 60}, {"spin": 60}, {"spin": 60}],
                                    queue=qpath, processes=0, deadline=1.5, progress=False)
        assert res[0] and res[0]["echo"] == {"i": 0}
        assert [r.kind for r in res[1:]] == ["deadline"] * 3, res
        assert res.summary.stop == "deadline" and res.summary.done == 1 and res.summary.timed_out == 3
        with pytest.raises(RunFailedError, match="asked to fail") as ei:
            crewcore.kickoff_many("runq_crews:plain", [{"fail": "first"}] + [{"spin": 60}] * 3,
                                  queue=qpath, processes=0, on_error="raise", attempts=1, progress=False)
        assert ei.value.failure.kind == "error" and len(ei.value.results) == 4
        assert [getattr(r, "kind", r) for r in ei.value.results[1:]] == ["cancelled"] * 3
    for bad in (dict(processes=0), dict(concurrency=0), dict(timeout=-1), dict(crew_path=[str(tmp_path / "nope")]),
                dict(periodic=[{"id": "x", "crew": "not a spec", "every": 1}])):
        with pytest.raises(InvalidArgumentError):
            runs.Worker(qpath, **bad)


def _cpu_list(s: str) -> set[int]:
    out: set[int] = set()
    for part in s.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or not os.path.isdir("/proc/self/task"),
                    reason="CPU affinity is Linux's")
def test_worker_pins_its_processes_and_their_threads_to_one_cpu_each(tmp_path: Path, qpath: str) -> None:
    allowed = sorted(os.sched_getaffinity(0))
    with _plain_worker(qpath, tmp_path, processes=2, concurrency=2, pin="on") as w:
        assert "pinned to CPUs" in w.ready_line, w.ready_line
        batch = runs.submit("runq_crews:where", [{"k": i} for i in range(8)], queue=qpath)
        outs = [i.value() for i in batch.wait(timeout=120)]
    by_pid: dict[int, set[str]] = {}
    for o in outs:
        for tid, cpus in o["threads"].items():
            by_pid.setdefault(o["pid"], set()).add(cpus)
        # asyncio.to_thread of two asyncio.run calls: one shared pool
        assert all(n.startswith("crewcore-asyncio") for n in o["to_thread"]), o["to_thread"]
    assert len(by_pid) == 2, by_pid
    want = [{allowed[0]}, {allowed[1 % len(allowed)]}]
    got = []
    for pid, lists in by_pid.items():
        assert len(lists) == 1, f"process {pid}'s threads are on different CPU sets: {lists}"
        got.append(_cpu_list(lists.pop()))
    assert sorted(got, key=min) == sorted(want, key=min)
    # pin="off": the processes keep every CPU the worker has.
    q2 = str(tmp_path / "off.db")
    with _plain_worker(q2, tmp_path, processes=1, pin="off") as w:
        assert "pinned" not in w.ready_line
        out = runs.submit("runq_crews:where", [{}], queue=q2).wait(timeout=120)[0].value()
    assert all(_cpu_list(c) == set(allowed) for c in out["threads"].values()), out["threads"]


def test_worker_pin_refuses_a_bad_cpu_list(tmp_path: Path, qpath: str) -> None:
    for bad in ("zero", "3-1", "99999"):
        w = runs.Worker(qpath, pin=bad, install=False, log=open(os.devnull, "w"))  # noqa: SIM115
        with pytest.raises(WorkerStartError, match="--pin"):
            w.start(ready_timeout=60)
    with pytest.raises(InvalidArgumentError, match="pin"):
        runs.Worker(qpath, pin=[0, "x"])


# ---------------------------------------------------------------- CrewAI runs


def test_kickoff_many_200_runs_over_2_worker_processes(llm: str, tmp_path: Path, qpath: str) -> None:
    inputs = topics(200)
    before = llm_requests(llm)
    res = crewcore.kickoff_many("runq_crews:build_crew", inputs, queue=qpath, processes=2, concurrency=4,
                                progress=False)
    assert len(res) == 200
    for i, (r, inp) in enumerate(zip(res, inputs)):
        assert r, f"run {i}: {r!r}"
        assert inp["topic"] in r.raw, f"result {i} is not input {i}'s: {r.raw!r}"
        assert r.tasks_output and r.tasks_output[0].raw == r.raw
    assert res.summary.done == 200 and res.summary.failed == 0
    infos = runs.Queue(qpath).list(limit=1000)
    assert len(infos) == 200 and all(i.state == "completed" and i.attempt == 1 for i in infos)
    pids = {i.output["pid"] for i in infos}
    assert len(pids) == 2, pids
    assert llm_requests(llm) - before == 200  # each run's one LLM call, once


def test_kickoff_many_queue_refuses_a_crew_object_and_extra_kickoff_arguments(qpath: str) -> None:
    from runq_crews import plain

    with pytest.raises(CrewFactoryError, match="package.module:function"):
        crewcore.kickoff_many(plain(), [{}], queue=qpath)
    with pytest.raises(InvalidArgumentError, match="input_files"):
        crewcore.kickoff_many("runq_crews:plain", [{}], queue=qpath, input_files={})


def test_worker_sigkilled_3_times_during_120_runs_loses_none(llm: str, tmp_path: Path, qpath: str) -> None:
    res = kill_trial(qpath, tmp_path / "worker.log", n_runs=120, kills=3, processes=1)
    bad = check_kill_trial(res)
    assert bad == [], "\n".join(bad[:20]) + "\n" + tail(tmp_path / "worker.log")
    assert len(res["killed_at"]) == 3
    interrupted = [i for i in res["infos"] if i.attempt > 1]
    assert interrupted, "no kill interrupted a run: the trial proved nothing"
    assert any("rescued" in e[2] for i in interrupted for e in i.errors)


def test_cancel_mid_batch_leaves_no_running_crew(llm: str, tmp_path: Path, qpath: str) -> None:
    os.environ["RUNQ_EXEC_LOG"] = str(tmp_path / "exec")
    try:
        with worker(qpath, tmp_path / "worker.log", processes=2, concurrency=2):
            b = runs.submit("runq_crews:build_crew", topics(80, "cancel"), queue=qpath)
            end = time.monotonic() + 300
            while b.stats().counts["completed"] < 5:
                assert time.monotonic() < end, tail(tmp_path / "worker.log")
                time.sleep(0.05)
            n = b.cancel()
            assert n > 0
            infos = b.wait(timeout=120)
            settled = llm_requests(llm)
            time.sleep(1.5)
            assert llm_requests(llm) == settled, "LLM calls went on after every run was final"
            st = b.stats()
            assert st.counts["running"] == 0 and st.counts["available"] == 0
    finally:
        os.environ.pop("RUNQ_EXEC_LOG", None)
    done = [i for i in infos if i.state == "completed"]
    cancelled = [i for i in infos if i.state == "cancelled"]
    assert len(done) + len(cancelled) == 80 and len(done) >= 5 and cancelled
    assert all(i.failure().kind == "cancelled" for i in cancelled)
    ex = executions(tmp_path / "exec")
    assert all(ex.get(i.inputs["topic"], 0) == 1 for i in done)
    # A cancelled run that had started may have finished its task, never twice.
    assert all(ex.get(i.inputs["topic"], 0) <= 1 for i in cancelled)


# ---------------------------------------------------------------- PostgreSQL


def _pg_queue(tmp_path: Path) -> tuple[str, str, str]:
    from pg_support import server_dsn

    dsn = server_dsn()
    schema = f"runq_py_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    sep = "&" if "?" in dsn else "?"
    return dsn, schema, f"{dsn}{sep}schema={schema}"


SUBMITTER = """
import json, sys
sys.path.insert(0, sys.argv[2])
import crewcore
res = crewcore.kickoff_many("runq_crews:build_crew", [{"topic": f"pg-{i:03d}"} for i in range(int(sys.argv[3]))],
                            queue=sys.argv[1], processes=0, progress=False)
print(json.dumps({"raw": [r.raw if r else None for r in res], "failures": [repr(f) for f in res.failures]}))
"""


def test_two_machines_share_one_postgresql_queue(llm: str, tmp_path: Path) -> None:
    from pg_support import drop_schema

    dsn, schema, spec = _pg_queue(tmp_path)
    machines = {m: tmp_path / m for m in ("a", "b", "c")}
    for d in machines.values():
        d.mkdir()
    try:
        with worker(spec, tmp_path / "b.log", processes=1, concurrency=2, env={"CREWAI_STORAGE_DIR": str(machines["b"])}), \
                worker(spec, tmp_path / "c.log", processes=1, concurrency=2, env={"CREWAI_STORAGE_DIR": str(machines["c"])}):
            env = dict(os.environ, CREWAI_STORAGE_DIR=str(machines["a"]), PYTHONUNBUFFERED="1")
            r = subprocess.run([sys.executable, "-c", SUBMITTER, spec, str(TESTS), "40"], capture_output=True,
                               text=True, env=env, timeout=600)
            assert r.returncode == 0, r.stderr[-3000:] + tail(tmp_path / "b.log") + tail(tmp_path / "c.log")
            out = json.loads(r.stdout.strip().splitlines()[-1])
        assert out["failures"] == []
        assert all(f"pg-{i:03d}" in raw for i, raw in enumerate(out["raw"]))
        infos = runs.Queue(spec).list(limit=1000)
        assert len(infos) == 40 and all(i.state == "completed" and i.attempt == 1 for i in infos)
        clients = {i.attempted_by[-1] for i in infos}
        assert len(clients) == 2, f"one machine did all the work: {clients}"
        # Each worker machine wrote CrewAI's kickoff task outputs under its own
        # storage dir; the submitting machine ran no crew.
        for m in ("b", "c"):
            assert list(machines[m].rglob("latest_kickoff_task_outputs.db")), m
        assert not list(machines["a"].rglob("latest_kickoff_task_outputs.db"))
    finally:
        drop_schema(dsn, schema)


def test_postgresql_bad_database_is_a_typed_error(tmp_path: Path) -> None:
    from pg_support import server_dsn

    dsn = server_dsn()
    head, _, query = dsn.partition("?")
    base = head.rsplit("/", 1)[0]
    with pytest.raises(QueueNotFoundError):
        runs.Queue(f"{base}/crewcore_no_such_database" + (f"?{query}" if query else ""))
