"""Tests of the pure-Python engine (crewcore.memory.fallback.PyStore) on real SQLite files.

Run: cd /work/main && PYTHONPATH=python .venv/bin/python -m pytest tests/test_fallback_engine.py -q
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
import hashlib
import json
import math
import os
import random
import sqlite3
import struct
import threading

import pytest

from crewai.memory.storage.backend import EmbeddingDimensionMismatchError, StorageBackend
from crewai.memory.types import MemoryRecord, ScopeInfo

from crewcore.memory import fallback_state as _fallback_state  # _np: numpy or None (list arena)
from crewcore.memory.fallback import PyStore
from crewcore.memory.fallback_seg import append_vectors
from crewcore.memory.integrity import row_checksum
from crewcore.errors import (
    EngineError,
    InvalidArgumentError,
    InvalidRecordError,
    InvalidScopeError,
    StoreClosedError,
    RecordNotFoundError,
    StoreAccessError,
    StoreCorruptError,
    StoreTimeoutError,
)

T0 = datetime(2024, 1, 1, 12, 0, 0)


def rec(content="c", scope="/", emb=None, cats=None, meta=None, *, id=None, created=None,
        source=None, private=False, importance=0.5, accessed=None):
    kw = dict(
        content=content, scope=scope, categories=cats or [], metadata=meta or {},
        embedding=emb, source=source, private=private, importance=importance,
    )
    if id is not None:
        kw["id"] = id
    if created is not None:
        kw["created_at"] = created
    if accessed is not None:
        kw["last_accessed"] = accessed
    return MemoryRecord(**kw)


def raw(path):
    """A plain sqlite3 connection to inspect the file."""
    c = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    return c


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(params=["numpy", "lists"])
def engine(request, monkeypatch):
    """Run a test with the numpy arena and with the pure-Python one."""
    if request.param == "lists":
        monkeypatch.setattr(_fallback_state, "_np", None)
    return request.param


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "store" / "memory.db")


@pytest.fixture
def store(db):
    s = PyStore(db)
    yield s
    s.close()


def snapshot(s):
    """Everything observable about a store's contents, to check nothing was lost."""
    out = {}
    for r in s.list_records(limit=10**9):
        full = s.get_record(r.id)
        out[r.id] = (full.content, full.scope, full.categories, full.metadata, full.embedding,
                     full.source, full.private, full.created_at)
    return out


# ---------------------------------------------------------------------------
# opening the file


def test_new_file_layout_and_pragmas(db):
    s = PyStore(db, vector_dim=3)
    assert os.path.isfile(db)
    assert s.path == os.path.abspath(db)
    assert s.dim == 3
    s.save([rec("x", emb=[1, 2, 3])])
    c = raw(db)
    tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"crewcore_meta", "records", "changes"} <= tables
    idx = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    # Only the unique index on id: queries are answered from memory, so
    # secondary indexes would only slow every write (docs/architecture.md).
    assert not {"records_scope", "records_created"} & idx
    assert any(name.startswith("sqlite_autoindex_records") for name in idx)
    meta = dict(c.execute("SELECT key, value FROM crewcore_meta"))
    assert meta == {"format": "crewcore-memory", "version": "3", "dim": "3", "next_segment": "2"}
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cols = [r[1] for r in c.execute("PRAGMA table_info(records)")]
    assert cols == ["rid", "id", "content", "scope", "categories", "metadata", "importance",
                    "created_at", "last_accessed", "source", "private", "seg", "row", "checksum"]
    # The vector is in the first segment (format version 3).
    assert os.path.isfile(db + "-seg-000001.vec") and os.path.isfile(db + "-seg-000001.bin")
    s.close()


def test_zero_byte_file_is_initialized(tmp_path):
    p = tmp_path / "empty.db"
    p.write_bytes(b"")
    s = PyStore(str(p))
    s.save([rec("hello")])
    assert s.count() == 1
    s.close()
    assert raw(p).execute("SELECT value FROM crewcore_meta WHERE key='format'").fetchone() == (
        "crewcore-memory",)


def test_parent_directories_created(tmp_path):
    p = tmp_path / "a" / "b" / "c" / "m.db"
    with PyStore(str(p)) as s:
        assert s.count() == 0
    assert p.is_file()


@pytest.mark.parametrize("content", [
    os.urandom(4096),
    b"SQLite format 3\x00" + os.urandom(4096),
    b"hello, I am a text file\n" * 10,
])
def test_foreign_bytes_refused_unmodified(tmp_path, content):
    p = tmp_path / "thing.db"
    p.write_bytes(content)
    before = sha(p)
    with pytest.raises(StoreCorruptError) as ei:
        PyStore(str(p))
    assert str(p) in str(ei.value)
    assert sha(p) == before


def test_other_apps_sqlite_refused_unmodified(tmp_path):
    p = tmp_path / "app.sqlite"
    c = sqlite3.connect(str(p))
    c.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    c.execute("INSERT INTO users(name) VALUES ('ada')")
    c.commit()
    c.close()
    before = sha(p)
    mtime = os.stat(p).st_mtime_ns
    with pytest.raises(StoreCorruptError) as ei:
        PyStore(str(p))
    assert str(p) in str(ei.value)
    assert sha(p) == before and os.stat(p).st_mtime_ns == mtime
    c = sqlite3.connect(str(p))
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL
    assert c.execute("SELECT name FROM users").fetchall() == [("ada",)]


