"""The native engine: ctypes binding to libcrewcore.so.

The library is loaded lazily on first use. Every call is one coarse
``crewcore_call`` with a MessagePack request; ctypes.CDLL releases the GIL for
the duration of the call. After ``fork()`` the Go runtime is unusable in the
child, so the child is marked and callers switch to the fallback.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
import threading
from typing import Any

from crewcore import _validate as v
from crewcore.errors import (
    CrewcoreError,
    EngineError,
    InvalidArgumentError,
    InvalidRecordError,
    InvalidScopeError,
    LockTimeoutError,
    RecordNotFoundError,
    StoreAccessError,
    SchedulerClosedError,
    StoreClosedError,
    StoreCorruptError,
    ToolArgumentsError,
    ToolFileNotFoundError,
    ToolPolicyError,
    ToolRefusedError,
    ToolTimeoutError,
    StoreTimeoutError,
    StorageFullError,
)

_lock = threading.Lock()
_lib: Any = None
_load_error: str | None = None
_loaded_pid: int | None = None
_forked = False


def _after_fork_in_child() -> None:
    global _forked
    if _lib is not None:
        _forked = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def library_path() -> Path:
    """Where the shared library is looked for (CREWCORE_LIB overrides)."""
    env = os.environ.get("CREWCORE_LIB")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent / "_lib" / "libcrewcore.so"


def forked() -> bool:
    """True in a child forked after the library was loaded: native is unusable."""
    return _forked


def load() -> Any:
    """Load the library once; raise OSError with the reason when it cannot load."""
    global _lib, _load_error, _loaded_pid
    if _forked:
        raise OSError("the native library was loaded before fork(); unusable in this child")
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        if _load_error is not None:
            raise OSError(_load_error)
        path = library_path()
        try:
            import msgpack  # noqa: F401  (required by the bridge)

            lib = ctypes.CDLL(str(path))
            lib.crewcore_call.argtypes = [
                ctypes.c_char_p,
                ctypes.c_int64,
                ctypes.POINTER(ctypes.c_void_p),
                ctypes.POINTER(ctypes.c_int64),
            ]
            lib.crewcore_call.restype = ctypes.c_int32
            lib.crewcore_free.argtypes = [ctypes.c_void_p]
            lib.crewcore_free.restype = None
            # Fast path for count() (see cabi/main.go); absent from old builds.
            fast = getattr(lib, "crewcore_count", None)
            if fast is not None:
                fast.argtypes = [ctypes.c_int64, ctypes.c_char_p, ctypes.c_int64]
                fast.restype = ctypes.c_int64
        except (OSError, AttributeError, ImportError) as e:
            _load_error = f"cannot load {path}: {e}"
            raise OSError(_load_error) from None
        _lib = lib
        _loaded_pid = os.getpid()
        return lib


_ERRORS: dict[str, type[CrewcoreError]] = {
    "invalid_record": InvalidRecordError,
    "invalid_scope": InvalidScopeError,
    "invalid_argument": InvalidArgumentError,
    "not_found": RecordNotFoundError,
    "corrupt": StoreCorruptError,
    "access": StoreAccessError,
    "timeout": StoreTimeoutError,
    "closed": StoreClosedError,
    "tool_policy": ToolPolicyError,
    "tool_args": ToolArgumentsError,
    "tool_refused": ToolRefusedError,
    "tool_timeout": ToolTimeoutError,
    "tool_not_found": ToolFileNotFoundError,
    "sched_closed": SchedulerClosedError,
    "lock_timeout": LockTimeoutError,
    "full": StorageFullError,
}


def call(req: list[Any]) -> Any:
    """Run one request through the bridge and decode the response."""
    import msgpack

    lib = load()
    try:
        data = msgpack.packb(req, use_bin_type=True)
    except UnicodeEncodeError as e:
        raise InvalidArgumentError(
            f"{req[0]}: an argument is not valid UTF-8 ({e.reason} at position {e.start})"
        ) from None
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidArgumentError(f"{req[0]}: an argument cannot be encoded: {e}") from None
    out = ctypes.c_void_p()
    n = ctypes.c_int64()
    status = lib.crewcore_call(data, len(data), ctypes.byref(out), ctypes.byref(n))
    try:
        raw = ctypes.string_at(out.value, n.value) if out.value else b""
    finally:
        if out.value:
            lib.crewcore_free(out)
    resp = msgpack.unpackb(raw, raw=False) if raw else None
    if status != 0:
        raise _error(resp)
    return resp


def _error(resp: Any) -> Exception:
    if not isinstance(resp, dict):
        return EngineError(f"crewcore engine failed without details: {resp!r}")
    kind = resp.get("kind", "")
    msg = resp.get("message", "unknown error")
    if kind == "dimension":
        return v.dimension_error(int(resp.get("stored_dim", 0)), int(resp.get("new_dim", 0)))
    return _ERRORS.get(kind, EngineError)(msg)


def version() -> tuple[str, str]:
    """(engine version, SIMD kernel in use)."""
    ver, kernel = call(["version", 0])
    return ver, kernel


# scope_prefix argument -> canonical prefix as UTF-8 (b"" for no filter),
# for the count() fast path.
_prefix_bytes: dict[str | None, bytes] = {}


def _row(record: Any) -> v.Row:
    return v.to_row(record, check_vector=False)


def _wire_record(row: v.Row, categories: list[str]) -> list[Any]:
    return [
        row.id,
        row.content,
        row.scope,
        categories,
        row.metadata,
        row.importance,
        row.created_at,
        row.last_accessed,
        row.source,
        row.private,
        row.embedding,
    ]


def _record(f: list[Any]) -> Any:
    return v.make_record(
        f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], v.floats_from_bytes(f[10])
    )


class NativeStore:
    """One open store in the Go engine, addressed by a handle."""

    #: Prefix of this store kind's bridge ops ("pg_" for _postgres.PgStore).
    _P = ""

    def __init__(
        self,
        db_path: str,
        vector_dim: int | None = None,
        metric: str = "l2",
        return_embeddings: bool = False,
        exact_below: int = 0,
    ) -> None:
        if metric not in ("l2", "cosine"):
            raise InvalidArgumentError(f"metric must be 'l2' or 'cosine', got {metric!r}")
        if vector_dim is not None and (not isinstance(vector_dim, int) or vector_dim < 0):
            raise InvalidArgumentError(f"vector_dim must be a positive integer, got {vector_dim!r}")
        self.path = db_path
        self._return_embeddings = return_embeddings
        self._pid = os.getpid()
        h, dim = call(["open", 0, db_path, vector_dim or 0, metric, exact_below])
        self._h: int | None = h
        self._dim = dim

    @property
    def dim(self) -> int:
        return int(call([self._P + "dim", self._handle()]))

    def _handle(self) -> int:
        if self._h is None:
            raise StoreClosedError(f"memory store {self.path} is closed")
        return self._h

    def save(self, records: list[Any]) -> None:
        if not records:
            return
        wire = [_wire_record(_row(r), list(r.categories or [])) for r in records]
        call([self._P + "save", self._handle(), wire])

    def update(self, record: Any) -> None:
        call([self._P + "update", self._handle(), _wire_record(_row(record), list(record.categories or []))])

    def search(
        self,
        query_embedding: list[float],
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        metadata_filter: dict[str, Any] | None = None,
        limit: int = 10,
        min_score: float = 0.0,
        source: str | None = None,
        include_private: bool = True,
    ) -> list[tuple[Any, float]]:
        q = v.vector_bytes(query_embedding, "query embedding", check=False)
        if q is None:
            raise InvalidArgumentError("query_embedding is empty")
        limit = v.check_limit(limit)
        if min_score != min_score:  # NaN
            raise InvalidArgumentError("min_score is NaN")
        prefix = v.normalize_prefix(scope_prefix)
        mf = _meta_filter(metadata_filter)
        privacy = None if include_private else (source or "")
        rows = call(
            [
                self._P + "search",
                self._handle(),
                q,
                prefix,
                list(categories) if categories else None,
                mf,
                limit,
                float(min_score),
                privacy,
                self._return_embeddings,
            ]
        )
        return [(_record(f), f[11]) for f in rows]

    def delete(
        self,
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        record_ids: list[str] | None = None,
        older_than: Any = None,
        metadata_filter: dict[str, Any] | None = None,
    ) -> int:
        if record_ids is not None and len(record_ids) == 0 and not (
            scope_prefix or categories or older_than or metadata_filter
        ):
            return 0
        return int(
            call(
                [
                    self._P + "delete",
                    self._handle(),
                    v.normalize_prefix(scope_prefix),
                    list(categories) if categories else None,
                    [str(i) for i in record_ids] if record_ids else None,
                    _older_than(older_than),
                    _meta_filter(metadata_filter),
                ]
            )
        )

    def get_record(self, record_id: str) -> Any:
        f = call([self._P + "get", self._handle(), str(record_id)])
        return None if f is None else _record(f)

    def list_records(
        self, scope_prefix: str | None = None, limit: int = 200, offset: int = 0
    ) -> list[Any]:
        limit = v.check_limit(limit)
        offset = v.check_limit(offset, "offset")
        rows = call(
            [self._P + "list", self._handle(), v.normalize_prefix(scope_prefix), limit, offset, self._return_embeddings]
        )
        return [_record(f) for f in rows]

    def get_scope_info(self, scope: str) -> Any:
        from crewai.memory.types import ScopeInfo

        path, count, cats, oldest, newest, children = call(
            [self._P + "scope_info", self._handle(), v.normalize_scope(scope)]
        )
        return ScopeInfo(
            path=path,
            record_count=count,
            categories=cats,
            oldest_record=v.parse_dt(oldest) if oldest else None,
            newest_record=v.parse_dt(newest) if newest else None,
            child_scopes=children,
        )

    def list_scopes(self, parent: str = "/") -> list[str]:
        return list(call([self._P + "list_scopes", self._handle(), v.normalize_scope(parent)]))

    def list_categories(self, scope_prefix: str | None = None) -> dict[str, int]:
        return dict(call([self._P + "list_categories", self._handle(), v.normalize_prefix(scope_prefix)]))

    def count(self, scope_prefix: str | None = None) -> int:
        try:
            p = _prefix_bytes.get(scope_prefix)
        except TypeError:  # unhashable: let normalize_prefix name the problem
            p = None
        if p is None:
            norm = v.normalize_prefix(scope_prefix)  # raises InvalidScopeError
            p = (norm or "").encode("utf-8")
            if len(_prefix_bytes) >= 4096:
                _prefix_bytes.clear()
            _prefix_bytes[scope_prefix] = p
        h = self._h
        fast = getattr(_lib, "crewcore_count", None)
        if h is not None and fast is not None:
            n = fast(h, p, len(p))
            if n >= 0:
                return int(n)
        # The error path (or an old library): the full call raises the typed error.
        return int(call([self._P + "count", self._handle(), v.normalize_prefix(scope_prefix)]))

    def reset(self, scope_prefix: str | None = None) -> None:
        call([self._P + "reset", self._handle(), v.normalize_prefix(scope_prefix)])

    def touch_records(self, record_ids: list[str]) -> None:
        if record_ids:
            call([self._P + "touch", self._handle(), [str(i) for i in record_ids]])

    def optimize(self) -> None:
        call([self._P + "optimize", self._handle()])

    def close(self) -> None:
        h, self._h = self._h, None
        if h is not None and not _forked and os.getpid() == self._pid:
            call([self._P + "close", h])


def _older_than(value: Any) -> str | None:
    from datetime import datetime

    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidArgumentError(f"older_than must be a datetime, got {type(value).__name__}")
    return v.fmt_dt(value)


def _meta_filter(metadata_filter: dict[str, Any] | None) -> str | None:
    if not metadata_filter:
        return None
    import json

    try:
        return json.dumps(metadata_filter, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"metadata_filter is not JSON-serializable: {e}") from None
