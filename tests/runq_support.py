"""Helpers of the durable-queue tests (tests/test_runq*.py) and of
tests/stress_runq.py: the mock LLM server, workers that log to a file, the
execution log of tests/runq_crews.py, and the kill trial."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
import random
import subprocess
import sys
import threading
import time
from typing import Any, Iterator

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

for _k, _v in (
    ("CREWAI_DISABLE_TELEMETRY", "true"), ("CREWAI_DISABLE_TRACKING", "true"), ("OTEL_SDK_DISABLED", "true"),
    ("CREWAI_TRACING_ENABLED", "false"), ("CREWAI_DISABLE_VERSION_CHECK", "true"),
):
    os.environ.setdefault(_k, _v)

if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


def binary() -> str:
    for p in (REPO / "python/crewcore/_lib/crewcore", REPO / "bin/crewcore"):
        if p.exists():
            return str(p)
    raise RuntimeError("the crewcore command is not built (make build)")


@contextlib.contextmanager
def mockllm(latency: str = "20ms") -> Iterator[str]:
    """A ``crewcore mockllm`` server; yields its /v1 URL and sets RUNQ_LLM_URL
    (worker processes inherit it)."""
    proc = subprocess.Popen([binary(), "mockllm", "--addr", "127.0.0.1:0", "--latency", latency],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("mockllm listening on "), line
    url = line.split("mockllm listening on ", 1)[1].strip()
    old = os.environ.get("RUNQ_LLM_URL")
    os.environ["RUNQ_LLM_URL"] = url
    try:
        yield url
    finally:
        if old is None:
            os.environ.pop("RUNQ_LLM_URL", None)
        else:
            os.environ["RUNQ_LLM_URL"] = old
        proc.terminate()
        proc.wait(timeout=15)


def llm_requests(url: str) -> int:
    """Chat requests the mock server answered so far."""
    import json
    import urllib.request

    with urllib.request.urlopen(url[: -len("/v1")] + "/stats", timeout=10) as r:
        st = json.load(r)
    return int(st["chat"])


def start_worker(queue: str, log: Path, **kw: Any) -> Any:
    """A crewcore.runs.Worker on queue, the tests' crews on its path, its
    output appended to log; started and ready."""
    from crewcore.runs import Worker

    kw.setdefault("crew_path", [str(TESTS)])
    f = open(log, "a")  # noqa: SIM115 - closed with the worker
    w = Worker(queue, log=f, **kw)
    w._logfile = f  # type: ignore[attr-defined]
    try:
        w.start(ready_timeout=240)
    except BaseException:
        f.close()
        raise
    return w


def stop_worker(w: Any, timeout: float = 60) -> None:
    if w.running:
        w.stop(timeout)
        if w.running:
            w.kill()
    f = getattr(w, "_logfile", None)
    if f is not None:
        f.close()


@contextlib.contextmanager
def worker(queue: str, log: Path, **kw: Any) -> Iterator[Any]:
    w = start_worker(queue, log, **kw)
    try:
        yield w
    finally:
        stop_worker(w)


def tail(path: Path, n: int = 60) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(True)[-n:])
    except OSError:
        return ""


def executions(log: Path) -> dict[str, int]:
    """How many times each topic's task finished (RUNQ_EXEC_LOG)."""
    out: dict[str, int] = {}
    if not log.exists():
        return out
    for line in log.read_text().splitlines():
        topic = line.split(" ", 1)[0]
        out[topic] = out.get(topic, 0) + 1
    return out


def topics(n: int, prefix: str = "item") -> list[dict[str, str]]:
    return [{"topic": f"{prefix}-{i:05d}"} for i in range(n)]


def kill_trial(queue: str, log: Path, n_runs: int, kills: int, seed: int = 15, processes: int = 2,
               timeout: float = 6.0, rescue_after: float = 12.0, limit: float = 900.0) -> dict[str, Any]:
    """Submit n_runs of the CrewAI crew, SIGKILL the worker ``kills`` times at
    random moments while they run (starting a new one each time, as a
    supervisor would), and wait for every run. Returns what the checks need:
    the final runs, the execution counts, the kill times."""
    import crewcore.runs as runs

    exec_log = log.with_suffix(".exec")
    os.environ["RUNQ_EXEC_LOG"] = str(exec_log)
    rnd = random.Random(seed)
    inputs = topics(n_runs, "kill")
    kw = dict(processes=processes, concurrency=2, timeout=timeout, rescue_after=rescue_after, shutdown_grace=5)
    w = start_worker(queue, log, **kw)
    t0 = time.monotonic()
    batch = runs.submit("runq_crews:build_crew", inputs, queue=queue, attempts=25)
    killed_at: list[float] = []
    # Random moments spread over the batch: when these shares of it have
    # completed (plus up to a second), while other runs are running.
    targets = sorted(rnd.uniform(0.03, 0.9) for _ in range(kills))
    try:
        q = batch.queue
        for target in targets:
            while True:
                st = q.stats(batch=batch.batch, sample=1, failures=1)
                if st.counts["completed"] >= target * n_runs or time.monotonic() - t0 > limit:
                    break
                time.sleep(0.05)
            time.sleep(rnd.uniform(0, 1.0))
            w.kill()
            killed_at.append(time.monotonic() - t0)
            stop_worker(w)
            w = start_worker(queue, log, **kw)
        infos = batch.wait(timeout=limit)
    finally:
        stop_worker(w)
        os.environ.pop("RUNQ_EXEC_LOG", None)
    return {
        "infos": infos, "executions": executions(exec_log), "killed_at": killed_at,
        "elapsed": time.monotonic() - t0, "inputs": inputs,
    }


def check_kill_trial(res: dict[str, Any]) -> list[str]:
    """Problems of a kill trial (empty when every run completed once, and
    only interrupted runs ran more than once)."""
    bad = []
    infos, ex, inputs = res["infos"], res["executions"], res["inputs"]
    for i, (info, inp) in enumerate(zip(infos, inputs)):
        if info.state != "completed":
            bad.append(f"run {i}: {info.state} {info.errors[-1:] if info.errors else ''}")
            continue
        out = info.value()
        if inp["topic"] not in out.raw:
            bad.append(f"run {i}: result {out.raw!r} is not input {i}'s")
        n = ex.get(inp["topic"], 0)
        if n < 1:
            bad.append(f"run {i}: no execution logged")
        if n > 1 and info.attempt < 2:
            bad.append(f"run {i}: ran {n} times but was never interrupted (attempt {info.attempt})")
    return bad


class Sampler:
    """Samples a callable every ``every`` seconds on a thread."""

    def __init__(self, fn: Any, every: float = 0.1) -> None:
        self.fn, self.every, self.values = fn, every, []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.values.append(self.fn())
            except Exception:  # noqa: BLE001 - sampling only
                pass

    def stop(self) -> list[Any]:
        self._stop.set()
        self._t.join(timeout=5)
        return self.values
