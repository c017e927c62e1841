"""Searches of the pure-Python knowledge engine (vector, keyword, hybrid),
with the Go engine's scores, ties and fusion (knowledge/search.go)."""

from __future__ import annotations

from typing import Any

from crewcore.knowledge import validate as v

# the engine (fallback.PyEngine) and a collection state (fallback._Coll) are
# passed in; this module does not import fallback (no import cycle)


def _unit(qvec: bytes) -> Any:
    np = __import__("numpy")
    q = np.frombuffer(qvec, dtype="<f4").astype(np.float64)
    n = float(np.linalg.norm(q))
    return (q / n if n > 0 else q).astype(np.float32)


def _rows(c: Any, flt: dict[str, Any] | None) -> Any:
    np = __import__("numpy")
    if flt is None:
        return None
    return np.array([i for i, m in enumerate(c.metas) if v.matches(m, flt)], dtype=np.int64)


def top_vector(c: Any, q: Any, rows: Any, k: int) -> list[tuple[int, float]]:
    """The k (row, cos) best by cosine, best first; ties: older chunk first.
    Exact: every candidate is scored in float32."""
    np = __import__("numpy")
    if rows is None:
        cand = np.arange(len(c.rids))
        cos = c.vecs @ q if len(cand) else np.zeros(0, dtype=np.float32)
    else:
        cand = rows
        cos = c.vecs[rows] @ q if len(rows) else np.zeros(0, dtype=np.float32)
    m = len(cand)
    if m == 0 or k <= 0:
        return []
    if k < m:
        # every row tied with the k-th best is kept, then ordered exactly
        kth = np.partition(cos, m - k)[m - k]
        sel = np.nonzero(cos >= kth)[0]
    else:
        sel = np.arange(m)
    order = np.lexsort((c.rids[cand[sel]], -cos[sel].astype(np.float64)))
    return [(int(cand[sel[i]]), float(cos[sel[i]])) for i in order[:k]]


def run_search(
    eng: Any, c: Any, mode: str, text: str, qvec: bytes | None, limit: int,
    flt: dict[str, Any] | None, threshold: float, rrf_k: int,
) -> list[tuple[Any, ...]]:
    np = __import__("numpy")
    rows = _rows(c, flt)
    q = _unit(qvec) if mode != "keyword" and qvec is not None else None
    keep = (lambda s: True) if threshold <= 0 else (lambda s: s >= threshold)
    # (row, score, vector score, keyword score)
    out: list[tuple[int, float, float, float]] = []
    if mode == "vector":
        for row, cos in top_vector(c, q, rows, limit):
            vs = v.cos_score(cos)
            if keep(vs):
                out.append((row, vs, vs, -1.0))
    elif mode == "keyword":
        for row, ks in eng.keyword(c, text, flt, limit):
            if keep(ks):
                out.append((row, ks, -1.0, ks))
    else:
        depth = max(v.HYBRID_DEPTH, 2 * limit)
        fused: dict[int, list[float]] = {}  # row -> [vector rr, keyword rr, vs, ks]
        for i, (row, cos) in enumerate(top_vector(c, q, rows, depth)):
            fused[row] = [1.0 / (rrf_k + i + 1), 0.0, v.cos_score(cos), -1.0]
        for i, (row, ks) in enumerate(eng.keyword(c, text, flt, depth)):
            if ks < v.HYBRID_KEYWORD_FLOOR:
                break  # best first: the rest is weaker still
            f = fused.get(row)
            if f is None:
                cos = float(np.dot(c.vecs[row], q))
                f = fused[row] = [0.0, 0.0, v.cos_score(cos), -1.0]
            f[3] = ks
            f[1] = 1.0 / (rrf_k + i + 1)
        ranked = []
        for row, (rv, rk, vs, ks) in fused.items():
            rrf = max(rv, rk) + v.HYBRID_AGREEMENT * min(rv, rk)
            score = max(vs, ks)
            if keep(score):
                ranked.append((-rrf, -score, int(c.rids[row]), row, score, vs, ks))
        ranked.sort()
        out = [(r[3], r[4], r[5], r[6]) for r in ranked[:limit]]
    got = eng.fetch(c, [o[0] for o in out])
    res = []
    for row, score, vs, ks in out:
        item = got.get(int(c.rids[row]))
        if item is None:
            continue  # reset by another process since the state was read
        res.append((item[0], item[1], item[2], score, vs, ks))
    return res
