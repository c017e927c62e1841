"""Input checks and conversions shared by the native binding and the fallback.

Both engines store the same canonical values (docs/architecture.md, "On-disk
format"); this module turns a CrewAI ``MemoryRecord`` into them and back, and
raises the typed errors of :mod:`crewcore.errors` on bad input.
"""

from __future__ import annotations

from datetime import datetime, timezone
import json
import math
import struct
from typing import Any, NamedTuple

from crewcore.errors import (
    InvalidArgumentError,
    InvalidRecordError,
    InvalidScopeError,
)

#: Largest content stored whole; larger content is refused with InvalidRecordError.
MAX_CONTENT_BYTES = 64 * 1024 * 1024

_DT_FMT = "%Y-%m-%dT%H:%M:%S.%f"


class Row(NamedTuple):
    """A record in its stored form (see docs/architecture.md)."""

    id: str
    content: str
    scope: str
    categories: str  # JSON array
    metadata: str  # JSON object
    importance: float
    created_at: str
    last_accessed: str
    source: str | None
    private: bool
    embedding: bytes | None  # little-endian float32


def normalize_scope(scope: str | None) -> str:
    """Return the canonical form of a scope path; raise InvalidScopeError."""
    if scope is None or scope == "":
        return "/"
    if not isinstance(scope, str):
        raise InvalidScopeError(f"scope must be a string, got {type(scope).__name__}")
    if "\x00" in scope or any(ord(c) < 0x20 or ord(c) == 0x7F for c in scope):
        raise InvalidScopeError(f"scope {scope!r} contains a control character")
    parts = [p for p in scope.split("/") if p]
    for p in parts:
        if p in (".", ".."):
            raise InvalidScopeError(
                f"scope {scope!r} contains a {p!r} segment; scopes are absolute paths"
            )
    try:
        scope.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidScopeError(f"scope {scope!r} is not valid UTF-8 ({e.reason})") from None
    return "/" + "/".join(parts)


def normalize_prefix(prefix: str | None) -> str | None:
    """Canonical scope prefix for filtering; None means no scope filter."""
    if prefix is None or prefix == "":
        return None
    p = normalize_scope(prefix)
    return None if p == "/" else p


def scope_matches(prefix: str | None, scope: str) -> bool:
    """Segment-exact prefix match (``/a`` matches ``/a`` and ``/a/x``, not ``/ab``)."""
    if prefix is None or prefix == "/":
        return True
    return scope == prefix or scope.startswith(prefix + "/")