@pytest.mark.parametrize("rows", [
    [("format", "something-else"), ("version", "1")],
    [("format", "crewcore-memory"), ("version", "3")],
])
def test_wrong_format_or_version_refused(tmp_path, rows):
    p = tmp_path / "m.db"
    c = sqlite3.connect(str(p))
    c.execute("CREATE TABLE crewcore_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    c.executemany("INSERT INTO crewcore_meta VALUES (?, ?)", rows)
    c.commit()
    c.close()
    before = sha(p)
    with pytest.raises(StoreCorruptError):
        PyStore(str(p))
    assert sha(p) == before


def test_directory_at_path_refused(tmp_path):
    d = tmp_path / "adir.db"
    d.mkdir()
    with pytest.raises(StoreCorruptError):
        PyStore(str(d))


def test_unwritable_location_parent_is_a_file(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("i am a file")
    p = blocker / "sub" / "memory.db"
    with pytest.raises(StoreAccessError) as ei:
        PyStore(str(p))
    assert str(p) in str(ei.value)
    assert isinstance(ei.value, PermissionError)
    assert blocker.read_text() == "i am a file"


def test_read_only_directory(tmp_path):
    from conftest import read_only

    d = tmp_path / "ro"
    d.mkdir()
    with read_only(d):
        with pytest.raises(StoreAccessError) as ei:
            PyStore(str(d / "m.db"))
        assert str(d / "m.db") in str(ei.value)


def test_read_only_file(tmp_path):
    from conftest import read_only

    p = tmp_path / "m.db"
    s = PyStore(str(p))
    s.save([rec()])
    s.close()
    with read_only(p):
        s2 = PyStore(str(p))  # opened read-only (fallback_ro.py): reads served, writes refused
        try:
            assert s2.read_only and s2.count() == 1
            with pytest.raises(StoreAccessError) as ei:
                s2.save([rec("another")])
        finally:
            s2.close()  # before the read-only mount goes
        assert str(p) in str(ei.value) and "read-only" in str(ei.value)
    s3 = PyStore(str(p))
    assert s3.count() == 1
    s3.close()


@pytest.mark.parametrize("metric", ["dot", "L1", None, 3])
def test_bad_metric(db, metric):
    with pytest.raises(InvalidArgumentError):
        PyStore(db, metric=metric)


@pytest.mark.parametrize("dim", [-1, 2.5, True, "3"])
def test_bad_vector_dim(db, dim):
    with pytest.raises(InvalidArgumentError):
        PyStore(db, vector_dim=dim)


def test_vector_dim_option_conflicts_with_file(db):
    with PyStore(db) as s:
        s.save([rec(emb=[1.0, 2.0, 3.0])])
    with pytest.raises(EmbeddingDimensionMismatchError) as ei:
        PyStore(db, vector_dim=4)
    assert (ei.value.stored_dim, ei.value.new_dim) == (3, 4)
    with PyStore(db, vector_dim=3) as s:  # the matching option is fine
        assert s.count() == 1


def test_closed_store(db):
    s = PyStore(db)
    s.close()
    s.close()  # idempotent
    for call in (lambda: s.count(), lambda: s.save([rec()]), lambda: s.search([1.0]),
                 lambda: s.get_record("x"), lambda: s.delete()):
        with pytest.raises(StoreClosedError):
            call()


# ---------------------------------------------------------------------------
# stored form


def test_roundtrip_and_canonical_stored_values(store, db):
    aware = datetime(2024, 5, 6, 9, 30, 0, 123000, tzinfo=timezone(timedelta(hours=2)))
    r = MemoryRecord(
        id="r1", content="héllo <&> 世界", scope="crew//research/", categories=["a<b", "é"],
        metadata={"k": [1, 2.5, None], "nested": {"x": True}, "ü": "v"}, importance=0.75,
        created_at=aware, last_accessed=datetime(2024, 5, 6, 8, 0), embedding=[0.5, -1.25, 3.0],
        source="user-1", private=True,
    )
    store.save([r])
    got = store.get_record("r1")
    assert got.content == r.content
    assert got.scope == "/crew/research"
    assert got.categories == ["a<b", "é"]
    assert got.metadata == r.metadata
    assert got.importance == 0.75
    assert got.created_at == datetime(2024, 5, 6, 7, 30, 0, 123000)  # UTC, naive
    assert got.created_at.tzinfo is None
    assert got.last_accessed == datetime(2024, 5, 6, 8, 0)
    assert got.embedding == [0.5, -1.25, 3.0]
    assert got.source == "user-1" and got.private is True
    row = raw(db).execute(
        "SELECT id, content, scope, categories, metadata, importance, created_at, "
        "last_accessed, source, private, seg, row FROM records").fetchone()
    assert row[2] == "/crew/research"
    assert row[3] == '["a\\u003cb","é"]'  # Go's json.Marshal form
    assert json.loads(row[4]) == r.metadata
    assert row[6] == "2024-05-06T07:30:00.123000"
    assert row[7] == "2024-05-06T08:00:00.000000"
    assert row[8] == "user-1" and row[9] == 1
    assert row[10:] == (1, 0)  # segment 1, row 0
    with open(db + "-seg-000001.vec", "rb") as f:
        assert f.read()[64:] == struct.pack("<3f", 0.5, -1.25, 3.0)
    store.save([rec("no vec", id="r2")])
    row = raw(db).execute(
        "SELECT categories, metadata, source, private, seg, row FROM records WHERE id='r2'"
    ).fetchone()
    assert row == ("[]", "{}", None, 0, None, None)


def test_change_log_rows(store, db):
    store.save([rec(id="a"), rec(id="b"), rec(id="a")])
    store.update(rec("new", id="a"))
    store.touch_records(["b", "zzz"])
    store.delete(record_ids=["a"])
    store.reset()
    log = [r[0] for r in raw(db).execute("SELECT record_id FROM changes ORDER BY seq")]
    assert log == ["a", "b", "a", "b", "a", "*"]


def test_reads_rows_written_by_another_engine(store, db):
    """Rows written straight into SQLite (as the Go engine would) plus a change row."""
    store.save([rec("mine", emb=[1.0, 0.0])])
    c = raw(db)
    c.execute("BEGIN IMMEDIATE")
    vec = struct.pack("<2f", 0.0, 1.0)
    ((seg, srow, _),) = append_vectors(c, db, 2, [vec])  # the segment protocol (fallback_seg.py)
    values = ("go1", "from go", "/go", '["x","y"]', '{"n":1}', 0.9, "2024-01-01T00:00:00.000000",
              "2024-01-01T00:00:00.000000", None, 0)
    c.execute(
        "INSERT INTO records(id, content, scope, categories, metadata, importance, created_at, "
        "last_accessed, source, private, seg, row, checksum) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        values + (seg, srow, row_checksum(*values, vec)))  # format version 3 (crewcore/memory/integrity.py)
    c.execute("INSERT INTO changes(record_id) VALUES ('go1')")
    c.execute("COMMIT")
    r = store.get_record("go1")
    assert r.content == "from go" and r.categories == ["x", "y"] and r.metadata == {"n": 1}
    assert r.embedding == [0.0, 1.0]
    assert store.search([0.0, 1.0], limit=1)[0][0].id == "go1"
    assert store.list_scopes() == ["/go"]


# ---------------------------------------------------------------------------
# save / upsert / dimension


def test_upsert_by_id(store, db):
    store.save([rec("v1", id="x", emb=[1.0, 0.0], cats=["a"])])
    rid = raw(db).execute("SELECT rid FROM records WHERE id='x'").fetchone()[0]
    store.save([rec("v2", id="x", emb=[0.0, 1.0], cats=["b"])])
    assert store.count() == 1
    r = store.get_record("x")
    assert r.content == "v2" and r.embedding == [0.0, 1.0] and r.categories == ["b"]
    assert store.list_categories() == {"b": 1}
    assert raw(db).execute("SELECT rid FROM records WHERE id='x'").fetchone()[0] == rid
    # duplicate ids inside one batch: the last wins
    store.save([rec("d1", id="y"), rec("d2", id="y")])
    assert store.get_record("y").content == "d2"
    assert store.count() == 2


def test_dimension_fixed_by_first_save(store):
    assert store.dim == 0
    store.save([rec(emb=[1.0, 2.0, 3.0])])
    assert store.dim == 3
    with pytest.raises(EmbeddingDimensionMismatchError) as ei:
        store.save([rec(emb=[1.0, 2.0])])
    assert (ei.value.stored_dim, ei.value.new_dim) == (3, 2)
    with pytest.raises(EmbeddingDimensionMismatchError):
        store.search([1.0, 2.0, 3.0, 4.0])
    rid = store.list_records()[0].id
    with pytest.raises(EmbeddingDimensionMismatchError):
        store.update(rec(id=rid, emb=[1.0]))
    assert store.count() == 1 and store.get_record(rid).embedding == [1.0, 2.0, 3.0]


def test_mixed_dimension_batch_refused_whole(store):
    with pytest.raises(EmbeddingDimensionMismatchError):
        store.save([rec(id="a", emb=[1.0, 2.0]), rec(id="b", emb=[1.0, 2.0, 3.0])])
    assert store.count() == 0 and store.dim == 0
    store.save([rec(id="a", emb=[1.0, 2.0])])
    with pytest.raises(EmbeddingDimensionMismatchError) as ei:
        store.save([rec(id="c", emb=[3.0, 3.0, 3.0]), rec(id="d", emb=[1.0, 1.0])])
    assert (ei.value.stored_dim, ei.value.new_dim) == (2, 3)
    assert store.count() == 1


def test_vector_dim_option(db):
    with PyStore(db, vector_dim=4) as s:
        assert s.dim == 4
        with pytest.raises(EmbeddingDimensionMismatchError):
            s.save([rec(emb=[1.0, 2.0])])
        with pytest.raises(EmbeddingDimensionMismatchError):
            s.search([1.0])
        s.save([rec(emb=[1.0, 2.0, 3.0, 4.0])])
        s.reset()
        assert s.dim == 4  # kept: it was given at open
        assert raw(db).execute("SELECT value FROM crewcore_meta WHERE key='dim'").fetchone() == ("4",)


def test_reset_all_forgets_dimension(store, db):
    store.save([rec(emb=[1.0, 2.0])])
    store.reset()
    assert store.dim == 0 and store.count() == 0
    assert raw(db).execute("SELECT value FROM crewcore_meta WHERE key='dim'").fetchone() is None
    store.save([rec(emb=[1.0, 2.0, 3.0])])
    assert store.dim == 3


# ---------------------------------------------------------------------------
# bad input: nothing stored, nothing lost


@pytest.fixture
def full(store):
    store.save([
        rec("keep1", scope="/k", emb=[1.0, 0.0, 0.0], cats=["a"], meta={"x": 1}, id="k1"),
        rec("keep2", scope="/k/sub", emb=[0.0, 1.0, 0.0], id="k2"),
        rec("keep3", scope="/other", id="k3"),
    ])
    return store


class _NotJSON:
    pass


@pytest.mark.parametrize("bad", [
    lambda: rec(emb=[1.0, float("nan"), 0.0]),
    lambda: rec(emb=[1.0, float("inf"), 0.0]),
    lambda: rec(emb=[1.0, -float("inf"), 0.0]),
    lambda: rec(emb=[1.0, 1e39, 0.0]),  # overflows float32
    lambda: rec("bad \ud800 surrogate"),
    lambda: rec(scope="/x/\udcff"),
    lambda: rec(cats=["ok", "\ud83d"]),
    lambda: rec(source="\udc80"),
    lambda: rec(meta={"k": "\ud800"}),
    lambda: rec(meta={"k": _NotJSON()}),
    lambda: rec(meta={"k": float("nan")}),
    lambda: rec(meta={"k": {1, 2}}),
    lambda: MemoryRecord.model_construct(id="", content="x", scope="/", categories=[], metadata={},
                                         importance=0.5, created_at=T0, last_accessed=T0,
                                         embedding=None, source=None, private=False),
    lambda: MemoryRecord.model_construct(id="z", content=None, scope="/", categories=[],
                                         metadata={}, importance=0.5, created_at=T0,
                                         last_accessed=T0, embedding=None, source=None,
                                         private=False),
    lambda: "not a record",
])
def test_bad_record_in_batch_stores_nothing(full, bad):
    before = snapshot(full)
    good = rec("good", id="good")
    with pytest.raises((InvalidRecordError, InvalidScopeError)):
        full.save([good, bad()])
    assert snapshot(full) == before
    assert full.get_record("good") is None
    with pytest.raises((InvalidRecordError, InvalidScopeError, RecordNotFoundError)):
        r = bad()
        if isinstance(r, MemoryRecord) and r.id:
            r.id = "k1"
        full.update(r)
    assert snapshot(full) == before


@pytest.mark.parametrize("scope", ["/a/../b", "..", "/./x", "a/\x00b", "/a\nb", "/tab\there", "/del\x7f"])
def test_bad_scopes_refused_everywhere(full, scope):
    before = snapshot(full)
    with pytest.raises(InvalidScopeError):
        full.save([rec(scope=scope)])
    with pytest.raises(InvalidScopeError):
        full.search([1.0, 0.0, 0.0], scope_prefix=scope)
    with pytest.raises(InvalidScopeError):
        full.delete(scope_prefix=scope)
    with pytest.raises(InvalidScopeError):
        full.reset(scope)
    with pytest.raises(InvalidScopeError):
        full.list_scopes(scope)
    with pytest.raises(InvalidScopeError):
        full.get_scope_info(scope)
    with pytest.raises(InvalidScopeError):
        full.count(scope)
    with pytest.raises(InvalidScopeError):
        full.list_records(scope)
    with pytest.raises(InvalidScopeError):
        full.list_categories(scope)
    assert snapshot(full) == before


def test_bad_query_vectors(full):
    before = snapshot(full)
    for q in ([1.0, float("nan"), 0.0], [float("inf"), 0.0, 0.0], ["a", "b", "c"], 5):
        with pytest.raises(InvalidRecordError):
            full.search(q)
    with pytest.raises(InvalidArgumentError):  # same as the native engine
        full.search([])
    assert snapshot(full) == before


def test_limits_and_arguments(full):
    before = snapshot(full)
    q = [1.0, 0.0, 0.0]
    for call in (
        lambda: full.search(q, limit=-1),
        lambda: full.list_records(limit=-1),
        lambda: full.list_records(offset=-5),
        lambda: full.search(q, limit="3"),
        lambda: full.search(q, limit=2.5),
        lambda: full.search(q, min_score=float("nan")),
        lambda: full.search(q, categories="a"),
        lambda: full.search(q, metadata_filter=["x"]),
        lambda: full.search(q, metadata_filter={"x": _NotJSON()}),
        lambda: full.delete(categories="a"),
        lambda: full.delete(record_ids="k1"),
        lambda: full.delete(record_ids=[1, 2]),
        lambda: full.delete(older_than="2024-01-01"),
        lambda: full.touch_records("k1"),
        lambda: full.get_record(42),
    ):
        with pytest.raises(InvalidArgumentError):
            call()
    assert full.search(q, limit=0) == []
    assert full.list_records(limit=0) == []
    assert len(full.search(q, limit=10**12)) == 2  # clamped; records without vectors excluded
    assert len(full.list_records(limit=2**63)) == 3
    assert full.list_records(offset=10**12) == []
    assert full.search(q, limit=3.0)[0][0].id == "k1"  # integral floats accepted
    assert snapshot(full) == before


def test_unknown_ids(full):
    before = snapshot(full)
    assert full.get_record("nope") is None
    with pytest.raises(RecordNotFoundError):
        full.update(rec("x", id="nope", emb=[1.0, 0.0, 0.0]))
    assert full.delete(record_ids=["nope", "nada"]) == 0
    full.touch_records(["nope"])
    assert snapshot(full) == before
    assert full.get_record("nope") is None


def test_large_content_stored_whole(db):
    big = ("0123456789abcdef" * 65536) * 10  # 10 MiB
    big = big[:-1] + "é"  # non-ASCII at the end
    with PyStore(db) as s:
        s.save([rec(big, id="big", emb=[1.0, 2.0])])
        assert s.get_record("big").content == big
    with PyStore(db) as s2:  # read back from the file
        assert s2.get_record("big").content == big
        assert s2.search([1.0, 2.0])[0][0].content == big


def test_content_over_64mib_refused(store, monkeypatch):
    from crewcore.memory import validate as _validate

    monkeypatch.setattr(_validate, "MAX_CONTENT_BYTES", 1000)
    with pytest.raises(InvalidRecordError):
        store.save([rec("x" * 1001)])
    assert store.count() == 0


# ---------------------------------------------------------------------------
# scopes


def test_scope_normalization(store):
    store.save([rec(scope="a//b/"), rec(scope=""), rec(scope="///"), rec(scope="/a/b/c")])
    scopes = sorted(r.scope for r in store.list_records())
    assert scopes == ["/", "/", "/a/b", "/a/b/c"]
    assert store.count("a/b/") == 2 and store.count("/") == 4 and store.count("") == 4


def test_special_characters_in_scopes_are_literal(store):
    weird = ["/a%b/c_d", "/it's", '/say "hi"', "/a_b", "/back\\slash", "/😀/x"]
    for i, sc in enumerate(weird):
        store.save([rec(f"r{i}", scope=sc, emb=[1.0, float(i)])])
    assert store.list_scopes() == sorted(["/a%b", "/it's", '/say "hi"', "/a_b", "/back\\slash",
                                          "/😀"])
    assert store.count("/a%b") == 1
    assert store.count("/a_b") == 1  # '_' is not a wildcard
    assert store.count("/a%") == 0  # '%' is not a wildcard
    assert store.count("/it's") == 1 and store.count('/say "hi"') == 1
    assert [r.content for r, _ in store.search([1.0, 0.0], scope_prefix="/a_b")] == ["r3"]
    assert store.delete(scope_prefix="/a%b") == 1
    assert store.count() == 5


def test_segment_exact_prefix(store):
    store.save([
        rec("a", scope="/crew/a", emb=[1.0, 0.0], cats=["k"], id="a"),
        rec("ab", scope="/crew/ab", emb=[1.0, 0.0], cats=["k"], id="ab"),
        rec("a-sub", scope="/crew/a/x", emb=[1.0, 0.0], cats=["k"], id="ax"),
    ])
    assert {r.id for r, _ in store.search([1.0, 0.0], scope_prefix="/crew/a")} == {"a", "ax"}
    assert store.count("/crew/a") == 2
    assert {r.id for r in store.list_records("/crew/a")} == {"a", "ax"}
    assert store.list_categories("/crew/a") == {"k": 2}
    assert store.get_scope_info("/crew/a").record_count == 2
    store.reset("/crew/a")
    assert [r.id for r in store.list_records()] == ["ab"]
    store.save([rec("a", scope="/crew/a", id="a")])
    assert store.delete(scope_prefix="/crew/ab") == 1
    assert [r.id for r in store.list_records()] == ["a"]


def test_scope_info_children_categories_counts(store):
    t = T0
    store.save([
        rec(scope="/", cats=["root"], created=t, id="r"),
        rec(scope="/a/b/c", cats=["x", "y"], created=t + timedelta(days=1), id="abc"),
        rec(scope="/a/b", cats=["x"], created=t + timedelta(days=2), id="ab"),
        rec(scope="/a/d", cats=["y", "y"], created=t + timedelta(days=3), id="ad"),
        rec(scope="/z", created=t + timedelta(days=4), id="z"),
    ])
    assert store.list_scopes() == ["/a", "/z"]
    assert store.list_scopes("/a") == ["/a/b", "/a/d"]
    assert store.list_scopes("/a/b") == ["/a/b/c"]
    assert store.list_scopes("/a/b/c") == []
    assert store.list_scopes("/nope") == []
    info = store.get_scope_info("/a")
    assert isinstance(info, ScopeInfo)
    assert info.path == "/a" and info.record_count == 3
    assert info.categories == ["x", "y"]
    assert info.oldest_record == t + timedelta(days=1)
    assert info.newest_record == t + timedelta(days=3)
    assert info.child_scopes == ["/a/b", "/a/d"]
    root = store.get_scope_info("/")
    assert root.record_count == 5 and root.child_scopes == ["/a", "/z"]
    assert root.oldest_record == t and root.newest_record == t + timedelta(days=4)
    empty = store.get_scope_info("/nothing/here")
    assert empty.record_count == 0 and empty.categories == [] and empty.oldest_record is None
    assert store.list_categories() == {"root": 1, "x": 2, "y": 2}
    assert store.list_categories("/a/b") == {"x": 2, "y": 1}
    assert store.count() == 5 and store.count("/a") == 3 and store.count("/a/b") == 2
    # removing the oldest/newest recomputes the range
    store.delete(record_ids=["abc", "ad"])
    info = store.get_scope_info("/a")
    assert info.record_count == 1
    assert info.oldest_record == info.newest_record == t + timedelta(days=2)
    assert info.child_scopes == ["/a/b"]
    assert store.list_scopes("/a") == ["/a/b"]


# ---------------------------------------------------------------------------
# search


def test_l2_score_on_known_vectors(engine, db):
    with PyStore(db) as s:
        s.save([
            rec("same", emb=[1.0, 2.0, 3.0], id="same"),
            rec("far", emb=[4.0, 6.0, 3.0], id="far"),  # squared distance 25
            rec("mid", emb=[1.5, 2.0, 3.0], id="mid"),  # squared distance 0.25
        ])
        res = s.search([1.0, 2.0, 3.0], limit=10)
        assert [r.id for r, _ in res] == ["same", "mid", "far"]
        scores = dict((r.id, sc) for r, sc in res)
        assert scores["same"] == 1.0
        assert scores["mid"] == pytest.approx(1 / 1.25, rel=1e-12)
        assert scores["far"] == pytest.approx(1 / 26, rel=1e-12)
        assert [r.id for r, _ in s.search([1.0, 2.0, 3.0], min_score=0.5)] == ["same", "mid"]
        assert s.search([1.0, 2.0, 3.0], min_score=1.01) == []


def test_cosine_metric(engine, db):
    with PyStore(db, metric="cosine") as s:
        assert s.metric == "cosine"
        s.save([
            rec(emb=[2.0, 0.0], id="x"),
            rec(emb=[1.0, 1.0], id="diag"),
            rec(emb=[-3.0, 0.0], id="neg"),
            rec(emb=[0.0, 0.0], id="zero"),
        ])
        res = dict((r.id, sc) for r, sc in s.search([5.0, 0.0], limit=10, min_score=-1.0))
        assert res["x"] == pytest.approx(1.0, abs=1e-12)
        assert res["diag"] == pytest.approx(1 / math.sqrt(2), rel=1e-9)
        assert res["neg"] == pytest.approx(-1.0, abs=1e-12)
        assert res["zero"] == 0.0
        assert [r.id for r, _ in s.search([5.0, 0.0], limit=10)] == ["x", "diag", "zero"]
    with PyStore(db) as s:  # the metric is per open: same file, l2 scores
        assert s.metric == "l2"
        assert s.search([2.0, 0.0], limit=1)[0] [1] == 1.0


def test_ties_newer_rid_first(engine, db):
    with PyStore(db) as s:
        s.save([rec(f"r{i}", emb=[1.0, 1.0], id=f"r{i}") for i in range(6)])
        assert [r.id for r, _ in s.search([1.0, 1.0], limit=3)] == ["r5", "r4", "r3"]


def test_filtered_search_never_underfills(engine, db):
    rng = random.Random(7)
    with PyStore(db) as s:
        recs = []
        for i in range(300):
            special = i % 60 == 0  # 5 records, far from the query
            v = [rng.uniform(10, 11), rng.uniform(10, 11)] if special else [rng.random(), rng.random()]
            recs.append(rec(f"r{i}", scope="/rare" if special else "/common", emb=v,
                            cats=["rare"] if special else ["common"],
                            meta={"rare": special, "i": i}, id=f"r{i}"))
        s.save(recs)
        q = [0.0, 0.0]
        assert len(s.search(q, categories=["rare"], limit=5)) == 5
        assert len(s.search(q, categories=["rare"], limit=50)) == 5
        assert len(s.search(q, metadata_filter={"rare": True}, limit=5)) == 5
        assert len(s.search(q, scope_prefix="/rare", limit=5)) == 5
        assert len(s.search(q, categories=["rare", "common"], limit=300)) == 300
        got = s.search(q, categories=["rare"], metadata_filter={"i": 120}, limit=5)
        assert [r.id for r, _ in got] == ["r120"]
        assert s.search(q, categories=["rare"], scope_prefix="/common") == []
        assert s.search(q, categories=["nope"]) == []
        # results are the true top-k among the matches
        res = s.search(q, categories=["common"], limit=7)
        best = sorted((r for r in recs if "common" in r.categories),
                      key=lambda r: r.embedding[0] ** 2 + r.embedding[1] ** 2)[:7]
        assert [r.id for r, _ in res] == [r.id for r in best]


def test_metadata_filter_json_equality(engine, db):
    with PyStore(db) as s:
        s.save([
            rec(emb=[1.0], meta={"n": 1, "b": True, "l": [1, "x"], "d": {"k": None}}, id="a"),
            rec(emb=[1.0], meta={"n": 1.0, "b": 1, "s": "1"}, id="b"),
        ])
        ids = lambda **f: sorted(r.id for r, _ in s.search([1.0], metadata_filter=f))  # noqa: E731
        assert ids(n=1) == ["a", "b"]  # 1 == 1.0
        assert ids(b=True) == ["a"]  # bool is not a number
        assert ids(b=1) == ["b"]
        assert ids(l=[1, "x"]) == ["a"] and ids(l=(1, "x")) == ["a"]
        assert ids(d={"k": None}) == ["a"]
        assert ids(s=1) == []
        assert ids(missing=None) == []
        assert ids(n=1, s="1") == ["b"]
        assert s.delete(metadata_filter={"b": True}) == 1


def test_records_without_embedding(engine, db):
    with PyStore(db) as s:
        s.save([rec("novec", id="n"), rec("empty", emb=[], id="e"), rec("vec", emb=[1.0, 0.0], id="v")])
        assert s.count() == 3
        assert {r.id for r in s.list_records()} == {"n", "e", "v"}
        assert [r.id for r, _ in s.search([0.0, 1.0], limit=10)] == ["v"]
        assert s.get_record("n").embedding is None


def test_search_before_any_vector(store):
    store.save([rec("novec")])
    assert store.search([1.0, 2.0]) == []
    assert store.dim == 0


def test_privacy_filter(engine, db):
    with PyStore(db) as s:
        s.save([
            rec(emb=[1.0], id="pub"),
            rec(emb=[1.0], id="alice", private=True, source="alice"),
            rec(emb=[1.0], id="nosrc", private=True),
            rec(emb=[1.0], id="bob-pub", source="bob"),
        ])
        ids = lambda **kw: sorted(r.id for r, _ in s.search([1.0], **kw))  # noqa: E731
        assert ids() == ["alice", "bob-pub", "nosrc", "pub"]  # default: include_private
        assert ids(include_private=False) == ["bob-pub", "pub"]
        assert ids(include_private=False, source="alice") == ["alice", "bob-pub", "pub"]
        assert ids(include_private=False, source="bob") == ["bob-pub", "pub"]
        assert len(s.search([1.0], include_private=False, limit=2)) == 2


def test_embeddings_in_results(db, engine):
    with PyStore(db) as s:
        s.save([rec(emb=[0.25, 0.5], id="a")])
        (r, _), = s.search([0.25, 0.5])
        assert r.embedding is None
        assert s.list_records()[0].embedding is None
        assert s.get_record("a").embedding == [0.25, 0.5]
    with PyStore(db, return_embeddings=True) as s:
        (r, _), = s.search([0.25, 0.5])
        assert r.embedding == [0.25, 0.5]
        assert s.list_records()[0].embedding == [0.25, 0.5]


def test_numpy_and_pure_python_agree(tmp_path, monkeypatch):
    rng = random.Random(3)
    recs = [rec(f"r{i}", scope=f"/s{i % 4}", cats=[f"c{i % 3}"], meta={"m": i % 5},
                emb=[rng.gauss(0, 1) for _ in range(16)], id=f"r{i}",
                private=i % 7 == 0, source=f"u{i % 2}") for i in range(240)]
    queries = [[rng.gauss(0, 1) for _ in range(16)] for _ in range(3)]
    kwargs = [dict(limit=10), dict(limit=25, scope_prefix="/s1"), dict(limit=5, categories=["c2"]),
              dict(limit=8, metadata_filter={"m": 3}, include_private=False, source="u1"),
              dict(limit=240, min_score=0.03)]

    def run(metric):
        out = []
        with PyStore(str(tmp_path / f"{metric}-{_fallback_state._np is None}.db"), metric=metric) as s:
            s.save(recs)
            for q in queries:
                for kw in kwargs:
                    out.append([(r.id, sc) for r, sc in s.search(q, **kw)])
        return out

    for metric in ("l2", "cosine"):
        with_np = run(metric)
        monkeypatch.setattr(_fallback_state, "_np", None)
        pure = run(metric)
        monkeypatch.undo()
        assert len(with_np) == len(pure)
        for a, b in zip(with_np, pure):
            assert [i for i, _ in a] == [i for i, _ in b]
            for (_, x), (_, y) in zip(a, b):
                assert x == pytest.approx(y, rel=1e-9, abs=1e-12)


# ---------------------------------------------------------------------------
# update / delete / list / touch / reset


def test_update(engine, db):
    with PyStore(db) as s:
        s.save([rec("old", scope="/a", cats=["x"], emb=[1.0, 0.0], id="u", created=T0)])
        s.update(rec("new", scope="/b", cats=["y"], meta={"k": 1}, id="u", created=T0,
                     importance=0.9))
        r = s.get_record("u")
        assert (r.content, r.scope, r.categories, r.metadata, r.importance) == (
            "new", "/b", ["y"], {"k": 1}, 0.9)
        assert r.embedding == [1.0, 0.0]  # kept: the update had no embedding
        assert s.search([1.0, 0.0])[0][0].content == "new"
        assert s.list_scopes() == ["/b"] and s.list_categories() == {"y": 1}
        s.update(rec("newer", id="u", emb=[0.0, 1.0]))
        assert s.get_record("u").embedding == [0.0, 1.0]
        assert s.search([0.0, 1.0])[0][1] == 1.0
        assert s.count() == 1


def test_update_sets_dimension_when_unknown(store):
    store.save([rec(id="u")])
    store.update(rec(id="u", emb=[1.0, 2.0]))
    assert store.dim == 2 and store.search([1.0, 2.0])[0][0].id == "u"


def test_delete_criteria_are_anded(store):
    t = T0
    store.save([
        rec(scope="/a", cats=["x"], meta={"k": 1}, created=t, id="1"),
        rec(scope="/a", cats=["y"], meta={"k": 1}, created=t + timedelta(days=1), id="2"),
        rec(scope="/a/sub", cats=["x"], meta={"k": 2}, created=t + timedelta(days=2), id="3"),
        rec(scope="/b", cats=["x"], meta={"k": 1}, created=t, id="4"),
        rec(scope="/b", cats=["z"], created=t + timedelta(days=5), id="5"),
    ])
    assert store.delete(scope_prefix="/a", categories=["x"], metadata_filter={"k": 2}) == 1
    assert store.get_record("3") is None
    assert store.delete(scope_prefix="/b", record_ids=["1", "4"]) == 1  # "1" is not in /b
    assert {r.id for r in store.list_records()} == {"1", "2", "5"}
    assert store.delete(older_than=t + timedelta(days=1)) == 1  # strictly older: only "1"
    assert {r.id for r in store.list_records()} == {"2", "5"}
    aware = datetime(2024, 1, 2, 14, 0, 1, tzinfo=timezone(timedelta(hours=2)))  # 12:00:01 UTC
    assert store.delete(older_than=aware) == 1  # "2" was created at 12:00:00 UTC on Jan 2
    assert store.delete(categories=["nope"]) == 0
    assert store.delete(categories=["z", "nope"]) == 1
    store.save([rec(id=str(i)) for i in range(5)])
    assert store.delete() == 5  # no criterion: everything
    assert store.count() == 0


def test_list_records_order_and_pagination(store):
    t = T0
    store.save([rec(id=f"t{i}", created=t) for i in range(3)])  # same created_at: by rid
    store.save([rec(id="new", created=t + timedelta(hours=1)), rec(id="old", created=t - timedelta(hours=1))])
    order = [r.id for r in store.list_records()]
    assert order == ["new", "t2", "t1", "t0", "old"]
    assert [r.id for r in store.list_records(limit=2)] == ["new", "t2"]
    assert [r.id for r in store.list_records(limit=2, offset=2)] == ["t1", "t0"]
    assert [r.id for r in store.list_records(limit=2, offset=4)] == ["old"]
    assert store.list_records(offset=5) == []
    pages = []
    for off in range(0, 5, 2):
        pages += [r.id for r in store.list_records(limit=2, offset=off)]
    assert pages == order


def test_touch_records(store, db):
    old = datetime(2020, 1, 1)
    store.save([rec(id="a", accessed=old), rec(id="b", accessed=old)])
    before = datetime.utcnow() - timedelta(seconds=1)
    store.touch_records(["a", "ghost"])
    a, b = store.get_record("a"), store.get_record("b")
    assert a.last_accessed >= before and a.last_accessed <= datetime.utcnow() + timedelta(seconds=1)
    assert b.last_accessed == old
    stored = raw(db).execute("SELECT last_accessed FROM records WHERE id='a'").fetchone()[0]
    assert len(stored) == 26 and stored[10] == "T"
    store.touch_records([])


def test_reset_scope_and_everything(store, db):
    store.save([rec(scope="/a", id="1", emb=[1.0]), rec(scope="/a/b", id="2", emb=[1.0]),
                rec(scope="/ab", id="3", emb=[1.0])])
    store.reset("/a")
    assert [r.id for r in store.list_records()] == ["3"]
    assert store.list_scopes() == ["/ab"]
    store.reset("/")
    assert store.count() == 0 and store.list_scopes() == []
    assert raw(db).execute("SELECT record_id FROM changes ORDER BY seq DESC LIMIT 1").fetchone() == ("*",)


def test_optimize_trims_change_log(tmp_path):
    p = str(tmp_path / "m.db")
    a, b = PyStore(p), PyStore(p)
    assert b.count() == 0  # b has seen seq 0
    a.save([rec(id=f"r{i}") for i in range(50)])
    c = raw(p)
    # pad the log as 10,000 writes of (since deleted) records would have
    c.execute("BEGIN IMMEDIATE")
    c.executemany("INSERT INTO changes(record_id) VALUES (?)", ((f"gone{i}",) for i in range(10_000)))
    c.execute("COMMIT")
    a.save([rec(id="last")])
    a.optimize()
    n, lo, hi = c.execute("SELECT count(*), min(seq), max(seq) FROM changes").fetchone()
    assert n == 10_000 and hi - lo == 9_999 and hi == 10_051
    assert os.path.getsize(p + "-wal") == 0  # TRUNCATE checkpoint
    assert b.count() == 51  # gap in the log (min seq > last + 1): b reloads everything
    assert b.get_record("r0") is not None and b.get_record("last") is not None
    assert a.count() == 51
    a.save([rec(id="after")])  # normal incremental refresh after the trim
    assert b.count() == 52
    a.close()
    b.close()


def test_async_variants(store):
    async def go():
        await store.asave([rec(emb=[1.0, 0.0], id="a")])
        res = await store.asearch([1.0, 0.0])
        n = await store.adelete(record_ids=["a"])
        return res, n

    res, n = asyncio.run(go())
    assert res[0][0].id == "a" and n == 1
    assert isinstance(store, StorageBackend)


# ---------------------------------------------------------------------------
# several stores, threads, locks


def test_two_stores_one_file_see_each_other(db):
    a, b = PyStore(db), PyStore(db)
    assert b.dim == 0
    a.save([rec("x", id="x", scope="/s", emb=[1.0, 0.0], cats=["c"])])
    assert b.dim == 0 and b.count() == 1  # b refreshes on read
    assert b.dim == 2 and b.search([1.0, 0.0])[0][0].id == "x"
    b.update(rec("x2", id="x", scope="/t"))
    assert a.get_record("x").content == "x2" and a.list_scopes() == ["/t"]
    assert a.get_record("x").embedding == [1.0, 0.0]
    b.touch_records(["x"])
    assert a.get_record("x").last_accessed == b.get_record("x").last_accessed
    with pytest.raises(EmbeddingDimensionMismatchError):
        b.save([rec(emb=[1.0, 2.0, 3.0])])
    a.save([rec(id="y", emb=[0.0, 1.0])])
    assert b.count() == 2 and b.delete(record_ids=["y"]) == 1
    assert a.count() == 1 and a.search([0.0, 1.0], limit=5)[0][0].id == "x"
    a.reset()
    assert b.count() == 0 and b.dim == 0
    b.save([rec(id="z", emb=[1.0, 2.0, 3.0])])  # the dimension was forgotten
    assert a.dim == 0 and a.search([1.0, 2.0, 3.0])[0][0].id == "z" and a.dim == 3
    a.close()
    b.close()


def test_many_threads(db):
    s = PyStore(db)
    other = PyStore(db)
    n_threads, per = 8, 40
    errors = []
    start = threading.Barrier(n_threads)

    def work(t):
        try:
            rng = random.Random(t)
            start.wait()
            for i in range(0, per, 4):
                store = s if i % 8 else other
                store.save([rec(f"t{t}-{j}", scope=f"/t{t}", emb=[rng.random() for _ in range(8)],
                                id=f"t{t}-{j}") for j in range(i, i + 4)])
                res = s.search([rng.random() for _ in range(8)], scope_prefix=f"/t{t}", limit=3)
                assert res and all(r.scope == f"/t{t}" for r, _ in res)
                assert s.count(f"/t{t}") == i + 4
                s.touch_records([f"t{t}-{i}"])
                s.list_records(f"/t{t}", limit=5)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert s.count() == n_threads * per
    assert other.count() == n_threads * per
    assert len(s.list_scopes()) == n_threads
    s.close()
    other.close()
    with PyStore(db) as fresh:
        assert fresh.count() == n_threads * per
        assert len(fresh.search([0.5] * 8, limit=1000)) == n_threads * per


def test_write_lock_timeout(db):
    s = PyStore(db, busy_timeout=0.3)
    s.save([rec(id="before")])
    blocker = raw(db)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreTimeoutError) as ei:
            s.save([rec(id="blocked")])
        assert db in str(ei.value)
        assert isinstance(ei.value, TimeoutError)
        assert s.count() == 1  # reads are not blocked by another writer
    finally:
        blocker.execute("ROLLBACK")
    s.save([rec(id="after")])
    assert {r.id for r in s.list_records()} == {"before", "after"}
    s.close()


def test_write_waits_for_short_lock(db):
    s = PyStore(db)
    blocker = raw(db)
    blocker.execute("BEGIN IMMEDIATE")
    t = threading.Timer(0.3, lambda: blocker.execute("COMMIT"))
    t.start()
    s.save([rec(id="waited")])  # retried until the lock was released
    t.join()
    assert s.get_record("waited") is not None
    s.close()


def _child_writer(path, tag, n, q):
    try:
        s = PyStore(path)
        rng = random.Random(tag)
        for i in range(0, n, 5):
            s.save([rec(f"{tag}-{j}", scope=f"/{tag}", emb=[rng.random() for _ in range(4)],
                        id=f"{tag}-{j}") for j in range(i, i + 5)])
            assert s.count(f"/{tag}") == i + 5
            s.search([0.5] * 4, limit=3)
        s.touch_records([f"{tag}-0"])
        s.close()
        q.put((tag, None))
    except BaseException as e:  # noqa: BLE001
        q.put((tag, repr(e)))


def test_several_processes(db):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    parent = PyStore(db)
    parent.save([rec("seed", id="seed", emb=[0.0] * 4)])
    q = ctx.Queue()
    procs = [ctx.Process(target=_child_writer, args=(db, f"p{i}", 60, q)) for i in range(3)]
    for p in procs:
        p.start()
    seen = 0
    while any(p.is_alive() for p in procs):
        n = parent.count()
        assert n >= seen  # the parent follows the other processes' writes
        seen = n
        parent.search([0.5] * 4, limit=5)
    for p in procs:
        p.join(30)
    results = dict(q.get(timeout=5) for _ in procs)
    assert results == {"p0": None, "p1": None, "p2": None}
    assert parent.count() == 1 + 3 * 60
    assert parent.list_scopes() == ["/p0", "/p1", "/p2"]
    assert len(parent.search([0.5] * 4, limit=1000)) == 1 + 3 * 60
    assert parent.get_record("p1-0").last_accessed > parent.get_record("p1-1").last_accessed
    parent.close()
