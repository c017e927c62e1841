"""WAL soak of a memory store: writers at full rate, reader processes, WAL size over time.

Run by ``make stress`` (10 minutes, 4 reader processes) and, for 20 s, by
tests/test_wal_bound.py. One coordinator process starts the reader
processes and the writer process(es) on one store, samples the size of the
``-wal`` file every 0.25 s while they run, stops the writers, keeps sampling
while the readers go on (``--settle`` seconds), and prints one JSON line:
the WAL's peak, its size when the writers stopped and after they stopped,
a timeline, and the errors of every process. Exit status 1 when the peak
passes ``--max-mib``, the settled size passes ``--settle-mib``, or any
process failed.

    python tests/soak_wal.py --seconds 600 --readers 4 --engine native
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import types
from typing import Any

DIM = 384
IDS = 4000


def _light_crewai() -> None:
    """Import ``crewai.memory.types`` without CrewAI's package __init__ (seconds of imports)."""
    root = os.path.dirname(importlib.util.find_spec("crewai").origin)  # type: ignore[arg-type, union-attr]
    for name, sub in (("crewai", ""), ("crewai.memory", "memory")):
        if name not in sys.modules:
            m = types.ModuleType(name)
            m.__path__ = [os.path.join(root, sub) if sub else root]  # type: ignore[attr-defined]
            m.__package__ = name
            sys.modules[name] = m


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _vec(rnd: random.Random) -> list[float]:
    return [rnd.uniform(-1, 1) for _ in range(DIM)]


def _reader(path: str, engine: str, stop: str) -> dict[str, Any]:
    from crewcore import MemoryStorage

    s = MemoryStorage(path, engine=engine)
    open(f"{stop}.ready-{os.getpid()}", "w").close()
    rnd = random.Random(os.getpid())
    q = _vec(rnd)
    ops = errors = 0
    samples: list[str] = []
    while not os.path.exists(stop):
        try:
            s.search(q, limit=10)
            s.count()
            s.list_records(limit=20)
            s.get_record(f"r{rnd.randrange(IDS)}")
            ops += 4
        except Exception as e:  # noqa: BLE001 - every failure is reported
            errors += 1
            if len(samples) < 5:
                samples.append(f"{type(e).__name__}: {e}")
    s.close()
    return {"role": "reader", "ops": ops, "errors": errors, "samples": samples}


def _writer(path: str, engine: str, stop: str, seed: int) -> dict[str, Any]:
    from crewai.memory.types import MemoryRecord

    from crewcore import MemoryStorage

    s = MemoryStorage(path, engine=engine)
    open(f"{stop}.ready-{os.getpid()}", "w").close()
    rnd = random.Random(seed)
    ops = errors = 0
    samples: list[str] = []
    body = "lorem ipsum dolor sit amet " * 120

    def record(i: int) -> Any:
        return MemoryRecord(
            id=f"r{i}", content=body[: rnd.randrange(200, 3000)], scope=f"/soak/s{i % 17}",
            categories=[f"c{i % 5}"], metadata={"i": i, "w": seed}, importance=rnd.random(),
            embedding=_vec(rnd),
        )

    while not os.path.exists(stop):
        k = rnd.random()
        try:
            if k < 0.7:
                s.save([record(rnd.randrange(IDS)) for _ in range(rnd.randrange(1, 5))])
            elif k < 0.8:
                i = rnd.randrange(IDS)
                if s.get_record(f"r{i}") is not None:
                    s.update(record(i))
            elif k < 0.9:
                s.delete(record_ids=[f"r{rnd.randrange(IDS)}" for _ in range(rnd.randrange(1, 4))])
            else:
                s.touch_records([f"r{rnd.randrange(IDS)}" for _ in range(5)])
            ops += 1
        except Exception as e:  # noqa: BLE001 - every failure is reported
            errors += 1
            if len(samples) < 5:
                samples.append(f"{type(e).__name__}: {e}")
    s.close()
    return {"role": "writer", "ops": ops, "errors": errors, "samples": samples}


