"""The memory store's data contract: input checks and conversions shared by
the native binding, the PostgreSQL binding and the pure-Python fallback.

Every engine stores the same canonical values (docs/architecture.md,
"On-disk format") and refuses the same input with the same typed error
(docs/architecture.md, "Semantics" and "Limits"). This module is the one
place both Python paths check it: it turns a CrewAI ``MemoryRecord`` into
its stored form and back, checks every query argument, and raises the typed
errors of :mod:`crewcore.errors`. The Go packages mirror the record and
filter checks (``memory/contract.go``) for Go callers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
import json
import math
import numbers
import struct
from typing import Any, NamedTuple

from crewcore._floats import f32_bytes, f32_many

from crewcore.errors import (
    InvalidArgumentError,
    InvalidRecordError,
    InvalidScopeError,
)

#: Largest content stored whole; larger content is refused with InvalidRecordError.
MAX_CONTENT_BYTES = 64 * 1024 * 1024
#: Largest record id, scope and category (UTF-8 bytes): PostgreSQL indexes
#: them, and an index entry must fit a third of an 8 KiB page.
MAX_KEY_BYTES = 1024
#: Largest vector dimension (pgvector's ``vector`` type holds up to 16,000).
MAX_DIM = 16_000
#: Deepest nesting of lists and objects in metadata and metadata filters.
MAX_JSON_DEPTH = 64
#: Integers in metadata must fit a signed 64-bit integer.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
#: Go's zero time (the Go API reads it as "now"): the one datetime refused.
_ZERO_TIME = datetime(1, 1, 1)

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
    cats: list[str] = []  # the categories as a list (the native wire form)


# ---------------------------------------------------------------------------
# scopes


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


# ---------------------------------------------------------------------------
# scalar arguments


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


def check_min_score(value: Any) -> float:
    """A search's ``min_score``: a number, not NaN (+-inf allowed)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise InvalidArgumentError(f"min_score must be a number, got {value!r}")
    return float(value)


def fmt_dt(dt: datetime | None, what: str = "datetime", err: type[Exception] = InvalidRecordError) -> str:
    """Stored form of a datetime: naive UTC with 6 fractional digits.

    None is now. Aware values are converted to UTC; naive ones are UTC. The
    result must lie in years 1 to 9999 and not be 0001-01-01T00:00:00 (Go's
    zero time, which the Go API reads as "now"); otherwise ``err``.
    """
    if dt is None:
        dt = datetime.now(timezone.utc).replace(tzinfo=None)
    elif not isinstance(dt, datetime):
        raise err(f"{what} must be a datetime, got {type(dt).__name__}")
    elif dt.tzinfo is not None:
        try:
            dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
        except (OverflowError, ValueError) as e:
            raise err(f"{what} {dt.isoformat()} is out of range in UTC ({e})") from None
    if dt == _ZERO_TIME:
        raise err(
            f"{what} 0001-01-01T00:00:00 is out of range (it is Go's zero time, read as 'now'): "
            "use a later datetime"
        )
    # isoformat pads the year to 4 digits (strftime does not below year 1000).
    return dt.isoformat(timespec="microseconds")


def utcnow_str() -> str:
    """The current time in stored form."""
    return fmt_dt(None)


def parse_dt(s: str) -> datetime:
    """Parse a stored datetime back into a naive UTC datetime."""
    return datetime.fromisoformat(s)


def _check_text(text: str, what: str, err: type[Exception] = InvalidRecordError) -> None:
    """Valid UTF-8 (no lone surrogate) and no NUL (PostgreSQL text cannot hold it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise err(f"{what} is not valid UTF-8 (position {e.start}: {e.reason})") from None
    if "\x00" in text:
        raise err(f"{what} contains a NUL character (U+0000), which no store can hold")


def _check_key(text: Any, what: str, err: type[Exception] = InvalidRecordError) -> str:
    """An id or category: a string of at most MAX_KEY_BYTES UTF-8 bytes."""
    if not isinstance(text, str):
        raise err(f"{what} must be a string, got {text!r}")
    _check_text(text, what, err)
    if len(text) > MAX_KEY_BYTES // 4 and len(text.encode("utf-8")) > MAX_KEY_BYTES:
        raise err(f"{what} is {len(text.encode('utf-8'))} bytes, over the {MAX_KEY_BYTES} byte limit")
    return text


def check_str_list(value: Any, name: str) -> list[str] | None:
    """A list argument of strings (ids, categories): None -> None (no
    criterion); a list (or other iterable, not a string, bytes or mapping)
    of valid UTF-8 strings without NUL otherwise, [] included."""
    if value is None:
        return None
    if isinstance(value, (str, bytes, bytearray, Mapping)) or not isinstance(value, Iterable):
        raise InvalidArgumentError(f"{name} must be a list of strings, got {value!r}")
    out = list(value)
    for v in out:
        if not isinstance(v, str):
            raise InvalidArgumentError(f"{name} must be a list of strings, got item {v!r}")
        _check_text(v, f"{name} item {v!r}", InvalidArgumentError)
    return out


def check_id(record_id: Any) -> str:
    """A record id argument (get_record): a valid UTF-8 string without NUL."""
    if not isinstance(record_id, str):
        raise InvalidArgumentError(f"record_id must be a string, got {record_id!r}")
    _check_text(record_id, f"record_id {record_id!r}", InvalidArgumentError)
    return record_id


def check_source(source: Any) -> str | None:
    """A search's ``source`` (privacy): None or a string without NUL."""
    if source is None:
        return None
    if not isinstance(source, str):
        raise InvalidArgumentError(f"source must be a string or None, got {source!r}")
    _check_text(source, "source", InvalidArgumentError)
    return source


