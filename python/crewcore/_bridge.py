"""The bridge to the Go engine: loading libcrewcore.so, the call, its errors.

The bottom layer of the package: every capability's native binding calls
through here, and it imports nothing of crewcore but ``errors``.

The library is loaded lazily on first use. Every call is one coarse
``crewcore_call`` with a MessagePack request ``[op, handle, args...]``;
ctypes.CDLL releases the GIL for the duration of the call. A failed call
returns an error map ``{kind, message}`` that :func:`call` raises as the
matching :mod:`crewcore.errors` exception. After ``fork()`` the Go runtime is
unusable in the child, so the child is marked (:func:`forked`) and the engine
choice (:mod:`crewcore._backend`) switches it to the pure-Python engines.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
import threading
from typing import Any

from crewcore.errors import (
    CollectionNotFoundError,
    CrewcoreError,
    EngineError,
    KeywordSearchUnavailableError,
    KnowledgeDimensionError,
    KnowledgeDocumentError,
    InvalidArgumentError,
    InvalidRecordError,
    InvalidScopeError,
    LockTimeoutError,
    PgVectorMissingError,
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
    StoreUnavailableError,
    EmbeddingAPIError,
    EmbeddingCacheError,
    EmbeddingClosedError,
    EmbeddingConnectionError,
    EmbeddingDimensionError,
    EmbeddingRateLimitError,
    EmbeddingResponseError,
    EmbeddingServerError,
    EmbeddingTimeoutError,
    dimension_error,
)
from crewcore.errors import (
    QueueAccessError,
    QueueClosedError,
    QueueCorruptError,
    QueueNotFoundError,
    QueueUnavailableError,
    RunNotFoundError,
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
    "pg_unavailable": StoreUnavailableError,
    "pg_no_vector": PgVectorMissingError,
    "embed_status": EmbeddingAPIError,
    "embed_rate_limited": EmbeddingRateLimitError,
    "embed_server": EmbeddingServerError,
    "embed_timeout": EmbeddingTimeoutError,
    "embed_connection": EmbeddingConnectionError,
    "embed_dimension": EmbeddingDimensionError,
    "embed_bad_response": EmbeddingResponseError,
    "embed_closed": EmbeddingClosedError,
    "embed_cache_unavailable": EmbeddingCacheError,
    "kn_invalid_document": KnowledgeDocumentError,
    "kn_not_found": CollectionNotFoundError,
    "kn_no_fts": KeywordSearchUnavailableError,
    "runq_invalid": InvalidArgumentError,
    "runq_not_found": QueueNotFoundError,
    "runq_access": QueueAccessError,
    "runq_unavailable": QueueUnavailableError,
    "runq_corrupt": QueueCorruptError,
    "runq_run_not_found": RunNotFoundError,
    "runq_closed": QueueClosedError,
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
        return dimension_error(int(resp.get("stored_dim", 0)), int(resp.get("new_dim", 0)))
    if kind == "kn_dimension":
        return KnowledgeDimensionError(msg, int(resp.get("stored_dim", 0)), int(resp.get("new_dim", 0)))
    return _ERRORS.get(kind, EngineError)(msg)


def version() -> tuple[str, str]:
    """(engine version, SIMD kernel in use)."""
    ver, kernel = call(["version", 0])
    return ver, kernel
