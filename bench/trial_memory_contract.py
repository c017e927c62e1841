"""Trial of the memory data contract (issue 18, item 5): the native engine,
the pure-Python fallback and the PostgreSQL store get the same calls and
must have the same outcome (docs/reliability.md, "Memory: one data contract").

Two parts, both built from tests/contract_support.py:

* hostile fields: every hostile value of every record field (its catalogue),
  saved and updated on a fresh store on each engine; a case diverges when
  the engines' outcomes differ (a result against an error, or two error
  types) or a refused call changed a store;
* random calls: ``--seeds`` seeded streams of ``--ops`` calls in total
  (valid calls on shared ids, scopes and vectors, 12% hostile values); a
  stream stops at its first divergence (from there the stores differ), so
  the figure is how many streams diverged and after how many calls.

Run it against the tree it lives in, or another (to measure before a fix):

    CREWCORE_PG_DSN=... .venv/bin/python bench/trial_memory_contract.py --ops 20000
    PYTHONPATH=/tmp/base/python .venv/bin/python bench/trial_memory_contract.py --ops 2000
"""

from __future__ import annotations

import argparse
import collections
import json
import os
from pathlib import Path
import sys
import tempfile
import time
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import contract_support as cs  # noqa: E402


def open_stores(tmp: Path, dsn: str | None, tag: str) -> dict[str, Any]:
    import crewcore

    out = {
        "native": crewcore.MemoryStorage(tmp / f"n-{tag}", engine="native", exact=True),
        "python": crewcore.MemoryStorage(tmp / f"p-{tag}", engine="python"),
    }
    if dsn:
        from crewcore._bridge import call

        schema = f"trial_{os.getpid()}_{tag}"
        call(["pg_drop_schema", 0, dsn, schema])
        out["postgres"] = crewcore.MemoryStorage(dsn=dsn, schema=schema, exact=True)
        out["postgres"]._trial_schema = (dsn, schema)
    return out


def close_stores(stores: dict[str, Any]) -> None:
    from crewcore._bridge import call

    for s in stores.values():
        pg = getattr(s, "_trial_schema", None)
        s.close()
        if pg:
            call(["pg_drop_schema", 0, *pg])


def snapshot(s: Any) -> Any:
    """A store's contents (or the error reading them: a poisoned store)."""
    return cs.outcome(lambda: [s.count(), s.list_records(limit=10**6), s.list_scopes("/"), s.list_categories(),
                               s._e().dim])


def one_call(stores: dict[str, Any], name: str, args: tuple, kw: dict) -> tuple[bool, dict[str, Any], str]:
    """Run a call on every engine: (agree, outcomes, why)."""
    outs: dict[str, Any] = {}
    why = ""
    for eng, s in stores.items():
        before = snapshot(s)
        outs[eng] = cs.outcome(lambda: getattr(s, name)(*args, **kw))
        if outs[eng][0] == "raise" and not cs.same(snapshot(s), before):
            why = f"{eng} raised {outs[eng][1]} and changed its store"
    ref = outs["native"]
    if not why and not all(cs.same(o, ref) for o in outs.values()):
        why = "outcomes differ"
    if not why:
        snaps = [snapshot(s) for s in stores.values()]
        if not all(cs.same(x, snaps[0]) for x in snaps):
            why = "stores differ after the call"
    return not why, outs, why


def hostile(tmp: Path, dsn: str | None) -> dict[str, Any]:
    cases = diverged = 0
    kinds: collections.Counter[str] = collections.Counter()
    examples: list[str] = []
    for field, (_, bad) in cs.FIELDS.items():
        for i, value in enumerate(bad):
            stores = open_stores(tmp, dsn, f"h{field}{i}")
            try:
                for st in stores.values():
                    st.save([cs.record(id="keep", content="kept")])
                for name, args in (("save", ([cs.record(id="fine"), cs.record(**{"id": "new", field: value})],)),
                                   ("update", (cs.record(**{"id": "keep", field: value}),))):
                    cases += 1
                    ok, outs, why = one_call(stores, name, args, {})
                    if not ok:
                        diverged += 1
                        kinds[f"{field}"] += 1
                        if len(examples) < 12:
                            examples.append(f"{name} {field}={value!r:.60}: {why}: "
                                            + ", ".join(f"{e}={o[0]}:{str(o[1])[:40]}" for e, o in outs.items()))
            finally:
                close_stores(stores)
    return {"cases": cases, "diverged": diverged, "by_field": dict(kinds), "examples": examples}


def random_calls(tmp: Path, dsn: str | None, ops: int, seeds: int) -> dict[str, Any]:
    per = max(1, ops // seeds)
    calls = raised = 0
    first: list[int] = []
    examples: list[str] = []
    for seed in range(seeds):
        gen = cs.Gen(seed)
        stores = open_stores(tmp, dsn, f"r{seed}")
        try:
            for i in range(per):
                name, args, kw = gen.op()
                ok, outs, why = one_call(stores, name, args, kw)
                calls += 1
                raised += outs["native"][0] == "raise"
                if not ok:
                    first.append(i)
                    if len(examples) < 12:
                        examples.append(f"seed {seed} call {i}: {cs.show(name, args, kw)[:160]}: {why}: "
                                        + ", ".join(f"{e}={o[0]}:{str(o[1])[:40]}" for e, o in outs.items()))
                    break
        finally:
            close_stores(stores)
    return {"streams": seeds, "calls": calls, "raised": raised, "diverged_streams": len(first),
            "first_divergence_at": sorted(first), "examples": examples}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()
    import crewcore

    dsn = None if args.no_pg else os.environ.get("CREWCORE_PG_DSN")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        res = {
            "crewcore": str(Path(crewcore.__file__).parent),
            "engines": ["native", "python"] + (["postgres"] if dsn else []),
            "hostile": hostile(tmp, dsn),
            "random": random_calls(tmp, dsn, args.ops, args.seeds),
        }
    res["seconds"] = round(time.monotonic() - t0, 1)
    print(json.dumps(res, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
