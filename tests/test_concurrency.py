"""Many processes x many threads on one store file.

4 processes x 4 threads save small batches (unique ids) and search with and
without a scope filter for a while (CREWCORE_STRESS_SECONDS; default 20 s for
native, 8 s for the python engine and for the mixed run). Any exception is an
error ("database is locked" in particular). At the end: zero errors, and the
store holds exactly the records that were saved.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from conftest import child_env, last_json, run_py, script

pytestmark = pytest.mark.slow

PROCS = 4
THREADS = 4
BATCH = 5
DIM = 24


def _seconds(default: float) -> float:
    env = os.environ.get("CREWCORE_STRESS_SECONDS")
    return float(env) if env else default


_WORKER = """
    import json, os, random, sys, threading, time, traceback
    from crewai.memory.types import MemoryRecord
    from crewcore import MemoryStorage

    eng, path, proc, threads, seconds, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
    DIM, BATCH = %(dim)d, %(batch)d
    s = MemoryStorage(path, engine=eng)
    assert s.backend == eng, s.backend
    open(go + f".ready{proc}", "w").close()
    while not os.path.exists(go):          # start together
        time.sleep(0.01)
    end = time.monotonic() + seconds
    lock = threading.Lock()
    totals = {"saved": 0, "searches": 0, "errors": 0, "samples": [], "stale": 0}

    def err(what, e):
        with lock:
            totals["errors"] += 1
            if len(totals["samples"]) < 8:
                totals["samples"].append(f"{what}: {type(e).__name__}: {e}")

    def work(t):
        rnd = random.Random(proc * 1000 + t)
        n = saved = searches = 0
        my_scope = f"/p{proc}/t{t}"
        while time.monotonic() < end:
            batch = []
            for _ in range(BATCH):
                v = [rnd.uniform(-1, 1) for _ in range(DIM)]
                batch.append(MemoryRecord(id=f"p{proc}-t{t}-{n}", content=f"proc {proc} thread {t} #{n}",
                                          scope=f"{my_scope}/{n %% 3}", categories=[f"c{n %% 4}"],
                                          metadata={"p": proc, "t": t, "n": n}, embedding=v))
                n += 1
            try:
                s.save(batch)
                saved += len(batch)
            except Exception as e:
                err("save", e)
                continue
            try:
                # read your own write, through the scope filter
                first = batch[0]
                hits = s.search(first.embedding, scope_prefix=my_scope, limit=1)
                if not hits or hits[0][0].id != first.id:
                    with lock:
                        totals["stale"] += 1
                s.search(batch[-1].embedding, limit=5)
                s.search(batch[-1].embedding, scope_prefix=f"/p{rnd.randrange(%(procs)d)}", categories=["c1", "c2"], limit=5)
                s.count(f"/p{proc}")
                searches += 3
            except Exception as e:
                err("search", e)
        with lock:
            totals["saved"] += saved
            totals["searches"] += searches

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    totals["final_count_seen"] = s.count()
    totals["own_count"] = s.count(f"/p{proc}")
    print(json.dumps(totals))
""" % {"dim": DIM, "batch": BATCH, "procs": PROCS}

_VERIFY = """
    import json, sys
    from collections import Counter
    from crewcore import MemoryStorage
    s = MemoryStorage(sys.argv[2], engine=sys.argv[1])
    recs = s.list_records(limit=10**9)
    ids = [r.id for r in recs]
    per_proc = Counter(i.split("-")[0] for i in ids)
    print(json.dumps({"count": s.count(), "listed": len(ids), "unique": len(set(ids)),
                      "per_proc": per_proc, "scoped": {p: s.count("/" + p) for p in per_proc}}))
"""


def _stress(tmp_path, engines: list[str], seconds: float) -> None:
    path = str(tmp_path / "stress")
    go = str(tmp_path / "go")
    procs = []
    try:
        for i, eng in enumerate(engines):
            procs.append(subprocess.Popen(
                [sys.executable, "-c", script(_WORKER), eng, path, str(i), str(THREADS), str(seconds), go],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
            ))
        # Everyone has opened the store (and created it) before the clock starts.
        deadline = time.monotonic() + 120
        while not all(os.path.exists(f"{go}.ready{i}") for i in range(len(engines))):
            for p in procs:
                if p.poll() is not None:
                    raise AssertionError(f"worker died at startup: {p.stderr.read()}")
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.05)
        open(go, "w").close()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=seconds + 180)
            assert p.returncode == 0, f"worker exited {p.returncode}: {err}"
            results.append(last_json(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    errors = sum(r["errors"] for r in results)
    samples = [s for r in results for s in r["samples"]]
    assert errors == 0, f"{errors} errors, e.g. {samples}"
    assert sum(r["stale"] for r in results) == 0, "a thread did not find the record it had just saved"
    saved = sum(r["saved"] for r in results)
    assert saved > 0 and all(r["saved"] > 0 and r["searches"] > 0 for r in results), results
    for i, r in enumerate(results):
        assert r["own_count"] == r["saved"], (i, r)
        assert r["final_count_seen"] >= r["saved"]

    for eng in sorted(set(engines)):
        v = last_json(run_py(_VERIFY, eng, path, timeout=180).stdout)
        assert v["count"] == v["listed"] == v["unique"] == saved, (eng, v, saved)
        for i, r in enumerate(results):
            assert v["per_proc"][f"p{i}"] == r["saved"] == v["scoped"][f"p{i}"], (eng, i, v, r)


def test_stress_native(tmp_path):
    _stress(tmp_path, ["native"] * PROCS, _seconds(20))


def test_stress_python(tmp_path):
    _stress(tmp_path, ["python"] * PROCS, _seconds(8))


def test_stress_mixed_engines(tmp_path):
    """2 native + 2 python processes on one file (different processes, so
    the two SQLite libraries never share a process)."""
    _stress(tmp_path, ["native", "native", "python", "python"], _seconds(8))