def _spawn(role: str, path: str, engine: str, stop: str, seed: int = 0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--role", role, "--path", path,
         "--engine", engine, "--stop", stop, "--seed", str(seed)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _collect(p: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        return {"role": "?", "ops": 0, "errors": 1, "samples": [f"timed out; stderr: {err[-2000:]}"]}
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if p.returncode != 0 or not lines:
        return {"role": "?", "ops": 0, "errors": 1,
                "samples": [f"exit {p.returncode}; stderr: {err[-2000:]}"]}
    return json.loads(lines[-1])


def soak(
    path: str, engine: str, seconds: float, readers: int, writers: int, settle: float,
    reader_engine: str | None = None,
) -> dict[str, Any]:
    """Run the soak on the store at ``path``; returns the report."""
    reader_engine = reader_engine or engine
    wal = path + "-wal"
    stop_w, stop_r = path + ".stop-writers", path + ".stop-readers"
    for f in (stop_w, stop_r):
        if os.path.exists(f):
            os.unlink(f)
    # The store exists before the readers open it (they must not create it).
    _light_crewai()
    from crewcore import MemoryStorage

    MemoryStorage(path, engine=engine).close()
    procs = [_spawn("reader", path, reader_engine, stop_r) for _ in range(readers)]
    procs += [_spawn("writer", path, engine, stop_w, seed=i + 1) for i in range(writers)]
    # The clock starts once every process has the store open (imports take
    # seconds on a loaded machine).
    wait_until = time.monotonic() + 120
    while time.monotonic() < wait_until and len(
            [f for f in os.listdir(os.path.dirname(path)) if ".ready-" in f]) < len(procs):
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.05)
    timeline: list[tuple[float, float]] = []
    peak = 0
    t0 = time.monotonic()
    next_mark = 0.0
    while (now := time.monotonic() - t0) < seconds:
        n = _size(wal)
        peak = max(peak, n)
        if now >= next_mark:
            timeline.append((round(now, 1), round(n / 2**20, 2)))
            next_mark += max(1.0, seconds / 20)
        time.sleep(0.25)
    open(stop_w, "w").close()
    reports = [_collect(p, 120) for p in procs[readers:]]
    stopped = _size(wal)
    peak = max(peak, stopped)
    timeline.append((round(time.monotonic() - t0, 1), round(stopped / 2**20, 2)))
    t1 = time.monotonic()
    while time.monotonic() - t1 < settle:
        peak = max(peak, _size(wal))
        time.sleep(0.25)
    settled = _size(wal)
    timeline.append((round(time.monotonic() - t0, 1), round(settled / 2**20, 2)))
    open(stop_r, "w").close()
    reports += [_collect(p, 60) for p in procs[:readers]]
    return {
        "engine": engine, "reader_engine": reader_engine, "seconds": seconds, "readers": readers, "writers": writers,
        "writes": sum(r["ops"] for r in reports if r["role"] == "writer"),
        "reads": sum(r["ops"] for r in reports if r["role"] == "reader"),
        "errors": sum(r["errors"] for r in reports),
        "error_samples": [s for r in reports for s in r["samples"]][:10],
        "wal_peak_mib": round(peak / 2**20, 2),
        "wal_at_stop_mib": round(stopped / 2**20, 2),
        "wal_settled_mib": round(settled / 2**20, 2),
        "settle_seconds": settle,
        "db_mib": round(_size(path) / 2**20, 2),
        "timeline_s_mib": timeline,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--writers", type=int, default=1)
    ap.add_argument("--engine", default="native", choices=["native", "python"])
    ap.add_argument("--reader-engine", choices=["native", "python"], help="default: --engine")
    ap.add_argument("--settle", type=float, default=10, help="seconds of reads after the writers stop")
    ap.add_argument("--max-mib", type=float, default=64, help="the WAL bound")
    ap.add_argument("--settle-mib", type=float, default=4, help="the WAL size after the writers stop")
    ap.add_argument("--dir", help="where the store goes (default: a temporary directory)")
    ap.add_argument("--role", default="coordinator", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--stop", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role != "coordinator":
        _light_crewai()
        if a.role == "reader":
            rep = _reader(a.path, a.engine, a.stop)
        else:
            rep = _writer(a.path, a.engine, a.stop, a.seed)
        print(json.dumps(rep), flush=True)
        return 0
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        rep = soak(os.path.join(d, "memory.db"), a.engine, a.seconds, a.readers, a.writers, a.settle,
                   a.reader_engine)
    rep["max_mib"], rep["settle_mib"] = a.max_mib, a.settle_mib
    rep["ok"] = rep["errors"] == 0 and rep["wal_peak_mib"] <= a.max_mib and rep["wal_settled_mib"] <= a.settle_mib
    print(json.dumps(rep), flush=True)
    return 0 if rep["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
