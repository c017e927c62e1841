"""Checks and stored forms shared by both knowledge engines.

Both engines refuse the same input with the same exceptions before anything
is stored (the Go engine checks again on its side): documents must be
non-blank strings of valid UTF-8 without NUL, at most ``MAX_CHUNK_BYTES``
bytes each; embeddings non-empty, finite and of one dimension; collection
names non-empty without control characters.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Iterable, Sequence

from crewcore.errors import InvalidArgumentError, KnowledgeDocumentError

#: The largest chunk stored (8 MiB of UTF-8), as the Go engine's MaxChunkBytes.
MAX_CHUNK_BYTES = 8 << 20
#: The longest collection name (bytes).
MAX_NAME_BYTES = 512
#: Words kept of a keyword query, as the Go engine's MaxQueryTerms.
MAX_QUERY_TERMS = 64
#: Reciprocal-rank fusion's k (the Go engine's DefaultRRFK).
DEFAULT_RRF_K = 60
#: Candidates each ranking hands to the fusion (at least; 2*limit if more).
HYBRID_DEPTH = 50
#: Keyword score under which a match stays out of the fusion (BM25 < 10% of the best).
HYBRID_KEYWORD_FLOOR = 0.55
#: Weight of a chunk's second reciprocal rank in the fusion (a tie-break for agreement).
HYBRID_AGREEMENT = 0.01
MODES = ("vector", "keyword", "hybrid")


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"knowledge collection name must be a non-empty string, got {name!r}")
    try:
        n = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgumentError("knowledge collection name is not valid UTF-8") from None
    if n > MAX_NAME_BYTES:
        raise InvalidArgumentError(f"knowledge collection name of {n} bytes (at most {MAX_NAME_BYTES})")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise InvalidArgumentError(f"knowledge collection name {name!r} has a control character")
    return name


def check_mode(mode: Any) -> str:
    if mode is None or mode == "":
        return "vector"
    if mode not in MODES:
        raise InvalidArgumentError(f"unknown search mode {mode!r} (want vector, keyword or hybrid)")
    return str(mode)


def check_documents(documents: Any) -> list[str]:
    """The documents as a list, each checked (the index is named in errors)."""
    if isinstance(documents, (str, bytes)):
        raise KnowledgeDocumentError("documents must be a list of strings, got a single string")
    docs = list(documents)
    for i, d in enumerate(docs):
        if not isinstance(d, str):
            raise KnowledgeDocumentError(f"document {i} is a {type(d).__name__}, not a string")
        if not d.strip():
            raise KnowledgeDocumentError(f"document {i} is empty")
        nul = d.find("\x00")
        if nul >= 0:
            raise KnowledgeDocumentError(f"document {i} contains a NUL byte at offset {nul}")
        try:
            size = len(d.encode("utf-8"))
        except UnicodeEncodeError as e:
            raise KnowledgeDocumentError(f"document {i} is not valid UTF-8 ({e.reason} at {e.start})") from None
        if size > MAX_CHUNK_BYTES:
            raise KnowledgeDocumentError(
                f"document {i} has {size} bytes, over the {MAX_CHUNK_BYTES}-byte limit of one chunk "
                "(split it, e.g. with a CrewAI knowledge source's chunk_size)"
            )
    return docs


def metadata_text(meta: Any, i: int = 0) -> str:
    """A chunk's metadata as stored: a JSON object ('{}' for None/empty)."""
    if meta is None or meta == {}:
        return "{}"
    if not isinstance(meta, dict):
        raise KnowledgeDocumentError(f"document {i}: metadata must be a dict, got {type(meta).__name__}")
    try:
        return json.dumps(meta, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise KnowledgeDocumentError(f"document {i}: metadata is not JSON-serializable: {e}") from None


def chunk_id(content: str, meta_text: str = "{}") -> str:
    """ChromaDB's document id as CrewAI computes it: SHA-256 of the content,
    or of ``content|json(metadata, sort_keys=True)`` when there is metadata."""
    text = content if meta_text == "{}" else f"{content}|{meta_text}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_vectors(vectors: Sequence[Any], n: int, what: str = "embedding") -> tuple[int, bytes]:
    """(dimension, little-endian float32 bytes of all vectors) after checks."""
    import array

    if len(vectors) != n:
        raise KnowledgeDocumentError(f"the embedder returned {len(vectors)} embeddings for {n} documents")
    dim = -1
    buf = array.array("f")
    for i, v in enumerate(vectors):
        try:
            vals = [float(x) for x in (v.tolist() if hasattr(v, "tolist") else v)]
        except (TypeError, ValueError) as e:
            raise KnowledgeDocumentError(f"document {i}: {what} is not a list of numbers: {e}") from None
        if not vals:
            raise KnowledgeDocumentError(f"document {i} has an empty {what}")
        if dim < 0:
            dim = len(vals)
        elif len(vals) != dim:
            from crewcore.errors import KnowledgeDimensionError

            raise KnowledgeDimensionError(
                f"embedding dimension mismatch inside one batch: {dim} and {len(vals)}", dim, len(vals)
            )
        for j, x in enumerate(vals):
            if not math.isfinite(x):
                raise KnowledgeDocumentError(f"document {i}: {what} component {j} is {x}")
        buf.extend(vals)
    if buf.itemsize != 4:  # pragma: no cover - every CPython platform we ship has 4-byte floats
        raise RuntimeError("array('f') is not float32 here")
    import sys

    if sys.byteorder != "little":  # pragma: no cover
        buf.byteswap()
    return max(dim, 0), buf.tobytes()


def query_vector(v: Any) -> bytes:
    """A query embedding as float32 bytes (checked finite, non-empty)."""
    import array
    import sys

    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy comes with CrewAI
        np = None
    if np is not None:
        try:
            a = np.asarray(v, dtype="<f4")
        except (TypeError, ValueError) as e:
            raise InvalidArgumentError(f"query embedding is not a list of numbers: {e}") from None
        if a.ndim != 1 or a.size == 0:
            raise InvalidArgumentError(f"query embedding must be a non-empty flat list, got shape {a.shape}")
        if not np.isfinite(a).all():
            j = int(np.flatnonzero(~np.isfinite(a))[0])
            raise InvalidArgumentError(f"query embedding component {j} is {a[j]}")
        return a.tobytes()

    try:
        vals = [float(x) for x in (v.tolist() if hasattr(v, "tolist") else v)]
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"query embedding is not a list of numbers: {e}") from None
    if not vals:
        raise InvalidArgumentError("query embedding is empty")
    for j, x in enumerate(vals):
        if not math.isfinite(x):
            raise InvalidArgumentError(f"query embedding component {j} is {x}")
    buf = array.array("f", vals)
    if sys.byteorder != "little":  # pragma: no cover
        buf.byteswap()
    return buf.tobytes()


