"""Trial of kickoff_many(processes=...) with stores that do not survive fork
(issue 18, item 7; docs/reliability.md, "Runs: fork safety").

One run of this script is one cell: a crew with memory (``memory=True``) or
with knowledge (a ``StringKnowledgeSource``), built before or after
``crewcore.install()``, kicked off ``--runs`` times against a fresh
``crewcore mockllm`` (``--latency``) with ``processes`` (default "auto"). It
prints one JSON line: runs, done, failed, the failure kinds, seconds. Each
run has a per-run timeout (``--timeout``), so a worker that hangs shows up
as timed-out runs instead of a batch that never ends.

    .venv/bin/python bench/trial_fork_safety.py --order crew_first --what memory
    PYTHONPATH=/tmp/base/python .venv/bin/python bench/trial_fork_safety.py ...   # another tree
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--order", choices=["install_first", "crew_first"], required=True)
    ap.add_argument("--what", choices=["memory", "knowledge"], required=True)
    ap.add_argument("--runs", type=int, default=120)
    ap.add_argument("--latency", default="50ms")
    ap.add_argument("--processes", default="auto")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--chroma", action="store_true",
                    help="install(knowledge=False): knowledge stays on ChromaDB whatever the order")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="crewcore-fork-trial-")
    os.environ.update(
        CREWAI_STORAGE_DIR=tmp + "/crewai", CREWAI_DISABLE_TELEMETRY="true", CREWAI_DISABLE_TRACKING="true",
        OTEL_SDK_DISABLED="true", CREWAI_TRACING_ENABLED="false", CREWAI_DISABLE_VERSION_CHECK="true",
    )
    os.chdir(tmp)
    binary = REPO / "python" / "crewcore" / "_lib" / "crewcore"
    server = subprocess.Popen([str(binary), "mockllm", "--addr", "127.0.0.1:0", "--latency", args.latency],
                              stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    url = server.stdout.readline().split("mockllm listening on ", 1)[1].strip()
    os.environ.update(OPENAI_BASE_URL=url, OPENAI_API_KEY="sk-mockllm")
    logging.disable(logging.WARNING)
    try:
        import crewcore
        from crewai import LLM, Agent, Crew, Task

        def build() -> Crew:
            llm = LLM(model="gpt-4o-mini", base_url=url, api_key="sk-mockllm")
            agent = Agent(role="R", goal="Research {topic}", backstory="b", llm=llm, verbose=False, max_iter=3)
            task = Task(description="One line about {topic}.", expected_output="x", agent=agent)
            if args.what == "memory":
                return Crew(agents=[agent], tasks=[task], verbose=False, memory=True)
            from crewai.knowledge.source.string_knowledge_source import StringKnowledgeSource

            return Crew(agents=[agent], tasks=[task], verbose=False,
                        knowledge_sources=[StringKnowledgeSource(content="Topics are about research.")],
                        embedder={"provider": "openai", "config": {"model": "text-embedding-3-small",
                                                                   "api_key": "sk-mockllm", "api_base": url}})

        kw = {"knowledge": False} if args.chroma else {}
        if args.order == "install_first":
            crewcore.install(**kw)
            crew = build()
        else:
            crew = build()
            crewcore.install(**kw)
        store = crew._memory._storage if args.what == "memory" else (crew.knowledge.storage if crew.knowledge else None)
        procs = int(args.processes) if args.processes.isdigit() else args.processes
        t0 = time.monotonic()
        from crewai.knowledge.storage import factory as kf

        copies = "crewcore" if getattr(getattr(kf, "_factory", None), "crewcore", False) else "ChromaDB"
        out: dict[str, object] = {"order": args.order, "what": args.what, "store": type(store).__name__,
                                  "copies_knowledge": copies if args.what == "knowledge" else None,
                                  "processes": procs, "runs": args.runs}
        try:
            res = crewcore.kickoff_many(crew, [{"topic": f"t{i}"} for i in range(args.runs)], processes=procs,
                                        timeout=args.timeout, stop_grace=1.0, progress=False)
            kinds = collections.Counter(
                f.error_type + (": killed by signal " + f.message.split("signal ")[1].split()[0]
                                if "signal" in f.message else "") for f in res.failures)
            out.update(done=res.summary.done, failed=len(res.failures), failures=dict(kinds))
        except Exception as e:  # noqa: BLE001 - reported
            out.update(raised=f"{type(e).__name__}: {str(e)[:200]}")
            import traceback; traceback.print_exc()
        out["seconds"] = round(time.monotonic() - t0, 1)
        print(json.dumps(out), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)
    sys.stdout.flush()
    os._exit(0)  # LanceDB/ChromaDB threads must not delay the exit


if __name__ == "__main__":
    main()
