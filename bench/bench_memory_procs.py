"""Parts of ``bench_memory.py`` added for issue 14: the memory of many
processes searching one store, and the comparison with a previous run.

* ``procs_probe``: N fresh interpreters each open the same store, run the
  same searches, and wait; while they all wait, ``/proc/<pid>/smaps_rollup``
  of each gives RSS, PSS (shared pages divided among the processes that map
  them, so a sum counts them once) and USS (private pages). Run once with 1
  process and once with N at the same time; the ratio sum-PSS(N) / PSS(1) is
  what "N processes add together" means. The store's own part is reported
  too: each process's anonymous memory growth from just before it opened
  the store (after its imports) to after its searches, plus the PSS of the
  store's files mapped in it.
* ``compare_baseline``: every p50 of a previous ``bench_memory.py`` JSON
  (``--baseline``) beside this run's, for the rows both have.

The worker is this file run as a script (``--_worker``); it imports only
what the backend needs (numpy, CrewAI's memory types, crewcore or LanceDB).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys
import time
from typing import Any

HERE = Path(__file__).resolve().parent


def smaps(pid: int) -> dict[str, int]:
    """RSS, PSS and USS (bytes) of a process, from smaps_rollup."""
    out = {"rss": 0, "pss": 0, "uss": 0, "anon": 0}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 2 or not parts[1].isdigit():
                continue
            kb = int(parts[1]) * 1024
            if parts[0] == "Rss:":
                out["rss"] = kb
            elif parts[0] == "Pss:":
                out["pss"] = kb
            elif parts[0] in ("Private_Clean:", "Private_Dirty:"):
                out["uss"] += kb
            elif parts[0] == "Anonymous:":
                out["anon"] = kb
    return out


def mapped_pss(pid: int, under: str) -> int:
    """PSS (bytes) of the mappings of files under ``under`` (the store's
    directory: the Go engine's mapped segments; LanceDB's mapped files)."""
    total, inside = 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(None, 5)
            if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                inside = len(head) == 6 and head[5].strip().startswith(under)
            elif inside and head and head[0] == "Pss:":
                total += int(head[1]) * 1024
    return total


def _start(kind: str, path: Path, queries: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--_worker", kind, str(path), str(queries)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def _group(kind: str, path: Path, queries: Path, n: int, timeout: float) -> dict[str, Any]:
    env = dict(os.environ, CREWAI_DISABLE_TELEMETRY="true", OTEL_SDK_DISABLED="true")
    procs = [_start(kind, path, queries, env) for _ in range(n)]
    try:
        ready = []
        deadline = time.monotonic() + timeout
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()  # the worker prints READY once its searches are done
            if not line.startswith("READY "):
                err = p.stderr.read() if p.poll() is not None and p.stderr else ""
                raise RuntimeError(f"worker {p.pid}: {line.strip() or err.strip()[-300:]}")
            ready.append(json.loads(line[6:]))
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not ready after {timeout:.0f} s")
        mem = [smaps(p.pid) for p in procs]  # every worker is alive and idle now
        mapped = [mapped_pss(p.pid, str(path)) for p in procs]
    finally:
        for p in procs:
            try:
                if p.stdin:
                    p.stdin.write("quit\n")
                    p.stdin.close()
            except OSError:
                pass
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return {
        "n": n,
        "rss": sum(m["rss"] for m in mem), "pss": sum(m["pss"] for m in mem), "uss": sum(m["uss"] for m in mem),
        # the store's part: what each process's anonymous memory grew by
        # from just before the open to after the searches (heaps, index,
        # copies), plus the store's mapped files (shared pages counted once,
        # through PSS; USS would count a page mapped by one process only as
        # private, twice with the mapping)
        "store_private": sum(r["anon_after"] - r["anon_before"] for r in ready),
        "store_mapped_pss": sum(mapped),
        "store": sum(r["anon_after"] - r["anon_before"] for r in ready) + sum(mapped),
        "per_process": mem, "workers": ready,
    }


def procs_probe(kind: str, path: Path, queries: Any, nproc: int, workdir: Path,
                timeout: float = 1200.0) -> dict[str, Any]:
    """1 process, then ``nproc`` at once, searching the store at ``path``
    with the first rows of ``queries`` (a float32 matrix)."""
    import numpy as np

    qpath = workdir / f"queries-{os.getpid()}.npy"
    np.save(qpath, np.asarray(queries, dtype=np.float32))
    try:
        one = _group(kind, path, qpath, 1, timeout)
        many = _group(kind, path, qpath, nproc, timeout)
    except Exception as e:  # noqa: BLE001 - reported in the table
        return {"error": f"{type(e).__name__}: {e}"}
    finally:
        qpath.unlink(missing_ok=True)
    return {
        "one": one, "many": many, "nproc": nproc,
        "ratio_pss": many["pss"] / one["pss"] if one["pss"] else None,
        "ratio_uss": many["uss"] / one["uss"] if one["uss"] else None,
        "ratio_store": many["store"] / one["store"] if one["store"] > 0 else None,
    }


def worker_main(kind: str, path: str, queries: str) -> None:
    """One searching process: imports, PSS, open, searches, PSS, READY, wait."""
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    import numpy as np

    import crewai.memory.types  # noqa: F401 - what the records need, as in a CrewAI process

    if kind == "lancedb":
        from crewai.memory.storage.lancedb_storage import LanceDBStorage
    else:
        from crewcore import MemoryStorage
    qs = np.load(queries).tolist()
    before = smaps(os.getpid())["anon"]
    t0 = time.perf_counter()
    st = LanceDBStorage(path=path) if kind == "lancedb" else MemoryStorage(path, engine=kind)
    got = [len(st.search(q, limit=10)) for q in qs]
    took = time.perf_counter() - t0
    after = smaps(os.getpid())["anon"]
    print("READY " + json.dumps({"anon_before": before, "anon_after": after, "results": sum(got),
                                 "searches": len(qs), "open_and_search_s": took}), flush=True)
    sys.stdin.readline()
    close = getattr(st, "close", None)
    if close:
        close()


def compare_baseline(results: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """p50 of every op, open time and store size of each backend, this run
    against ``baseline`` (a previous run's JSON), for the configs both have."""
    old = {(c["n"], c["dim"]): c["backends"] for c in baseline.get("configs", [])}
    rows = []
    for cfg in results["configs"]:
        ob = old.get((cfg["n"], cfg["dim"]))
        if ob is None:
            continue
        for kind, r in cfg["backends"].items():
            o = ob.get(kind) or {}
            if r.get("status") != "ok" or o.get("status") != "ok":
                continue
            new_l, old_l = cfg["backends"].get("lancedb") or {}, ob.get("lancedb") or {}
            for op, v in r.get("ops", {}).items():
                if op in o.get("ops", {}):
                    row = {"n": cfg["n"], "dim": cfg["dim"], "backend": kind, "row": op,
                           "old": o["ops"][op]["p50"], "new": v["p50"]}
                    if kind != "lancedb":  # LanceDB p50 / this backend's p50, in each run
                        try:
                            row["ratio_old"] = old_l["ops"][op]["p50"] / o["ops"][op]["p50"]
                            row["ratio_new"] = new_l["ops"][op]["p50"] / v["p50"]
                        except (KeyError, TypeError, ZeroDivisionError):
                            pass
                    rows.append(row)
            for key, f in (("open_search", lambda x: x["open"]["open_search_p50"]),
                           ("open_count", lambda x: x["open"]["open_count_p50"]),
                           ("disk_bytes", lambda x: x["disk_bytes"])):
                try:
                    rows.append({"n": cfg["n"], "dim": cfg["dim"], "backend": kind, "row": key,
                                 "old": f(o), "new": f(r)})
                except (KeyError, TypeError):
                    pass
    return {"date": baseline.get("date_utc"), "commit": baseline.get("machine", {}).get("git"),
            "cpu_other": baseline.get("cpu_other", {}).get("other_share"), "rows": rows}


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--_worker":
        worker_main(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit("usage: run by bench_memory.py (--procs N)")
