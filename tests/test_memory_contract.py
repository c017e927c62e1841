"""One data contract for every memory engine (docs/architecture.md,
"Semantics" and "Limits"; python/crewcore/memory/validate.py, mirrored in Go
by memory/contract.go).

The native engine, the pure-Python fallback and the PostgreSQL store get the
same calls, random and hostile (tests/contract_support.py), through
``crewcore.MemoryStorage``, each on its own real store (two SQLite files and
a schema of the test server). After every call each engine must have the
same outcome (the same records, scores within 1e-5, or the same exception
type), every store the same contents, and a call that raised must have left
its store exactly as it was. The size of the random run is
``CREWCORE_CONTRACT_OPS`` (default 800 calls in 16 seeded streams;
docs/reliability.md has a larger run's figures, from
bench/trial_memory_contract.py).

The faults of issue 18 item 5 are also tested one by one: year-1
timestamps, non-dict metadata, a string as an id list, a full disk, a
corrupt file.
"""

from __future__ import annotations

from datetime import datetime
import os
from pathlib import Path
import random
import sqlite3
import subprocess
from typing import Any, Iterator

import pytest

import crewcore
from conftest import child_env, last_json, run_py
import contract_support as cs
from pg_support import drop_schema, schema_for, server_dsn

OPS = int(os.environ.get("CREWCORE_CONTRACT_OPS", "800"))


class Stores:
    """The same store on several engines, fed the same calls."""

    def __init__(self, tmp: Path, with_pg: bool) -> None:
        self.stores: dict[str, Any] = {
            "native": crewcore.MemoryStorage(tmp / "native", engine="native", exact=True),
            "python": crewcore.MemoryStorage(tmp / "python", engine="python"),
        }
        self.dsn = self.schema = None
        if with_pg:
            self.dsn, self.schema = server_dsn(), schema_for(tmp)
            drop_schema(self.dsn, self.schema)
            self.stores["postgres"] = crewcore.MemoryStorage(dsn=self.dsn, schema=self.schema, exact=True)
        for name, s in self.stores.items():
            assert s.backend == name

    def close(self) -> None:
        for s in self.stores.values():
            s.close()
        if self.dsn:
            drop_schema(self.dsn, self.schema)

    def snapshot(self, s: Any) -> Any:
        """Contents, and the dimension (a refused call must not fix it)."""
        return cs.norm([s.count(), s.list_records(limit=10**6), s.list_scopes("/"), s.list_categories(),
                        s._e().dim])

    def run(self, name: str, args: tuple[Any, ...], kw: dict[str, Any], step: str) -> tuple[str, Any]:
        """Run one call on every engine; fail unless all agree, and unless a
        call that raised left its store unchanged."""
        outs: dict[str, tuple[str, Any]] = {}
        for eng, s in self.stores.items():
            before = self.snapshot(s)
            outs[eng] = cs.outcome(lambda: getattr(s, name)(*args, **kw))
            if outs[eng][0] == "raise":
                assert cs.same(self.snapshot(s), before), (
                    f"{step}: {eng} raised {outs[eng][1]} but changed the store: {cs.show(name, args, kw)}"
                )
        ref = outs["native"]
        for eng, out in outs.items():
            if not cs.same(out, ref):
                pytest.fail(
                    f"{step}: {cs.show(name, args, kw)}\n"
                    + "\n".join(f"  {e}: {str(o)[:1500]}" for e, o in outs.items()),
                    pytrace=False,
                )
        return ref

    def agree(self, step: str) -> None:
        snaps = {e: self.snapshot(s) for e, s in self.stores.items()}
        for eng, snap in snaps.items():
            if not cs.same(snap, snaps["native"]):
                pytest.fail(f"{step}: the stores differ\n" + "\n".join(
                    f"  {e}: {str(x)[:2000]}" for e, x in snaps.items()), pytrace=False)


