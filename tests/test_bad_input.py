"""Bad input against crewcore's own engines (native and python).

Every bad call raises a typed error (a ``crewcore.CrewcoreError`` that is also
the builtin named in ``crewcore/errors.py``; a wrong dimension raises CrewAI's
``EmbeddingDimensionMismatchError``) and leaves everything stored before
intact: after each one the store still counts and finds what it held.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
import random

import pytest

import crewcore
from crewcore import errors as E
from conftest import DIM, ids_of, isclose, rec, run_py, vec

N = 20

#: Each error class and the builtin it must also be (docs/architecture.md, errors.py).
BUILTINS = {
    E.InvalidRecordError: ValueError,
    E.InvalidScopeError: ValueError,
    E.InvalidArgumentError: ValueError,
    E.RecordNotFoundError: LookupError,
    E.StoreAccessError: PermissionError,
    E.StoreTimeoutError: TimeoutError,
    E.StoreCorruptError: None,
    E.StoreClosedError: None,
    E.EngineError: None,
}


def _vec_of(i: int) -> list[float]:
    v = [0.0] * DIM
    v[i % DIM] = 1.0 + i // DIM
    v[(i + 3) % DIM] += 0.5
    return v


class Populated:
    """A store holding N records; ``intact()`` checks they are all still there."""

    def __init__(self, store):
        self.s = store
        self.records = [
            rec(f"r{i:02d}", _vec_of(i), scope=f"/team/{i % 3}", categories=[f"c{i % 4}"],
                metadata={"i": i}) for i in range(N)
        ]
        store.save(self.records)

    def intact(self) -> None:
        s = self.s
        assert s.count() == N
        assert s.count("/team/1") == len([i for i in range(N) if i % 3 == 1])
        for i in (0, 7, N - 1):
            (top, score), *_ = s.search(_vec_of(i), limit=3)
            assert top.id == f"r{i:02d}" and isclose(score, 1.0)
        g = s.get_record("r05")
        assert g is not None and g.metadata == {"i": 5} and g.categories == ["c1"]
        assert {r.id for r in s.list_records(limit=1000)} == {f"r{i:02d}" for i in range(N)}


@pytest.fixture
def pop(cc_engine, tmp_path) -> Populated:
    return Populated(cc_engine(tmp_path / "store"))


@contextlib.contextmanager
def typed(cls):
    """pytest.raises(cls) that also checks the error's place in the hierarchy."""
    with pytest.raises(cls) as ei:
        yield ei
    err = ei.value
    assert isinstance(err, E.CrewcoreError), f"{type(err).__mro__} is not a CrewcoreError"
    for klass, builtin in BUILTINS.items():
        if isinstance(err, klass) and builtin is not None:
            assert isinstance(err, builtin)


# --------------------------------------------------------------------------
# the error hierarchy


@pytest.mark.parametrize("cls", list(BUILTINS), ids=lambda c: c.__name__)
def test_error_hierarchy(cls):
    assert issubclass(cls, E.CrewcoreError)
    assert getattr(crewcore, cls.__name__) is cls
    builtin = BUILTINS[cls]
    if builtin is not None:
        assert issubclass(cls, builtin)
    doc = Path(E.__file__).read_text()
    assert f"class {cls.__name__}(CrewcoreError" in doc


def test_every_error_class_is_exported():
    """Every exception crewcore can raise is a CrewcoreError importable from
    the top-level package (the memory engine's are all checked above)."""
    defined = {v for v in vars(E).values() if isinstance(v, type) and issubclass(v, E.CrewcoreError)}
    assert set(BUILTINS) <= defined
    missing = sorted(c.__name__ for c in defined if getattr(crewcore, c.__name__, None) is not c)
    assert not missing, f"not exported as crewcore.<name>: {missing}"


# --------------------------------------------------------------------------
# vectors


def test_wrong_dimension(pop):
    from crewai.memory.storage.backend import EmbeddingDimensionMismatchError

    s = pop.s
    for bad in ([1.0] * (DIM - 1), [1.0] * (DIM + 1), [1.0]):
        with pytest.raises(EmbeddingDimensionMismatchError) as ei:
            s.save([rec("new", bad)])
        assert (ei.value.stored_dim, ei.value.new_dim) == (DIM, len(bad))
        assert isinstance(ei.value, ValueError)
        pop.intact()
        with pytest.raises(EmbeddingDimensionMismatchError):
            s.search(bad)
        pop.intact()
        with pytest.raises(EmbeddingDimensionMismatchError):
            s.update(pop.records[3].model_copy(update={"embedding": bad, "content": "changed"}))
        pop.intact()
        assert s.get_record("r03").content == pop.records[3].content
    assert s.get_record("new") is None


