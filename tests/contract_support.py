"""Inputs and comparisons for the memory data-contract tests
(tests/test_memory_contract.py).

``Gen`` draws operations on a memory store from a seeded ``random.Random``:
mostly valid calls on a small pool of ids, scopes, categories and vectors
(so calls collide, tie and filter), and with a fixed probability a hostile
value in one argument or record field, taken from the catalogues below.
``outcome`` runs a call and reduces what it returned (or the type of what it
raised) to plain values that compare across engines; ``same`` compares two
outcomes with a tolerance on scores only.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
import json
import math
import random
import time
from typing import Any, Callable

DIM = 4
_T0 = datetime(2024, 5, 17, 12, 0, 0, 250000)
PLUS5 = timezone(timedelta(hours=5))
MINUS5 = timezone(timedelta(hours=-5))


class _NotJSON:
    def __repr__(self) -> str:
        return "<NotJSON>"


def _deep(n: int) -> Any:
    v: Any = 1
    for _ in range(n):
        v = [v]
    return {"k": v}


def _cyclic() -> Any:
    d: dict[str, Any] = {}
    d["self"] = d
    return d


# -- catalogues: (valid values, hostile values) per field --------------------

IDS = ["a", "b", "c", "d", "e", "f", "g", "h", "日本", "id with space", "x/y", "%_", "i" * 1024]
BAD_IDS: list[Any] = ["", "a\x00", "\ud800x", 5, None, b"bytes", "i" * 1025, "é" * 513]

SCOPES: list[Any] = ["/", "/a", "/a/b", "/a/b/c", "/b", "a//b/", "/ab", "/a%b", "/a_b", "/ä", None, "",
                     "/" + "s" * 1023]
BAD_SCOPES: list[Any] = ["/a/../b", "..", "/a\x00", "/a\nb", 5, "/\ud800", "/" + "s" * 1024, b"/a"]

CATS = ["c1", "c2", "C1", "é", "", "<>&", "z" * 1024]
BAD_CATS: list[Any] = ["abc", [5], [None], ["a\x00"], ["\ud800"], ["k" * 1025], {"c1": 1}, 7]

METAS: list[Any] = [
    {}, None, {"k": 1}, {"k": 1.0}, {"k": True}, {"k": "v"}, {"k": None}, {"k": [1, "a"]},
    {"k": {"n": 1}}, {"n": 2**62}, {"n": -(2**63)}, {"n": 2**63 - 1}, {"s": "<>&\u2028"},
    {"k": "\\u0000"}, {"k": 1, "j": "x"}, {"k": (1, 2)}, {"k": 0.1}, {"k": 1e300}, _deep(60),
]
BAD_METAS: list[Any] = [
    [1, 2], "abc", 5, {1: 2}, {"k": {1, 2}}, {"k": float("nan")}, {"k": float("inf")},
    {"k": 2**64}, {"k": 10**400}, {"k": "\x00"}, {"\x00": 1}, _deep(70), {"k": b"x"},
    {"k": _NotJSON()}, {"k": "\ud800"}, {"\ud800": 1}, {"k": {2: 3}}, _cyclic(), {"k": -(2**63) - 1},
]

IMPORTANCES: list[Any] = [0, 0.25, 0.5, 1, 1.0, 0.999]
BAD_IMPORTANCES: list[Any] = [-0.1, 1.1, float("nan"), float("inf"), "0.5", True, None, 5]

TIMES: list[Any] = [
    _T0, _T0 + timedelta(days=1), _T0 - timedelta(days=3), datetime(1970, 1, 1), datetime(1, 1, 1, 0, 0, 0, 1),
    datetime(999, 12, 31, 23, 59, 59), datetime(9999, 12, 31, 23, 59, 59, 999999),
    (_T0 + timedelta(hours=5)).replace(tzinfo=PLUS5), None,
]
BAD_TIMES: list[Any] = [
    datetime.min, datetime(1, 1, 1, 1, tzinfo=PLUS5), datetime(9999, 12, 31, 22, tzinfo=MINUS5),
    "2024-01-01", 5, _T0.date(),
]

SOURCES: list[Any] = [None, "u1", "u2", ""]
BAD_SOURCES: list[Any] = [5, "a\x00", "\ud800", b"u1"]

PRIVATES: list[Any] = [False, True, 0, 1]
BAD_PRIVATES: list[Any] = ["no", 2, None, 0.5]

CONTENTS: list[Any] = ["hello", "", "日本語", "a" * 1000, "<>&", "\u2028", "x\ty\nz"]
BAD_CONTENTS: list[Any] = ["\x00", "a\x00b", "\ud800", 5, None, b"bytes"]

BAD_VECS: list[Any] = [
    [float("nan"), 0.0, 0.0, 0.0], [0.0, float("inf"), 0.0, 0.0], [1e39, 0.0, 0.0, 0.0], "abcd", b"abcd",
    [1.0] * (DIM - 1), [1.0] * (DIM + 1), ["a"] * DIM, {"a": 1.0}, 5, [1.0] * 16001,
]

LIMITS: list[Any] = [0, 1, 3, 10, 100, 2**40, 2.0]
BAD_LIMITS: list[Any] = [-1, 1.5, True, "3", None, float("nan")]
MIN_SCORES: list[Any] = [0.0, 0.2, 0.5, -math.inf, 1, 0.99]
BAD_MIN_SCORES: list[Any] = [float("nan"), "0.5", True, None]
BAD_ID_LISTS: list[Any] = ["abc", "a", [5], ["a\x00"], 5, {"a": 1}, b"ab"]
BAD_FILTERS: list[Any] = [[1], "x", {1: 2}, {"k": float("nan")}, {"k": "\x00"}, {"k": _NotJSON()}, 5]
BAD_OLDER: list[Any] = ["2024", 5, datetime.min, datetime(1, 1, 1, 1, tzinfo=PLUS5), _T0.date()]

#: Record fields and their (valid, hostile) catalogues.
FIELDS: dict[str, tuple[list[Any], list[Any]]] = {
    "id": (IDS, BAD_IDS),
    "content": (CONTENTS, BAD_CONTENTS),
    "scope": (SCOPES, BAD_SCOPES),
    "categories": ([[], ["c1"], ["c1", "c2"], ["é", "C1"], ["<>&", ""], ("c2",), None, ["z" * 1024]], BAD_CATS),
    "metadata": (METAS, BAD_METAS),
    "importance": (IMPORTANCES, BAD_IMPORTANCES),
    "created_at": (TIMES, BAD_TIMES),
    "last_accessed": (TIMES, BAD_TIMES),
    "source": (SOURCES, BAD_SOURCES),
    "private": (PRIVATES, BAD_PRIVATES),
    "embedding": ([], BAD_VECS),  # valid vectors come from Gen.vec
}


def record(**fields: Any) -> Any:
    """A MemoryRecord built without pydantic's checks (hostile types pass)."""
    from crewai.memory.types import MemoryRecord

    base: dict[str, Any] = dict(
        id="a", content="hello", scope="/", categories=[], metadata={}, importance=0.5,
        created_at=_T0, last_accessed=_T0, embedding=[1.0, 0.0, 0.0, 0.0], source=None, private=False,
    )
    base.update(fields)
    return MemoryRecord.model_construct(**base)


