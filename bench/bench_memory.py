#!/usr/bin/env python3
"""Side-by-side benchmark of CrewAI memory storage backends.

One run, one machine, the same records, everything through CrewAI's
``StorageBackend`` API:

* ``native``  -- ``crewcore.MemoryStorage(path, engine="native")`` (Go engine over ctypes)
* ``python``  -- ``crewcore.MemoryStorage(path, engine="python")`` (pure-Python fallback)
* ``lancedb`` -- ``crewai.memory.storage.lancedb_storage.LanceDBStorage(path=...)``
  (CrewAI's default store, default constructor arguments except ``path``)

Each backend gets its own directory (the Go engine and Python's sqlite3 never
open the same file in this process).

Usage::

    make bench                                    # = the line below
    .venv/bin/python bench/bench_memory.py --write docs/benchmarks.md
    .venv/bin/python bench/bench_memory.py --quick          # 1k and 10k only
    .venv/bin/python bench/bench_memory.py --sizes 10000 --dims 3072 --backends native,lancedb
    .venv/bin/python bench/bench_memory.py --profile 10000x3072   # cProfile of the native path

See ``--help`` for every option. Raw results go to ``bench/results/latest.json``
when ``--write`` is given (or wherever ``--json`` says).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
from pathlib import Path
import platform
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator
import warnings

import numpy as np

# No telemetry threads or network calls from CrewAI during the measurements.
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / "bench" / "results" / "latest.json"

# --------------------------------------------------------------------------
# data set parameters

N_CENTROIDS = 1000
N_CREWS = 5
N_AGENTS = 10  # per crew: 5 x 10 = 50 leaf scopes /crew/c<i>/agent/a<j>
N_CATS = 20
NOISE_MIN, NOISE_MAX = 0.6, 1.2  # |noise| relative to the unit centroid
LOAD_BATCH = 1000
N_QUERIES = 256
BACKENDS = ("native", "python", "lancedb")
LABEL = {"native": "crewcore native", "python": "crewcore fallback", "lancedb": "LanceDB"}

VOCAB = (
    "agent task crew memory research report customer order invoice shipment "
    "analysis summary draft review deadline budget forecast revenue market "
    "product feature release bug fix test deploy server database query index "
    "vector search result score ranking user account payment refund policy "
    "contract meeting notes decision action owner status blocked done pending "
    "priority high low risk issue incident outage latency error timeout retry "
    "cache storage backup restore migration schema table column record field "
    "email call ticket support escalation feedback survey rating churn growth "
    "campaign lead prospect pipeline quarter annual monthly weekly daily plan "
    "goal metric target baseline experiment hypothesis insight trend signal "
    "source document page section paragraph citation quote fact claim evidence "
    "the a of to and in for with on from by about after before during between"
).split()

OPS = (
    # (key, label, kind)
    ("search", "search limit=10", "read"),
    ("search_scope", "search, scope_prefix=/crew/c<k>", "read"),
    ("search_categories", "search, categories=[cat<j>]", "read"),
    ("list_scopes", 'list_scopes("/crew")', "read"),
    ("get_scope_info", 'get_scope_info("/crew")', "read"),
    ("list_categories", "list_categories()", "read"),
    ("count", "count()", "read"),
    ("count_prefix", 'count("/crew/c1")', "read"),
    ("touch", "touch_records(10 ids)", "write"),
    ("save_one", "save 1 record", "write"),
    ("save_batch", "save batch of 100", "write"),
    ("search_opt", "search limit=10, after delete(written ids) + optimize()", "read"),
    ("count_opt", "count(), after delete(written ids) + optimize()", "read"),
)
SEARCH_OPS = ("search", "search_scope", "search_categories")
META_OPS = ("list_scopes", "get_scope_info", "list_categories", "count", "count_prefix")


def _now() -> float:
    return time.perf_counter()


_T0 = _now()


def progress(msg: str) -> None:
    print(f"[{_now() - _T0:8.1f}s] {msg}", flush=True)


# --------------------------------------------------------------------------
# synthetic data


def _unit(a: np.ndarray) -> np.ndarray:
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    return a


class Dataset:
    """``n`` records of dimension ``dim``: clustered unit vectors + realistic fields.

    Deterministic in (seed, n, dim). Vectors are kept as one float32 matrix;
    MemoryRecords (with Python float lists, as CrewAI's embedder produces) are
    built per batch on demand.
    """

    def __init__(self, n: int, dim: int, seed: int) -> None:
        self.n, self.dim, self.seed = n, dim, seed
        crng = np.random.default_rng([seed, dim, 1])
        self.centroids = _unit(crng.standard_normal((N_CENTROIDS, dim), dtype=np.float32))
        rng = np.random.default_rng([seed, dim, n, 2])
        self.assign = rng.integers(0, N_CENTROIDS, n)
        self.sigma = rng.uniform(NOISE_MIN, NOISE_MAX, n).astype(np.float32)
        self.crew = rng.integers(0, N_CREWS, n)
        self.agent = rng.integers(0, N_AGENTS, n)
        self.cat1 = rng.integers(0, N_CATS, n)
        second = rng.integers(0, N_CATS, n)
        has2 = (rng.random(n) < 0.5) & (second != self.cat1)
        self.cat2 = np.where(has2, second, -1)
        self.importance = np.round(rng.uniform(0.05, 1.0, n), 3)
        self.words = rng.integers(0, len(VOCAB), (n, 48), dtype=np.int16)
        self.base_time = datetime(2025, 1, 1, 8, 0, 0)
        self.vecs = np.empty((n, dim), dtype=np.float32)
        step = 8192
        for i0 in range(0, n, step):
            i1 = min(n, i0 + step)
            noise = rng.standard_normal((i1 - i0, dim), dtype=np.float32)
            noise *= (self.sigma[i0:i1] / math.sqrt(dim))[:, None]
            noise += self.centroids[self.assign[i0:i1]]
            self.vecs[i0:i1] = _unit(noise)
        # queries: fresh perturbations of random centroids, with the filter each uses
        qrng = np.random.default_rng([seed, dim, n, 3])
        qa = qrng.integers(0, N_CENTROIDS, N_QUERIES)
        qs = qrng.uniform(NOISE_MIN, NOISE_MAX, N_QUERIES).astype(np.float32)
        q = qrng.standard_normal((N_QUERIES, dim), dtype=np.float32)
        q *= (qs / math.sqrt(dim))[:, None]
        q += self.centroids[qa]
        self.queries = _unit(q)
        self.query_lists = self.queries.tolist()
        self.q_crew = qrng.integers(0, N_CREWS, N_QUERIES)
        self.q_cat = qrng.integers(0, N_CATS, N_QUERIES)
        self.sq_norms = np.einsum("ij,ij->i", self.vecs, self.vecs, dtype=np.float64)
        self._exact: dict[tuple[str, int], tuple[np.ndarray, float]] = {}
        self._dots: np.ndarray | None = None

    # -- records ---------------------------------------------------------

    @staticmethod
    def _content(idx: int, words: np.ndarray) -> str:
        s = f"[{idx}] " + " ".join(VOCAB[w] for w in words)
        if len(s) > 200:
            cut = s.rfind(" ", 0, 200)
            s = s[: cut if cut > 150 else 200]
        return s + "."

    def _build(self, ids, idx, vecs, crew, agent, cat1, cat2, imp, words, created) -> list:
        from crewai.memory.types import MemoryRecord

        out = []
        vl = vecs.tolist()
        for k in range(len(ids)):
            cats = [f"cat{cat1[k]:02d}"]
            if cat2[k] >= 0:
                cats.append(f"cat{cat2[k]:02d}")
            c, a = int(crew[k]), int(agent[k])
            out.append(
                MemoryRecord(
                    id=ids[k],
                    content=self._content(idx[k], words[k]),
                    scope=f"/crew/c{c}/agent/a{a}",
                    categories=cats,
                    metadata={"crew": f"c{c}", "agent": f"a{a}", "seq": int(idx[k])},
                    importance=float(imp[k]),
                    created_at=created[k],
                    last_accessed=created[k],
                    embedding=vl[k],
                    source=f"crew-c{c}",
                )
            )
        return out

    def record_id(self, i: int) -> str:
        return f"r{i:07d}"

    def records(self, i0: int, i1: int) -> list:
        """The stored records i0..i1-1 as CrewAI MemoryRecords."""
        idx = list(range(i0, i1))
        created = [self.base_time + timedelta(seconds=30 * i) for i in idx]
        return self._build(
            [self.record_id(i) for i in idx], idx, self.vecs[i0:i1], self.crew[i0:i1],
            self.agent[i0:i1], self.cat1[i0:i1], self.cat2[i0:i1], self.importance[i0:i1],
            self.words[i0:i1], created,
        )

    def extra_records(self, start: int, count: int) -> list:
        """New records for the write benchmarks (ids w<start..>), deterministic."""
        rng = np.random.default_rng([self.seed, self.dim, self.n, 4, start])
        a = rng.integers(0, N_CENTROIDS, count)
        s = rng.uniform(NOISE_MIN, NOISE_MAX, count).astype(np.float32)
        v = rng.standard_normal((count, self.dim), dtype=np.float32)
        v *= (s / math.sqrt(self.dim))[:, None]
        v += self.centroids[a]
        _unit(v)
        c1 = rng.integers(0, N_CATS, count)
        c2 = rng.integers(-N_CATS, N_CATS, count)  # negative: one category only
        c2 = np.where(c2 == c1, -1, c2)
        idx = [self.n + start + k for k in range(count)]
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        return self._build(
            [f"w{start + k:07d}" for k in range(count)], idx, v,
            rng.integers(0, N_CREWS, count), rng.integers(0, N_AGENTS, count), c1, c2,
            np.round(rng.uniform(0.05, 1.0, count), 3),
            rng.integers(0, len(VOCAB), (count, 48), dtype=np.int16), [now] * count,
        )

    # -- ground truth ----------------------------------------------------

    def truth(self) -> dict[str, Any]:
        crew1 = int((self.crew == 1).sum())
        cats: dict[str, int] = {}
        for j in range(N_CATS):
            cats[f"cat{j:02d}"] = int(((self.cat1 == j) | (self.cat2 == j)).sum())
        cats = {k: v for k, v in cats.items() if v}
        return {
            "count": self.n,
            "count_prefix": crew1,
            "list_scopes": sorted({f"/crew/c{c}" for c in np.unique(self.crew)}),
            "scope_info_count": self.n,
            "list_categories": cats,
        }

    def _filter_mask(self, kind: str, qi: int) -> np.ndarray | None:
        if kind == "search":
            return None
        if kind == "search_scope":
            return self.crew == self.q_crew[qi]
        j = self.q_cat[qi]
        return (self.cat1 == j) | (self.cat2 == j)

    def exact(self, kind: str, qi: int, k: int = 10) -> tuple[np.ndarray, float, int]:
        """Exact squared-L2 distances of query qi to all records (masked rows: inf),
        the k-th smallest distance and the number of matching rows."""
        if self._dots is None:
            dots = np.empty((self.n, N_QUERIES), dtype=np.float32)
            for i0 in range(0, self.n, 16384):
                np.matmul(self.vecs[i0 : i0 + 16384], self.queries.T, out=dots[i0 : i0 + 16384])
            self._dots = dots
            self._qn = np.einsum("ij,ij->i", self.queries, self.queries, dtype=np.float64)
        d2 = self.sq_norms + self._qn[qi] - 2.0 * self._dots[:, qi].astype(np.float64)
        mask = self._filter_mask(kind, qi)
        if mask is not None:
            d2 = np.where(mask, d2, np.inf)
            m = int(mask.sum())
        else:
            m = self.n
        kk = min(k, m)
        kth = float(np.partition(d2, kk - 1)[kk - 1]) if kk else 0.0
        return d2, kth, m

    def recall(self, kind: str, qi: int, got_ids: list[str], k: int = 10) -> float:
        """Fraction of the exact top-k found. A returned record whose exact
        distance ties the k-th (within 1e-5) counts as a hit, so float32
        rounding between engines is not counted as a miss."""
        d2, kth, m = self.exact(kind, qi, k)
        want = min(k, m)
        if want == 0:
            return 1.0
        hits = 0
        for rid in got_ids[:k]:
            if rid.startswith("r"):
                i = int(rid[1:])
                if i < self.n and d2[i] <= kth + 1e-5:
                    hits += 1
        return min(hits, want) / want


# --------------------------------------------------------------------------
# backends


def open_backend(kind: str, path: Path) -> Any:
    if kind == "native":
        from crewcore import MemoryStorage

        return MemoryStorage(str(path), engine="native")
    if kind == "python":
        from crewcore import MemoryStorage

        return MemoryStorage(str(path), engine="python")
    if kind == "lancedb":
        from crewai.memory.storage.lancedb_storage import LanceDBStorage

        return LanceDBStorage(path=str(path))
    raise ValueError(kind)


def close_backend(st: Any) -> None:
    close = getattr(st, "close", None)
    if close is not None:
        close()
    wait_lancedb_compaction()


def wait_lancedb_compaction(timeout: float = 600.0) -> float:
    """Join LanceDBStorage's background compaction threads; return the wait."""
    t0 = _now()
    for t in list(threading.enumerate()):
        if t.name == "lancedb-compact" and t.is_alive():
            t.join(max(0.0, timeout - (_now() - t0)))
    return _now() - t0


def backend_unavailable(kind: str) -> str | None:
    """Why a backend cannot run in this environment (None: it can)."""
    try:
        if kind == "native":
            from crewcore import _bridge as _native

            _native.load()
            _native.version()
        elif kind == "python":
            from crewcore.memory.fallback import PyStore  # noqa: F401
        elif kind == "lancedb":
            from crewai.memory.storage.lancedb_storage import LanceDBStorage  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"
    return None


def rss_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_snapshot() -> tuple[float, float, float]:
    """(wall s, machine busy CPU s, this process's + waited children's CPU s)."""
    busy = 0.0
    try:
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:9]]
        busy = (sum(vals) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    t = os.times()
    return _now(), busy, t.user + t.system + t.children_user + t.children_system


def cpu_other(a: tuple[float, float, float], b: tuple[float, float, float]) -> dict[str, float]:
    """CPU used by other processes between two snapshots, as a share of the machine."""
    wall = max(b[0] - a[0], 1e-9)
    ncpu = os.cpu_count() or 1
    other = max(0.0, (b[1] - a[1]) - (b[2] - a[2]))
    return {"wall_s": wall, "other_cpu_s": other, "other_share": other / (wall * ncpu),
            "loadavg_end": os.getloadavg()[0]}


def wait_quiet(max_wait: float, threshold: float = 0.2, window: float = 5.0) -> float:
    """Wait (up to max_wait s) until other processes use < threshold of the CPU
    over a window; return the time waited."""
    if max_wait <= 0:
        return 0.0
    t0 = _now()
    announced = False
    while True:
        a = cpu_snapshot()
        time.sleep(window)
        share = cpu_other(a, cpu_snapshot())["other_share"]
        if share < threshold:
            return _now() - t0
        if _now() - t0 >= max_wait:
            progress(f"machine still busy ({100 * share:.0f}% CPU used by others) after "
                     f"{max_wait:.0f} s; going on")
            return _now() - t0
        if not announced:
            progress(f"waiting for the machine to be quiet ({100 * share:.0f}% CPU used by others)")
            announced = True


def du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


# --------------------------------------------------------------------------
# timing


def pct(samples_ns: list[int], p: float) -> float:
    """Percentile in seconds (linear interpolation)."""
    return float(np.percentile(np.asarray(samples_ns, dtype=np.float64), p)) / 1e9


def time_op(
    call: Callable[[Any], Any],
    args: Iterator[Any],
    reps: int,
    warmup: int,
    budget_s: float,
    min_reps: int,
    on_result: Callable[[int, Any], None] | None = None,
) -> dict[str, Any]:
    """Time ``call(arg)`` up to ``reps`` times (args prepared outside the timer).

    Stops early once ``min_reps`` samples are in and ``budget_s`` seconds were
    spent in the loop.
    """
    for _ in range(warmup):
        call(next(args))
    gc.collect()
    samples: list[int] = []
    start = _now()
    for i in range(reps):
        a = next(args)
        t0 = time.perf_counter_ns()
        r = call(a)
        t1 = time.perf_counter_ns()
        samples.append(t1 - t0)
        if on_result is not None:
            on_result(i, r)
        if i + 1 >= min_reps and _now() - start > budget_s:
            break
    return {
        "n": len(samples),
        "p50": pct(samples, 50),
        "p95": pct(samples, 95),
        "mean": sum(samples) / len(samples) / 1e9,
        "min": min(samples) / 1e9,
        "max": max(samples) / 1e9,
        "samples_us": [round(s / 1e3, 1) for s in samples],
    }


def cycle(fn: Callable[[int], Any]) -> Iterator[Any]:
    i = 0
    while True:
        yield fn(i)
        i += 1


# --------------------------------------------------------------------------
# one backend at one size


class LoadAbort(Exception):
    pass


def check_answers(st: Any, truth: dict[str, Any]) -> dict[str, Any]:
    """Compare metadata answers with the ground truth of the data set."""
    got = {
        "count": st.count(),
        "count_prefix": st.count("/crew/c1"),
        "list_scopes": list(st.list_scopes("/crew")),
        "scope_info_count": st.get_scope_info("/crew").record_count,
        "list_categories": dict(st.list_categories()),
    }
    wrong = {k: got[k] for k in got if got[k] != truth[k]}
    out: dict[str, Any] = {"ok": not wrong}
    if wrong:
        out["wrong"] = {
            k: {"got": v if k != "list_categories" else sum(v.values()),
                "want": truth[k] if k != "list_categories" else sum(truth[k].values())}
            for k, v in wrong.items()
        }
    return out


def run_backend(kind: str, ds: Dataset, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    tag = f"{ds.n}x{ds.dim} {kind}"
    path = workdir / f"{ds.n}x{ds.dim}" / kind
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    res: dict[str, Any] = {"status": "ok", "path": str(path)}
    waited = wait_quiet(args.quiet_wait)
    cpu0 = cpu_snapshot()
    st = open_backend(kind, path)
    try:
        # ---- bulk load ------------------------------------------------
        progress(f"{tag}: bulk load ({ds.n} records, save() batches of {LOAD_BATCH})")
        rss0 = rss_bytes()
        save_s = 0.0
        build_s = 0.0
        wall0 = _now()
        nb = (ds.n + LOAD_BATCH - 1) // LOAD_BATCH
        next_report = wall0 + 15
        for b in range(nb):
            i0, i1 = b * LOAD_BATCH, min(ds.n, (b + 1) * LOAD_BATCH)
            tb = _now()
            recs = ds.records(i0, i1)
            t0 = _now()
            build_s += t0 - tb
            st.save(recs)
            save_s += _now() - t0
            del recs
            done = i1
            elapsed = _now() - wall0
            if _now() >= next_report or b == nb - 1:
                progress(f"{tag}: loaded {done}/{ds.n} ({done / save_s:,.0f} records/s in save())")
                next_report = _now() + 15
            # budget: project the whole load from what is done so far
            if b + 1 < nb and (b + 1) >= max(3, nb // 20):
                projected = elapsed * ds.n / done
                if projected > args.load_budget:
                    raise LoadAbort(
                        f"bulk load over the {args.load_budget:.0f} s budget: {done} records in "
                        f"{elapsed:.0f} s, projected {projected:.0f} s for {ds.n}"
                    )
        res["load"] = {
            "records": ds.n,
            "save_s": save_s,
            "records_per_s": ds.n / save_s,
            "build_records_s": build_s,
            "batches": nb,
        }
        # LanceDBStorage compacts in the background every 100 saves: let that
        # finish so the reads below do not race it (the wait is reported).
        res["load"]["compaction_wait_s"] = wait_lancedb_compaction()
        if args.optimize_after_load:
            t0 = _now()
            st.optimize()
            res["load"]["optimize_s"] = _now() - t0
            res["load"]["compaction_wait_s"] += wait_lancedb_compaction()
        res["rss_after_load"] = rss_bytes()
        res["rss_growth_load"] = res["rss_after_load"] - rss0
        res["disk_bytes"] = du(path)
        progress(
            f"{tag}: loaded in {save_s:.1f} s ({ds.n / save_s:,.0f} rec/s), "
            f"disk {res['disk_bytes'] / 2**20:,.0f} MiB"
        )
        res["check"] = check_answers(st, ds.truth())
        if not res["check"]["ok"]:
            progress(f"{tag}: answers differ from ground truth: {res['check']['wrong']}")

        # ---- operations ----------------------------------------------
        ops: dict[str, Any] = {}
        res["ops"] = ops
        recall: dict[str, list[float]] = {k: [] for k in SEARCH_OPS}
        nres: dict[str, list[int]] = {k: [] for k in SEARCH_OPS}
        qn = len(ds.query_lists)

        def search_kw(kind_: str, i: int) -> tuple[int, dict[str, Any]]:
            qi = i % qn
            kw: dict[str, Any] = {"limit": 10}
            if kind_ == "search_scope":
                kw["scope_prefix"] = f"/crew/c{ds.q_crew[qi]}"
            elif kind_ == "search_categories":
                kw["categories"] = [f"cat{ds.q_cat[qi]:02d}"]
            return qi, kw

        for op in SEARCH_OPS:
            progress(f"{tag}: {op}")
            warm = args.warmup
            gen = cycle(lambda i, op=op: search_kw(op, i))
            qis: list[int] = []

            def do(a: tuple[int, dict[str, Any]]) -> Any:
                qis.append(a[0])
                return st.search(ds.query_lists[a[0]], **a[1])

            def collect(i: int, r: Any, op: str = op) -> None:
                ids = [rec.id for rec, _ in r]
                nres[op].append(len(ids))
                recall[op].append(ds.recall(op, qis[warm + i], ids))

            ops[op] = time_op(do, gen, args.reps, warm, args.budget, args.min_reps, collect)

        ids_rng = np.random.default_rng([ds.seed, ds.n, 5])
        simple: list[tuple[str, Callable[[Any], Any], Callable[[int], Any]]] = [
            ("list_scopes", lambda a: st.list_scopes("/crew"), lambda i: None),
            ("get_scope_info", lambda a: st.get_scope_info("/crew"), lambda i: None),
            ("list_categories", lambda a: st.list_categories(), lambda i: None),
            ("count", lambda a: st.count(), lambda i: None),
            ("count_prefix", lambda a: st.count("/crew/c1"), lambda i: None),
            ("touch", lambda a: st.touch_records(a),
             lambda i: [ds.record_id(int(x)) for x in ids_rng.integers(0, ds.n, 10)]),
        ]
        for op, call, argf in simple:
            progress(f"{tag}: {op}")
            ops[op] = time_op(call, cycle(argf), args.reps, args.warmup, args.budget, args.min_reps)

        written: list[str] = []

        def new_records(start: int, count: int) -> list:
            recs = ds.extra_records(start, count)
            written.extend(r.id for r in recs)
            return recs

        progress(f"{tag}: save_one")
        ops["save_one"] = time_op(
            lambda recs: st.save(recs), cycle(lambda i: new_records(i, 1)),
            args.reps, args.warmup, args.budget, args.min_reps,
        )
        progress(f"{tag}: save_batch")
        ops["save_batch"] = time_op(
            lambda recs: st.save(recs), cycle(lambda i: new_records(100_000 + 100 * i, 100)),
            args.batch_reps, 2, args.budget, min(args.min_reps, args.batch_reps),
        )
        # back to the loaded n records, so the rows "after optimize()" compare
        # with the first ones at the same size
        res["count_after_writes"] = st.count()
        t0 = _now()
        deleted = st.delete(record_ids=written)
        res["delete_written"] = {"ids": len(written), "deleted": deleted, "s": _now() - t0}
        # optimize() (crewcore: trims the change log, checkpoints the WAL;
        # LanceDB: compaction), then a second look at a search and count().
        wait_lancedb_compaction()
        progress(f"{tag}: optimize() and re-time")
        t0 = _now()
        st.optimize()
        res["optimize_s"] = _now() - t0 + wait_lancedb_compaction()
        ops["search_opt"] = time_op(
            lambda a: st.search(ds.query_lists[a % qn], limit=10), cycle(lambda i: i),
            args.reps, args.warmup, args.budget / 2, args.min_reps,
        )
        ops["count_opt"] = time_op(
            lambda a: st.count(), cycle(lambda i: None),
            args.reps, args.warmup, args.budget / 2, args.min_reps,
        )
        res["recall"] = {
            op: {"mean": float(np.mean(v)), "min": float(np.min(v)), "n": len(v),
                 "mean_results": float(np.mean(nres[op]))}
            for op, v in recall.items() if v
        }
        res["count_final"] = st.count()
        wait_lancedb_compaction()
    except LoadAbort as e:
        res = {"status": "not run", "reason": str(e), "path": str(path)}
        progress(f"{tag}: NOT RUN: {e}")
    except Exception as e:  # noqa: BLE001 - report, keep going
        import traceback

        traceback.print_exc()
        res = {"status": "failed", "reason": f"{type(e).__name__}: {e}", "path": str(path)}
        progress(f"{tag}: FAILED: {e}")
    finally:
        close_backend(st)
        del st
        gc.collect()

    if res.get("status") == "ok":
        # After close: the native engine's index snapshot (memory.db-index) is there now.
        res["disk_bytes_closed"] = du(path)
    res["cpu_other"] = cpu_other(cpu0, cpu_snapshot())
    res["quiet_wait_s"] = waited
    if res["cpu_other"]["other_share"] > 0.05:
        progress(f"{tag}: other processes used {100 * res['cpu_other']['other_share']:.0f}% of the "
                 f"machine's CPU meanwhile (load average {res['cpu_other']['loadavg_end']:.1f})")
    if res["status"] == "ok" and args.open_runs > 0:
        progress(f"{tag}: open in a fresh process x{args.open_runs}")
        res["open"] = open_probe(kind, path, ds.dim, args.open_runs, args.open_mode)
    if res["status"] == "ok" and args.procs > 0 and kind != "python":
        # the fallback copies every vector into each process (not measured: 8 copies of 1.2 GB at 100k x 3072)
        from bench_memory_procs import procs_probe

        progress(f"{tag}: memory of 1 and {args.procs} processes searching the store")
        c0 = cpu_snapshot()
        res["procs"] = procs_probe(kind, path, ds.queries[: args.procs_searches], args.procs, workdir)
        res["procs"]["cpu_other"] = cpu_other(c0, cpu_snapshot())
        if "error" in res["procs"]:
            progress(f"{tag}: processes probe failed: {res['procs']['error']}")
    if not args.keep:
        shutil.rmtree(path, ignore_errors=True)
    return res


# --------------------------------------------------------------------------
# store open time in a fresh process


PROBE_PRELOAD = [
    "numpy",
    "msgpack",
    "crewai.memory.types",
    "crewcore.memory.storage",
    "crewcore._bridge", "crewcore.memory.native",
    "crewcore.memory.fallback",
]
_probe_ctx: Any = None


def _probe_context() -> Any:
    """A multiprocessing forkserver with CrewAI, LanceDB and crewcore imported.

    Each probe is a new process forked from that server: it has never opened
    a store nor loaded libcrewcore.so, but does not pay CrewAI's import time
    (6-8 s here), which the probe excludes from its timer anyway. The server
    itself is started fresh (not forked from this process, which has the Go
    runtime loaded) and runs no thread when it forks (telemetry is off);
    lancedb is not preloaded because its import starts an event-loop thread,
    so the LanceDB probe imports it in the child, before its timer.
    """
    global _probe_ctx
    if _probe_ctx is None:
        import multiprocessing as mp

        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PROBE_PRELOAD)
        _probe_ctx = ctx
    return _probe_ctx


def _probe_child(kind: str, path: str, dim: int, conn: Any) -> None:
    try:
        conn.send(probe_measure(kind, path, dim))
    except BaseException as e:  # noqa: BLE001
        conn.send({"error": f"{type(e).__name__}: {e}"})
    finally:
        conn.close()


def open_probe(kind: str, path: Path, dim: int, runs: int, mode: str) -> dict[str, Any]:
    c_s: list[float] = []
    s_s: list[float] = []
    errs: list[str] = []
    for _ in range(runs):
        if mode == "subprocess":
            d = _probe_subprocess(kind, path, dim)
        else:
            ctx = _probe_context()
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_probe_child, args=(kind, str(path), dim, child))
            proc.start()
            child.close()
            d = {"error": "no answer from the probe process"}
            if parent.poll(600):
                try:
                    d = parent.recv()
                except EOFError:
                    pass
            proc.join(60)
            if proc.is_alive():
                proc.kill()
                proc.join()
        if "error" in d:
            errs.append(d["error"])
            continue
        c_s.append(d["open_count_s"])
        s_s.append(d["open_search_s"])
    out: dict[str, Any] = {"runs": len(c_s), "mode": mode}
    if c_s:
        out["open_count_p50"] = float(np.median(c_s))
        out["open_search_p50"] = float(np.median(s_s))
        out["open_count_s"] = c_s
        out["open_search_s"] = s_s
    if errs:
        out["errors"] = errs
        progress(f"open probe errors: {errs}")
    return out


def _probe_subprocess(kind: str, path: Path, dim: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_probe", kind, str(path), str(dim)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return {"error": "timeout"}
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("PROBE ")), None)
    if p.returncode != 0 or line is None:
        tail = (p.stderr or p.stdout).strip().splitlines()
        return {"error": tail[-1] if tail else f"exit {p.returncode}"}
    return json.loads(line[6:])