def check_limit(value: int, name: str = "limit") -> int:
    """Validate a non-negative integer argument."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise TypeError
        except TypeError:
            raise InvalidArgumentError(
                f"{name} must be an integer, got {value!r}"
            ) from None
    if value < 0:
        raise InvalidArgumentError(f"{name} must be >= 0, got {value}")
    return min(value, 2**31 - 1)


def fmt_dt(dt: datetime | None) -> str:
    """Stored form of a datetime: naive UTC with 6 fractional digits."""
    if dt is None:
        dt = datetime.now(timezone.utc).replace(tzinfo=None)
    elif not isinstance(dt, datetime):
        raise InvalidRecordError(f"expected a datetime, got {type(dt).__name__}")
    elif dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    if dt.year < 1000:  # isoformat and strftime agree from year 1000 on
        return dt.strftime(_DT_FMT)
    return dt.isoformat(timespec="microseconds")


def utcnow_str() -> str:
    """The current time in stored form."""
    return fmt_dt(None)


def parse_dt(s: str) -> datetime:
    """Parse a stored datetime back into a naive UTC datetime."""
    return datetime.fromisoformat(s)


def _check_utf8(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidRecordError(
            f"{what} is not valid UTF-8 (position {e.start}: {e.reason})"
        ) from None


_structs: dict[int, struct.Struct] = {}


def _packer(n: int) -> struct.Struct:
    st = _structs.get(n)
    if st is None:
        st = _structs[n] = struct.Struct(f"<{n}f")
    return st


def vector_bytes(vec: Any, what: str = "embedding", check: bool = True) -> bytes | None:
    """Raw little-endian float32 bytes of a vector; None for None/empty.

    Raises InvalidRecordError for values that are not numbers or overflow
    float32, and (with ``check``) for NaN/Inf. The native engine checks
    NaN/Inf itself, so its callers pass ``check=False``.
    """
    if vec is None:
        return None
    try:
        n = len(vec)
    except TypeError:
        raise InvalidRecordError(f"{what} must be a sequence of floats") from None
    if n == 0:
        return None
    if hasattr(vec, "tolist") and not isinstance(vec, list):
        vec = vec.tolist()
    try:
        b = _packer(n).pack(*vec)
    except (struct.error, TypeError, OverflowError) as e:
        raise InvalidRecordError(f"{what} contains a value that is not a float32: {e}") from None
    if check and not math.isfinite(sum(vec)):
        bad = next(i for i, x in enumerate(vec) if not math.isfinite(float(x)))
        raise InvalidRecordError(f"{what} has a non-finite value ({vec[bad]}) at index {bad}")
    return b


def vector_dim(vec: Any) -> int:
    """Length of a vector (0 for None/empty)."""
    return 0 if vec is None else len(vec)


# raw scope string -> canonical scope (saves re-validating the same few scopes).
_scopes: dict[str, str] = {}


def to_row(record: Any, check_vector: bool = True) -> Row:
    """Validate a MemoryRecord and return its stored form (``check_vector``
    False leaves the NaN/Inf check to the native engine)."""
    rid = record.id
    if not isinstance(rid, str) or not rid:
        raise InvalidRecordError(f"record id must be a non-empty string, got {rid!r}")
    _check_utf8(rid, "record id")
    content = record.content
    if not isinstance(content, str):
        raise InvalidRecordError(f"record {rid}: content must be a string")
    if len(content) > MAX_CONTENT_BYTES // 4 or len(content) * 4 > MAX_CONTENT_BYTES:
        n = len(content.encode("utf-8", "surrogatepass"))
        if n > MAX_CONTENT_BYTES:
            raise InvalidRecordError(
                f"record {rid}: content is {n} bytes, over the {MAX_CONTENT_BYTES} byte limit"
            )
    _check_utf8(content, f"record {rid}: content")
    raw_scope = record.scope
    scope = _scopes.get(raw_scope) if type(raw_scope) is str else None
    if scope is None:
        scope = normalize_scope(raw_scope)
        if type(raw_scope) is str:
            if len(_scopes) >= 4096:
                _scopes.clear()
            _scopes[raw_scope] = scope
    cats = record.categories or []
    for c in cats:
        if not isinstance(c, str):
            raise InvalidRecordError(f"record {rid}: category {c!r} is not a string")
        _check_utf8(c, f"record {rid}: category")
    try:
        cats_json = json.dumps(list(cats), ensure_ascii=False) if cats else "[]"
        meta = record.metadata
        meta_json = json.dumps(meta, ensure_ascii=False, allow_nan=False) if meta else "{}"
    except (TypeError, ValueError) as e:
        raise InvalidRecordError(
            f"record {rid}: metadata is not JSON-serializable: {e}"
        ) from None
    _check_utf8(meta_json, f"record {rid}: metadata")
    source = record.source
    if source is not None:
        if not isinstance(source, str):
            raise InvalidRecordError(f"record {rid}: source must be a string")
        _check_utf8(source, f"record {rid}: source")
    importance = float(record.importance)
    if not math.isfinite(importance):
        raise InvalidRecordError(f"record {rid}: importance must be finite")
    return Row(
        rid,
        content,
        scope,
        cats_json,
        meta_json,
        importance,
        fmt_dt(record.created_at),
        fmt_dt(record.last_accessed),
        source,
        bool(record.private),
        vector_bytes(record.embedding, f"record {rid}: embedding", check_vector),
    )


_record_cls: Any = None


def make_record(
    rid: str,
    content: str,
    scope: str,
    categories: str | list[str],
    metadata: str | dict[str, Any],
    importance: float,
    created_at: str,
    last_accessed: str,
    source: str | None,
    private: bool,
    embedding: list[float] | None,
) -> Any:
    """Build a MemoryRecord from stored values."""
    global _record_cls
    if _record_cls is None:
        from crewai.memory.types import MemoryRecord

        _record_cls = MemoryRecord
    if isinstance(categories, str):
        categories = json.loads(categories)
    if isinstance(metadata, str):
        metadata = {} if metadata == "{}" else json.loads(metadata)
    # pydantic-core's validated constructor is faster than model_construct here.
    return _record_cls(
        id=rid,
        content=content,
        scope=scope,
        categories=categories,
        metadata=metadata,
        importance=importance,
        created_at=datetime.fromisoformat(created_at),
        last_accessed=datetime.fromisoformat(last_accessed),
        embedding=embedding,
        source=source,
        private=bool(private),
    )


def floats_from_bytes(b: bytes | None) -> list[float] | None:
    """Decode stored little-endian float32 bytes into a list of floats."""
    if not b:
        return None
    return list(_packer(len(b) // 4).unpack(b))