class Gen:
    """Seeded generator of store operations ``(name, args, kwargs)``."""

    def __init__(self, seed: int, p_bad: float = 0.12) -> None:
        self.r = random.Random(seed)
        self.p_bad = p_bad

    def pick(self, good: list[Any], bad: list[Any]) -> Any:
        r = self.r
        if bad and r.random() < self.p_bad:
            return r.choice(bad)
        return r.choice(good)

    def vec(self) -> Any:
        r = self.r
        k = r.random()
        if k < self.p_bad:
            return r.choice(BAD_VECS)
        if k < 0.6:
            return [float(r.randint(-2, 2)) for _ in range(DIM)]  # exact arithmetic: exact ties
        if k < 0.93:
            return [round(r.uniform(-1, 1), 3) for _ in range(DIM)]
        return r.choice([None, []])

    def record(self) -> Any:
        f: dict[str, Any] = {}
        for name, (good, bad) in FIELDS.items():
            if name == "embedding":
                f[name] = self.vec()
            elif self.r.random() < 0.5 or name == "id":
                f[name] = self.pick(good, bad)
        return record(**f)

    def ids(self) -> Any:
        r = self.r
        if r.random() < self.p_bad:
            return r.choice(BAD_ID_LISTS)
        return r.sample(IDS + ["zz-missing"], r.randint(0, 4))

    def cats(self) -> Any:
        r = self.r
        if r.random() < self.p_bad:
            return r.choice(BAD_CATS)
        return r.choice([None, [], ["c1"], ["c2", "é"], ["C1"], ["<>&"], [""], ["nope"]])

    def mfilter(self) -> Any:
        r = self.r
        if r.random() < self.p_bad:
            return r.choice(BAD_FILTERS)
        return r.choice([None, {}, {"k": 1}, {"k": 1.0}, {"k": True}, {"k": "v"}, {"k": None},
                         {"k": [1, "a"]}, {"n": 2**62}, {"k": (1, 2)}, {"s": "<>&\u2028"}, {"k": "\\u0000"}])

    def op(self) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        r = self.r
        k = r.random()
        if k < 0.28:
            n = r.choice([1, 1, 2, 3, 5]) if r.random() < 0.97 else 70  # 64+: PostgreSQL's COPY path
            recs: Any = [self.record() for _ in range(n)]
            if r.random() < 0.03:
                recs = r.choice(["abc", self.record(), 5, {"a": 1}])
            return "save", (recs,), {}
        if k < 0.36:
            return "update", (self.record(),), {}
        if k < 0.58:
            kw: dict[str, Any] = {}
            if r.random() < 0.5:
                kw["scope_prefix"] = self.pick(SCOPES, BAD_SCOPES)
            if r.random() < 0.3:
                kw["categories"] = self.cats()
            if r.random() < 0.3:
                kw["metadata_filter"] = self.mfilter()
            if r.random() < 0.6:
                kw["limit"] = self.pick(LIMITS, BAD_LIMITS)
            if r.random() < 0.3:
                kw["min_score"] = self.pick(MIN_SCORES, BAD_MIN_SCORES)
            if r.random() < 0.2:
                kw["source"] = self.pick(["u1", "u2", None, ""], [5, "u\x00"])
                kw["include_private"] = r.choice([False, True])
            q = self.vec()
            return "search", (q,), kw
        if k < 0.66:
            kw = {}
            while not kw and r.random() < 0.98:
                for name, gen in (
                    ("scope_prefix", lambda: self.pick(SCOPES[1:], BAD_SCOPES)),
                    ("categories", self.cats),
                    ("record_ids", self.ids),
                    ("older_than", lambda: self.pick([_T0, _T0 - timedelta(days=2), datetime(2000, 1, 1),
                                                      (_T0).replace(tzinfo=PLUS5)], BAD_OLDER)),
                    ("metadata_filter", self.mfilter),
                ):
                    if r.random() < 0.3:
                        kw[name] = gen()
            return "delete", (), kw
        if k < 0.72:
            return "get_record", (self.pick(IDS + ["zz-missing"], BAD_IDS),), {}
        if k < 0.80:
            kw = {}
            if r.random() < 0.5:
                kw["scope_prefix"] = self.pick(SCOPES, BAD_SCOPES)
            if r.random() < 0.5:
                kw["limit"] = self.pick(LIMITS, BAD_LIMITS)
            if r.random() < 0.4:
                kw["offset"] = self.pick([0, 1, 2, 5, 10**6], [-1, 0.5, "1"])
            return "list_records", (), kw
        if k < 0.84:
            return "get_scope_info", (self.pick(SCOPES, BAD_SCOPES),), {}
        if k < 0.88:
            return "list_scopes", (self.pick(SCOPES, BAD_SCOPES),), {}
        if k < 0.91:
            return "list_categories", (self.pick(SCOPES, BAD_SCOPES),), {}
        if k < 0.95:
            return "count", (self.pick(SCOPES, BAD_SCOPES),), {}
        if k < 0.985:
            return "touch_records", (self.ids(),), {}
        return "reset", (self.pick(SCOPES[1:], BAD_SCOPES) if r.random() < 0.7 else None,), {}


