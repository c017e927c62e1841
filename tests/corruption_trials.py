"""Corruption trials on a real memory store: flip bytes, truncate, read back.

Each trial writes a store of 300 records (content, metadata, scope,
categories, 64-dim vectors) with one engine and closes it (the WAL is
checkpointed into the database file), damages the file, opens it again with
the same engine and reads every record back (``count``, ``get_record`` of
each id with its vector, a search). Outcomes:

  detected  a crewcore error was raised (StoreCorruptError, ...)
  untyped error  another exception (a raw sqlite3 or decoding error)
  harmless  every record read back exactly as written
  silent    wrong or missing content, metadata, vector or other field, no error

Damage modes: ``record`` flips one byte inside a random record's stored
content, metadata or vector (found in the file); ``anywhere`` flips one byte
at a random offset of the file; ``truncate`` truncates the file to 0 bytes.

    python tests/corruption_trials.py --engine native --trials 40 --mode record
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import struct
import sys
import tempfile
import types
from typing import Any

N, DIM = 300, 64


def _light_crewai() -> None:
    root = os.path.dirname(importlib.util.find_spec("crewai").origin)  # type: ignore[arg-type, union-attr]
    for name, sub in (("crewai", ""), ("crewai.memory", "memory")):
        if name not in sys.modules:
            m = types.ModuleType(name)
            m.__path__ = [os.path.join(root, sub) if sub else root]  # type: ignore[attr-defined]
            m.__package__ = name
            sys.modules[name] = m


def _records(rnd: random.Random) -> list[Any]:
    from crewai.memory.types import MemoryRecord

    out = []
    for i in range(N):
        words = " ".join(f"w{rnd.randrange(10**6)}" for _ in range(rnd.randrange(5, 60)))
        out.append(MemoryRecord(
            id=f"rec-{i:04d}", content=f"memory {i}: {words}", scope=f"/crew/s{i % 7}",
            categories=[f"c{i % 3}"], metadata={"i": i, "tag": f"t{rnd.randrange(10**6)}"},
            importance=rnd.random(), embedding=[rnd.uniform(-1, 1) for _ in range(DIM)],
        ))
    return out


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    fields = ("id", "content", "scope", "categories", "metadata", "importance", "source", "private")
    if any(getattr(a, f) != getattr(b, f) for f in fields):
        return False
    if a.created_at.replace(tzinfo=None) != b.created_at.replace(tzinfo=None):
        return False
    ea = struct.pack(f"<{DIM}f", *a.embedding)
    return b.embedding is not None and ea == struct.pack(f"<{len(b.embedding)}f", *b.embedding)


def _damage(path: str, mode: str, rnd: random.Random, recs: list[Any]) -> str:
    if mode == "truncate":
        os.truncate(path, 0)
        return "truncated to 0 bytes"
    data = bytearray(open(path, "rb").read())
    if mode == "anywhere":
        off = rnd.randrange(len(data))
        what = f"offset {off} of {len(data)}"
    else:
        r = rnd.choice(recs)
        part = rnd.choice(["content", "metadata", "vector"])
        needle = {
            "content": r.content.encode(),
            "metadata": json.dumps(r.metadata, separators=(",", ":")).encode(),
            "vector": struct.pack(f"<{DIM}f", *r.embedding),
        }[part]
        at = data.find(needle)
        if at < 0:  # the engine stored it in another form: flip within the content's words instead
            needle = r.content.encode()
            at = data.find(needle)
        off = at + rnd.randrange(len(needle))
        what = f"{part} of {r.id} at offset {off}"
    data[off] ^= rnd.randrange(1, 256)
    open(path, "wb").write(bytes(data))
    return what


def trial(engine: str, mode: str, seed: int, workdir: str) -> dict[str, Any]:
    from crewcore import MemoryStorage

    rnd = random.Random(seed)
    path = os.path.join(workdir, f"t{seed}.db")
    recs = _records(rnd)
    s = MemoryStorage(path, engine=engine)
    s.save(recs)
    s.close()
    if os.path.exists(path + "-wal") and os.path.getsize(path + "-wal") > 0:
        return {"seed": seed, "outcome": "skipped", "why": "the WAL outlived the store"}
    what = _damage(path, mode, rnd, recs)
    out: dict[str, Any] = {"seed": seed, "damage": what}
    try:
        s = MemoryStorage(path, engine=engine, return_embeddings=True)
        try:
            n = s.count()
            bad = [r.id for r in recs if not _same(r, s.get_record(r.id))]
            s.search(recs[0].embedding, limit=5)
        finally:
            s.close()
    except Exception as e:  # noqa: BLE001 - the outcome being measured
        from crewcore.errors import CrewcoreError

        typed = isinstance(e, CrewcoreError)
        out.update(outcome="detected" if typed else "untyped error", error=type(e).__name__,
                   message=str(e)[:300])
        return out
    lost = N - n
    out.update(outcome="harmless" if not bad and not lost else "silent", wrong=len(bad), lost=lost)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", default="native", choices=["native", "python"])
    ap.add_argument("--mode", default="record", choices=["record", "anywhere", "truncate"])
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    _light_crewai()
    results = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(a.trials):
            results.append(trial(a.engine, a.mode, a.seed * 100_000 + i, d))
    tally: dict[str, int] = {}
    errors: dict[str, int] = {}
    for r in results:
        tally[r["outcome"]] = tally.get(r["outcome"], 0) + 1
        if "error" in r:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    print(json.dumps({
        "engine": a.engine, "mode": a.mode, "trials": a.trials, "outcomes": tally, "errors": errors,
        "records_lost_silently": sum(r.get("lost", 0) for r in results),
        "records_wrong_silently": sum(r.get("wrong", 0) for r in results),
        "silent": [r for r in results if r["outcome"] == "silent"][:10],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