def test_vector_dim_option_is_enforced(cc_engine, tmp_path):
    from crewai.memory.storage.backend import EmbeddingDimensionMismatchError

    s = cc_engine(tmp_path / "s", vector_dim=4)
    with pytest.raises(EmbeddingDimensionMismatchError):
        s.save([rec("a", [1.0] * 5)])
    s.save([rec("a", [1.0] * 4)])
    s.reset()
    with pytest.raises(EmbeddingDimensionMismatchError):
        s.save([rec("b", [1.0] * 5)])  # reset keeps a dimension fixed at open
    assert s.count() == 0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e39], ids=["nan", "inf", "-inf", "f32-overflow"])
def test_non_finite_vectors(pop, bad):
    s = pop.s
    v = vec(1, 2, 3)
    v[5] = bad
    with typed(E.InvalidRecordError):
        s.save([rec("good", vec(1)), rec("bad", v)])
    pop.intact()
    assert s.get_record("good") is None  # atomic batch: nothing stored
    with typed(E.InvalidRecordError):
        s.update(pop.records[1].model_copy(update={"embedding": v}))
    pop.intact()
    with pytest.raises(E.CrewcoreError) as ei:
        s.search(v)
    assert isinstance(ei.value, (E.InvalidRecordError, E.InvalidArgumentError))
    pop.intact()


def test_bad_query_values(pop):
    s = pop.s
    for q in ([1.0, "x"] + [0.0] * (DIM - 2), "not a vector"):
        with pytest.raises(E.CrewcoreError) as ei:
            s.search(q)
        assert isinstance(ei.value, ValueError)
        pop.intact()


# --------------------------------------------------------------------------
# content


def test_ten_megabyte_content_round_trip(cc_engine, tmp_path):
    s = cc_engine(tmp_path / "s")
    rnd = random.Random(5)
    alphabet = "abcdefghij klmnopqrstuvwxyz éß✓多语言\n"
    chunk = "".join(rnd.choice(alphabet) for _ in range(1 << 16))
    big = (chunk * 200)[: 10 * 1024 * 1024] + "<END>"
    assert len(big.encode("utf-8")) > 10 * 1024 * 1024
    s.save([rec("big", vec(1), content=big), rec("small", vec(2))])
    assert s.get_record("big").content == big
    (top, _), *_ = s.search(vec(1), limit=1)
    assert top.id == "big" and top.content == big
    assert {r.id: len(r.content) for r in s.list_records()}["big"] == len(big)
    s2 = cc_engine(tmp_path / "s")
    assert s2.get_record("big").content == big


S = "\ud800"  # a lone surrogate: not encodable as UTF-8


@pytest.mark.parametrize(
    "field",
    ["content", "scope", "category", "metadata_value", "metadata_key", "source", "id"],
)
def test_invalid_utf8_refused(pop, field):
    kw = {
        "content": dict(content=f"bad {S} text"),
        "scope": dict(scope=f"/team/{S}"),
        "category": dict(categories=["ok", f"c{S}"]),
        "metadata_value": dict(metadata={"k": f"v{S}"}),
        "metadata_key": dict(metadata={f"k{S}": 1}),
        "source": dict(source=f"user{S}"),
        "id": {},
    }[field]
    rid = f"id{S}" if field == "id" else "newrec"
    with pytest.raises((E.InvalidRecordError, E.InvalidScopeError)) as ei:
        pop.s.save([rec("fine", vec(1)), rec(rid, vec(2), **kw)])
    assert isinstance(ei.value, E.CrewcoreError) and isinstance(ei.value, ValueError)
    pop.intact()
    assert pop.s.get_record("fine") is None
    if field != "id":
        with pytest.raises((E.InvalidRecordError, E.InvalidScopeError)):
            pop.s.update(pop.records[2].model_copy(update=kw))
        pop.intact()
        assert pop.s.get_record("r02").content == pop.records[2].content


