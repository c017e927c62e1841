#!/usr/bin/env python3
"""Knowledge: crewcore's knowledge store against CrewAI's default ChromaDB,
through the same CrewAI Knowledge API, in one run.

Parts (each side gets the same chunks, the same fixed embedder, the same
queries):

1. ingest 10k chunks x 1536 dims (``storage.save(chunks)``, the call every
   CrewAI knowledge source makes) and query latency (``Knowledge.query``,
   CrewAI's default limit 5 and threshold 0.6) at 10k;
2. crewcore alone at 100k chunks: query p50/p95 (ChromaDB's 100k ingest
   would take most of an hour here; it is not run);
3. retrieval quality of the modes (hit@5) on two query sets built from a
   synthetic corpus with a synonym-aware embedder (see ``quality``);
4. 8 processes ingesting and searching one store: errors per side;
5. install size of ChromaDB and what only it pulls in.

The fixed embedder looks vectors up in a table made before timing (random
clustered unit vectors), so the figures are the stores' and CrewAI's glue,
not an embedding model's.
"""

from __future__ import annotations

import argparse
import datetime
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

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")

from chromadb.api.types import EmbeddingFunction as ChromaEmbeddingFunction  # noqa: E402
from crewai.rag.embeddings.providers.custom.embedding_callable import CustomEmbeddingFunction  # noqa: E402

TABLE: dict[str, np.ndarray] = {}


class TableEmbedding(CustomEmbeddingFunction, ChromaEmbeddingFunction):
    """The fixed embedder: a lookup in TABLE (filled before timing)."""

    def __init__(self, *a: Any, **k: Any) -> None:
        pass

    def __call__(self, input: list[str]) -> list[np.ndarray]:  # noqa: A002
        return [TABLE[t] for t in input]

    @staticmethod
    def name() -> str:
        return "crewcore-bench-table"