def filter_text(metadata_filter: Any) -> str:
    """A metadata filter as JSON text ('' for none). Equality on every key;
    ChromaDB's operators ($and, $in, ...) are refused."""
    if not metadata_filter:
        return ""
    if not isinstance(metadata_filter, dict):
        raise InvalidArgumentError(f"metadata_filter must be a dict, got {type(metadata_filter).__name__}")
    for k in metadata_filter:
        if not isinstance(k, str):
            raise InvalidArgumentError(f"metadata_filter key {k!r} is not a string")
        if k.startswith("$"):
            raise InvalidArgumentError(
                f"metadata_filter operator {k!r} is not supported: give key/value pairs, all of which must be equal"
            )
    try:
        return json.dumps(metadata_filter, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"metadata_filter is not JSON-serializable: {e}") from None


def fts_query(text: str) -> str:
    """Free text -> FTS5 query, exactly as the Go engine's FTSQuery: every
    whitespace-separated word with a letter or digit becomes a quoted phrase,
    joined by OR; at most MAX_QUERY_TERMS distinct words; NUL is whitespace."""
    parts: list[str] = []
    seen: set[str] = set()
    for w in text.replace("\x00", " ").split():
        if w in seen or not any(c.isalpha() or c.isnumeric() for c in w):
            continue
        seen.add(w)
        parts.append('"' + w.replace('"', '""') + '"')
        if len(parts) == MAX_QUERY_TERMS:
            break
    return " OR ".join(parts)


def json_equal(a: Any, b: Any) -> bool:
    """JSON value equality as the Go engine's: numbers by value (1 == 1.0),
    booleans only equal booleans."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def matches(meta: dict[str, Any] | None, flt: dict[str, Any]) -> bool:
    m = meta or {}
    return all(k in m and json_equal(m[k], v) for k, v in flt.items())


def cos_score(cos: float) -> float:
    """ChromaDB's cosine score as CrewAI converts it: 1 - d/2, d = 1 - cos."""
    return min(1.0, max(0.0, 0.5 + 0.5 * cos))


def batched(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