@pytest.mark.parametrize(
    "call",
    [
        "search_categories", "search_metadata", "search_scope", "delete_ids", "delete_categories",
        "delete_metadata", "get_record", "touch", "count", "list_scopes", "scope_info",
        "list_categories", "list_records", "reset",
    ],
)
def test_invalid_utf8_in_query_arguments(pop, call):
    """A lone surrogate in any argument either matches nothing or raises a
    crewcore error (ValueError); never a foreign exception type."""
    s = pop.s
    fn = {
        "search_categories": lambda: s.search(_vec_of(0), categories=[S]),
        "search_metadata": lambda: s.search(_vec_of(0), metadata_filter={"k": S}),
        "search_scope": lambda: s.search(_vec_of(0), scope_prefix=f"/team/{S}"),
        "delete_ids": lambda: s.delete(record_ids=[S]),
        "delete_categories": lambda: s.delete(categories=[S]),
        "delete_metadata": lambda: s.delete(metadata_filter={S: 1}),
        "get_record": lambda: s.get_record(S),
        "touch": lambda: s.touch_records([S]),
        "count": lambda: s.count(f"/{S}"),
        "list_scopes": lambda: s.list_scopes(f"/{S}"),
        "scope_info": lambda: s.get_scope_info(f"/{S}"),
        "list_categories": lambda: s.list_categories(f"/{S}"),
        "list_records": lambda: s.list_records(scope_prefix=f"/{S}"),
        "reset": lambda: s.reset(f"/{S}"),
    }[call]
    try:
        out = fn()
    except Exception as e:  # noqa: BLE001
        assert isinstance(e, E.CrewcoreError), f"{call} raised {type(e).__name__}: {e}"
        assert isinstance(e, ValueError)
    else:
        assert out in ([], 0, None, {}) or getattr(out, "record_count", None) == 0
    pop.intact()


@pytest.mark.parametrize("bad", [{"k": {1, 2}}, {"k": object()}, {"k": math.nan}, {"k": b"bytes"}],
                         ids=["set", "object", "nan", "bytes"])
def test_metadata_not_json_serializable(pop, bad):
    """Refused on save and update (InvalidRecordError) and as a search filter
    (InvalidArgumentError): NaN is not JSON (json.dumps(allow_nan=False)),
    exactly as a record's metadata is checked."""
    with typed(E.InvalidRecordError):
        pop.s.save([rec("fine", vec(1)), rec("meta", vec(2), metadata=bad, construct=True)])
    pop.intact()
    assert pop.s.get_record("fine") is None
    with typed(E.InvalidRecordError):
        pop.s.update(pop.records[4].model_copy(update={"metadata": bad}))
    pop.intact()
    assert pop.s.get_record("r04").metadata == {"i": 4}
    with typed(E.InvalidArgumentError):
        pop.s.search(_vec_of(0), metadata_filter=bad)
    pop.intact()


# --------------------------------------------------------------------------
# scopes


def test_scope_special_characters_are_literal(cc_engine, tmp_path):
    s = cc_engine(tmp_path / "s")
    scopes = {
        "under": "/a_b", "pct": "/a%b", "quote": "/it's", "dquote": '/say "hi"',
        "back": "/back\\slash", "star": "/st*r", "x": "/aXb", "sub": "/a_b/c",
    }
    s.save([rec(k, vec(i + 1), scope=v) for i, (k, v) in enumerate(scopes.items())])
    q = vec(0)
    assert set(ids_of(s.search(q, scope_prefix="/a_b", limit=20))) == {"under", "sub"}
    assert set(ids_of(s.search(q, scope_prefix="/a%b", limit=20))) == {"pct"}
    assert set(ids_of(s.search(q, scope_prefix="/aXb", limit=20))) == {"x"}
    assert set(ids_of(s.search(q, scope_prefix="/a%", limit=20))) == set()
    assert set(ids_of(s.search(q, scope_prefix="/a_", limit=20))) == set()
    assert set(ids_of(s.search(q, scope_prefix="/st*", limit=20))) == set()
    assert set(ids_of(s.search(q, scope_prefix="/it's", limit=20))) == {"quote"}
    assert set(ids_of(s.search(q, scope_prefix='/say "hi"', limit=20))) == {"dquote"}
    assert s.count("/a%b") == 1 and s.count("/a_b") == 2 and s.count("/it's") == 1
    assert ids_of(s.list_records(scope_prefix="/a%b")) == ["pct"]
    assert s.list_scopes("/a_b") == ["/a_b/c"]
    assert s.get_record("quote").scope == "/it's"
    assert s.get_record("dquote").scope == '/say "hi"'
    assert s.get_record("back").scope == "/back\\slash"
    assert s.delete(scope_prefix="/a%b") == 1
    assert s.delete(scope_prefix="/a'b") == 0
    s.reset("/it's")
    assert s.count() == len(scopes) - 2
    assert s.get_record("under") is not None and s.get_record("x") is not None


