"""The Go knowledge engine through the bridge (ops ``kn_*``, cabi/knowledge.go)."""

from __future__ import annotations

from typing import Any

from crewcore import _bridge


class NativeEngine:
    """One knowledge store file opened by the Go engine (one per file per
    process: the bridge hands back the same handle for the same path)."""

    kind = "native"

    def __init__(self, path: str, timeout: float | None = None, no_fts: bool = False) -> None:
        self.path = path
        self.handle, self.fts = _bridge.call(["kn_open", 0, path, timeout, bool(no_fts)])

    def missing(self, coll: str, ids: list[str]) -> list[str]:
        return list(_bridge.call(["kn_missing", self.handle, coll, ids]))

    def save(self, coll: str, ids: list[str], contents: list[str], metas: list[str], dim: int, vectors: bytes) -> int:
        return int(_bridge.call(["kn_save", self.handle, coll, ids, contents, metas, dim, vectors]))

    def search(
        self, coll: str, mode: str, text: str, qvec: bytes | None, limit: int, flt: str, threshold: float, rrf_k: int
    ) -> list[tuple[Any, ...]]:
        rows = _bridge.call(
            ["kn_search", self.handle, coll, mode, text, qvec, int(limit), flt, float(threshold), int(rrf_k)]
        )
        return [tuple(r) for r in rows]

    def reset(self, coll: str) -> bool:
        return bool(_bridge.call(["kn_reset", self.handle, coll]))

    def reset_all(self) -> None:
        _bridge.call(["kn_reset_all", self.handle])

    def stats(self) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in _bridge.call(["kn_stats", self.handle])]

    def close(self) -> None:
        _bridge.call(["kn_close", self.handle])
