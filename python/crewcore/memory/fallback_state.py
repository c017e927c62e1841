"""In-memory state of the pure-Python engine (``PyStore``, in fallback.py).

Every record's fields, the vectors of the records that have one in a
contiguous float32 arena (numpy when importable, else ``array('f')``) with
their squared norms, and per-scope statistics so ``count``, ``list_scopes``,
``get_scope_info`` and ``list_categories`` cost O(distinct scopes). The SQLite
file is the truth: fallback_db.py keeps this state in step with it.

numpy is optional: ``_np`` below is the one place the engine finds it (tests
set it to None here to exercise the pure-Python arena); the other modules ask
``numpy_module()`` at call time.
"""

from __future__ import annotations

from array import array
import json
import math
import sys
from typing import Any

try:  # numpy is optional: without it the pure-Python arena is used.
    import numpy as _np
except Exception:  # pragma: no cover - exercised by monkeypatching in tests
    _np = None

from crewcore.memory.validate import scope_matches

__all__ = ["Entry", "ListArena", "NumpyArena", "Scope", "State", "numpy_module"]

_BIG_ENDIAN = sys.byteorder == "big"


def numpy_module() -> Any:
    """The numpy module, or None: without numpy (or with ``_np`` set to None)
    stores opened from now on keep their vectors in the pure-Python arena."""
    return _np


class Entry:
    """One record held in memory (stored form)."""

    __slots__ = (
        "rid", "id", "content", "scope", "sid", "cats", "cats_json", "meta_json",
        "_meta", "importance", "created", "accessed", "source", "private", "slot", "bad",
    )

    def __init__(
        self, rid: int, rec_id: str, content: str, scope: str, cats: list[str],
        cats_json: str, meta_json: str, importance: float, created: str,
        accessed: str, source: str | None, private: bool,
    ) -> None:
        self.rid = rid
        self.id = rec_id
        self.content = content
        self.scope = scope
        self.sid = -1
        self.cats = cats
        self.cats_json = cats_json
        self.meta_json = meta_json
        self._meta: dict[str, Any] | None = None
        self.importance = importance
        self.created = created
        self.accessed = accessed
        self.source = source
        self.private = private
        self.slot = -1
        self.bad = ""  # why the stored row failed its checksum (integrity.py); never served

    def metadata(self) -> dict[str, Any]:
        """Parsed metadata, cached (read-only: callers must not mutate it)."""
        m = self._meta
        if m is None:
            try:
                m = json.loads(self.meta_json)
            except (TypeError, ValueError):
                m = {}
            if not isinstance(m, dict):
                m = {}
            self._meta = m
        return m


class Scope:
    """Per-scope statistics: the records of exactly this scope."""

    __slots__ = ("path", "sid", "entries", "cats", "oldest", "newest", "stale")

    def __init__(self, path: str, sid: int) -> None:
        self.path = path
        self.sid = sid
        self.entries: set[Entry] = set()
        self.cats: dict[str, int] = {}
        self.oldest: str | None = None
        self.newest: str | None = None
        self.stale = False

    def extremes(self) -> tuple[str | None, str | None]:
        if self.stale:
            created = [e.created for e in self.entries]
            self.oldest = min(created) if created else None
            self.newest = max(created) if created else None
            self.stale = False
        return self.oldest, self.newest