def test_scope_normalization(cc_engine, tmp_path):
    s = cc_engine(tmp_path / "s")
    s.save([rec("a", vec(1), scope="crew//a/"), rec("b", vec(2), scope="")])
    assert s.get_record("a").scope == "/crew/a"
    assert s.get_record("b").scope == "/"
    assert ids_of(s.search(vec(0), scope_prefix="/crew/a/", limit=5)) == ["a"]
    assert s.count("crew") == 1


@pytest.mark.parametrize("bad", ["/a/../b", "/..", "/a/./b", "..", "/a/\x00b", "/a\nb", "/a\x7f"])
def test_dot_segments_and_control_chars_refused(pop, bad):
    s = pop.s
    with typed(E.InvalidScopeError):
        s.save([rec("fine", vec(1)), rec("x", vec(2), scope=bad)])
    pop.intact()
    with typed(E.InvalidScopeError):
        s.search(_vec_of(0), scope_prefix=bad)
    with typed(E.InvalidScopeError):
        s.count(bad)
    with typed(E.InvalidScopeError):
        s.list_scopes(bad)
    with typed(E.InvalidScopeError):
        s.delete(scope_prefix=bad)
    with typed(E.InvalidScopeError):
        s.reset(bad)
    with typed(E.InvalidScopeError):
        s.update(pop.records[0].model_copy(update={"scope": bad}))
    pop.intact()


# --------------------------------------------------------------------------
# limits and offsets


def test_negative_limit_and_offset(pop):
    s = pop.s
    with typed(E.InvalidArgumentError):
        s.search(_vec_of(0), limit=-1)
    with typed(E.InvalidArgumentError):
        s.list_records(limit=-1)
    with typed(E.InvalidArgumentError):
        s.list_records(offset=-5)
    pop.intact()


def test_huge_and_zero_limits(pop):
    s = pop.s
    assert len(s.search(_vec_of(0), limit=10**12)) == N
    assert len(s.list_records(limit=10**12)) == N
    assert s.list_records(limit=10**12, offset=10**12) == []
    assert s.list_records(limit=10, offset=N - 3) and len(s.list_records(limit=10, offset=N - 3)) == 3
    assert s.search(_vec_of(0), limit=0) == []
    assert s.list_records(limit=0) == []
    pop.intact()


# --------------------------------------------------------------------------
# unknown ids


def test_unknown_ids(pop):
    from crewai.memory.types import MemoryRecord

    s = pop.s
    assert s.get_record("missing") is None
    assert s.delete(record_ids=["missing", "also-missing"]) == 0
    s.touch_records(["missing"])
    with typed(E.RecordNotFoundError):
        s.update(rec("missing", _vec_of(0)))
    assert s.get_record("missing") is None
    pop.intact()
    assert isinstance(s.get_record("r01"), MemoryRecord)


def test_closed_store(cc_engine, tmp_path):
    """close() closes the engine (the engine object then refuses every call);
    the MemoryStorage reopens on its next call, as CrewAI's own stores stay
    usable after Memory.close() (issue 17, tests/test_crewai_parity_memory.py)."""
    s = cc_engine(tmp_path / "s")
    s.save([rec("a", vec(1))])
    engine = s._e()
    s.close()
    with typed(E.StoreClosedError):
        engine.count()
    with typed(E.StoreClosedError):
        engine.search(vec(1))
    s.close()  # twice is harmless
    assert s.count() == 1  # reopened
    s2 = cc_engine(tmp_path / "s")
    assert s2.count() == 1