@pytest.fixture
def all3(tmp_path: Path) -> Iterator[Stores]:
    st = Stores(tmp_path, with_pg=True)
    try:
        yield st
    finally:
        st.close()


@pytest.fixture(scope="module")
def shared3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    """One set of the three stores for many short tests (each starts with a reset)."""
    st = Stores(tmp_path_factory.mktemp("contract"), with_pg=True)
    try:
        yield st
    finally:
        st.close()


@pytest.fixture
def two(tmp_path: Path) -> Iterator[Stores]:
    st = Stores(tmp_path, with_pg=False)
    try:
        yield st
    finally:
        st.close()


def _random_run(stores: Stores, seeds: range, ops: int) -> dict[str, int]:
    tally = {"calls": 0, "raised": 0}
    per = max(1, ops // len(seeds))
    for seed in seeds:
        gen = cs.Gen(seed)
        stores.run("reset", (), {}, f"seed {seed} start")
        for i in range(per):
            name, args, kw = gen.op()
            kind, _ = stores.run(name, args, kw, f"seed {seed} call {i}")
            tally["calls"] += 1
            tally["raised"] += kind == "raise"
            stores.agree(f"seed {seed} after call {i} {cs.show(name, args, kw)}")
    return tally


def test_differential_random_and_hostile_calls(all3: Stores) -> None:
    """native, python and postgres: same outcome for every call, same contents after it."""
    tally = _random_run(all3, range(16), OPS)
    # The run must have exercised both sides of the contract.
    assert tally["raised"] > tally["calls"] // 20 and tally["raised"] < tally["calls"] // 2, tally


def test_differential_embedded_engines(two: Stores) -> None:
    """The two embedded engines alone (runs without a PostgreSQL server too)."""
    _random_run(two, range(100, 104), 400)


HOSTILE = [(f, v) for f, (_, bad) in cs.FIELDS.items() for v in bad]


@pytest.mark.parametrize("field,value", HOSTILE, ids=[f"{f}-{i}" for i, (f, _) in enumerate(HOSTILE)])
def test_every_hostile_field_is_refused_alike(shared3: Stores, field: str, value: Any) -> None:
    """Each hostile value of each record field, in save and update: the same
    typed error from every engine, nothing stored or changed."""
    all3 = shared3
    all3.run("reset", (), {}, "reset")
    all3.run("save", ([cs.record(id="keep", content="kept")],), {}, "setup")
    bad = cs.record(**{"id": "new", field: value})
    out = all3.run("save", ([cs.record(id="fine"), bad],), {}, "save")
    assert out[0] == "raise" and out[1] in {
        "InvalidRecordError", "InvalidScopeError", "EmbeddingDimensionMismatchError"}, out
    upd = cs.record(**{"id": "keep", field: value})
    out = all3.run("update", (upd,), {}, "update")
    assert out[0] == "raise", out
    all3.agree("after")
    (s,) = [all3.stores["native"]]
    assert [r.id for r in s.list_records()] == ["keep"] and s.get_record("keep").content == "kept"


# ---------------------------------------------------------------------------
# the faults of issue 18 item 5, one by one


def test_year_one_and_9999_round_trip_on_every_engine(all3: Stores) -> None:
    """The fallback stored year 1 as '1-01-01T...', after which every search
    and list raised ValueError; the native engine refused it as EngineError."""
    early, late = datetime(1, 1, 1, 0, 0, 0, 1), datetime(9999, 12, 31, 23, 59, 59, 999999)
    all3.run("save", ([cs.record(id="y1", created_at=early, last_accessed=late),
                       cs.record(id="y999", created_at=datetime(999, 1, 2))],), {}, "save")
    for name, args in (("list_records", ()), ("search", ([1.0, 0.0, 0.0, 0.0],)), ("get_record", ("y1",)),
                       ("get_scope_info", ("/",))):
        kind, _ = all3.run(name, args, {}, name)
        assert kind == "ok"
    for s in all3.stores.values():
        assert s.get_record("y1").created_at == early and s.get_record("y1").last_accessed == late
    out = all3.run("save", ([cs.record(id="zero", created_at=datetime.min)],), {}, "zero time")
    assert out == ("raise", "InvalidRecordError")


def test_non_dict_metadata_refused_everywhere(all3: Stores) -> None:
    for meta in ([1, 2], "abc", 5, {1: 2}):
        out = all3.run("save", ([cs.record(id="m", metadata=meta)],), {}, f"metadata {meta!r}")
        assert out == ("raise", "InvalidRecordError")
    all3.agree("after")


def test_limit_zero_and_a_refused_update_change_nothing(all3: Stores) -> None:
    """Found by the random run: search(limit=0) with another dimension
    raised on the native engine only; an update of an unknown id fixed the
    PostgreSQL store's dimension (a later search then raised there only)."""
    out = all3.run("update", (cs.record(id="nope", embedding=[1.0, 2.0, 3.0]),), {}, "update")
    assert out == ("raise", "RecordNotFoundError")
    all3.run("save", ([cs.record(id="a", embedding=[1.0, 0.0, 0.0, 0.0])],), {}, "save 4-d")
    assert all3.run("search", ([1.0, 1.0, 1.0],), {"limit": 0}, "limit 0") == ("ok", [])
    assert all3.run("search", ([1.0, 1.0, 1.0],), {}, "limit 10") == ("raise", "EmbeddingDimensionMismatchError")


def test_a_string_is_not_a_list_of_ids(all3: Stores) -> None:
    """delete(record_ids="abc") deleted "a", "b" and "c" on the native engine."""
    all3.run("save", ([cs.record(id=i) for i in ("a", "b", "c", "abc")],), {}, "save")
    for call, kw in (("delete", {"record_ids": "abc"}), ("delete", {"categories": "c1"}),
                     ("touch_records", {"record_ids": "abc"}), ("search", {"categories": "c1"})):
        args = ([1.0, 0.0, 0.0, 0.0],) if call == "search" else ()
        assert all3.run(call, args, kw, call) == ("raise", "InvalidArgumentError")
    for s in all3.stores.values():
        assert s.count() == 4


DISK_FULL = """
import json, random, resource, sys
sys.path.insert(0, sys.argv[3])
import crewcore, contract_support as cs
s = crewcore.MemoryStorage(sys.argv[1], engine=sys.argv[2])
s.save([cs.record(id="small", content="small")])
if sys.argv[4] == "rlimit":
    resource.setrlimit(resource.RLIMIT_FSIZE, (512 * 1024, 512 * 1024))
out = {"save": "ok"}
rnd = random.Random(1)
for n in range(40):  # until the disk is full (incompressible content)
    try:
        s.save([cs.record(id=f"big{n}-{i}", content=rnd.randbytes(60_000).hex()) for i in range(4)])
    except Exception as e:
        out["save"] = type(e).__name__
        out["msg"] = str(e)
        out["failed_batch"] = n
        break
ids = sorted(r.id for r in s.list_records(limit=10**6))
out["kept"] = "small" in ids and all(f"big{n}-{i}" in ids for n in range(out.get("failed_batch", 0)) for i in range(4))
out["partial"] = [i for i in ids if i.startswith(f"big{out.get('failed_batch')}-")]
print(json.dumps(out))
"""


@pytest.mark.parametrize("how", ["rlimit", "tmpfs"])
@pytest.mark.parametrize("eng", ["native", "python"])
def test_full_disk_is_storage_full_on_both_engines(tmp_path: Path, eng: str, how: str) -> None:
    """A full disk (a 1 MiB tmpfs; or a file size limit, RLIMIT_FSIZE): the
    write fails with StorageFullError naming the file, on both engines; every
    batch acknowledged before stays, the refused batch is not half stored."""
    base = tmp_path
    if how == "tmpfs":
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root (the rlimit case covers the error mapping)")
        base = tmp_path / "mnt"
        base.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(base)], check=True)
    try:
        path = base / "full.db"
        proc = run_py(DISK_FULL, str(path), eng, str(Path(__file__).parent), how, env=child_env())
        got = last_json(proc.stdout)
    finally:
        if how == "tmpfs":
            subprocess.run(["umount", "-l", str(base)], check=True)
    assert got["save"] == "StorageFullError", got
    assert str(path) in got["msg"]
    assert got["kept"] and got["partial"] == [], got


