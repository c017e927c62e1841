"""crewcore demo: a real two-agent CrewAI crew with memory, run twice, offline.

What it does (`make demo`):
  1. starts the project's local OpenAI-compatible server (`crewcore mockllm`);
  2. `crewcore.install()`, then runs a real CrewAI Crew (two agents, two tasks,
     memory=True) against it; the crew's memory is stored by crewcore;
  3. runs the crew again and shows that the second run recalled what the
     first one stored;
  4. times crewcore's memory store beside CrewAI's default LanceDB store on
     the same records through the same StorageBackend API.
"""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parent.parent


def start_mockllm() -> tuple[subprocess.Popen[str], str]:
    exe = ROOT / "python" / "crewcore" / "_lib" / "crewcore"
    if not exe.exists():
        sys.exit(f"{exe} is missing: run `make build` first")
    proc = subprocess.Popen(
        [str(exe), "mockllm", "--addr", "127.0.0.1:0", "--latency", "5ms"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if "listening on" not in line:
        proc.kill()
        sys.exit(f"mockllm did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[-1]


def banner(text: str) -> None:
    print(f"\n== {text} " + "=" * max(0, 66 - len(text)))


def main() -> int:
    storage = tempfile.mkdtemp(prefix="crewcore-demo-")
    proc, url = start_mockllm()
    env = {
        "OPENAI_BASE_URL": url,
        "OPENAI_API_KEY": "sk-local-mock",
        "CREWAI_STORAGE_DIR": storage,
        "CREWAI_DISABLE_TELEMETRY": "true",
        "CREWAI_DISABLE_TRACKING": "true",
        "OTEL_SDK_DISABLED": "true",
        "CREWAI_TRACING_ENABLED": "false",
        "CREWAI_DISABLE_VERSION_CHECK": "true",
    }
    os.environ.update(env)
    try:
        run(url, storage)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(storage, ignore_errors=True)
    return 0


def build_crew(embedder: dict):
    from crewai import LLM, Agent, Crew, Process, Task

    llm = LLM(model="gpt-4o-mini")
    researcher = Agent(
        role="Research Analyst",
        goal="Collect the facts about the Zephyr satellite project",
        backstory="A meticulous analyst who remembers what the team learned.",
        llm=llm,
    )
    writer = Agent(
        role="Briefing Writer",
        goal="Write a two-line briefing from the analyst's findings",
        backstory="Writes short, precise briefings.",
        llm=llm,
    )
    research = Task(
        description=(
            "Find out the launch date of the Zephyr satellite project and who owns the "
            "launch checklist. {question}"
        ),
        expected_output="The launch date and the owner.",
        agent=researcher,
    )
    brief = Task(
        description="Write a briefing on the Zephyr launch from the research.",
        expected_output="A two-line briefing.",
        agent=writer,
    )
    return Crew(
        agents=[researcher, writer],
        tasks=[research, brief],
        process=Process.sequential,
        memory=True,
        embedder=embedder,
        verbose=False,
    )


def run(url: str, storage: str) -> None:
    import logging

    # CrewAI warns on every call that the mock model has no token counter.
    logging.getLogger("crewai.llms.base_llm").setLevel(logging.ERROR)
    import crewcore
    from crewcore import _bridge

    banner("crewcore")
    crewcore.install()
    kind = crewcore.backend()
    detail = ""
    if kind == "native":
        ver, kernel = _bridge.version()
        detail = f" (engine {ver}, SIMD kernel {kernel})"
    print(f"backend: {kind}{detail}")
    print(f"local OpenAI-compatible server: {url}")
    print(f"CREWAI_STORAGE_DIR: {storage}")

    embedder = {"provider": "openai", "config": {"model_name": "text-embedding-3-small"}}

    banner("run 1: the crew learns the facts")
    crew = build_crew(embedder)
    t0 = time.perf_counter()
    out1 = crew.kickoff(inputs={"question": "The launch is on March 5 and Priya owns the checklist."})
    t1 = time.perf_counter() - t0
    mem = crew._memory if hasattr(crew, "_memory") else None
    if mem is not None and hasattr(mem, "drain_writes"):
        mem.drain_writes()
    print(out1.raw.strip()[:400])
    print(f"-- run 1 took {t1:.2f}s")

    banner("run 2: a new crew, same memory")
    crew2 = build_crew(embedder)
    t0 = time.perf_counter()
    out2 = crew2.kickoff(inputs={"question": "What did we learn last time?"})
    t2 = time.perf_counter() - t0
    print(out2.raw.strip()[:600])
    print(f"-- run 2 took {t2:.2f}s")
    recalled = "Recalled memories" in out2.raw or "memor" in out2.raw.lower()
    storage_obj = getattr(getattr(crew2, "_memory", None), "_storage", None)
    print(f"memory storage: {storage_obj!r}")
    if storage_obj is not None and hasattr(storage_obj, "count"):
        print(f"records in the crewcore store: {storage_obj.count()}")
    print("second run recalled the first run's memory:", "YES" if recalled else "NO")

    banner("memory timings: crewcore vs CrewAI's default LanceDB store")
    compare_stores(storage)
    if not recalled:
        raise SystemExit("demo failed: the second run did not recall the first run's memory")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def compare_stores(storage: str, n: int = 2000, dim: int = 1536) -> None:
    import numpy as np
    from crewai.memory.storage.lancedb_storage import LanceDBStorage
    from crewai.memory.types import MemoryRecord

    import crewcore

    rng = np.random.default_rng(42)
    centers = rng.standard_normal((100, dim)).astype(np.float32)

    def vecs(k: int) -> np.ndarray:
        x = centers[rng.integers(0, len(centers), k)] + 0.3 * rng.standard_normal((k, dim)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def records(k: int) -> list:
        x = vecs(k)
        return [
            MemoryRecord(
                content=f"fact {i} about the project",
                scope=f"/crew/team{i % 10}",
                categories=[f"topic{i % 7}"],
                embedding=x[i].tolist(),
            )
            for i in range(k)
        ]

    data = records(n)
    stores = {
        "crewcore": crewcore.MemoryStorage(Path(storage) / "bench-crewcore"),
        "lancedb": LanceDBStorage(path=str(Path(storage) / "bench-lancedb"), compact_every=0),
    }
    queries = [q.tolist() for q in vecs(30)]
    results: dict[str, dict[str, tuple[float, float]]] = {}
    for name, st in stores.items():
        print(f"loading {n} x {dim} records into {name} ...", flush=True)
        for i in range(0, n, 500):
            st.save(data[i : i + 500])
        ops = {
            "search (k=10)": lambda st=st: st.search(queries[rng.integers(0, 30)], limit=10),
            "search, scope filter": lambda st=st: st.search(queries[rng.integers(0, 30)], scope_prefix="/crew/team3", limit=10),
            "save 1 record": lambda st=st: st.save(records(1)),
            "count(scope)": lambda st=st: st.count("/crew/team3"),
            "list_scopes": lambda st=st: st.list_scopes("/crew"),
        }
        results[name] = {}
        for op, fn in ops.items():
            fn()
            ts = []
            for _ in range(30):
                t = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t)
            results[name][op] = (statistics.median(ts), pct(ts, 0.95))
    print(f"\n{'operation':<24}{'crewcore p50':>14}{'LanceDB p50':>14}{'speed-up':>10}")
    for op in results["crewcore"]:
        c, l = results["crewcore"][op][0], results["lancedb"][op][0]
        print(f"{op:<24}{c * 1e3:>11.3f} ms{l * 1e3:>11.3f} ms{l / c:>9.1f}x")
    print("\n(full side-by-side tables: docs/benchmarks.md, `make bench`)")
    for st in stores.values():
        if hasattr(st, "close"):
            st.close()


if __name__ == "__main__":
    raise SystemExit(main())
