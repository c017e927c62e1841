"""Queries over the in-memory state of the pure-Python engine: the exact
vector scans behind ``PyStore.search`` (numpy matrix or pure-Python lists) and
the filtered selection behind ``delete`` and scoped ``reset``.

Every function here reads a ``State`` (fallback_state.py); the caller holds
the store's state lock (``StoreDb.lock``).
"""

from __future__ import annotations

from array import array
import heapq
import math
import operator
from typing import Any, Iterable

from crewcore.memory.fallback_state import Entry, ListArena, NumpyArena, State, numpy_module
from crewcore.memory.validate import scope_matches

__all__ = ["json_equal", "meta_match", "search_lists", "search_numpy", "select", "visible"]

# Score slack used to pick the float32 candidates that are re-scored exactly
# in float64 (see search_numpy): larger than float32 rounding of the score of
# normal embeddings, so the exact ranking and min_score cut are not affected.
_RESCORE_SLACK = 1e-4


def json_equal(a: Any, b: Any) -> bool:
    """Equality of decoded JSON values (numbers by value, bools are not numbers)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)):
        if not isinstance(b, (int, float)):
            return False
        # Python compares int with int exactly and int with float by value
        # without overflow: 2**60 != 2**60 + 1, 1 == 1.0.
        return a == b
    if isinstance(a, str):
        return isinstance(b, str) and a == b
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(json_equal(x, y) for x, y in zip(a, b))
        )
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and len(a) == len(b)
            and all(k in b and json_equal(v, b[k]) for k, v in a.items())
        )
    return False


def meta_match(meta: dict[str, Any], want: dict[str, Any]) -> bool:
    for k, wv in want.items():
        if k not in meta or not json_equal(meta[k], wv):
            return False
    return True


def select(
    st: State, prefix: str | None, cats: list[str] | None, ids: list[str] | None,
    cutoff: str | None, mfilter: dict[str, Any] | None,
) -> list[str]:
    """Ids of the records matching every criterion. Caller holds the state lock."""
    if ids is not None:
        pool: Iterable[Entry] = (
            st.entries[i] for i in dict.fromkeys(ids) if i in st.entries
        )
    elif prefix is not None:
        pool = (e for sc in st.matching_scopes(prefix) for e in sc.entries)
    else:
        pool = st.entries.values()
    catset = set(cats) if cats else None
    out = []
    for e in pool:
        if prefix is not None and not scope_matches(prefix, e.scope):
            continue
        if catset is not None and catset.isdisjoint(e.cats):
            continue
        if cutoff is not None and not e.created < cutoff:
            continue
        if mfilter and not meta_match(e.metadata(), mfilter):
            continue
        out.append(e.id)
    return out


def visible(e: Entry, source: str | None) -> bool:
    return not e.private or (source is not None and e.source == source)


def search_numpy(
    st: State, qb: bytes, prefix: str | None, cats: list[str] | None,
    mfilter: dict[str, Any] | None, limit: int, min_score: float,
    source: str | None, include_private: bool, cosine: bool,
) -> list[tuple[Entry, float]]:
    np = numpy_module()
    ar: NumpyArena = st.arena  # type: ignore[assignment]
    n = ar.n
    q32 = np.frombuffer(qb, dtype=np.float32)
    q64 = q32.astype(np.float64)
    qn2 = float(q64 @ q64)

    # 1. candidate mask from the filters
    mask = None
    if prefix is not None:
        ok = np.fromiter(
            (bool(sc.entries) and scope_matches(prefix, sc.path) for sc in st.scope_list),
            dtype=bool, count=len(st.scope_list),
        )
        if not ok.any():
            return []
        mask = ok[ar.sid[:n]]
    if cats:
        cm = np.zeros(n, dtype=bool)
        for c in cats:
            for e in st.cat_index.get(c, ()):
                if e.slot >= 0:
                    cm[e.slot] = True
        mask = cm if mask is None else mask & cm
    if not include_private:
        hidden = ar.priv[:n] if mask is None else ar.priv[:n] & mask
        idx = np.flatnonzero(hidden)
        if idx.size:
            if mask is None:
                mask = np.ones(n, dtype=bool)
            ent = ar.ent
            for s in idx.tolist():
                if not visible(ent[s], source):
                    mask[s] = False
    if mfilter:
        idx = np.arange(n) if mask is None else np.flatnonzero(mask)
        ent = ar.ent
        cand = np.fromiter(
            (s for s in idx.tolist() if meta_match(ent[s].metadata(), mfilter)),
            dtype=np.intp,
        )
    else:
        cand = None if mask is None else np.flatnonzero(mask)
    if cand is not None and cand.size == 0:
        return []

    # 2. float32 scan of the candidates
    if cand is None:
        dots = (ar.M[:n] @ q32).astype(np.float64)
        norms = ar.norm2[:n]
    else:
        dots = (ar.M[cand] @ q32).astype(np.float64)
        norms = ar.norm2[cand]
    if cosine:
        denom = np.sqrt(qn2) * np.sqrt(norms)
        safe = np.where(denom > 0, denom, 1.0)
        approx = np.where(denom > 0, dots / safe, 0.0)
    else:
        approx = 1.0 / (1.0 + np.maximum(qn2 + norms - 2.0 * dots, 0.0))

    # 3. pool: everything that may pass min_score and may be in the top k,
    #    with slack for float32 rounding; then exact float64 scores.
    k = min(limit, approx.size)
    pool = np.flatnonzero(approx >= min_score - _RESCORE_SLACK)
    if pool.size == 0:
        return []
    if pool.size > k:
        ps = approx[pool]
        kth = np.partition(ps, ps.size - k)[ps.size - k]
        pool = pool[ps >= kth - _RESCORE_SLACK]
    slots = pool if cand is None else cand[pool]
    sub = ar.M[slots].astype(np.float64)
    if cosine:
        d64 = sub @ q64
        vn = np.sqrt(np.einsum("ij,ij->i", sub, sub))
        den = vn * math.sqrt(qn2)
        exact = np.where(den > 0, d64 / np.where(den > 0, den, 1.0), 0.0)
        exact = np.clip(exact, -1.0, 1.0)
    else:
        diff = sub - q64
        exact = 1.0 / (1.0 + np.einsum("ij,ij->i", diff, diff))
    keep = exact >= min_score
    slots, exact = slots[keep], exact[keep]
    if slots.size == 0:
        return []
    order = np.lexsort((-ar.rid[slots], -exact))[:k]
    return [(ar.ent[int(slots[i])], float(exact[i])) for i in order]


def search_lists(
    st: State, qb: bytes, prefix: str | None, cats: list[str] | None,
    mfilter: dict[str, Any] | None, limit: int, min_score: float,
    source: str | None, include_private: bool, cosine: bool,
) -> list[tuple[Entry, float]]:
    ar: ListArena = st.arena  # type: ignore[assignment]
    q = array("f")
    q.frombytes(qb)
    qv = q.tolist()
    qn = math.sqrt(math.fsum(x * x for x in qv))
    sids = None
    if prefix is not None:
        sids = {sc.sid for sc in st.matching_scopes(prefix)}
        if not sids:
            return []
    catset = set(cats) if cats else None
    d = ar.dim
    V = ar.V
    hits: list[tuple[float, int, int]] = []
    for s in range(ar.n):
        e = ar.ent[s]
        if sids is not None and e.sid not in sids:
            continue
        if catset is not None and catset.isdisjoint(e.cats):
            continue
        if not include_private and not visible(e, source):
            continue
        if mfilter and not meta_match(e.metadata(), mfilter):
            continue
        v = V[s * d:(s + 1) * d]
        if cosine:
            vn = math.sqrt(ar.norm2[s])
            if vn == 0 or qn == 0:
                score = 0.0
            else:
                dot = sum(map(operator.mul, qv, v))
                score = max(-1.0, min(1.0, dot / (qn * vn)))
        else:
            dist = math.dist(qv, v)
            score = 1.0 / (1.0 + dist * dist)
        if score >= min_score:
            hits.append((score, e.rid, s))
    best = heapq.nlargest(limit, hits)
    return [(ar.ent[s], score) for score, _rid, s in best]
