#!/usr/bin/env python3
"""Embedded crewcore vs Postgres crewcore, side by side in one run.

    python bench/bench_postgres.py --write docs/benchmarks.md   # section "postgres"
    python bench/bench_postgres.py --sizes 10000 --queries 100  # quick look

For each size (default 10k and 100k records of 1536 dimensions, clustered
like text embeddings) and each store (crewcore's embedded store, and the
PostgreSQL + pgvector store on the `make pg-up` server or CREWCORE_PG_DSN):

* batch save throughput: records/s saving 1,000-record batches through
  ``MemoryStorage.save`` (the Postgres load runs without the HNSW index, which
  is then built once: its build time is reported; then saves of 100-record
  batches into the indexed store are timed too),
* search p50/p95 of ``search(limit=10)`` from one process, unfiltered and
  with a scope filter,
* recall@10 against exact (numpy) top-10,
* throughput of 4 concurrent processes searching the same store.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
import json
import multiprocessing as mp
import os
from pathlib import Path
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "python"))
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")

DIM = 1536
BATCH = 1000
SCOPES = 20
T0 = datetime(2026, 1, 1)


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Data:
    """n clustered unit vectors (300 centroids + noise), generated per batch."""

    def __init__(self, n: int, seed: int = 7) -> None:
        self.n = n
        rng = np.random.default_rng(seed)
        self.centers = rng.standard_normal((300, DIM)).astype(np.float32)
        self.seed = seed

    def batch(self, i0: int, i1: int) -> np.ndarray:
        rng = np.random.default_rng(self.seed * 1_000_003 + i0)
        c = self.centers[rng.integers(0, 300, i1 - i0)]
        x = c + 0.8 * rng.standard_normal((i1 - i0, DIM)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x

    def all(self) -> np.ndarray:
        return np.concatenate([self.batch(i, min(self.n, i + BATCH)) for i in range(0, self.n, BATCH)])

    def queries(self, q: int) -> np.ndarray:
        rng = np.random.default_rng(99)
        x = self.centers[rng.integers(0, 300, q)] + 0.8 * rng.standard_normal((q, DIM)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def records(x: np.ndarray, i0: int) -> list[Any]:
    from crewai.memory.types import MemoryRecord

    out = []
    for j, v in enumerate(x):
        i = i0 + j
        out.append(MemoryRecord.model_construct(
            id=f"r{i}", content=f"memory {i}", scope=f"/crew/s{i % SCOPES}", categories=[f"c{i % 7}"],
            metadata={}, importance=0.5, created_at=T0, last_accessed=T0, embedding=v.tolist(),
            source=None, private=False))
    return out


def open_store(kind: str, where: str, **kw: Any) -> Any:
    from crewcore import MemoryStorage

    if kind == "embedded":
        return MemoryStorage(where, engine="native", **kw)
    dsn, schema = where.split("#", 1)
    return MemoryStorage(dsn=dsn, schema=schema, **kw)


def load(kind: str, where: str, data: Data) -> dict[str, Any]:
    """Save every record in 1,000-record batches; Postgres builds its index after."""
    st = open_store(kind, where, exact=(kind == "postgres"))  # Postgres: no index while loading
    t = time.perf_counter()
    for i in range(0, data.n, BATCH):
        st.save(records(data.batch(i, min(data.n, i + BATCH)), i))
    load_s = time.perf_counter() - t
    out: dict[str, Any] = {"load_s": load_s, "save_rps": data.n / load_s}
    if kind == "postgres":
        t = time.perf_counter()
        st._e().build_index()
        out["index_s"] = time.perf_counter() - t
    st.close()
    return out


def incremental_saves(kind: str, where: str, data: Data, batches: int = 5, size: int = 100) -> float:
    """Records/s of 100-record saves into the loaded (indexed) store."""
    st = open_store(kind, where)
    x = data.batch(data.n, data.n + batches * size)
    t = time.perf_counter()
    for b in range(batches):
        st.save(records(x[b * size:(b + 1) * size], data.n + b * size))
    dt = time.perf_counter() - t
    st.delete(record_ids=[f"r{i}" for i in range(data.n, data.n + batches * size)])
    st.close()
    return batches * size / dt


def search_phase(kind: str, where: str, qs: np.ndarray, truth: np.ndarray, ef: int) -> dict[str, Any]:
    kw = {"ef_search": ef} if kind == "postgres" else {}
    st = open_store(kind, where, **kw)
    st.search(qs[0].tolist(), limit=10)  # warm (opens, loads, caches plans)
    lat, scoped, rec = [], [], []
    for i, q in enumerate(qs):
        ql = q.tolist()
        t = time.perf_counter_ns()
        got = st.search(ql, limit=10)
        lat.append(time.perf_counter_ns() - t)
        ids = {int(r.id[1:]) for r, _ in got}
        rec.append(len(ids & set(truth[i].tolist())) / 10)
        t = time.perf_counter_ns()
        st.search(ql, scope_prefix=f"/crew/s{i % SCOPES}", limit=10)
        scoped.append(time.perf_counter_ns() - t)
    st.close()
    return {
        "p50_ms": float(np.percentile(lat, 50)) / 1e6, "p95_ms": float(np.percentile(lat, 95)) / 1e6,
        "scoped_p50_ms": float(np.percentile(scoped, 50)) / 1e6, "scoped_p95_ms": float(np.percentile(scoped, 95)) / 1e6,
        "recall10": float(np.mean(rec)),
    }


def _searcher(kind: str, where: str, qs: np.ndarray, seconds: float, go: Any, ready: Any, out: Any, ef: int) -> None:
    kw = {"ef_search": ef} if kind == "postgres" else {}
    st = open_store(kind, where, **kw)
    st.search(qs[0].tolist(), limit=10)
    ready.release()
    go.wait()
    n, end, i = 0, time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        st.search(qs[i % len(qs)].tolist(), limit=10)
        n, i = n + 1, i + 1
    out.put(n)
    st.close()


def concurrent(kind: str, where: str, qs: np.ndarray, procs: int, seconds: float, ef: int) -> float:
    ctx = mp.get_context("spawn")
    go, ready, out = ctx.Event(), ctx.Semaphore(0), ctx.Queue()
    ps = [ctx.Process(target=_searcher, args=(kind, where, qs, seconds, go, ready, out, ef)) for _ in range(procs)]
    for p in ps:
        p.start()
    for _ in ps:
        ready.acquire(timeout=900)
    go.set()
    total = sum(out.get(timeout=900 + seconds) for _ in ps)
    for p in ps:
        p.join()
    return total / seconds


def pg_dsn() -> str:
    env = os.environ.get("CREWCORE_PG_DSN")
    if env:
        return env
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "pgctl.py"), "up"], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def drop_schema(dsn: str, schema: str) -> None:
    from crewcore._bridge import call

    call(["pg_drop_schema", 0, dsn, schema])


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Linux {platform.release()}, Python {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--ef-search", type=int, default=100)
    ap.add_argument("--write", help="markdown file whose 'postgres' section to rewrite")
    ap.add_argument("--json", help="also dump raw results here")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    dsn = pg_dsn()
    load_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-pg-", dir=ROOT / ".bench-data" if (ROOT / ".bench-data").is_dir() else None))
    results: dict[str, Any] = {}
    try:
        for n in sizes:
            data = Data(n)
            qs = data.queries(args.queries)
            progress(f"{n}: exact top-10 with numpy")
            xs = data.all()
            truth = np.argsort(-(qs @ xs.T), axis=1)[:, :10]  # unit vectors: max dot = min L2
            del xs
            for kind in ("embedded", "postgres"):
                where = str(work / f"emb-{n}") if kind == "embedded" else f"{dsn}#bench_{n}_{os.getpid()}"
                r: dict[str, Any] = {}
                progress(f"{n} {kind}: load")
                r.update(load(kind, where, data))
                progress(f"{n} {kind}: {r}")
                r["incr_rps"] = incremental_saves(kind, where, data)
                progress(f"{n} {kind}: searches")
                r.update(search_phase(kind, where, qs, truth, args.ef_search))
                progress(f"{n} {kind}: {args.procs} concurrent processes")
                r["conc_qps"] = concurrent(kind, where, qs, args.procs, args.seconds, args.ef_search)
                progress(f"{n} {kind}: {r}")
                results[f"{n}/{kind}"] = r
                if kind == "postgres":
                    drop_schema(dsn, where.split("#", 1)[1])
                else:
                    shutil.rmtree(where, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_end = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    body = render(results, sizes, args, load_start, load_end)
    print(body)
    if args.write:
        from report import write_section

        write_section(args.write, "postgres", body)


def render(res: dict[str, Any], sizes: list[int], args: Any, l0: tuple, l1: tuple) -> str:
    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if a and b else "-"

    lines = [
        "## PostgreSQL + pgvector store (`bench/bench_postgres.py`)",
        "",
        f"Embedded crewcore (`MemoryStorage(path)`, native engine) vs Postgres crewcore "
        f"(`MemoryStorage(dsn=...)`: pgmemory over pgx, PostgreSQL 16.2 + pgvector 0.6.2 from the pgserver "
        f"wheel on 127.0.0.1, HNSW m=16 ef_construction=64, `ef_search={args.ef_search}`), "
        f"{DIM}-dimensional clustered unit vectors, {args.queries} queries, `limit=10`.",
        "",
        "| size | measure | embedded | postgres | postgres / embedded |",
        "| --- | --- | --- | --- | --- |",
    ]
    for n in sizes:
        e, p = res[f"{n}/embedded"], res[f"{n}/postgres"]
        rows = [
            ("search p50 (ms)", e["p50_ms"], p["p50_ms"], "{:.2f}"),
            ("search p95 (ms)", e["p95_ms"], p["p95_ms"], "{:.2f}"),
            ("scoped search p50 (ms)", e["scoped_p50_ms"], p["scoped_p50_ms"], "{:.2f}"),
            ("scoped search p95 (ms)", e["scoped_p95_ms"], p["scoped_p95_ms"], "{:.2f}"),
            ("recall@10 vs exact", e["recall10"], p["recall10"], "{:.4f}"),
            ("batch save, 1,000/batch (records/s)", e["save_rps"], p["save_rps"], "{:,.0f}"),
            ("save into the loaded store, 100/batch (records/s)", e["incr_rps"], p["incr_rps"], "{:,.0f}"),
            (f"search throughput, {args.procs} processes (queries/s)", e["conc_qps"], p["conc_qps"], "{:,.0f}"),
        ]
        for name, a, b, f in rows:
            lines.append(f"| {n:,} | {name} | {f.format(a)} | {f.format(b)} | {ratio(b, a)} |")
        lines.append(f"| {n:,} | HNSW index build after the load (s) | - | {p['index_s']:.1f} | - |")
    lines += [
        "",
        "Notes: the Postgres load runs with the index off (`exact=True`) and then builds it once "
        "(`build_index()`, what `crewcore memory migrate` does), because pgvector builds an HNSW graph "
        "far faster in one pass than vector by vector; a store that grows by ordinary saves builds its index "
        "when it reaches 10,000 vectors and inserts into it from then on (the 100/batch row). Below 10,000 "
        "vectors Postgres searches scan exactly. The scoped search filters to 1 of 20 scopes "
        "(5% of the records) in SQL; pgvector 0.6 filters after the graph search, so when the index cannot "
        "fill the limit under a filter, the share of candidates that passed estimates the matches: "
        "up to ~2,000 are scanned exactly, more get one index search with `ef_search` widened "
        "(up to 1,000) to fill the limit, then an exact scan if still short: filtered results are never short. Raising `ef_search` trades latency "
        "for recall.",
        "",
        f"Machine: {machine()}; shared with other agents' work: load average "
        f"{l0[0]:.1f} at the start, {l1[0]:.1f} at the end (2 cores), so absolute times are noisy; the "
        "ratios compare runs of the same moment.",
        f"Date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}. "
        f"Reproduce: `make pg-up && .venv/bin/python bench/bench_postgres.py --sizes {','.join(map(str, sizes))} "
        f"--queries {args.queries} --write docs/benchmarks.md`.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