# -- outcomes --------------------------------------------------------------------

_START = time.time()


def _ts(dt: Any) -> Any:
    """A timestamp; "now" (a default or touch_records: engines differ by
    microseconds) when it falls within this test run."""
    if dt is None:
        return None
    t = dt.replace(tzinfo=timezone.utc).timestamp() if dt.year > 1 else -1e18
    if _START - 5 <= t <= time.time() + 5:
        return "now"
    return dt.isoformat()


def rec_key(r: Any) -> tuple[Any, ...]:
    emb = r.embedding
    return (
        r.id, r.content, r.scope, tuple(r.categories), json.dumps(r.metadata, sort_keys=True),
        r.importance, _ts(r.created_at), _ts(r.last_accessed), r.source, r.private,
        None if emb is None else tuple(emb),
    )


def norm(v: Any) -> Any:
    """What a call returned, as plain comparable values."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [norm(x) for x in v]
    if hasattr(v, "record_count"):  # ScopeInfo
        return ("scope", v.path, v.record_count, tuple(v.categories), _ts(v.oldest_record),
                _ts(v.newest_record), tuple(v.child_scopes))
    if hasattr(v, "content") and hasattr(v, "scope"):
        return ("record",) + rec_key(v)
    return ("?", type(v).__name__)


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", normalized result) or ("raise", exception class name)."""
    try:
        return "ok", norm(fn())
    except Exception as e:  # noqa: BLE001 - the type is the outcome
        return "raise", type(e).__name__


def same(a: Any, b: Any, tol: float = 1e-5) -> bool:
    """Equal, with floats (scores) within ``tol`` relative."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or math.isclose(a, b, rel_tol=tol, abs_tol=tol)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], tol) for k in a)
    return a == b


def show(name: str, args: tuple[Any, ...], kw: dict[str, Any]) -> str:
    """A short description of a call for failure messages."""
    s = f"{name}(" + ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kw.items()]) + ")"
    return s if len(s) < 600 else s[:600] + "..."