class NumpyArena:
    """Vectors of the records that have one: slot i is row i of ``M``."""

    def __init__(self, dim: int, cap: int = 0) -> None:
        self.dim = dim
        self.n = 0
        cap = max(16, cap)
        self.M = _np.zeros((cap, dim), dtype=_np.float32)
        self.norm2 = _np.zeros(cap, dtype=_np.float64)
        self.rid = _np.zeros(cap, dtype=_np.int64)
        self.sid = _np.zeros(cap, dtype=_np.int32)
        self.priv = _np.zeros(cap, dtype=bool)
        self.ent: list[Entry] = []

    def _grow(self) -> None:
        cap = self.M.shape[0] * 2
        n = self.n

        def grown(a: Any) -> Any:
            b = _np.zeros((cap,) + a.shape[1:], dtype=a.dtype)
            b[:n] = a[:n]
            return b

        self.M = grown(self.M)
        self.norm2 = grown(self.norm2)
        self.rid = grown(self.rid)
        self.sid = grown(self.sid)
        self.priv = grown(self.priv)

    def add(self, vec: bytes, e: Entry) -> None:
        if self.n == self.M.shape[0]:
            self._grow()
        s = self.n
        v = _np.frombuffer(vec, dtype="<f4")
        self.M[s] = v
        v64 = v.astype(_np.float64)
        self.norm2[s] = float(v64 @ v64)
        self.rid[s] = e.rid
        self.sid[s] = e.sid
        self.priv[s] = e.private
        self.ent.append(e)
        e.slot = s
        self.n += 1

    def remove(self, slot: int) -> None:
        last = self.n - 1
        if slot != last:
            self.M[slot] = self.M[last]
            self.norm2[slot] = self.norm2[last]
            self.rid[slot] = self.rid[last]
            self.sid[slot] = self.sid[last]
            self.priv[slot] = self.priv[last]
            moved = self.ent[last]
            self.ent[slot] = moved
            moved.slot = slot
        self.ent.pop()
        self.n = last

    def vector_bytes(self, slot: int) -> bytes:
        return self.M[slot].astype("<f4").tobytes()

    def vector_list(self, slot: int) -> list[float]:
        return self.M[slot].tolist()


class ListArena:
    """Same as NumpyArena on ``array('f')`` and lists (numpy not importable)."""

    def __init__(self, dim: int, cap: int = 0) -> None:
        self.dim = dim
        self.n = 0
        self.V = array("f")
        self.norm2: list[float] = []
        self.rid: list[int] = []
        self.sid: list[int] = []
        self.priv: list[bool] = []
        self.ent: list[Entry] = []

    def add(self, vec: bytes, e: Entry) -> None:
        v = array("f")
        v.frombytes(vec)
        if _BIG_ENDIAN:
            v.byteswap()
        self.V.extend(v)
        self.norm2.append(math.fsum(x * x for x in v))
        self.rid.append(e.rid)
        self.sid.append(e.sid)
        self.priv.append(e.private)
        e.slot = self.n
        self.ent.append(e)
        self.n += 1

    def remove(self, slot: int) -> None:
        d = self.dim
        last = self.n - 1
        if slot != last:
            self.V[slot * d:(slot + 1) * d] = self.V[last * d:(last + 1) * d]
            for a in (self.norm2, self.rid, self.sid, self.priv):
                a[slot] = a[last]
            moved = self.ent[last]
            self.ent[slot] = moved
            moved.slot = slot
        del self.V[last * d:]
        for a in (self.norm2, self.rid, self.sid, self.priv, self.ent):
            a.pop()
        self.n = last

    def vector(self, slot: int) -> array:
        d = self.dim
        return self.V[slot * d:(slot + 1) * d]

    def vector_bytes(self, slot: int) -> bytes:
        v = self.vector(slot)
        if _BIG_ENDIAN:
            v.byteswap()
        return v.tobytes()

    def vector_list(self, slot: int) -> list[float]:
        return self.vector(slot).tolist()