EMBEDDER = {"provider": "custom", "config": {"embedding_callable": TableEmbedding}}


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(1, n // 20), dim)).astype(np.float32)
    v = centers[rng.integers(0, len(centers), n)] + 0.8 * rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def knowledge(name: str, crewcore_path: str | None) -> Any:
    from crewai.knowledge.knowledge import Knowledge

    import crewcore

    if crewcore_path:
        crewcore.install(knowledge={"path": crewcore_path}, locks=False, task_outputs=False, flows=False)
    else:
        crewcore.uninstall()
    k = Knowledge(collection_name=name, sources=[], embedder=EMBEDDER)
    crewcore.uninstall()
    return k


def speed(n: int, dim: int, queries: int, tmp: str) -> dict[str, Any]:
    docs = [f"chunk {i}: product note number {i} with code ZX-{i:06d}" for i in range(n)]
    vecs = clustered(n + queries, dim, 11)
    TABLE.clear()
    TABLE.update(zip(docs, vecs[:n]))
    qs = [f"question {j}" for j in range(queries)]
    rng = np.random.default_rng(5)
    for j, q in enumerate(qs):
        v = vecs[rng.integers(0, n)] + 0.3 * vecs[n + j]
        TABLE[q] = v / np.linalg.norm(v)
    out: dict[str, Any] = {}
    ks: dict[str, Any] = {}
    for side in ("chromadb", "crewcore"):
        k = knowledge(f"bench{n}", os.path.join(tmp, "kn.db") if side == "crewcore" else None)
        t0 = time.perf_counter()
        for i in range(0, n, 1000):
            k.storage.save(docs[i:i + 1000])
        out[side] = {"ingest_s": time.perf_counter() - t0}
        k.query([qs[0]])  # warm (crewcore loads the collection into memory here)
        ks[side] = k
    # first each store on its own, its queries back to back (each side
    # warm in the CPU's caches: how every row of these tables is measured)
    lat: dict[str, list[float]] = {}
    for side, k in ks.items():
        lat[side] = []
        for q in qs:
            t = time.perf_counter()
            res = k.query([q])
            lat[side].append((time.perf_counter() - t) * 1e3)
            assert res is not None
    # then the queries alternate between the two stores (which goes first
    # alternates too): each query finds the caches holding the other
    # store's data, as a query between an agent's other work would
    alt: dict[str, list[float]] = {side: [] for side in ks}
    for j, q in enumerate(qs):
        for side in (("chromadb", "crewcore") if j % 2 == 0 else ("crewcore", "chromadb")):
            t = time.perf_counter()
            res = ks[side].query([q])
            alt[side].append((time.perf_counter() - t) * 1e3)
            assert res is not None
    for side, k in ks.items():
        out[side].update({"p50_ms": pct(lat[side], 50), "p95_ms": pct(lat[side], 95),
                          "alt_p50_ms": pct(alt[side], 50), "alt_p95_ms": pct(alt[side], 95),
                          "first": [r["id"] for r in k.query([qs[1]])]})
        k.reset()
    return out


def crewcore_only(n: int, dim: int, queries: int, tmp: str) -> dict[str, Any]:
    from crewcore.knowledge import KnowledgeStore

    docs = [f"chunk {i}: product note number {i} with code ZX-{i:06d}" for i in range(n)]
    vecs = clustered(n + queries, dim, 13)
    TABLE.clear()
    TABLE.update(zip(docs, vecs[:n]))
    store = KnowledgeStore(os.path.join(tmp, "kn100k.db"))
    t0 = time.perf_counter()
    store.add("knowledge_big", docs, lambda ts: [TABLE[t] for t in ts], batch_size=2000)
    ingest = time.perf_counter() - t0
    k = knowledge("big", os.path.join(tmp, "kn100k.db"))
    rng = np.random.default_rng(9)
    qs = [f"q{j}" for j in range(queries)]
    for j, q in enumerate(qs):
        v = vecs[rng.integers(0, n)] + 0.3 * vecs[n + j]
        TABLE[q] = v / np.linalg.norm(v)
    k.query([qs[0]])
    lat = {"vector": [], "hybrid": []}
    for mode in lat:
        for q in qs:
            t = time.perf_counter()
            k.storage.search([q], mode=mode)
            lat[mode].append((time.perf_counter() - t) * 1e3)
    # exactness: the vector answers equal a full numpy float32 scan's
    exact = 0
    checked = qs[:50]
    for q in checked:
        got = [r["content"] for r in k.storage.search([q], limit=5, score_threshold=0.0)]
        cos = vecs[:n] @ TABLE[q]
        want = [docs[i] for i in np.argsort(-cos, kind="stable")[:5]]
        exact += got == want
    k.reset()
    return {"ingest_s": ingest, **{f"{m}_p50_ms": pct(v, 50) for m, v in lat.items()},
            **{f"{m}_p95_ms": pct(v, 95) for m, v in lat.items()}, "exact": exact, "exact_checked": len(checked)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--big", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1536)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: speed,big,quality,procs,size")
    ap.add_argument("--write", metavar="MD", help="write the 'knowledge' section of this markdown file")
    ap.add_argument("--json", metavar="PATH", help="also write raw results as JSON")
    ap.add_argument("--merge", metavar="JSON", help="take the parts skipped here from an earlier --json run")
    ap.add_argument("--note", default="", help="a paragraph added to the report (how to read this run)")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    from bench_knowledge_parts import install_size, procs, quality, render

    res: dict[str, Any] = {"load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CREWAI_STORAGE_DIR"] = os.path.join(tmp, "crewai")
        if "speed" not in skip:
            res["load_speed_start"] = os.getloadavg()[0]
            res["speed"] = speed(args.n, args.dim, args.queries, tmp)
            res["load_speed"] = os.getloadavg()[0]
            print(json.dumps(res["speed"]), flush=True)
        if "big" not in skip:
            res["load_big_start"] = os.getloadavg()[0]
            res["big"] = crewcore_only(args.big, args.dim, args.queries, tmp)
            res["load_big"] = os.getloadavg()[0]
            print(json.dumps(res["big"]), flush=True)
        if "quality" not in skip:
            res["quality"] = quality(tmp)
            print(json.dumps(res["quality"]), flush=True)
        if "procs" not in skip:
            res["procs"] = procs(tmp)
            print(json.dumps(res["procs"]), flush=True)
    if "size" not in skip:
        res["size"] = install_size()
    res["load_after"] = os.getloadavg()[0]
    res["machine"] = (f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, "
                      f"Python {platform.python_version()}")
    res["date"] = datetime.date.today().isoformat()
    if args.merge:
        earlier = json.loads(Path(args.merge).read_text())
        for part, loads in (("speed", ("load_speed", "load_speed_start")), ("big", ("load_big", "load_big_start")), ("quality", ()), ("procs", ()), ("size", ())):
            if part not in res and part in earlier:
                res[part] = earlier[part]
                for key in loads:
                    res[key] = earlier.get(key, 0)
        res["merged_from"] = {"date": earlier.get("date"), "load_before": earlier.get("load_before"),
                              "load_after": earlier.get("load_after")}
        if not set(("speed", "big", "quality", "procs", "size")) - skip:  # nothing run here: the earlier run's
            for key in ("load_before", "load_after", "machine", "date"):
                res[key] = earlier.get(key, res.get(key))
    res["args"] = vars(args)
    res["note"] = args.note
    text = render(res)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    if args.write:
        from report import write_section

        write_section(args.write, "knowledge", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
