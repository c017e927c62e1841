#!/usr/bin/env python3
"""Benchmark of the durable run queue (issue 15; Go package ``runq`` on River).

Three measurements, each on a SQLite queue file and on PostgreSQL (the
``make pg-up`` server, or CREWCORE_PG_DSN):

1. **Queue overhead per run**: one run at a time of a crew that returns at
   once (``tests/runq_crews.py:plain``, no LLM), through a ready worker
   (1 process): submit -> the worker process starts it ("submit to start"),
   and its end -> ``RunHandle.wait`` sees the result ("finish to visible").
   p50/p95 of their sum over ``--overhead-runs`` runs. Targets: p50 < 5 ms
   (SQLite), < 10 ms (PostgreSQL).
2. **CrewAI runs at 50 ms LLM latency**: ``kickoff_many(queue=..., processes=0)``
   of ``--runs`` CrewAI runs (tests/runq_crews.py:build_crew: one agent, one
   task, one LLM call, against ``crewcore mockllm --latency 50ms``) worked by a
   ``crewcore worker`` started and ready beforehand with 1 and with 2 Python
   processes, at each ``--crew-concurrency`` (runs at once per process;
   default 4 and 8), as ``--pairs`` interleaved pairs (1 process, then 2),
   each on a fresh queue: this shared machine's speed drifts by 10-20%
   within minutes, so one pair proves little; the verdict is the median of
   the pairs' ratios. Target: 2 processes >= 1.8x 1 process, judged at the
   highest concurrency given (at 4, two processes hold only 8 runs in
   flight and leave part of the cores idle: see the report).
   Side by side on the same crew and server: CrewAI's own serial
   ``kickoff_for_each`` (on the first ``--serial-runs`` inputs) and
   ``crewcore.kickoff_many(processes=2)`` (forked workers, no queue).
3. **The queue's own ceiling**: ``--ceiling-runs`` runs of the instant crew
   with 2 processes x 8: the runs per second the queue itself sustains here
   (what one River queue can feed before CrewAI's CPU is the limit).

The load average is recorded with every figure (this machine is shared).

    .venv/bin/python bench/bench_queue.py --write docs/benchmarks.md    # what make bench runs
    .venv/bin/python bench/bench_queue.py --runs 200 --overhead-runs 100 # a quick look, prints only
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from pathlib import Path
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from runq_support import mockllm, start_worker, stop_worker, topics  # noqa: E402


def progress(msg: str) -> None:
    print(f"[bench_queue] {msg} (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[max(0, min(len(s) - 1, int(len(s) * p + 0.999999) - 1))] if s else 0.0


def idle_cpu(pid: int, settle: float = 2.0, span: float = 5.0) -> float:
    """CPU of the worker's Go process (all its threads) while no run comes,
    in percent of one core, over span seconds after settle seconds."""
    def ticks() -> int:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])  # utime + stime

    time.sleep(settle)
    a, t0 = ticks(), time.monotonic()
    time.sleep(span)
    b, t1 = ticks(), time.monotonic()
    return round((b - a) / os.sysconf("SC_CLK_TCK") / (t1 - t0) * 100, 1)


def overhead(queue: str, n: int, tmp: Path) -> dict[str, Any]:
    import crewcore.runs as runs

    load0 = os.getloadavg()[0]
    w = start_worker(queue, tmp / "overhead.log", install=False, processes=1, concurrency=1)
    try:
        q = runs.Queue(queue)
        starts, ends, totals = [], [], []
        for i in range(n + 20):
            t0 = time.time()
            (h,) = q.submit("runq_crews:plain", [{"i": i}], check_crew=False)
            info = h.wait(timeout=60)
            t3 = time.time()
            rec = info.output or {}
            if not info.ok:
                raise RuntimeError(f"run failed: {info.errors}")
            if i < 20:  # warm-up
                continue
            s = (rec["started"] - t0) * 1000
            e = (t3 - rec["finished"]) * 1000
            starts.append(s)
            ends.append(e)
            totals.append(s + e)
        q.close()
        idle = idle_cpu(w.proc.pid)
    finally:
        stop_worker(w)
    return {
        "idle_cpu_pct": idle,
        "n": n, "p50": pct(totals, 0.5), "p95": pct(totals, 0.95), "start_p50": pct(starts, 0.5),
        "start_p95": pct(starts, 0.95), "visible_p50": pct(ends, 0.5), "visible_p95": pct(ends, 0.95),
        "load": round((load0 + os.getloadavg()[0]) / 2, 1),
    }


def crew_runs(queue: str, n: int, processes: int, tmp: Path, label: str, concurrency: int,
              pin: str = "on") -> dict[str, Any]:
    import crewcore
    import crewcore.runs as runs

    w = start_worker(queue, tmp / f"{label}.log", processes=processes, concurrency=concurrency, pin=pin)
    try:
        # One warm-up run per process (first LLM client, first Flow), not counted.
        crewcore.kickoff_many("runq_crews:build_crew", topics(2 * processes, f"warm-{label}"), queue=queue,
                              processes=0, progress=False)
        load0 = os.getloadavg()[0]
        t0 = time.monotonic()
        res = crewcore.kickoff_many("runq_crews:build_crew", topics(n, label), queue=queue, processes=0,
                                    progress=False)
        el = time.monotonic() - t0
        load1 = os.getloadavg()[0]
        st = runs.Queue(queue).stats(sample=n)
    finally:
        stop_worker(w)
    ok = sum(1 for r in res if r)
    return {"n": n, "ok": ok, "seconds": el, "rps": ok / el, "p50": st.p50, "p95": st.p95,
            "load": round((load0 + load1) / 2, 1)}


def baseline_serial(n: int) -> dict[str, Any]:
    from runq_crews import build_crew

    crew = build_crew()
    crew.copy().kickoff(inputs={"topic": "warm"})
    load0 = os.getloadavg()[0]
    t0 = time.monotonic()
    outs = crew.kickoff_for_each(inputs=topics(n, "serial"))
    el = time.monotonic() - t0
    return {"n": n, "ok": len(outs), "seconds": el, "rps": len(outs) / el,
            "load": round((load0 + os.getloadavg()[0]) / 2, 1)}


def baseline_procs(n: int) -> dict[str, Any]:
    import crewcore
    from runq_crews import build_crew

    crewcore.install()
    crew = build_crew()
    crewcore.kickoff_many(crew, topics(4, "warm"), processes=2, progress=False)
    load0 = os.getloadavg()[0]
    t0 = time.monotonic()
    res = crewcore.kickoff_many(crew, topics(n, "fork"), processes=2, progress=False)
    el = time.monotonic() - t0
    crewcore.uninstall()
    return {"n": n, "ok": res.summary.done, "seconds": el, "rps": res.summary.done / el, "p50": res.summary.p50,
            "p95": res.summary.p95, "load": round((load0 + os.getloadavg()[0]) / 2, 1)}


def ceiling(queue: str, n: int, tmp: Path) -> dict[str, Any]:
    import crewcore.runs as runs

    w = start_worker(queue, tmp / "ceiling.log", install=False, processes=2, concurrency=8)
    try:
        load0 = os.getloadavg()[0]
        t0 = time.monotonic()
        b = runs.submit("runq_crews:plain", [{"i": i} for i in range(n)], queue=queue, check_crew=False)
        t1 = time.monotonic()
        infos = b.wait(timeout=1800)
        el = time.monotonic() - t0
    finally:
        stop_worker(w)
    ok = sum(1 for i in infos if i.ok)
    return {"n": n, "ok": ok, "seconds": el, "rps": ok / el, "submit_s": t1 - t0,
            "load": round((load0 + os.getloadavg()[0]) / 2, 1)}


def pg_spec(name: str) -> tuple[str, str, str] | None:
    dsn = os.environ.get("CREWCORE_PG_DSN")
    if not dsn:
        try:
            from pg_support import pgctl

            dsn = pgctl("up")
        except Exception as e:  # noqa: BLE001 - no server: PostgreSQL figures not measured
            progress(f"no PostgreSQL server ({e}): PostgreSQL figures not measured")
            return None
    schema = f"bench_{name}_{os.getpid()}"
    sep = "&" if "?" in dsn else "?"
    return dsn, schema, f"{dsn}{sep}schema={schema}"


def drop(dsn: str, schema: str) -> None:
    from crewcore._bridge import call

    try:
        call(["pg_drop_schema", 0, dsn, schema])
    except Exception:  # noqa: BLE001 - cleanup only
        pass


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--serial-runs", type=int, default=100)
    ap.add_argument("--overhead-runs", type=int, default=300)
    ap.add_argument("--ceiling-runs", type=int, default=2000)
    ap.add_argument("--crew-concurrency", default="4,8",
                    help="runs at once per worker process for the CrewAI runs (comma-separated)")
    ap.add_argument("--pairs", type=int, default=3, help="interleaved (1 process, 2 processes) pairs per setting")
    ap.add_argument("--pin", default="on",
                    help="the workers' --pin for the crew rows (default on: 1 process pinned to one CPU, 2 to one each)")
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--parts", default="overhead,ceiling,crew",
                    help="which measurements to run (comma-separated: overhead, ceiling, crew; none: only rewrite the report)")
    ap.add_argument("--merge", help="figures of an earlier run (its --json) to keep for the parts not run now")
    ap.add_argument("--write", help="markdown file whose 'queue' section to rewrite")
    ap.add_argument("--json", help="also write the raw figures here")
    ap.add_argument("--note", default="", help="a paragraph added to the report (e.g. figures of another run)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_queue_"))
    os.environ.setdefault("CREWAI_STORAGE_DIR", str(tmp / "crewai"))
    load_start = os.getloadavg()
    out: dict[str, Any] = {}
    if a.merge:
        out.update(json.loads(Path(a.merge).read_text()))
    parts = set(a.parts.split(",")) - {"none", ""}
    if parts or not a.merge:
        out.update({"machine": machine(), "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")})
    queues: list[tuple[str, str]] = [("SQLite", str(tmp / "q-{}.db"))]
    pg = None if a.no_pg else pg_spec("q")
    if pg:
        queues.append(("PostgreSQL", pg[2].replace(f"schema={pg[1]}", f"schema={pg[1]}_{{}}")))
    schemas = [f"{pg[1]}_{k}" for k in ("ovh", "ceil")] if pg else []
    schemas += [f"{pg[1]}_{k}{c}_{i}" for k in ("one", "two") for c in concurrencies(a) for i in range(a.pairs)] if pg else []
    try:
        for name, tmpl in queues:
            if "overhead" in parts:
                progress(f"{name}: overhead, {a.overhead_runs} sequential runs")
                out[f"overhead_{name}"] = stamp(overhead(tmpl.format("ovh"), a.overhead_runs, tmp))
            if "ceiling" in parts:
                progress(f"{name}: queue ceiling, {a.ceiling_runs} instant runs")
                out[f"ceiling_{name}"] = stamp(ceiling(tmpl.format("ceil"), a.ceiling_runs, tmp))
        if "crew" not in parts:
            queues = []
        with mockllm("50ms"):
            for name, tmpl in queues:
                for conc in concurrencies(a):
                    pairs = []
                    for k in range(a.pairs):
                        pair = {}
                        for procs, key in ((1, "one"), (2, "two")):
                            progress(f"{name}: {a.runs} CrewAI runs, {procs} worker process(es) x {conc}, pair {k + 1}/{a.pairs}")
                            q = tmpl.format(f"{key}{conc}_{k}")
                            pair[key] = stamp(crew_runs(q, a.runs, procs, tmp, f"{name}-{procs}-{conc}-{k}", conc,
                                                        a.pin))
                            if q.endswith(".db"):
                                for f in Path(q).parent.glob(Path(q).name + "*"):
                                    f.unlink()
                        pairs.append(pair)
                    out[f"crew_{name}_c{conc}"] = {"concurrency": conc, "pairs": pairs, "pin": a.pin}
                if a.pin != "off":
                    conc = max(concurrencies(a))
                    progress(f"{name}: {a.runs} CrewAI runs, 1 worker process x {conc}, not pinned")
                    q = tmpl.format(f"unpinned{conc}")
                    if pg and not q.endswith(".db"):
                        schemas.append(f"{pg[1]}_unpinned{conc}")
                    out[f"unpinned_{name}"] = stamp(crew_runs(q, a.runs, 1, tmp, f"{name}-unpinned", conc, "off"))
            if "crew" in parts:
                progress(f"CrewAI kickoff_for_each, {a.serial_runs} runs")
                out["serial"] = stamp(run_child("baseline_serial", a.serial_runs))
                progress(f"kickoff_many(processes=2) without a queue, {a.runs} runs")
                out["fork"] = stamp(run_child("baseline_procs", a.runs))
    finally:
        if pg:
            for s in schemas:
                drop(pg[0], s)
    if parts or not a.merge:
        out["load_start"] = load_start
        out["load_end"] = os.getloadavg()
    text = report(out, a)
    print(text)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2, default=str))
    if a.write:
        from report import write_section

        write_section(a.write, "queue", text)
    return 0


def concurrencies(a: argparse.Namespace) -> list[int]:
    return sorted({int(x) for x in str(a.crew_concurrency).split(",") if x.strip()})


def median_pair(c: dict[str, Any]) -> tuple[dict[str, Any], float, list[float]]:
    """The pair whose ratio is the median (the lower middle one for an
    even count), that ratio, and every pair's ratio in run order."""
    ratios = [p["two"]["rps"] / p["one"]["rps"] for p in c["pairs"]]
    order = sorted(range(len(ratios)), key=ratios.__getitem__)
    mid = order[(len(order) - 1) // 2]
    return c["pairs"][mid], ratios[mid], ratios


def stamp(r: dict[str, Any]) -> dict[str, Any]:
    """A figure with the time it was taken (rows of one report may come
    from different runs: --merge)."""
    r["at"] = dt.datetime.now(dt.timezone.utc).strftime("%m-%d %H:%M")
    return r


def at(r: dict[str, Any]) -> str:
    return f" ({r['at']} UTC)" if r.get("at") else ""


def run_child(fn: str, n: int) -> dict[str, Any]:
    """A baseline in a fresh interpreter (CrewAI's default path must not
    share this process's crewcore state)."""
    code = (f"import json, sys; sys.path[:0] = [{str(TESTS)!r}, {str(Path(__file__).parent)!r}]\n"
            f"import bench_queue\nprint(json.dumps(bench_queue.{fn}({n})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600, env=dict(os.environ))
    if r.returncode != 0:
        raise RuntimeError(f"{fn} failed: {r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def report(o: dict[str, Any], a: argparse.Namespace) -> str:
    def ms(x: float) -> str:
        return f"{x:.1f} ms"

    lines = [
        "## Durable run queue (River; `bench/bench_queue.py`)",
        "",
        f"Machine: {o['machine']}; {o['date']}. Load average (1 min) at start "
        f"{o['load_start'][0]:.1f}, at end {o['load_end'][0]:.1f}; each row gives the load while it ran "
        "and when (the machine is shared with other work: figures under load are pessimistic; rows "
        "re-measured in a quieter moment are merged with `--parts ... --merge earlier.json`).",
        "",
        f"Reproduce: `make pg-up && .venv/bin/python bench/bench_queue.py --write docs/benchmarks.md` "
        f"(runs {a.runs}, overhead runs {a.overhead_runs}, ceiling runs {a.ceiling_runs}).",
        "",
        "### Queue overhead per run (one run at a time, instant crew, ready worker)",
        "",
        "| queue | submit to start p50 / p95 | finish to visible p50 / p95 | overhead p50 | p95 | target p50 | met | idle worker CPU | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, target in (("SQLite", 5.0), ("PostgreSQL", 10.0)):
        r = o.get(f"overhead_{name}")
        if not r:
            lines.append(f"| {name} | not measured | | | | < {target:.0f} ms | | | |")
            continue
        lines.append(
            f"| {name} | {ms(r['start_p50'])} / {ms(r['start_p95'])} | {ms(r['visible_p50'])} / {ms(r['visible_p95'])} "
            f"| **{ms(r['p50'])}** | {ms(r['p95'])} | < {target:.0f} ms | {'yes' if r['p50'] < target else 'NO'} "
            f"| {str(r['idle_cpu_pct']) + '% of a core' if 'idle_cpu_pct' in r else ''} | {r['load']}{at(r)} |"
        )
    lines += ["", "Idle worker CPU: the worker's Go process (River's client, the wake listener) while no run comes, "
              "5 s measured 2 s after the last run (its Python worker process sleeps in a read)."]
    lines += [
        "",
        f"### {a.runs} CrewAI runs at 50 ms LLM latency (one agent, one task; worker ready)",
        "",
        "Each queue row is the median pair of its setting (the pair whose ratio is the median).",
        "",
        "| how | runs | wall s | runs/s | vs CrewAI serial | run time p50 / p95 | load |",
        "|---|---|---|---|---|---|---|",
    ]
    serial = o.get("serial")
    base = serial["rps"] if serial else 0.0

    def row(label: str, r: dict[str, Any] | None) -> None:
        if not r:
            lines.append(f"| {label} | not measured | | | | | |")
            return
        ratio = f"{r['rps'] / base:.1f}x" if base else ""
        pp = f"{r['p50'] * 1000:.0f} / {r['p95'] * 1000:.0f} ms" if "p50" in r else ""
        lines.append(f"| {label} | {r['ok']}/{r['n']} | {r['seconds']:.1f} | {r['rps']:.1f} | {ratio} | {pp} | {r['load']}{at(r)} |")

    settings = sorted((c for k, c in o.items() if k.startswith("crew_") and isinstance(c, dict) and "pairs" in c),
                      key=lambda c: c["concurrency"])
    judged = max((c["concurrency"] for c in settings), default=0)
    row("CrewAI `kickoff_for_each` (serial)", serial)
    row("`kickoff_many(processes=2)` (forked workers, no queue)", o.get("fork"))
    for name in ("SQLite", "PostgreSQL"):
        for c in (o.get(f"crew_{name}_c{n}") for n in sorted({c["concurrency"] for c in settings})):
            if not c:
                continue
            pair, _, _ = median_pair(c)
            for procs, key in ((1, "one"), (2, "two")):
                row(f"queue on {name}, {procs} worker process{'es' if procs > 1 else ''} x {c['concurrency']}"
                    f"{', pinned' if c.get('pin', 'off') != 'off' else ''}", pair[key])
        u = o.get(f"unpinned_{name}")
        if u:
            row(f"queue on {name}, 1 worker process x {judged}, not pinned (`--pin off`; the default for 1 process"
                " on this 2-CPU machine)", u)
    lines += ["", "| queue | runs at once per process | 1 process runs/s, each pair | 2 processes runs/s, each pair "
              "| ratio, each pair | median ratio | target | met |", "|---|---|---|---|---|---|---|---|"]
    best_one: dict[str, float] = {}
    for name in ("SQLite", "PostgreSQL"):
        for c in settings:
            if o.get(f"crew_{name}_c{c['concurrency']}") is not c:
                continue
            _, med, ratios = median_pair(c)
            ones = [p["one"]["rps"] for p in c["pairs"]]
            twos = [p["two"]["rps"] for p in c["pairs"]]
            best_one[name] = max(best_one.get(name, 0.0), statistics.median(ones))
            verdict = ("yes" if med >= 1.8 else "NO") if c["concurrency"] == judged else "(not judged)"
            lines.append(
                f"| {name} | {c['concurrency']} | {', '.join(f'{x:.1f}' for x in ones)} "
                f"| {', '.join(f'{x:.1f}' for x in twos)} | {', '.join(f'{x:.2f}' for x in ratios)} "
                f"| **{med:.2f}x** | >= 1.8x | {verdict} |")
    for name in ("SQLite", "PostgreSQL"):
        c = o.get(f"crew_{name}_c{judged}")
        if c and name in best_one:
            two = statistics.median(p["two"]["rps"] for p in c["pairs"])
            lines.append(f"\n{name}: 2 processes x {judged} (median {two:.1f} runs/s) against 1 process at its best "
                         f"concurrency here (median {best_one[name]:.1f} runs/s): {two / best_one[name]:.2f}x.")
    lines += [
        "",
        "Pinning. Each row's worker ran with `--pin` as given (`on` by default here: 1 process pinned to one CPU, 2"
        " processes to one CPU each; `crewcore worker`'s default `auto` pins when the processes are as many as the"
        " CPUs). A pinned interpreter hands its GIL between its threads on one CPU; unpinned, the kernel wakes the"
        " next GIL holder on the other CPU, which on this VM costs more CPU per run and leaves cores idle (PostgreSQL,"
        " 1,000 runs, 12-06 22:10 UTC, by /proc: 1 process pinned 44.6 runs/s at 21.1 ms of Python CPU per run; 2"
        " pinned 82.5 runs/s at 18.5 ms, machine 7% idle; unpinned 2 processes made 47 runs/s at 29 ms, 17% idle)."
        " Pinned, one process keeps one core busy with its Python (P ms a run) while the rest of a run (O ms:"
        " the PostgreSQL server 1.8-2.4, the worker's Go process 0.9-1.3, the submitter 0.6-1.1, the mock LLM 0.5-0.7;"
        " ~4-5.5 ms on this machine) runs on the other core; two processes must share both cores with that rest,"
        " so 2 / 1 is about 2P / (P + O): 1.6 for P = 20 and O = 4.75, what the rows above show. To reach 1.8 here O"
        " would have to be under P / 9 (~2 ms), less than the mock LLM, the server and the submitter take together;"
        " in production they are other machines (the LLM API, the PostgreSQL server, the submitting app) and each"
        " worker process adds its core. A crew that spends more Python per run (most real crews: tools, memory,"        " several tasks) scales closer to 2x; a faster run scales less on a machine this small.",
    ]
    lines += [
        "",
        f"### The queue's own ceiling ({a.ceiling_runs} instant runs, 2 processes x 8)",
        "",
        "| queue | runs/s | submit of all (s) | load |",
        "|---|---|---|---|",
    ]
    for name in ("SQLite", "PostgreSQL"):
        r = o.get(f"ceiling_{name}")
        if r:
            lines.append(f"| {name} | {r['rps']:.0f} | {r['submit_s']:.2f} | {r['load']}{at(r)} |")
    lines += [
        "",
        "Scaling. A run of this crew costs ~20 ms of Python CPU under one GIL (pinned), so each worker process"
        " adds about one core's worth of runs (~45 runs/s per core for this crew) until the machine's"
        " cores are used; more machines add theirs on one PostgreSQL queue. What limits it past that: the queue's"
        " ceiling above (every run is a fetch, a completion and a result read: one SQLite writer per file on one"
        " machine; on PostgreSQL, River fetches in batches with `FOR UPDATE SKIP LOCKED`, so the server's write"
        " rate and its connections are the limit: each `crewcore worker` holds a pool of up to slots/4+6"
        " connections (at most 32) plus one for LISTEN, so ~20 machines of 4 processes fit in PostgreSQL's default"
        " 100 connections; beyond, put PgBouncer in front (River's poll-only mode) or raise max_connections)."
        " On this 2-core machine shared with other work, 2 processes cannot show more than the cores left free.",
    ]
    if a.note:
        lines += ["", a.note]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