# ---------------------------------------------------------------------------
# JSON (metadata and metadata filters)


def _check_json(value: Any, what: str, err: type[Exception], depth: int = 0) -> None:
    """Refuse what the stores cannot hold alike: non-JSON values, keys that
    are not strings (json.dumps would turn 1 into "1"), integers outside 64
    bits, NaN/Inf, NUL in strings, nesting deeper than MAX_JSON_DEPTH."""
    if depth > MAX_JSON_DEPTH:
        raise err(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels (or refers to itself)")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        if "\x00" in value:
            raise err(f"{what} has a string with a NUL character (U+0000)")
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise err(f"{what} has the integer {value}, outside the signed 64-bit range")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise err(f"{what} has the number {value}, which is not JSON")
        return
    if isinstance(value, (list, tuple)):
        for x in value:
            _check_json(x, what, err, depth + 1)
        return
    if isinstance(value, dict):
        for k, x in value.items():
            if not isinstance(k, str):
                raise err(f"{what} has the key {k!r}, which is not a string")
            if "\x00" in k:
                raise err(f"{what} has a key with a NUL character (U+0000)")
            _check_json(x, what, err, depth + 1)
        return
    raise err(f"{what} is not JSON-serializable: {type(value).__name__} {value!r:.80}")


def json_object(value: Any, what: str, err: type[Exception]) -> str:
    """The JSON text of a metadata dict (checked); ``"{}"`` for None/empty."""
    if value is None:
        return "{}"
    if not isinstance(value, dict):
        raise err(f"{what} must be a dict, got {type(value).__name__}")
    if not value:
        return "{}"
    _check_json(value, what, err)
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as e:
        raise err(f"{what} is not JSON-serializable: {e}") from None
    _check_text(text, what, err)
    return text


def check_metadata_filter(value: Any) -> str | None:
    """A metadata filter as JSON text (None for None/{}): a dict of JSON
    values with string keys, checked as record metadata is
    (InvalidArgumentError)."""
    if value is None or (isinstance(value, dict) and not value):
        return None
    return json_object(value, "metadata_filter", InvalidArgumentError)


# ---------------------------------------------------------------------------
# vectors


_structs: dict[int, struct.Struct] = {}


def _packer(n: int) -> struct.Struct:
    st = _structs.get(n)
    if st is None:
        st = _structs[n] = struct.Struct(f"<{n}f")
    return st


def vector_bytes(
    vec: Any, what: str = "embedding", check: bool = True, err: type[Exception] = InvalidRecordError
) -> bytes | None:
    """Raw little-endian float32 bytes of a vector; None for None/empty.

    Raises ``err`` for a string or bytes, values that are not numbers or
    overflow float32, more than MAX_DIM values, and (with ``check``) NaN/Inf.
    The native engines check NaN/Inf themselves, so their callers pass
    ``check=False``.
    """
    if vec is None:
        return None
    if isinstance(vec, (str, bytes, bytearray, Mapping)):
        raise err(f"{what} must be a sequence of floats, got {type(vec).__name__}")
    try:
        n = len(vec)
    except TypeError:
        raise err(f"{what} must be a sequence of floats") from None
    if n == 0:
        return None
    if n > MAX_DIM:
        raise err(f"{what} has {n} dimensions, over the limit of {MAX_DIM}")
    if hasattr(vec, "tolist") and not isinstance(vec, list):
        vec = vec.tolist()
    fast = f32_bytes(vec, check)
    if fast is not None:
        return fast
    try:
        b = _packer(n).pack(*vec)
    except (struct.error, TypeError, OverflowError) as e:
        raise err(f"{what} contains a value that is not a float32: {e}") from None
    if check and not _finite(b, vec):
        bad = next(i for i, x in enumerate(vec) if not math.isfinite(float(x)))
        raise err(f"{what} has a non-finite value ({vec[bad]}) at index {bad}")
    return b


_np: Any = None


def _finite(b: bytes, vec: Any) -> bool:
    """Whether every float32 in b is finite (numpy when importable: about
    2.5 us for 1,536 values against 7 us for math.isfinite(sum(vec)))."""
    global _np
    if _np is None:
        try:
            import numpy

            _np = numpy
        except ImportError:
            _np = False
    if _np is False or len(b) < 256:
        return math.isfinite(sum(vec))
    return bool(_np.isfinite(_np.frombuffer(b, dtype=_np.float32)).all())


def query_bytes(vec: Any, check: bool = True) -> bytes:
    """A search's query vector. Bad values raise InvalidRecordError, as in a
    record's embedding (and as the Go engines do); None or empty raises
    InvalidArgumentError."""
    q = vector_bytes(vec, "query embedding", check)
    if q is None:
        raise InvalidArgumentError("query_embedding is empty")
    return q


def vector_dim(vec: Any) -> int:
    """Length of a vector (0 for None/empty)."""
    return 0 if vec is None else len(vec)


# ---------------------------------------------------------------------------
# whole calls (one order of checks, so every engine raises the same error)


class SearchArgs(NamedTuple):
    """A search's checked arguments."""

    query: bytes  # little-endian float32
    prefix: str | None
    categories: list[str] | None  # None: no filter
    metadata_filter: str | None  # JSON text; None: no filter
    limit: int
    min_score: float
    source: str | None
    include_private: bool


def check_search(
    query_embedding: Any, scope_prefix: Any = None, categories: Any = None, metadata_filter: Any = None,
    limit: Any = 10, min_score: Any = 0.0, source: Any = None, include_private: Any = True,
) -> SearchArgs:
    """Check every argument of ``search`` (InvalidArgumentError, or
    InvalidScopeError for the prefix)."""
    q = query_bytes(query_embedding)
    lim = check_limit(limit)
    ms = check_min_score(min_score)
    prefix = normalize_prefix(scope_prefix)
    cats = check_str_list(categories, "categories")
    mf = check_metadata_filter(metadata_filter)
    src = check_source(source)
    return SearchArgs(q, prefix, cats or None, mf, lim, ms, src, bool(include_private))


class DeleteArgs(NamedTuple):
    """A delete's checked criteria (None: not given)."""

    prefix: str | None
    categories: list[str] | None
    ids: list[str] | None  # [] selects nothing
    older_than: str | None  # stored form
    metadata_filter: str | None  # JSON text


def check_delete(
    scope_prefix: Any = None, categories: Any = None, record_ids: Any = None, older_than: Any = None,
    metadata_filter: Any = None,
) -> DeleteArgs:
    """Check every criterion of ``delete`` (InvalidArgumentError, or
    InvalidScopeError for the prefix)."""
    prefix = normalize_prefix(scope_prefix)
    cats = check_str_list(categories, "categories")
    ids = check_str_list(record_ids, "record_ids")
    cutoff = None if older_than is None else fmt_dt(older_than, "older_than", InvalidArgumentError)
    mf = check_metadata_filter(metadata_filter)
    return DeleteArgs(prefix, cats or None, ids, cutoff, mf)


# ---------------------------------------------------------------------------
# records


# raw scope string -> canonical scope (saves re-validating the same few scopes).
_scopes: dict[str, str] = {}


def _scope_of(raw: Any, rid: str) -> str:
    scope = _scopes.get(raw) if type(raw) is str else None
    if scope is None:
        scope = normalize_scope(raw)
        if len(scope) > MAX_KEY_BYTES // 4 and len(scope.encode("utf-8")) > MAX_KEY_BYTES:
            raise InvalidScopeError(
                f"record {rid}: scope is {len(scope.encode('utf-8'))} bytes, over the {MAX_KEY_BYTES} byte limit"
            )
        if type(raw) is str:
            if len(_scopes) >= 4096:
                _scopes.clear()
            _scopes[raw] = scope
    return scope


def _importance(value: Any, rid: str) -> float:
    if type(value) is not float and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise InvalidRecordError(f"record {rid}: importance must be a number in [0, 1], got {value!r}")
    f = float(value)
    if not 0.0 <= f <= 1.0:  # NaN fails too
        raise InvalidRecordError(f"record {rid}: importance must be in [0, 1], got {value!r}")
    return f


def to_row(record: Any, check_vector: bool = True, vec: Any = None) -> Row:
    """Validate a MemoryRecord and return its stored form (``check_vector``
    False leaves the NaN/Inf check to the native engine). ``vec``: the
    record's embedding already converted (``to_rows``' batch), or None."""
    try:
        rid = record.id
        content = record.content
        raw_scope = record.scope
        cats = record.categories
        meta = record.metadata
        importance = record.importance
        created, accessed = record.created_at, record.last_accessed
        source = record.source
        private = record.private
        emb = record.embedding
    except AttributeError as e:
        raise InvalidRecordError(f"not a MemoryRecord ({type(record).__name__}): {e}") from None
    if not isinstance(rid, str) or not rid:
        raise InvalidRecordError(f"record id must be a non-empty string, got {rid!r}")
    _check_key(rid, "record id")
    if not isinstance(content, str):
        raise InvalidRecordError(f"record {rid}: content must be a string")
    if len(content) > MAX_CONTENT_BYTES // 4 or len(content) * 4 > MAX_CONTENT_BYTES:
        n = len(content.encode("utf-8", "surrogatepass"))
        if n > MAX_CONTENT_BYTES:
            raise InvalidRecordError(
                f"record {rid}: content is {n} bytes, over the {MAX_CONTENT_BYTES} byte limit"
            )
    _check_text(content, f"record {rid}: content")
    scope = _scope_of(raw_scope, rid)
    if cats is None:
        cats = []
    elif isinstance(cats, (str, bytes, bytearray, Mapping)) or not isinstance(cats, Iterable):
        raise InvalidRecordError(f"record {rid}: categories must be a list of strings, got {cats!r}")
    else:
        cats = list(cats)
    for c in cats:
        if not isinstance(c, str):
            raise InvalidRecordError(f"record {rid}: category {c!r} is not a string")
        _check_key(c, f"record {rid}: category")
    try:
        cats_json = json.dumps(cats, ensure_ascii=False) if cats else "[]"
    except (TypeError, ValueError) as e:  # pragma: no cover - strings always encode
        raise InvalidRecordError(f"record {rid}: categories: {e}") from None
    meta_json = json_object(meta, f"record {rid}: metadata", InvalidRecordError)
    if source is not None:
        if not isinstance(source, str):
            raise InvalidRecordError(f"record {rid}: source must be a string")
        _check_text(source, f"record {rid}: source")
        if source == "":
            source = None  # the Go stores' "no source"
    if not isinstance(private, bool):
        if isinstance(private, int) and private in (0, 1):
            private = bool(private)
        else:
            raise InvalidRecordError(f"record {rid}: private must be a bool, got {private!r}")
    return Row(
        rid,
        content,
        scope,
        cats_json,
        meta_json,
        _importance(importance, rid),
        fmt_dt(created, f"record {rid}: created_at"),
        fmt_dt(accessed, f"record {rid}: last_accessed"),
        source,
        private,
        vec if vec is not None else vector_bytes(emb, f"record {rid}: embedding", check_vector),
        cats,
    )


def to_rows(records: Any, check_vector: bool = True, batch_vectors: bool = False) -> list[Row]:
    """Validate a batch for ``save``: a list (or other iterable) of records.

    ``batch_vectors``: convert the embeddings in one native call when they
    are all lists of floats of one length (their bytes are then memoryview
    slices of one buffer, for a caller that only packs them); anything else
    goes record by record, with the same errors."""
    if records is None:
        return []
    if isinstance(records, (str, bytes, bytearray, Mapping)) or not isinstance(records, Iterable) or (
        hasattr(records, "model_fields") and hasattr(records, "content")
    ):
        raise InvalidRecordError(f"records must be a list of MemoryRecord, got {type(records).__name__}")
    vecs = _batch_vectors(records, check_vector) if batch_vectors and isinstance(records, list) else None
    if vecs is None:
        return [to_row(r, check_vector) for r in records]
    return [to_row(r, check_vector, v) for r, v in zip(records, vecs)]


def _batch_vectors(records: list[Any], check: bool) -> list[memoryview] | None:
    """Every record's embedding converted in one call, or None (then each
    record's is converted with the others' checks, as without the batch)."""
    if len(records) < 2:
        return None
    embs = [getattr(r, "embedding", None) for r in records]
    first = embs[0]
    n = len(first) if type(first) is list else 0
    if not 0 < n <= MAX_DIM or not all(type(e) is list and len(e) == n for e in embs):
        return None
    buf = f32_many(embs, n, check)
    if buf is None:
        return None
    mv = memoryview(buf)
    step = 4 * n
    return [mv[k * step:(k + 1) * step] for k in range(len(embs))]


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
