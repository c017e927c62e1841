"""Parts of bench_knowledge.py: retrieval quality of the search modes, 8
processes on one store, ChromaDB's install size, and the report."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
import re
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------- quality

N_CONCEPTS, SYNONYMS, GENERIC, DIM = 60, 3, 8, 256
_TOK = re.compile(r"[a-z0-9]+")


def _concept_words() -> tuple[list[list[str]], list[str]]:
    syll = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "su", "go", "ha"]
    rng = np.random.default_rng(1)
    concepts = []
    used: set[str] = set()
    for _ in range(N_CONCEPTS):
        ws = []
        while len(ws) < SYNONYMS:
            w = "".join(rng.choice(syll, size=3))
            if w not in used:
                used.add(w)
                ws.append(w)
        concepts.append(ws)
    generic = ["manual", "product", "section", "notes", "support", "guide", "details", "model"]
    return concepts, generic


class SynonymEmbedder:
    """A stand-in for a semantic embedding model: synonyms of one concept get
    nearly the same vector (the concept's, plus 25% word noise); words it
    does not know (product codes, numbers) get a hashed direction at 35%
    weight, as real models encode ids weakly."""

    def __init__(self) -> None:
        self.concepts, self.generic = _concept_words()
        rng = np.random.default_rng(2)
        self.vec: dict[str, np.ndarray] = {}
        for ws in self.concepts:
            c = rng.standard_normal(DIM)
            for w in ws:
                self.vec[w] = c / np.linalg.norm(c) + 0.25 * rng.standard_normal(DIM) / np.sqrt(DIM)
        for w in self.generic:
            g = rng.standard_normal(DIM)
            self.vec[w] = 0.5 * g / np.linalg.norm(g)

    def _unknown(self, w: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
        g = np.random.default_rng(seed).standard_normal(DIM)
        return 0.35 * g / np.linalg.norm(g)

    def __call__(self, texts: list[str]) -> list[np.ndarray]:
        out = []
        for t in texts:
            acc = np.zeros(DIM)
            for w in _TOK.findall(t.lower()):
                acc += self.vec[w] if w in self.vec else self._unknown(w)
            out.append((acc / (np.linalg.norm(acc) or 1.0)).astype(np.float32))
        return out


def quality_sets(n_docs: int = 3000, n_q: int = 300) -> tuple[list[str], list[tuple[str, int]], list[tuple[str, int]], Any]:
    emb = SynonymEmbedder()
    rng = np.random.default_rng(3)
    docs, topics = [], []
    for i in range(n_docs):
        tc = rng.choice(N_CONCEPTS, size=3, replace=False)
        words = [emb.concepts[c][rng.integers(SYNONYMS)] for c in rng.choice(tc, size=18)]
        words += list(rng.choice(emb.generic, size=7))
        rng.shuffle(words)
        code = f"{chr(65 + i % 26)}{chr(65 + (i // 26) % 26)}-{10000 + i * 7}"
        docs.append(" ".join(words[:12]) + f" code {code} " + " ".join(words[12:]))
        topics.append(tc)
    exact, semantic = [], []
    for i in rng.choice(n_docs, size=n_q, replace=False):
        code = docs[i].split(" code ", 1)[1].split()[0]
        g = rng.choice(emb.generic, size=2, replace=False)
        exact.append((f"what does the {g[0]} say about {code} {g[1]}", int(i)))
    for i in rng.choice(n_docs, size=n_q, replace=False):
        ws = [emb.concepts[c][rng.integers(SYNONYMS)] for c in topics[i]]
        g = rng.choice(emb.generic, size=2, replace=False)
        semantic.append((f"{g[0]} about {ws[0]} {ws[1]} and {ws[2]} {g[1]}", int(i)))
    return docs, exact, semantic, emb


def quality(tmp: str) -> dict[str, Any]:
    from crewcore.knowledge import KnowledgeStore

    docs, exact, semantic, emb = quality_sets()
    store = KnowledgeStore(os.path.join(tmp, "quality.db"))
    store.add("q", docs, emb, batch_size=1000)
    ids = {d: i for i, d in enumerate(docs)}
    out: dict[str, Any] = {"docs": len(docs), "queries": len(exact)}
    for set_name, qs in (("exact", exact), ("semantic", semantic)):
        qv = emb([q for q, _ in qs])
        for mode in ("vector", "keyword", "hybrid"):
            hit = 0
            for (q, ans), v in zip(qs, qv):
                res = store.search("q", q, v, mode=mode, limit=5)
                hit += any(ids[r["content"]] == ans for r in res)
            out[f"{set_name}_{mode}"] = hit / len(qs)
    store.reset("q")
    return out


# ---------------------------------------------------------------- 8 processes

PROC = r"""
import hashlib, json, logging, re, sys, traceback
import numpy as np
from chromadb.api.types import EmbeddingFunction as CE
from crewai.rag.embeddings.providers.custom.embedding_callable import CustomEmbeddingFunction
class E(CustomEmbeddingFunction, CE):
    def __init__(self, *a, **k): pass
    def __call__(self, input):
        out = []
        for t in input:
            seed = int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little")
            v = np.random.default_rng(seed).standard_normal(64)
            out.append((v / np.linalg.norm(v)).astype(np.float32))
        return out
    @staticmethod
    def name(): return "bench-hash"
errors = []
class H(logging.Handler):
    def emit(self, rec):
        if rec.levelno >= logging.ERROR:
            errors.append(rec.getMessage().split("\n")[0][:200])
logging.getLogger().addHandler(H())
side, w = sys.argv[1], int(sys.argv[2])
import crewcore
if side == "crewcore":
    crewcore.install(knowledge={"path": sys.argv[3]}, locks=False, task_outputs=False, flows=False)
from crewai.knowledge.knowledge import Knowledge
found = 0
docs = [f"shared document {i} about item {i % 17}" for i in range(300)]
mine = docs[w * 25: w * 25 + 100]
for i in range(0, len(mine), 20):
    try:
        k = Knowledge(collection_name="shared", sources=[], embedder={"provider": "custom", "config": {"embedding_callable": E}})
        k.storage.save(mine[i:i + 20])
        res = k.query([mine[i]], results_limit=3, score_threshold=0.0)
        found += any(r["content"] == mine[i] for r in res)
    except Exception as e:
        errors.append(f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
print(json.dumps({"errors": errors, "found": found}))
"""


def procs(tmp: str, n: int = 8) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for side in ("chromadb", "crewcore"):
        d = tempfile.mkdtemp(dir=tmp)
        env = dict(os.environ, CREWAI_STORAGE_DIR=os.path.join(d, "crewai"))
        ps = [subprocess.Popen([sys.executable, "-c", PROC, side, str(w), os.path.join(d, "kn.db")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO))
              for w in range(n)]
        errs: list[str] = []
        found = crashed = 0
        for p in ps:
            so, se = p.communicate(timeout=1800)
            lines = [x for x in so.splitlines() if x.startswith("{")]
            if p.returncode != 0 or not lines:
                crashed += 1
                errs.append(f"exit {p.returncode}: {se.strip().splitlines()[-1][:200] if se.strip() else ''}")
                continue
            r = json.loads(lines[-1])
            errs += r["errors"]
            found += r["found"]
        kinds: dict[str, int] = {}
        for e in errs:
            key = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|\d+", "N", e)[:160]
            kinds[key] = kinds.get(key, 0) + 1
        out[side] = {"errors": len(errs), "crashed": crashed, "found": found, "searches": n * 5, "kinds": kinds}
    return out


# ---------------------------------------------------------------- install size

def install_size() -> dict[str, Any]:
    """Bytes of ChromaDB's distribution and of the distributions only it
    needs among CrewAI's dependencies (what `pip uninstall` could drop)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    def deps(name: str) -> set[str]:
        try:
            reqs = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            return set()
        out = set()
        for r in reqs:
            req = Requirement(r)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            out.add(req.name.lower().replace("_", "-"))
        return out

    def closure(roots: set[str], stop: set[str] = frozenset()) -> set[str]:
        seen: set[str] = set()
        todo = [r for r in roots if r not in stop]
        while todo:
            x = todo.pop()
            if x in seen:
                continue
            seen.add(x)
            todo += [d for d in deps(x) if d not in seen and d not in stop]
        return seen

    def size(name: str) -> int:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            return 0
        total = 0
        for f in dist.files or []:
            p = Path(dist.locate_file(f))
            if p.is_file():
                total += p.stat().st_size
        return total

    crewai_deps = deps("crewai")
    without = closure(crewai_deps - {"chromadb"} | {"crewai"}, stop={"chromadb"})
    only = closure({"chromadb"}) - without
    return {"chromadb_bytes": size("chromadb"), "exclusive": sorted(only),
            "exclusive_bytes": sum(size(x) for x in only)}


# ---------------------------------------------------------------- report

def render(res: dict[str, Any]) -> str:
    L = ["## knowledge", ""]
    L.append("crewcore's knowledge store (`crewcore.install()`, knowledge on by default) against CrewAI's default "
             "ChromaDB `KnowledgeStorage`, through the same CrewAI `Knowledge` API, same chunks, same fixed "
             "embedder (a lookup table of clustered random unit vectors made before timing); both sides of a table are measured in the same run.")
    L.append("")
    sp = res.get("speed")
    if sp:
        c, k = sp["chromadb"], sp["crewcore"]
        n, dim = res["args"]["n"], res["args"]["dim"]
        L += [f"### {n:,} chunks x {dim} dims (load average {res.get('load_speed_start', 0):.1f} at start, "
              f"{res.get('load_speed', 0):.1f} at end)", "",
              "| | ChromaDB (CrewAI default) | crewcore | ratio | target |", "|---|---|---|---|---|",
              f"| ingest {n:,} chunks (`storage.save`, 1,000 per call) | {c['ingest_s']:.2f} s | {k['ingest_s']:.2f} s "
              f"| {c['ingest_s'] / k['ingest_s']:.1f}x | >= 3x: {'met' if c['ingest_s'] / k['ingest_s'] >= 3 else 'NOT met'} |",
              f"| `Knowledge.query` p50 | {c['p50_ms']:.2f} ms | {k['p50_ms']:.2f} ms | {c['p50_ms'] / k['p50_ms']:.1f}x "
              f"| >= 10x: {'met' if c['p50_ms'] / k['p50_ms'] >= 10 else 'NOT met'} |",
              f"| `Knowledge.query` p95 | {c['p95_ms']:.2f} ms | {k['p95_ms']:.2f} ms | {c['p95_ms'] / k['p95_ms']:.1f}x | |",
              *([f"| `Knowledge.query` p50, the two stores' queries alternating | {c['alt_p50_ms']:.2f} ms | "
                 f"{k['alt_p50_ms']:.2f} ms | {c['alt_p50_ms'] / k['alt_p50_ms']:.1f}x | |",
                 f"| `Knowledge.query` p95, alternating | {c['alt_p95_ms']:.2f} ms | {k['alt_p95_ms']:.2f} ms "
                 f"| {c['alt_p95_ms'] / k['alt_p95_ms']:.1f}x | |"] if "alt_p50_ms" in c else []),
              f"| same first results (one query) | | | {'yes' if c['first'] == k['first'] else 'no'} | |", "",
              *(["Queries: each store's back to back first (the target's rows), then alternating between the "
                 "stores, which goes first alternating too, so each query finds the CPU caches holding the other "
                 "store's data, as a query between an agent's other work would.", ""] if "alt_p50_ms" in c else [])]
    big = res.get("big")
    if big:
        L += [f"### crewcore at {res['args']['big']:,} chunks x {res['args']['dim']} dims "
              f"(load average {res.get('load_big_start', 0):.1f} at start, {res.get('load_big', 0):.1f} at end)", "",
              "| | p50 | p95 | target |", "|---|---|---|---|",
              f"| `storage.search` vector (default) | {big['vector_p50_ms']:.2f} ms | {big['vector_p95_ms']:.2f} ms "
              f"| p95 < 20 ms: {'met' if big['vector_p95_ms'] < 20 else 'NOT met'} |",
              f"| `storage.search` hybrid | {big['hybrid_p50_ms']:.2f} ms | {big['hybrid_p95_ms']:.2f} ms | |", "",
              f"Ingest of {res['args']['big']:,} chunks: {big['ingest_s']:.1f} s. Vector results equal to a full "
              f"numpy float32 scan: {big['exact']}/{big['exact_checked']} queries. ChromaDB was not run at this size.", ""]
    q = res.get("quality")
    if q:
        d_ex = q["exact_hybrid"] - q["exact_vector"]
        d_se = q["semantic_hybrid"] - q["semantic_vector"]
        L += ["### Retrieval quality: hit@5 of the modes", "",
              "| query set | vector | keyword | hybrid (k=60) | hybrid - vector | target |", "|---|---|---|---|---|---|",
              f"| exact tokens ({q['queries']} queries) | {q['exact_vector']:.3f} | {q['exact_keyword']:.3f} | "
              f"{q['exact_hybrid']:.3f} | {d_ex:+.3f} | >= +0.2: {'met' if d_ex >= 0.2 else 'NOT met'} |",
              f"| semantic ({q['queries']} queries) | {q['semantic_vector']:.3f} | {q['semantic_keyword']:.3f} | "
              f"{q['semantic_hybrid']:.3f} | {d_se:+.3f} | >= -0.02: {'met' if d_se >= -0.02 else 'NOT met'} |", "",
              f"How the sets are built (bench/bench_knowledge_parts.py): {q['docs']:,} synthetic documents, each "
              "18 words drawn from 3 of 60 concepts (each concept has 3 synonyms), 7 generic words and one unique "
              "product code (`AB-10007`). The embedder stands in for a semantic model: synonyms of a concept get "
              "nearly the same vector, unknown tokens (codes) a hashed direction at 35% weight. Exact-token "
              "queries: \"what does the <generic> say about <code> <generic>\" (the answer is the document with "
              "the code). Semantic queries: one random synonym of each of a document's 3 concepts plus 2 generic "
              "words (no code). hit@5: the answer is among the 5 results (no threshold).", ""]
    pr = res.get("procs")
    if pr:
        L += ["### 8 processes ingesting and searching one store", "",
              "| | errors | processes crashed | searches that found the chunk just saved |", "|---|---|---|---|"]
        for side in ("chromadb", "crewcore"):
            p = pr[side]
            L.append(f"| {side} | {p['errors']} | {p['crashed']} | {p['found']}/{p['searches']} |")
        kinds = pr["chromadb"]["kinds"]
        if kinds:
            L += ["", "ChromaDB's errors, by message: " + "; ".join(f"`{k}` x{v}" for k, v in sorted(kinds.items(), key=lambda x: -x[1]))]
        L.append("")
    sz = res.get("size")
    if sz:
        L += ["### Install size", "",
              f"ChromaDB's own distribution: {sz['chromadb_bytes'] / 2**20:.0f} MiB; with the distributions only it "
              f"pulls into a CrewAI install ({', '.join(sz['exclusive']) or 'none'}): "
              f"{sz['exclusive_bytes'] / 2**20:.0f} MiB. crewcore's store needs none of it, but CrewAI 1.15.30 itself "
              "imports `chromadb` (`crewai.knowledge` imports `crewai.rag.chromadb.config`, and its embedding "
              "providers wrap ChromaDB's embedding functions), so it cannot be uninstalled from a CrewAI install "
              "today: this is what a user saves once CrewAI makes it optional.", ""]
    if res.get("note"):
        L += [res["note"], ""]
    L.append(f"Machine: {res['machine']}. Date: {res['date']}. Load average before / after: "
             f"{res['load_before']:.1f} / {res['load_after']:.1f} (a 2-core machine shared with other jobs).")
    L.append("")
    L.append("Reproduce: `.venv/bin/python bench/bench_knowledge.py --write docs/benchmarks.md`")
    return "\n".join(L)