def _corrupt_copies(src: Path, dst: Path, rnd: random.Random, how: str) -> None:
    data = bytearray(src.read_bytes())
    page = 4096
    if how == "pages":  # garbage over b-tree pages after the first
        for _ in range(6):
            p = rnd.randrange(1, len(data) // page)
            for i in range(p * page, p * page + page):
                data[i] = rnd.randrange(256)
    elif how == "headers":  # page headers only (the b-tree page type and cell counts)
        for p in range(1, len(data) // page):
            data[p * page] = 0x77
    elif how == "truncate":
        data = data[: len(data) // 2 + 17]
    dst.write_bytes(bytes(data))


CORRUPT_READ = """
import json, sys
sys.path.insert(0, sys.argv[3])
import crewcore
out = []
try:
    s = crewcore.MemoryStorage(sys.argv[1], engine=sys.argv[2])
    out.append("open ok")
    for name, call in (("count", lambda: s.count()), ("list", lambda: len(s.list_records(limit=10**6))),
                       ("search", lambda: len(s.search([1.0, 0.0, 0.0, 0.0], limit=5))),
                       ("save", lambda: s.save([__import__("contract_support").record(id="after")]))):
        try:
            call()
            out.append(name + " ok")
        except Exception as e:
            out.append(name + " " + type(e).__module__ + "." + type(e).__name__)
except Exception as e:
    out.append("open " + type(e).__module__ + "." + type(e).__name__)
print(json.dumps(out))
"""


@pytest.mark.parametrize("how", ["pages", "headers", "truncate"])
def test_corrupt_file_is_store_corrupt_on_both_engines(tmp_path: Path, how: str) -> None:
    """A damaged database file raises StoreCorruptError (never a raw
    sqlite3 error, never a ValueError) on both engines."""
    src = tmp_path / "src.db"
    s = crewcore.MemoryStorage(src, engine="python")
    rnd = random.Random(7)
    s.save([cs.record(id=f"r{i}", content="c" * rnd.randrange(50, 3000), scope=f"/s{i % 7}",
                      embedding=[rnd.random() for _ in range(4)]) for i in range(600)])
    s.close()
    con = sqlite3.connect(src)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    tests = str(Path(__file__).parent)
    seen = {}
    for eng in ("native", "python"):
        dst = tmp_path / f"{eng}.db"
        _corrupt_copies(src, dst, random.Random(11), how)
        for extra in ("-wal", "-shm"):
            Path(str(dst) + extra).unlink(missing_ok=True)
        seen[eng] = last_json(run_py(CORRUPT_READ, str(dst), eng, tests, env=child_env()).stdout)
    for eng, steps in seen.items():
        for step in steps:
            assert step.endswith(" ok") or step.endswith("crewcore.errors.StoreCorruptError"), (eng, seen)
        assert any(st.endswith("StoreCorruptError") for st in steps), (eng, seen)
    assert seen["native"] == seen["python"], seen


def test_shared_checks_live_in_validate() -> None:
    """Both Python paths call validate.py's checks: no engine keeps its own copy."""
    src = Path(crewcore.__file__).parent / "memory"
    for mod in ("native.py", "fallback.py", "postgres.py"):
        text = (src / mod).read_text()
        assert "str(i) for i in record_ids" not in text, mod
        assert "def _check_str_list" not in text and "def _meta_filter" not in text, mod