class State:
    """Everything a store keeps in memory. Guarded by StoreDb.lock (fallback_db.py)."""

    def __init__(self, dim: int, use_numpy: bool, cap: int = 0) -> None:
        self.use_numpy = use_numpy
        self.entries: dict[str, Entry] = {}
        self.scopes: dict[str, Scope] = {}
        self.scope_list: list[Scope] = []  # sid -> scope; sids are stable
        self.cat_index: dict[str, set[Entry]] = {}
        self.corrupt: dict[str, str] = {}  # id -> why, for every entry marked bad
        self.dim = 0
        self.arena: NumpyArena | ListArena | None = None
        self.set_dim(dim, cap)

    def set_dim(self, dim: int, cap: int = 0) -> None:
        """Fix the dimension once it becomes known (never changes a known one:
        a store changes dimension only through a reset, which builds a new state)."""
        if dim <= 0 or self.dim:
            return
        self.dim = dim
        self.arena = (NumpyArena if self.use_numpy else ListArena)(dim, cap)

    def scope_for(self, path: str) -> Scope:
        sc = self.scopes.get(path)
        if sc is None:
            sc = Scope(path, len(self.scope_list))
            self.scopes[path] = sc
            self.scope_list.append(sc)
        return sc

    def put(self, e: Entry, vec: bytes | None, keep: bool = False) -> None:
        """Insert or replace ``e``. With ``keep`` and no vector, keep the old one."""
        old = self.entries.get(e.id)
        if old is not None:
            if keep and vec is None and old.slot >= 0 and self.arena is not None:
                vec = self.arena.vector_bytes(old.slot)
            self._remove(old)
        sc = self.scope_for(e.scope)
        e.sid = sc.sid
        e.slot = -1
        if vec is not None and not e.bad and (self.arena is None or len(vec) != 4 * self.dim):
            e.bad = f"rowid {e.rid}: a {len(vec)}-byte embedding in a store of dimension {self.dim}"
        if e.bad:
            self.corrupt[e.id] = e.bad
        elif vec is not None and self.arena is not None:
            self.arena.add(vec, e)
        self.entries[e.id] = e
        sc.entries.add(e)
        for c in set(e.cats):
            sc.cats[c] = sc.cats.get(c, 0) + 1
            self.cat_index.setdefault(c, set()).add(e)
        if len(sc.entries) == 1:
            sc.oldest = sc.newest = e.created
            sc.stale = False
        elif not sc.stale:
            if e.created < sc.oldest:  # type: ignore[operator]
                sc.oldest = e.created
            if e.created > sc.newest:  # type: ignore[operator]
                sc.newest = e.created

    def mark_bad(self, damaged: dict[str, str]) -> None:
        """Mark entries whose stored rows were found to fail their checksum
        (id -> why): their vectors leave the arena and reads report them."""
        for rec_id, why in damaged.items():
            e = self.remove(rec_id)
            if e is not None:
                e.bad = why
                self.put(e, None)

    def remove(self, rec_id: str) -> Entry | None:
        e = self.entries.get(rec_id)
        if e is not None:
            self._remove(e)
        return e

    def _remove(self, e: Entry) -> None:
        if e.slot >= 0 and self.arena is not None:
            self.arena.remove(e.slot)
        e.slot = -1
        del self.entries[e.id]
        if e.bad:
            self.corrupt.pop(e.id, None)
        sc = self.scope_list[e.sid]
        sc.entries.discard(e)
        for c in set(e.cats):
            n = sc.cats.get(c, 0) - 1
            if n <= 0:
                sc.cats.pop(c, None)
            else:
                sc.cats[c] = n
            s = self.cat_index.get(c)
            if s is not None:
                s.discard(e)
                if not s:
                    del self.cat_index[c]
        if not sc.entries:
            sc.oldest = sc.newest = None
            sc.stale = False
        elif e.created == sc.oldest or e.created == sc.newest:
            sc.stale = True

    # -- scope statistics (O(distinct scopes)) --

    def matching_scopes(self, prefix: str | None) -> list[Scope]:
        return [sc for sc in self.scope_list if sc.entries and scope_matches(prefix, sc.path)]

    def count(self, prefix: str | None) -> int:
        if prefix is None:
            return len(self.entries)
        return sum(len(sc.entries) for sc in self.matching_scopes(prefix))

    def categories(self, prefix: str | None) -> dict[str, int]:
        out: dict[str, int] = {}
        for sc in self.matching_scopes(prefix):
            for c, n in sc.cats.items():
                out[c] = out.get(c, 0) + n
        return out

    def children(self, parent: str) -> list[str]:
        base = "" if parent == "/" else parent
        head = base + "/"
        out: set[str] = set()
        for sc in self.scope_list:
            p = sc.path
            if not sc.entries or not p.startswith(head):
                continue
            rest = p[len(head):]
            first = rest.split("/", 1)[0]
            if first:
                out.add(head + first)
        return sorted(out)