def probe_measure(kind: str, path: str, dim: int) -> dict[str, Any]:
    """In a new process: time backend construction + first count() + first search()."""
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    for mod in PROBE_PRELOAD:  # imports are outside the timer
        __import__(mod)
    if kind == "lancedb":
        __import__("crewai.memory.storage.lancedb_storage")
    q = _unit(np.random.default_rng(7).standard_normal((1, dim), dtype=np.float32))[0].tolist()
    t0 = time.perf_counter()
    st = open_backend(kind, Path(path))
    n = st.count()
    t1 = time.perf_counter()
    r = st.search(q, limit=10)
    t2 = time.perf_counter()
    close_backend(st)
    return {"open_count_s": t1 - t0, "open_search_s": t2 - t0, "count": n, "results": len(r)}


def probe_main(kind: str, path: str, dim: int) -> None:
    print("PROBE " + json.dumps(probe_measure(kind, path, dim)), flush=True)


# --------------------------------------------------------------------------
# machine and kernels


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {}
    cpu = "unknown"
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu == "unknown":
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    info["cpu"] = cpu
    info["simd_flags"] = [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl") if f in flags]
    info["cores"] = os.cpu_count()
    try:
        info["affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["ram_bytes"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    info["os"] = f"{platform.system()} {platform.release()}"
    info["python"] = platform.python_version()
    try:
        info["go"] = subprocess.run(["go", "version"], capture_output=True, text=True,
                                    timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        info["go"] = "unavailable"
    from importlib.metadata import version as pkgver

    for pkg in ("crewai", "lancedb", "pyarrow", "numpy", "msgpack"):
        try:
            info[pkg] = pkgver(pkg)
        except Exception:  # noqa: BLE001
            pass
    try:
        from crewcore import _bridge as _native

        ver, kernel = _native.version()
        info["crewcore_engine"] = ver
        info["simd_kernel"] = kernel
    except Exception as e:  # noqa: BLE001
        info["simd_kernel"] = f"unavailable ({e})"
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                                "memory", "cabi", "internal", "python"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
        info["git"] = rev + (" (+ uncommitted changes in engine sources)" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info


def numpy_bandwidth() -> dict[str, float]:
    """Single-thread memory bandwidth as numpy sees it (512 MiB arrays, best of 5)."""
    n = 512 * 2**20 // 8
    a = np.ones(n, dtype=np.float64)
    b = np.empty_like(a)
    np.copyto(b, a)
    best_sum = best_copy = math.inf
    for _ in range(5):
        t0 = _now()
        a.sum()
        best_sum = min(best_sum, _now() - t0)
        t0 = _now()
        np.copyto(b, a)
        best_copy = min(best_copy, _now() - t0)
    nbytes = a.nbytes
    del a, b
    return {"read_gbs": nbytes / best_sum / 1e9, "copy_gbs": 2 * nbytes / best_copy / 1e9}


GO_BENCH_RE = re.compile(
    r"^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+([\d.]+) ns/op(?:\s+([\d.]+) MB/s)?"
)


def go_kernel_bench(pattern: str, benchtime: str) -> dict[str, Any]:
    cmd = ["go", "test", "./internal/vec", "-run", "^$", "-bench", pattern, "-benchtime", benchtime]
    env = dict(os.environ, GOEXPERIMENT="simd", CGO_ENABLED="1")
    out: dict[str, Any] = {"command": "cd <repo> && GOEXPERIMENT=simd " + shlex.join(cmd)}
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    except (OSError, subprocess.TimeoutExpired) as e:
        out["status"] = f"not run ({type(e).__name__}: {e})"
        return out
    rows = []
    for line in p.stdout.splitlines():
        m = GO_BENCH_RE.match(line.strip())
        if m:
            rows.append({
                "name": m.group(1), "iters": int(m.group(2)), "ns_op": float(m.group(3)),
                "mb_s": float(m.group(4)) if m.group(4) else None,
            })
    out["results"] = rows
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        out["status"] = f"go test failed (exit {p.returncode}): " + " | ".join(tail)
    elif not rows:
        have = sorted(set(re.findall(r"func (Benchmark\w+)", _read_bench_sources())))
        out["status"] = (
            f"not run (no benchmark in internal/vec matches {pattern!r}; "
            f"present: {', '.join(have) or 'none'})"
        )
    else:
        out["status"] = "ok"
    return out


def _read_bench_sources() -> str:
    text = []
    for p in (ROOT / "internal" / "vec").glob("*_test.go"):
        try:
            text.append(p.read_text())
        except OSError:
            pass
    return "\n".join(text)


# --------------------------------------------------------------------------
# formatting


def fmt_t(s: float | None) -> str:
    if s is None:
        return "—"
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs" if s >= 1e-5 else f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.3g} ms" if s * 1e3 < 100 else f"{s * 1e3:.0f} ms"
    return f"{s:.3g} s" if s < 100 else f"{s:.0f} s"


def fmt_ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b <= 0:
        return "—"
    r = a / b
    if r >= 100:
        return f"{r:,.0f}x"
    if r >= 10:
        return f"{r:.1f}x"
    return f"{r:.2f}x"


def _op(res: dict[str, Any], kind: str, op: str, field: str) -> float | None:
    r = res.get(kind)
    if not r or r.get("status") != "ok":
        return None
    o = r.get("ops", {}).get(op)
    return None if o is None else o[field]


def status_cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "not in this run"
    return f"{r['status']} ({r.get('reason', '')})"


def config_tables(cfg: dict[str, Any], backends: list[str]) -> str:
    res = cfg["backends"]
    lines: list[str] = []
    not_ok = [(k, res.get(k)) for k in backends if (res.get(k) or {}).get("status") != "ok"]
    for k, r in not_ok:
        lines.append(f"- **{LABEL[k]}**: {status_cell(r)}")
    if not_ok:
        lines.append("")
    ok = [k for k in backends if (res.get(k) or {}).get("status") == "ok"]
    head = ["operation"]
    for k in backends:
        head += [f"{LABEL[k]} p50", f"{LABEL[k]} p95"]
    pairs = []
    if "lancedb" in backends:
        if "native" in backends:
            pairs.append(("lancedb", "native", "LanceDB / native"))
        if "python" in backends:
            pairs.append(("lancedb", "python", "LanceDB / fallback"))
    if "python" in backends and "native" in backends:
        pairs.append(("python", "native", "fallback / native"))
    for _, _, name in pairs:
        head += [f"{name} p50", f"{name} p95"]
    head.append("reps")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["--:"] * (len(head) - 1)) + "|")
    for op, label, _ in OPS:
        row = [label]
        for k in backends:
            if k in ok:
                row += [fmt_t(_op(res, k, op, "p50")), fmt_t(_op(res, k, op, "p95"))]
            else:
                row += ["not run", "not run"]
        for a, b, _ in pairs:
            for f in ("p50", "p95"):
                row.append(fmt_ratio(_op(res, a, op, f), _op(res, b, op, f)))
        reps = [str(res[k]["ops"][op]["n"]) if k in ok and op in res[k].get("ops", {}) else "—"
                for k in backends]
        row.append("/".join(reps))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    # load / open / recall / correctness
    head2 = ["", *[LABEL[k] for k in backends]]
    lines.append("| " + " | ".join(head2) + " |")
    lines.append("|" + "|".join(["---"] + ["--:"] * len(backends)) + "|")

    def row2(label: str, f: Callable[[dict[str, Any]], str]) -> None:
        cells = [label]
        for k in backends:
            r = res.get(k)
            if not r or r.get("status") != "ok":
                cells.append("not run" if r else "—")
            else:
                try:
                    cells.append(f(r))
                except (KeyError, TypeError, ValueError):
                    cells.append("—")
        lines.append("| " + " | ".join(cells) + " |")

    row2("bulk load, records/s (save() of 1000)", lambda r: f"{r['load']['records_per_s']:,.0f}")
    row2("bulk load, total time in save()", lambda r: fmt_t(r["load"]["save_s"]))
    row2("wait for background compaction after load",
         lambda r: fmt_t(r["load"]["compaction_wait_s"]))
    row2("delete(record_ids=<the records the write benchmarks added>)",
         lambda r: f"{fmt_t(r['delete_written']['s'])} ({r['delete_written']['deleted']:,} of "
                   f"{r['delete_written']['ids']:,} ids)")
    row2("optimize() after that", lambda r: fmt_t(r["optimize_s"]))
    row2("open → first count(), fresh process, p50",
         lambda r: fmt_t(r["open"]["open_count_p50"]) + f" (n={r['open']['runs']})")
    row2("open → count() → first search(), fresh process, p50",
         lambda r: fmt_t(r["open"]["open_search_p50"]))
    for op in SEARCH_OPS:
        label = dict((o, lab) for o, lab, _ in OPS)[op]
        row2(f"recall@10 vs exact, {label}",
             lambda r, op=op: f"{r['recall'][op]['mean']:.4f} (min {r['recall'][op]['min']:.1f}, "
                              f"avg {r['recall'][op]['mean_results']:.1f} results)")
    row2("metadata answers match ground truth",
         lambda r: "yes" if r["check"]["ok"] else "NO: " + "; ".join(
             f"{k} got {v['got']} want {v['want']}" for k, v in r["check"]["wrong"].items()))
    row2("store size on disk after load", lambda r: f"{r['disk_bytes'] / 2**20:,.0f} MiB")
    row2("store size on disk after the benchmark closed it (writes added and deleted; native: with "
         "its index snapshot memory.db-index)", lambda r: f"{r['disk_bytes_closed'] / 2**20:,.0f} MiB")
    row2("CPU used by other processes meanwhile (share of the machine; load average at the end)",
         lambda r: f"{100 * r['cpu_other']['other_share']:.0f}% (load {r['cpu_other']['loadavg_end']:.1f})")
    row2("process RSS growth during the load (approximate: freed memory of earlier runs is reused; "
         "LanceDB reads its files through the page cache)",
         lambda r: f"{r['rss_growth_load'] / 2**20:,.0f} MiB")
    mib = lambda b: f"{b / 2**20:,.0f} MiB"  # noqa: E731
    row2("1 process searching the store (fresh, CrewAI's memory types imported): PSS / USS",
         lambda r: f"{mib(r['procs']['one']['pss'])} / {mib(r['procs']['one']['uss'])}")
    row2("N processes searching it at once: sum of PSS (x one) / sum of USS",
         lambda r: f"{r['procs']['nproc']}: {mib(r['procs']['many']['pss'])} ({r['procs']['ratio_pss']:.2f}x) / "
                   f"{mib(r['procs']['many']['uss'])}")
    row2("the store's part (each process's anonymous memory growth from open to after its searches + "
         "PSS of the store's mapped files): 1 process / N (x one)",
         lambda r: f"{mib(r['procs']['one']['store'])} / {mib(r['procs']['many']['store'])} "
                   f"({r['procs']['ratio_store']:.2f}x)")
    row2("CPU used by other processes during the processes probe",
         lambda r: f"{100 * r['procs']['cpu_other']['other_share']:.0f}% (load {r['procs']['cpu_other']['loadavg_end']:.1f})")
    return "\n".join(lines)


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    cfgs = {(c["n"], c["dim"]): c for c in results["configs"]}
    out: list[dict[str, Any]] = []
    c10 = cfgs.get((10_000, 3072))
    for op, need in [(o, 20) for o in ("search", "search_scope", "search_categories",
                                        "save_one", "save_batch")] + \
                    [(o, 100) for o in META_OPS]:
        label = dict((o, lab) for o, lab, _ in OPS)[op]
        t = {"target": f"{label}: native ≥ {need}x faster than LanceDB (p50) at 10k x 3072"}
        if c10 is None:
            t.update(result="not evaluated", detail="10k x 3072 not in this run")
        else:
            r = c10["backends"]
            a50, b50 = _op(r, "lancedb", op, "p50"), _op(r, "native", op, "p50")
            a95, b95 = _op(r, "lancedb", op, "p95"), _op(r, "native", op, "p95")
            if a50 is None or b50 is None:
                t.update(result="not evaluated", detail="LanceDB or native not run")
            else:
                ratio = a50 / b50
                t.update(
                    result="PASS" if ratio >= need else "FAIL",
                    detail=f"LanceDB {fmt_t(a50)} / native {fmt_t(b50)} = {fmt_ratio(a50, b50)} "
                           f"(p95: {fmt_ratio(a95, b95)})",
                    ratio_p50=ratio, ratio_p95=(a95 / b95) if a95 and b95 else None,
                )
        out.append(t)
    c100 = cfgs.get((100_000, 3072))
    for op in SEARCH_OPS:
        label = dict((o, lab) for o, lab, _ in OPS)[op]
        t = {"target": f"{label}: native p95 < 10 ms and recall@10 ≥ 0.99 at 100k x 3072"}
        nat = (c100 or {}).get("backends", {}).get("native")
        if c100 is None:
            t.update(result="not evaluated", detail="100k x 3072 not in this run")
        elif not nat or nat.get("status") != "ok":
            t.update(result="FAIL" if nat else "not evaluated", detail=status_cell(nat))
        else:
            p95 = nat["ops"][op]["p95"]
            rec = nat["recall"][op]["mean"]
            t.update(
                result="PASS" if p95 < 0.010 and rec >= 0.99 else "FAIL",
                detail=f"p95 {fmt_t(p95)}, recall@10 {rec:.4f} (p50 {fmt_t(nat['ops'][op]['p50'])})",
                p95=p95, recall=rec,
            )
        out.append(t)
    out.extend(issue14_targets(results, c10, c100))
    return out


def issue14_targets(results: dict[str, Any], c10: dict[str, Any] | None,
                    c100: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The targets of issue 14 (format version 3) that the table above does not hold."""
    out: list[dict[str, Any]] = []

    def nat(c: dict[str, Any] | None) -> dict[str, Any]:
        r = (c or {}).get("backends", {}).get("native") or {}
        return r if r.get("status") == "ok" else {}

    t: dict[str, Any] = {"target": "open → first search in a fresh process at 100k x 3072 (page cache warm): "
                                   "native p50 < 100 ms (measured: open → count() → first search())"}
    o = nat(c100).get("open", {})
    if "open_search_p50" in o:
        v = o["open_search_p50"]
        t.update(result="PASS" if v < 0.100 else "FAIL",
                 detail=f"{fmt_t(v)} (open → count(): {fmt_t(o['open_count_p50'])}; n={o['runs']})")
    else:
        t.update(result="not evaluated", detail="100k x 3072 native open not measured")
    out.append(t)
    pr = nat(c100).get("procs", {})
    for what, key in (("whole processes, sum of PSS", "ratio_pss"), ("the store's part", "ratio_store")):
        t = {"target": f"N processes searching one 100k x 3072 store add together ≤ 1.5x one process "
                       f"({what})"}
        if pr.get(key) is not None:
            t.update(result="PASS" if pr[key] <= 1.5 else "FAIL",
                     detail=f"{pr['nproc']} processes: {pr[key]:.2f}x")
        else:
            t.update(result="not evaluated", detail=pr.get("error", "not measured"))
        out.append(t)
    t = {"target": "save batch of 100 at 10k x 3072: native ≥ 4x faster than LanceDB (p50)"}
    if c10 is not None and _op(c10["backends"], "native", "save_batch", "p50") and \
            _op(c10["backends"], "lancedb", "save_batch", "p50"):
        a, b = _op(c10["backends"], "lancedb", "save_batch", "p50"), _op(c10["backends"], "native", "save_batch", "p50")
        t.update(result="PASS" if a / b >= 4 else "FAIL", detail=f"LanceDB {fmt_t(a)} / native {fmt_t(b)} = {a / b:.2f}x")
    else:
        t.update(result="not evaluated", detail="10k x 3072 native or LanceDB not run")
    out.append(t)
    base = results.get("baseline")
    if base:
        slower = [r for r in base["rows"] if r["backend"] == "native" and r["row"] != "disk_bytes"
                  and r["new"] > r["old"] and not (r.get("ratio_new") and r.get("ratio_old")
                                                   and r["ratio_new"] >= r["ratio_old"])]
        t = {"target": f"every row of the memory table no slower than the baseline run ({base['date']}): "
                       f"native p50, or at least the same ratio to LanceDB"}
        t.update(result="PASS" if not slower else "FAIL",
                 detail="; ".join(f"{r['n'] // 1000}k x {r['dim']} {r['row']}: {fmt_t(r['old'])} → {fmt_t(r['new'])}"
                                  + (f" (LanceDB/native {r['ratio_old']:.1f}x → {r['ratio_new']:.1f}x)"
                                     if r.get("ratio_old") and r.get("ratio_new") else "")
                                  for r in slower) or "none slower")
        out.append(t)
        sizes = [r for r in base["rows"] if r["backend"] == "native" and r["row"] == "disk_bytes"]
        t = {"target": f"native store size on disk no larger than in the baseline run ({base['date']})"}
        if sizes:
            big = [r for r in sizes if r["new"] > r["old"]]
            t.update(result="PASS" if not big else "FAIL",
                     detail="; ".join(f"{r['n'] // 1000}k x {r['dim']}: {r['old'] / 2**20:,.0f} → "
                                      f"{r['new'] / 2**20:,.0f} MiB" for r in sizes))
        else:
            t.update(result="not evaluated", detail="no common size")
        out.append(t)
    return out


def render_markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    backends = results["args"]["backends"]
    L: list[str] = []
    L.append("## Memory engine (issue 2)")
    L.append("")
    L.append(
        "Generated by `bench/bench_memory.py`; do not edit by hand (re-run the script with `--write`). "
        "Raw numbers: [`bench/results/latest.json`](../bench/results/latest.json)."
    )
    L.append("")
    L.append(f"- **Date (UTC):** {results['date_utc']}")
    ram = m.get("ram_bytes", 0) / 2**30
    L.append(f"- **Machine:** {m['cpu']}, {m['cores']} cores (usable: {m.get('affinity', '?')}), "
             f"{ram:.1f} GiB RAM, {m['os']}; CPU flags: {', '.join(m['simd_flags']) or 'none'}")
    lib = results.get("library", {})
    L.append(f"- **crewcore SIMD kernel:** `{m.get('simd_kernel')}` (engine {m.get('crewcore_engine', '?')}, "
             f"commit {m.get('git', '?')}, libcrewcore.so sha256 {lib.get('sha256', '?')[:12]})")
    L.append(f"- **Versions:** {m.get('go')}; Python {m['python']}; crewai {m.get('crewai')}; "
             f"lancedb {m.get('lancedb')} (pyarrow {m.get('pyarrow')}); "
             f"numpy {m.get('numpy')}")
    L.append(f"- **Total run time:** {results['elapsed_s'] / 60:.1f} min")
    co = results.get("cpu_other")
    if co:
        L.append(
            f"- **Other load on the machine during the run:** other processes used "
            f"{100 * co['other_share']:.0f}% of its CPU time on average (per backend and size: the "
            f"`CPU used by other processes` rows). Numbers taken while that share is high are noisy."
        )
    L.append("")
    L.append("### Reproduce")
    L.append("")
    L.append("```sh")
    L.append("make bench    # = make build && .venv/bin/python bench/bench_memory.py --write docs/benchmarks.md")
    L.append("```")
    L.append("")
    L.append("This report came from:")
    L.append("")
    L.append("```sh")
    L.append(results["command"])
    if results.get("procs_redone"):
        L.append(f".venv/bin/python {results['procs_redone']}   # the processes rows measured again on the kept stores")
    L.append("```")
    L.append("")
    a = results["args"]
    L.append("### Method")
    L.append("")
    L.append(
        f"- Backends, all driven through CrewAI's `StorageBackend` API in one Python process, each in "
        f"its own directory: **crewcore native** = `MemoryStorage(path, engine=\"native\")`, "
        f"**crewcore fallback** = `MemoryStorage(path, engine=\"python\")`, **LanceDB** = CrewAI's "
        f"`LanceDBStorage(path=...)` with its default arguments (`compact_every=100`, no vector index: "
        f"exact flat search). crewcore runs with its defaults (`metric=\"l2\"`, the same "
        f"`1/(1+d²)` score as LanceDB)."
    )
    L.append(
        f"- Data: {N_CENTROIDS} random unit centroids; each record = centroid + Gaussian noise "
        f"(norm {NOISE_MIN}–{NOISE_MAX}), normalized; queries are fresh perturbations of random "
        f"centroids (seed {a['seed']}). Records are CrewAI `MemoryRecord`s with ~200 character content, "
        f"{N_CREWS * N_AGENTS} scopes `/crew/c<0-{N_CREWS - 1}>/agent/a<0-{N_AGENTS - 1}>`, 1–2 of "
        f"{N_CATS} categories, a small metadata dict, random importance; embeddings are Python float "
        f"lists, as CrewAI's embedder returns them. Every backend gets the same records."
    )
    L.append(
        f"- Bulk load: `save()` of {LOAD_BATCH} records at a time, timed inside `save()` only (building "
        f"the records is not counted). Then the run waits for LanceDB's background compactions "
        f"(`LanceDBStorage` starts one every 100 saves) to finish, reported separately. "
        + ("`optimize()` is then called on every backend. " if a.get("optimize_after_load") else
           "No backend's `optimize()` is called before the timed operations (CrewAI never calls it); "
           "after the write benchmarks, the records they added are deleted (back to the loaded size), "
           "`optimize()` is called on every backend and search/count are timed again "
           "(the `after ... optimize()` rows). ")
        + f"A backend whose projected load time exceeds {a['load_budget']:.0f} s is reported as not run."
    )
    L.append(
        f"- Operations, in this order, each after {a['warmup']} warm-up calls: up to {a['reps']} timed "
        f"calls (batch saves: {a['batch_reps']}), stopping early after {a['budget']:.0f} s once "
        f"{a['min_reps']} samples are in (the `reps` column gives native/fallback/LanceDB counts). Searches "
        f"cycle over {N_QUERIES} queries; the scope filter is `/crew/c<k>` (~1/{N_CREWS} of the records), "
        f"the category filter one category (~{100 * 1.5 / N_CATS:.1f}% of the records). Reads run before "
        f"writes; `save 1 record` and `save batch of 100` add new records (the store grows by those). "
        f"Python's GC is left on."
    )
    L.append(
        "- Recall@10: every timed search's result ids are compared with an exact numpy brute force (same "
        "filter, squared L2 over the stored float32 vectors); a result tying the exact 10th distance "
        "within 1e-5 counts as a hit. The native engine scans exactly below "
        + (f"{results['exact_below']:,} candidate vectors (its default `ExactBelow` in "
           f"`memory/store.go` at this commit)" if results.get("exact_below") else
           "its `ExactBelow` threshold (`memory/store.go`)")
        + " and uses the binary-quantized scan + exact re-rank above it; the fallback always scans exactly."
    )
    L.append(
        f"- Open time: after the benchmark process closed the store, a new process "
        + ("(forked from a `multiprocessing` forkserver that has CrewAI and crewcore imported, so "
           "CrewAI's import time is not paid; it has never loaded `libcrewcore.so` nor opened a store; "
           "the LanceDB probe imports `lancedb` itself) imports the modules, then "
           if a.get("open_mode", "forkserver") == "forkserver" else
           "(a new interpreter; imports done before the timer) ")
        + f"times constructing the backend on the loaded store until the first `count()` returns, and "
        f"until a first `search()` after it returns; median of {a['open_runs']} processes. For crewcore "
        f"native this includes loading `libcrewcore.so` and the Go runtime, and reading the index snapshot "
        f"`memory.db-index` the benchmark process wrote when it closed the store (or, without one, every "
        f"record from SQLite: docs/architecture.md, \"Open from the index snapshot\"); for LanceDB the background "
        f"compaction `LanceDBStorage` starts on open runs alongside. The OS page cache is warm (the store "
        f"was just written)."
    )
    L.append("")
    for cfg in results["configs"]:
        L.append(f"### {cfg['n']:,} records x {cfg['dim']} dims")
        L.append("")
        L.append(config_tables(cfg, backends))
        L.append("")
    L.append("### Targets")
    L.append("")
    L.append("| target | result | numbers |")
    L.append("|---|---|---|")
    for t in results["targets"]:
        L.append(f"| {t['target']} | **{t['result']}** | {t['detail']} |")
    L.append("")
    base = results.get("baseline")
    if base:
        L.append(f"### Against the baseline run ({base['date']}, commit {base['commit']}, "
                 f"[`{base['path']}`](../{base['path']}))")
        L.append("")
        L.append("p50 of each row in that run and in this one (store size: bytes on disk after the load). "
                 "The machine's load differed between the runs (this run: the `CPU used by other processes` "
                 f"rows above; that one: {100 * (base.get('cpu_other') or 0):.0f}% of the machine), so the "
                 "ratio to LanceDB, measured in the same run, is the fairer comparison.")
        L.append("")
        L.append("| size | backend | row | baseline p50 | this run p50 | this / baseline | LanceDB / this backend, baseline → this run |")
        L.append("|---|---|---|--:|--:|--:|--:|")
        labels = {o: lab for o, lab, _ in OPS}
        labels.update(open_search="open → count() → first search()", open_count="open → first count()",
                      disk_bytes="store size on disk")
        for r in base["rows"]:
            if r["row"] == "disk_bytes":
                a, b = f"{r['old'] / 2**20:,.0f} MiB", f"{r['new'] / 2**20:,.0f} MiB"
            else:
                a, b = fmt_t(r["old"]), fmt_t(r["new"])
            ratio = (f"{r['ratio_old']:,.1f}x → {r['ratio_new']:,.1f}x"
                     if r.get("ratio_old") and r.get("ratio_new") else "")
            L.append(f"| {r['n']:,} x {r['dim']} | {LABEL[r['backend']]} | {labels.get(r['row'], r['row'])} | "
                     f"{a} | {b} | {r['new'] / r['old']:.2f}x | {ratio} |")
        L.append("")
    L.append("### Raw scan kernels (Go, `internal/vec`)")
    L.append("")
    bw = results.get("numpy_bandwidth")
    if bw:
        L.append(
            f"Machine memory bandwidth as one numpy thread sees it (512 MiB arrays, best of 5): "
            f"read (sum) {bw['read_gbs']:.1f} GB/s, copy (read+write) {bw['copy_gbs']:.1f} GB/s "
            f"(other processes used {100 * bw.get('cpu_other', {}).get('other_share', 0):.0f}% of the CPU meanwhile)."
        )
        L.append("")
    gb = results.get("go_bench")
    if gb is None:
        L.append("Not run (`--no-go-bench`).")
    else:
        L.append(f"`{gb['command']}`")
        L.append("")
        if gb["status"] != "ok":
            L.append(f"Status: {gb['status']}")
        if gb.get("cpu_other"):
            L.append(f"Other processes used {100 * gb['cpu_other']['other_share']:.0f}% of the CPU while "
                     f"these ran. `-benchtime 5x` gives few samples: treat as indicative.")
        if gb.get("results"):
            L.append("")
            L.append("| benchmark | ns/op | GB/s |")
            L.append("|---|--:|--:|")
            for r in gb["results"]:
                gbs = f"{r['mb_s'] / 1000:.2f}" if r["mb_s"] is not None else "—"
                L.append(f"| {r['name']} | {r['ns_op']:,.0f} | {gbs} |")
    L.append("")
    notes = results.get("notes") or []
    if notes:
        L.append("### Notes")
        L.append("")
        for n in notes:
            L.append(f"- {n}")
        L.append("")
    return "\n".join(L)


def derive_notes(results: dict[str, Any]) -> list[str]:
    notes = []
    for cfg in results["configs"]:
        lr = cfg["backends"].get("lancedb") or {}
        if lr.get("status") == "ok":
            if not lr["check"]["ok"]:
                notes.append(
                    f"{cfg['n']:,} x {cfg['dim']}: LanceDBStorage's metadata answers differ from the "
                    f"ground truth ({', '.join(lr['check']['wrong'])}): its `_scan_rows` stops at "
                    f"50,000 rows, so scope/category statistics of larger stores are truncated."
                )
            rc = lr.get("recall", {}).get("search_categories")
            if rc and rc["mean"] < 0.99:
                notes.append(
                    f"{cfg['n']:,} x {cfg['dim']}: LanceDBStorage filters categories after fetching "
                    f"`3 * limit` nearest rows, so a category search returns "
                    f"{rc['mean_results']:.1f} results on average and recall@10 {rc['mean']:.3f}; "
                    f"crewcore filters before top-k."
                )
    return notes


# --------------------------------------------------------------------------
# profile mode


def profile_native(spec: str, args: argparse.Namespace, workdir: Path) -> None:
    """Where a native call's time goes: an exact split without the profiler
    (engine inside crewcore_call / bridge glue in _native.call / Python-side
    conversion in the binding), then cProfile's top entries."""
    import cProfile
    import pstats

    from crewcore import _bridge as _native

    n, dim = (int(x) for x in spec.lower().split("x"))
    progress(f"profile: building {n}x{dim}")
    ds = Dataset(n, dim, args.seed)
    path = workdir / f"profile-{n}x{dim}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    st = open_backend("native", path)
    for b in range(0, n, LOAD_BATCH):
        st.save(ds.records(b, min(n, b + LOAD_BATCH)))
    progress("profile: loaded")
    qs = ds.query_lists
    nq = len(qs)
    for i in range(20):
        st.search(qs[i])

    # -- exact split: wrap _native.call and the ctypes entry point ---------
    lib = _native.load()
    c_fn = lib.crewcore_call
    t_call: list[int] = []
    t_c: list[int] = []
    orig_call = _native.call

    def timed_c(*a: Any) -> Any:
        t0 = time.perf_counter_ns()
        r = c_fn(*a)
        t_c.append(time.perf_counter_ns() - t0)
        return r

    def timed_call(req: Any) -> Any:
        t0 = time.perf_counter_ns()
        r = orig_call(req)
        t_call.append(time.perf_counter_ns() - t0)
        return r

    def split(label: str, items: list[Any], fn: Callable[[Any], Any]) -> None:
        lib.crewcore_call = timed_c
        _native.call = timed_call
        tot: list[int] = []
        eng: list[int] = []
        glue: list[int] = []
        py: list[int] = []
        try:
            for it in items:
                t_call.clear()
                t_c.clear()
                t0 = time.perf_counter_ns()
                fn(it)
                t = time.perf_counter_ns() - t0
                tot.append(t)
                eng.append(sum(t_c))
                glue.append(sum(t_call) - sum(t_c))
                py.append(t - sum(t_call))
        finally:
            _native.call = orig_call
            lib.crewcore_call = c_fn
        med = [float(np.median(x)) / 1e3 for x in (tot, eng, glue, py)]
        print(f"| {label} | {med[0]:,.0f} | " + " | ".join(
            f"{m:,.0f} ({100 * m / med[0]:.0f}%)" for m in med[1:]) + " |", flush=True)

    print(f"\n## native path at {n:,} x {dim}: median µs per call and of each part (no profiler)\n")
    print("| call | total | Go engine (inside crewcore_call, GIL released) | bridge glue "
          "(msgpack pack/unpack, ctypes, string_at) | Python binding (validation, vector packing, "
          "MemoryRecord construction) |")
    print("|---|--:|--:|--:|--:|")
    split("search(limit=10)", list(range(300)), lambda i: st.search(qs[i % nq]))
    split("search(scope_prefix)", list(range(300)),
          lambda i: st.search(qs[i % nq], scope_prefix=f"/crew/c{ds.q_crew[i % nq]}"))
    split("search(categories)", list(range(300)),
          lambda i: st.search(qs[i % nq], categories=[f"cat{ds.q_cat[i % nq]:02d}"]))
    split("count()", list(range(1000)), lambda i: st.count())
    split('get_scope_info("/crew")', list(range(1000)), lambda i: st.get_scope_info("/crew"))
    split("save(1 record)", [ds.extra_records(i, 1) for i in range(300)], st.save)
    split("save(100 records)", [ds.extra_records(10_000 + 100 * i, 100) for i in range(30)], st.save)

    # -- cProfile ------------------------------------------------------------
    def run(label: str, fn: Callable[[], None]) -> None:
        pr = cProfile.Profile()
        t0 = _now()
        pr.enable()
        fn()
        pr.disable()
        print(f"\n=== cProfile, {label}: {(_now() - t0):.3f} s wall (under the profiler) ===")
        pstats.Stats(pr).sort_stats("tottime").print_stats(15)

    run("300 x search(limit=10)", lambda: [st.search(qs[i % nq]) for i in range(300)])
    singles = [ds.extra_records(20_000 + i, 1) for i in range(300)]
    run("300 x save(1 record)", lambda: [st.save(r) for r in singles])
    batches = [ds.extra_records(30_000 + 100 * i, 100) for i in range(30)]
    run("30 x save(100 records)", lambda: [st.save(r) for r in batches])
    close_backend(st)


# --------------------------------------------------------------------------
# main


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000", help="record counts, comma separated")
    ap.add_argument("--dims", default="1536,3072", help="embedding dimensions, comma separated")
    ap.add_argument("--backends", default=",".join(BACKENDS),
                    help="native,python,lancedb (python = the crewcore fallback; 'fallback' accepted)")
    ap.add_argument("--quick", action="store_true", help="sizes 1000,10000 (both dims)")
    ap.add_argument("--reps", type=int, default=200, help="max timed calls per operation")
    ap.add_argument("--batch-reps", type=int, default=50, help="max timed save-batch-of-100 calls")
    ap.add_argument("--min-reps", type=int, default=20, help="min timed calls before the budget applies")
    ap.add_argument("--warmup", type=int, default=5, help="untimed calls before each operation")
    ap.add_argument("--budget", type=float, default=4.0, help="seconds per operation once min-reps is in")
    ap.add_argument("--load-budget", type=float, default=600.0,
                    help="max projected seconds of a bulk load before the backend is reported not run")
    ap.add_argument("--optimize-after-load", action="store_true",
                    help="call optimize() on every backend after the bulk load (default: no, as CrewAI "
                         "never calls it; every backend is optimized after the write benchmarks)")
    ap.add_argument("--open-runs", type=int, default=3, help="fresh processes for the open time (0: skip)")
    ap.add_argument("--open-mode", choices=("forkserver", "subprocess"), default="forkserver",
                    help="how the fresh process for the open time starts: forked from a server that has "
                         "the modules imported (default), or a new interpreter (pays CrewAI's import)")
    ap.add_argument("--quiet-wait", type=float, default=0.0, metavar="SECONDS",
                    help="before each backend, wait up to this long for other processes to use < 20%% "
                         "of the CPU (a shared machine); 0: do not wait")
    ap.add_argument("--procs", type=int, default=8,
                    help="after each size: 1, then this many fresh processes searching the store at once, "
                         "their memory (PSS/USS) measured (native and LanceDB; 0: skip)")
    ap.add_argument("--procs-searches", type=int, default=10, help="searches per process of --procs")
    ap.add_argument("--baseline", metavar="JSON",
                    help="a previous run's raw results: every p50, open time and store size beside this run's")
    ap.add_argument("--seed", type=int, default=20250101)
    ap.add_argument("--workdir", default=str(ROOT / ".bench-data"),
                    help="where the stores are written (in a run-<pid> subdirectory)")
    ap.add_argument("--keep", action="store_true", help="keep the stores after the run")
    ap.add_argument("--no-go-bench", action="store_true", help="skip the Go kernel benchmarks")
    ap.add_argument("--go-bench", default="DotAll|HammingAll|MemoryBandwidth", help="-bench pattern")
    ap.add_argument("--go-benchtime", default="5x")
    ap.add_argument("--write", metavar="MD", help="write the markdown report here (e.g. docs/benchmarks.md)")
    ap.add_argument("--json", metavar="PATH",
                    help=f"raw results (default with --write: {DEFAULT_JSON.relative_to(ROOT)})")
    ap.add_argument("--profile", metavar="NxDIM",
                    help="instead of the benchmark: cProfile the native path at this size, e.g. 10000x3072")
    ap.add_argument("--redo-procs", metavar="JSON",
                    help="instead of the benchmark: measure --procs again on the stores a run with --keep "
                         "left (their paths are in its raw results), put the figures into those results and "
                         "write them (--json, --write) with the targets evaluated again")
    ap.add_argument("--_probe", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.quick:
        a.sizes = "1000,10000"
    a.sizes = [int(x) for x in a.sizes.split(",") if x.strip()]
    a.dims = [int(x) for x in a.dims.split(",") if x.strip()]
    bk = []
    for b in a.backends.split(","):
        b = b.strip().lower()
        b = {"fallback": "python", "lance": "lancedb"}.get(b, b)
        if b not in BACKENDS:
            ap.error(f"unknown backend {b!r}")
        if b not in bk:
            bk.append(b)
    a.backends = [b for b in BACKENDS if b in bk]
    return a


def native_exact_below() -> int | None:
    """The Go engine's default exact-scan threshold, read from its source."""
    try:
        m = re.search(r"o\.ExactBelow\s*=\s*([0-9_]+)", (ROOT / "memory" / "store.go").read_text())
    except OSError:
        return None
    return int(m.group(1).replace("_", "")) if m else None


def pin_library(workdir: Path) -> dict[str, Any]:
    """Run on a private copy of libcrewcore.so (CREWCORE_LIB), so a rebuild
    during a long run neither changes the engine under test nor rewrites a
    mapped file. Returns the library's identity for the report."""
    import hashlib

    from crewcore import _bridge as _native

    src = _native.library_path()
    info: dict[str, Any] = {"library": str(src)}
    if not src.exists():
        return info
    data = src.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    info["sha256"] = digest
    if "CREWCORE_LIB" in os.environ:
        return info
    dst = workdir / f"libcrewcore-{digest[:12]}.so"
    if not dst.exists():
        tmp = dst.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(dst)
    os.environ["CREWCORE_LIB"] = str(dst)
    info["pinned_copy"] = str(dst)
    return info


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args._probe:
        probe_main(args._probe[0], args._probe[1], int(args._probe[2]))
        return 0
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    base = Path(args.workdir).resolve()
    base.mkdir(parents=True, exist_ok=True)
    lib_info = pin_library(base)
    # this run's own directory: two runs at once never touch each other's stores
    workdir = base / f"run-{os.getpid()}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    try:
        if args.profile:
            profile_native(args.profile, args, workdir)
            return 0
        if args.redo_procs:
            return redo_procs(args, argv, workdir)
        return run_all(args, argv, workdir, lib_info)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def redo_procs(args: argparse.Namespace, argv: list[str], workdir: Path) -> int:
    """--redo-procs: the processes probe again on kept stores, the rest of the results as they were."""
    from bench_memory_procs import procs_probe

    results = json.loads(Path(args.redo_procs).read_text())
    for cfg in results["configs"]:
        queries = Dataset(cfg["n"], cfg["dim"], results["args"]["seed"]).queries[: args.procs_searches]
        for kind, res in cfg["backends"].items():
            if kind == "python" or res.get("status") != "ok" or not Path(res["path"]).is_dir():
                continue
            progress(f"{cfg['n']}x{cfg['dim']} {kind}: memory of 1 and {args.procs} processes searching the store")
            c0 = cpu_snapshot()
            res["procs"] = procs_probe(kind, Path(res["path"]), queries, args.procs, workdir)
            res["procs"]["cpu_other"] = cpu_other(c0, cpu_snapshot())
            res["procs"]["redone"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    results["procs_redone"] = " ".join(shlex.quote(x) for x in ["bench/bench_memory.py", *argv])
    results["targets"] = evaluate_targets(results)
    json_path = Path(args.json) if args.json else (DEFAULT_JSON if args.write else None)
    if json_path:
        json_path.write_text(json.dumps(results, indent=1) + "\n")
    if args.write:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from report import write_section

        write_section(Path(args.write), "memory", render_markdown(results))
    for t in results["targets"]:
        print(f"- {t['result']}: {t['target']} -- {t['detail']}")
    return 0


def run_all(args: argparse.Namespace, argv: list[str], workdir: Path, lib_info: dict[str, Any]) -> int:
    command = " ".join(shlex.quote(x) for x in [os.path.relpath(sys.executable, ROOT)
                                                if sys.executable.startswith(str(ROOT)) else sys.executable,
                                                os.path.relpath(Path(__file__).resolve(), ROOT), *argv])
    results: dict[str, Any] = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": command,
        "args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
        "machine": machine_info(),
        "library": lib_info,
        "exact_below": native_exact_below(),
        "configs": [],
    }
    cpu_start = cpu_snapshot()
    m = results["machine"]
    progress(f"machine: {m['cpu']}, {m['cores']} cores, {m.get('ram_bytes', 0) / 2**30:.1f} GiB, "
             f"kernel {m.get('simd_kernel')}; backends {args.backends}; sizes {args.sizes}; dims {args.dims}")
    unavailable = {k: backend_unavailable(k) for k in args.backends}
    for k, why in unavailable.items():
        if why:
            progress(f"{k}: unavailable: {why}")

    wait_quiet(args.quiet_wait)
    progress("numpy memory bandwidth")
    c0 = cpu_snapshot()
    results["numpy_bandwidth"] = numpy_bandwidth()
    results["numpy_bandwidth"]["cpu_other"] = cpu_other(c0, cpu_snapshot())
    progress(f"numpy: read {results['numpy_bandwidth']['read_gbs']:.1f} GB/s, "
             f"copy {results['numpy_bandwidth']['copy_gbs']:.1f} GB/s")
    if not args.no_go_bench:
        progress(f"go kernel benchmarks ({args.go_bench}, benchtime {args.go_benchtime})")
        c0 = cpu_snapshot()
        results["go_bench"] = go_kernel_bench(args.go_bench, args.go_benchtime)
        results["go_bench"]["cpu_other"] = cpu_other(c0, cpu_snapshot())
        progress(f"go bench: {results['go_bench']['status']}")
        for r in results["go_bench"].get("results", []):
            progress(f"  {r['name']}: {r['ns_op']:,.0f} ns/op"
                     + (f", {r['mb_s'] / 1000:.2f} GB/s" if r["mb_s"] else ""))

    for n in args.sizes:
        for dim in args.dims:
            progress(f"=== {n} x {dim}: generating data")
            t0 = _now()
            ds = Dataset(n, dim, args.seed)
            progress(f"{n} x {dim}: data ready in {_now() - t0:.1f} s")
            cfg: dict[str, Any] = {"n": n, "dim": dim, "backends": {}}
            for k in args.backends:
                if unavailable[k]:
                    cfg["backends"][k] = {"status": "not run", "reason": f"unavailable: {unavailable[k]}"}
                    continue
                cfg["backends"][k] = run_backend(k, ds, args, workdir)
            results["configs"].append(cfg)
            del ds
            gc.collect()
            print()
            print(f"## {n:,} records x {dim} dims\n")
            print(config_tables(cfg, args.backends), flush=True)
            print()

    results["elapsed_s"] = _now() - _T0
    results["cpu_other"] = cpu_other(cpu_start, cpu_snapshot())
    if args.baseline:
        from bench_memory_procs import compare_baseline

        results["baseline"] = compare_baseline(results, json.loads(Path(args.baseline).read_text()))
        results["baseline"]["path"] = args.baseline
    results["targets"] = evaluate_targets(results)
    results["notes"] = derive_notes(results)
    print("## Targets\n")
    for t in results["targets"]:
        print(f"- {t['result']}: {t['target']} -- {t['detail']}")
    print(flush=True)

    json_path = Path(args.json) if args.json else (DEFAULT_JSON if args.write else None)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=1) + "\n")
        progress(f"raw results: {json_path}")
    if args.write:
        md = Path(args.write)
        md.parent.mkdir(parents=True, exist_ok=True)
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from report import write_section

        write_section(md, "memory", render_markdown(results))
        progress(f"report: {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