def test_bad_options():
    with typed(E.InvalidArgumentError):
        crewcore.MemoryStorage("/tmp/never-created-crewcore", engine="rust")
    with typed(E.InvalidArgumentError):
        crewcore.MemoryStorage("/tmp/never-created-crewcore", metric="dot")
    for dim in (0, -3, True, 2.5):
        with typed(E.InvalidArgumentError):
            crewcore.MemoryStorage("/tmp/never-created-crewcore", vector_dim=dim)
    assert not os.path.exists("/tmp/never-created-crewcore")


# --------------------------------------------------------------------------
# files that are not crewcore stores, unwritable locations


def _snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def test_corrupt_file_refused_untouched(cc_engine, tmp_path):
    d = tmp_path / "corrupt"
    d.mkdir()
    f = d / "memory.db"
    f.write_bytes(random.Random(3).randbytes(64 * 1024))
    before = _snapshot(d)
    for _ in range(2):
        with typed(E.StoreCorruptError):
            cc_engine(f)
        with typed(E.StoreCorruptError):
            cc_engine(d)  # the directory form names the same file
    assert _snapshot(d) == before


def test_damaged_sqlite_file_refused_untouched(cc_engine, tmp_path):
    """A file with a SQLite header and garbage behind it."""
    d = tmp_path / "damaged"
    d.mkdir()
    f = d / "memory.db"
    f.write_bytes(b"SQLite format 3\x00" + random.Random(4).randbytes(8192))
    before = _snapshot(d)
    with typed(E.StoreCorruptError):
        cc_engine(f)
    assert _snapshot(d) == before


def _make_foreign_db(path: Path) -> None:
    # Created in a child process: this process's Go engine never shares a file
    # with Python's sqlite3.
    run_py(
        """
        import sqlite3, sys
        c = sqlite3.connect(sys.argv[1])
        c.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        c.executemany("INSERT INTO users(name) VALUES (?)", [("ann",), ("bob",)])
        c.commit()
        c.close()
        """,
        str(path),
    )


def test_foreign_sqlite_file_refused_untouched(cc_engine, tmp_path):
    d = tmp_path / "foreign"
    d.mkdir()
    f = d / "app.db"
    _make_foreign_db(f)
    before = _snapshot(d)
    with typed(E.StoreCorruptError):
        cc_engine(f)
    after = _snapshot(d)
    assert set(after) == set(before), "sidecar files left behind"
    assert after["app.db"] == before["app.db"], (
        "the foreign database file was modified (header bytes 18-19: "
        f"{before['app.db'][18:20]!r} -> {after['app.db'][18:20]!r})"
    )


def test_unwritable_location(cc_engine, tmp_path):
    blocker = tmp_path / "plainfile"
    blocker.write_text("I am a file, not a directory")
    for target in (blocker / "store", blocker / "sub" / "memory.db"):
        with typed(E.StoreAccessError):
            cc_engine(target)
    assert blocker.read_text() == "I am a file, not a directory"


def test_content_over_64_mib_refused(pop):
    too_big = "x" * (64 * 1024 * 1024 + 1)
    with typed(E.InvalidRecordError):
        pop.s.save([rec("fine", vec(1)), rec("huge", vec(2), content=too_big)])
    pop.intact()
    assert pop.s.get_record("huge") is None and pop.s.get_record("fine") is None
    multibyte = "é" * (32 * 1024 * 1024 + 1)  # 64 MiB + 2 bytes in UTF-8
    with typed(E.InvalidRecordError):
        pop.s.save([rec("huge2", vec(2), content=multibyte)])
    pop.intact()


def test_nan_min_score_refused(pop):
    """A NaN threshold cannot filter anything; it is refused, not ignored."""
    with typed(E.InvalidArgumentError):
        pop.s.search(_vec_of(0), min_score=math.nan)
    pop.intact()


def test_return_embeddings_in_list_records(cc_engine, tmp_path):
    """return_embeddings=True: "include vectors in search and list results"."""
    s = cc_engine(tmp_path / "s", return_embeddings=True)
    s.save([rec("a", vec(1, 2)), rec("b", vec(3, 4))])
    assert [r.embedding for r, _ in s.search(vec(1, 2), limit=2)] == [vec(1, 2), vec(3, 4)]
    assert {r.id: r.embedding for r in s.list_records()} == {"a": vec(1, 2), "b": vec(3, 4)}
