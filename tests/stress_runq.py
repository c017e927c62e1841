"""The durable queue's long trials (``make stress``; issue 15):

1. ``kickoff_many(queue=...)``: 1,000 CrewAI runs (real classes and HTTP
   client against ``crewcore mockllm``) over 2 worker processes: every result
   present once, in input order, each run attempted once, both processes used,
   one LLM call per run.
2. 500 runs while the worker is SIGKILLed 10 times at random moments (and
   started again each time, as a supervisor would): every run completes, none
   is lost, and only runs that were interrupted ran more than once.

With ``--pg`` (or CREWCORE_PG_DSN set) both also run on PostgreSQL.

    python tests/stress_runq.py [--runs 1000] [--kill-runs 500] [--kills 10] [--pg | --no-sqlite]

Prints one JSON line per trial and a last line ``N passed, N failed``;
exit status 1 when a trial failed.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runq_support import check_kill_trial, kill_trial, llm_requests, mockllm, tail, topics  # noqa: E402


def many_trial(queue: str, n: int, llm: str) -> list[str]:
    import crewcore
    import crewcore.runs as runs

    inputs = topics(n, "many")
    before = llm_requests(llm)
    t0 = time.monotonic()
    res = crewcore.kickoff_many("runq_crews:build_crew", inputs, queue=queue, processes=2, concurrency=4,
                                progress=False)
    el = time.monotonic() - t0
    bad = []
    if len(res) != n:
        bad.append(f"{len(res)} results for {n} inputs")
    for i, (r, inp) in enumerate(zip(res, inputs)):
        if not r:
            bad.append(f"run {i}: {r!r}")
        elif inp["topic"] not in r.raw:
            bad.append(f"run {i}: result {r.raw!r} is not input {i}'s")
    infos = runs.Queue(queue).list(limit=10_000)
    if len(infos) != n:
        bad.append(f"{len(infos)} runs in the queue for {n} inputs")
    again = [i.id for i in infos if i.attempt != 1]
    if again:
        bad.append(f"{len(again)} runs attempted more than once without a fault: {again[:10]}")
    pids = {(i.output or {}).get("pid") for i in infos}
    if len(pids) != 2:
        bad.append(f"runs spread over {len(pids)} processes, want 2")
    calls = llm_requests(llm) - before
    if calls != n:
        bad.append(f"{calls} LLM calls for {n} runs")
    print(json.dumps({"trial": "kickoff_many", "queue": queue.split("?")[0], "runs": n, "seconds": round(el, 1),
                      "runs_per_s": round(n / el, 1), "processes": sorted(p for p in pids if p), "problems": bad[:20]}),
          flush=True)
    return bad


def kills_trial(queue: str, n: int, kills: int, log: Path) -> list[str]:
    res = kill_trial(queue, log, n_runs=n, kills=kills, limit=1800)
    bad = check_kill_trial(res)
    if len(res["killed_at"]) != kills:
        bad.append(f"{len(res['killed_at'])} kills, want {kills}")
    interrupted = [i for i in res["infos"] if i.attempt > 1]
    dup = {t: c for t, c in res["executions"].items() if c > 1}
    print(json.dumps({
        "trial": "kills", "queue": queue.split("?")[0], "runs": n, "kills": len(res["killed_at"]),
        "killed_at_s": [round(t, 1) for t in res["killed_at"]], "seconds": round(res["elapsed"], 1),
        "completed": sum(1 for i in res["infos"] if i.state == "completed"), "interrupted_runs": len(interrupted),
        "ran_twice_or_more": len(dup), "lost": sum(1 for i in res["infos"] if i.state != "completed"),
        "problems": bad[:20],
    }), flush=True)
    if bad:
        sys.stderr.write(tail(log, 80))
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--kill-runs", type=int, default=500)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--pg", action="store_true", help="also on PostgreSQL (default when CREWCORE_PG_DSN is set)")
    ap.add_argument("--no-sqlite", action="store_true", help="only on PostgreSQL")
    args = ap.parse_args()
    queues: list[tuple[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="stress_runq_"))
    os.environ.setdefault("CREWAI_STORAGE_DIR", str(tmp / "crewai"))
    if not args.no_sqlite:
        queues.append(("sqlite", lambda name: str(tmp / f"{name}.db")))
    dsn = os.environ.get("CREWCORE_PG_DSN")
    if (args.pg or args.no_sqlite) and not dsn:
        from pg_support import pgctl

        dsn = pgctl("up")
    schemas: list[str] = []
    if dsn:
        sep = "&" if "?" in dsn else "?"

        def pg(name: str) -> str:
            schema = f"stress_{name}_{os.getpid()}"
            schemas.append(schema)
            return f"{dsn}{sep}schema={schema}"

        queues.append(("postgres", pg))
    passed = failed = 0
    try:
        with mockllm("20ms") as llm:
            for kind, make in queues:
                for name, fn in (
                    ("many", lambda q: many_trial(q, args.runs, llm)),
                    ("kills", lambda q: kills_trial(q, args.kill_runs, args.kills, tmp / f"{kind}-kills.log")),
                ):
                    try:
                        bad = fn(make(name))
                    except Exception as e:  # noqa: BLE001 - a trial that crashed failed
                        bad = [f"{type(e).__name__}: {e}"]
                        print(json.dumps({"trial": name, "queue": kind, "problems": bad}), flush=True)
                    if bad:
                        failed += 1
                    else:
                        passed += 1
    finally:
        if dsn:
            from crewcore._bridge import call

            for s in schemas:
                try:
                    call(["pg_drop_schema", 0, dsn, s])
                except Exception:  # noqa: BLE001 - cleanup only
                    pass
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
