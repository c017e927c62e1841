"""Typed errors raised by crewcore.

Every error crewcore raises on bad input or a failing store is a subclass of
:class:`CrewcoreError`, and also of the builtin that best describes it, so code
that already catches ``ValueError`` or ``LookupError`` keeps working. A wrong
embedding dimension raises CrewAI's own ``EmbeddingDimensionMismatchError``.
"""

from __future__ import annotations


class CrewcoreError(Exception):
    """Base class of every crewcore error."""


class InvalidRecordError(CrewcoreError, ValueError):
    """A record cannot be stored: NaN/Inf in its vector, content too large,
    text that is not valid UTF-8, metadata that is not JSON-serializable."""


class InvalidScopeError(CrewcoreError, ValueError):
    """A scope path contains a `.`/`..` segment or a control character."""


class InvalidArgumentError(CrewcoreError, ValueError):
    """An argument is out of range (a negative limit or offset, a bad option)."""


class RecordNotFoundError(CrewcoreError, LookupError):
    """``update()`` named a record id that is not in the store."""


class StoreCorruptError(CrewcoreError):
    """The file at the store path is not a crewcore memory store (corrupt or foreign)."""


class StoreAccessError(CrewcoreError, PermissionError):
    """The store path cannot be created or written (read-only directory or file)."""


class StoreTimeoutError(CrewcoreError, TimeoutError):
    """The database stayed locked by another process past the deadline."""


class StoreClosedError(CrewcoreError):
    """A call on a store that was closed."""


class StoreUnavailableError(CrewcoreError, ConnectionError):
    """The PostgreSQL server could not be reached, or kept failing with
    transient errors, past the retry deadline (the call may be repeated)."""


class PgVectorMissingError(CrewcoreError):
    """The PostgreSQL server has no pgvector extension (or it cannot be created)."""


class LockTimeoutError(CrewcoreError, TimeoutError):
    """A named lock was still held by another thread or process at the
    deadline (the message names the lock and its lock file)."""


class StorageFullError(CrewcoreError, OSError):
    """A write was refused for lack of space (disk full, quota, file size limit)."""


class ToolPolicyError(CrewcoreError, ValueError):
    """A ToolPolicy (or guard() option) with a nonsensical value, reported at install time."""


class ToolArgumentsError(CrewcoreError, ValueError):
    """Tool arguments that cannot be encoded: not JSON-serializable, recursive, too deep."""


class ToolRefusedError(CrewcoreError, PermissionError):
    """A built-in tool refused a request: a private address, a path outside its root."""


class ToolTimeoutError(CrewcoreError, TimeoutError):
    """A built-in (Go-native) tool passed its deadline and was cancelled."""


class ToolFileNotFoundError(CrewcoreError, FileNotFoundError):
    """The file or directory a built-in file tool was asked for does not exist."""


class EngineError(CrewcoreError):
    """An internal failure of the engine (for example a recovered Go panic)."""


class SchedulerClosedError(CrewcoreError):
    """A call on a run scheduler (kickoff_many batch) that was closed."""


class WorkerProcessError(CrewcoreError):
    """``kickoff_many(..., processes=N)``: a worker process died (killed,
    crashed) while it held a run, or a run's result or exception could not
    be sent from the worker process to the parent."""


class RunFailedError(CrewcoreError):
    """``kickoff_many(..., on_error="raise")``: a run failed, so the rest was
    cancelled. ``.failure`` is the first RunFailure, ``.results`` every result."""

    def __init__(self, failure: object, results: object) -> None:
        super().__init__(
            f"run {getattr(failure, 'index', '?')} failed: "
            f"{getattr(failure, 'error_type', '')}: {getattr(failure, 'message', '')}"
        )
        self.failure = failure
        self.results = results


class EmbeddingError(CrewcoreError):
    """An embedding call failed. The message names the provider, the model,
    the last HTTP status (``.status``, None when no answer came) and how many
    attempts were made within the call's deadline."""

    @property
    def status(self) -> int | None:
        import re

        m = re.search(r"\bHTTP (\d{3})\b", str(self))
        return int(m.group(1)) if m else None


class EmbeddingAPIError(EmbeddingError):
    """The provider refused the request (a non-retryable status: 400, 401, 403, 404...)."""


class EmbeddingRateLimitError(EmbeddingAPIError):
    """The provider kept answering 429 (rate limit) past the retries or the deadline."""


class EmbeddingServerError(EmbeddingAPIError):
    """The provider kept answering 5xx (or 408/409) past the retries or the deadline."""


class EmbeddingTimeoutError(EmbeddingError, TimeoutError):
    """No answer from the provider within the call's deadline."""


class EmbeddingConnectionError(EmbeddingError, ConnectionError):
    """The provider could not be reached, or closed connections without answering, past the retries."""


class EmbeddingDimensionError(EmbeddingError, ValueError):
    """The provider returned vectors of another length than configured (or first seen), past the retries."""


class EmbeddingResponseError(EmbeddingError):
    """The provider's answer was not a valid embeddings response, past the retries."""


class EmbeddingClosedError(EmbeddingError):
    """A call on an embedder or embedding cache that was closed."""


class EmbeddingCacheError(EmbeddingError):
    """The embedding cache could not be read or written (stats or clear asked for it explicitly)."""


class KnowledgeDocumentError(CrewcoreError, ValueError):
    """A knowledge document (chunk) that cannot be stored: empty, a NUL byte,
    not UTF-8, over the 8 MiB chunk limit, or an embedding that is empty or
    has NaN/Inf. The whole batch is refused; nothing of it is stored."""


class KnowledgeDimensionError(CrewcoreError, ValueError):
    """An embedding whose dimension differs from its knowledge collection's
    (CrewAI's KnowledgeStorage reports the same case as a ValueError whose
    message says "Embedding dimension mismatch"). ``.stored_dim``, ``.new_dim``."""

    def __init__(self, message: str, stored_dim: int = 0, new_dim: int = 0) -> None:
        super().__init__(message)
        self.stored_dim = stored_dim
        self.new_dim = new_dim


class CollectionNotFoundError(CrewcoreError, LookupError):
    """A search of a knowledge collection that does not exist (or was reset
    during the search)."""


class KeywordSearchUnavailableError(CrewcoreError, RuntimeError):
    """Keyword or hybrid knowledge search without SQLite FTS5 in this engine
    (vector search still works; chunks stored meanwhile are indexed later)."""


class QueueError(CrewcoreError):
    """A durable run queue (``crewcore.runs.submit``, ``Queue``, ``Worker``)
    failed; the subclasses say how. The message names the queue."""


class QueueNotFoundError(QueueError, FileNotFoundError):
    """The queue does not exist: a SQLite queue file's directory is missing,
    or a PostgreSQL database of that name does not exist."""


class QueueAccessError(QueueError, PermissionError):
    """The queue cannot be written: a read-only file or directory, or
    PostgreSQL refused the login or the privileges."""


class QueueUnavailableError(QueueError, ConnectionError):
    """The queue's PostgreSQL server cannot be reached (down, refused, timed
    out), or a SQLite queue stayed locked past the busy timeout."""


class QueueCorruptError(QueueError):
    """The queue file is not SQLite, or is another application's SQLite
    database (tables but no River migrations); it was left untouched."""


class QueueClosedError(QueueError):
    """A call on a ``Queue`` that was closed."""


class RunNotFoundError(QueueError, LookupError):
    """No run with that id in the queue."""


class CrewFactoryError(InvalidArgumentError):
    """A queued crew names a factory (``"package.module:function"``) that
    cannot be imported or called here. Raised by ``submit`` before anything
    is queued; a worker that cannot import it fails the run with this
    message instead (no retry)."""


class WorkerStartError(CrewcoreError):
    """``crewcore.runs.Worker`` could not start the ``crewcore worker``
    command (missing binary, bad arguments, a Python process that would not
    start); the message carries the command's own words."""


class MemoryImportError(CrewcoreError):
    """An import of a CrewAI LanceDB memory (``crewcore.import_lancedb``,
    ``crewcore memory import``) could not run; the subclasses say why. The
    LanceDB files are only read, and the store keeps every record it held."""


class LanceDBNotFoundError(MemoryImportError, FileNotFoundError):
    """The LanceDB memory to import does not exist (the message names the path)."""


class NotALanceDBMemoryError(MemoryImportError, ValueError):
    """The path to import is not a CrewAI LanceDB memory: a file, a directory
    without CrewAI's ``memories`` table, a table without CrewAI's columns, or
    a table LanceDB cannot read."""


class ImportDimensionError(MemoryImportError, ValueError):
    """The LanceDB memory's embeddings have another dimension than the ones
    the target store holds; nothing was imported. ``.stored_dim``, ``.new_dim``."""

    def __init__(self, message: str, stored_dim: int = 0, new_dim: int = 0) -> None:
        super().__init__(message)
        self.stored_dim = stored_dim
        self.new_dim = new_dim


class LanceDBUnavailableError(MemoryImportError, ImportError):
    """Reading a LanceDB memory needs the ``lancedb`` package, which cannot be
    imported (CrewAI installs it)."""


class LanceDBMemoryWarning(UserWarning):
    """``crewcore.install()`` found CrewAI's LanceDB memory holding records
    while the crewcore store that replaces it is empty (said once per process;
    the message names both paths and the import command)."""


def dimension_error(stored: int, new: int) -> Exception:
    """CrewAI's ``EmbeddingDimensionMismatchError(stored, new)`` (a ValueError):
    the error CrewAI's own stores raise, so callers catch one type."""
    from crewai.memory.storage.backend import EmbeddingDimensionMismatchError

    return EmbeddingDimensionMismatchError(stored, new)


__all__ = [
    "MemoryImportError",
    "LanceDBNotFoundError",
    "NotALanceDBMemoryError",
    "ImportDimensionError",
    "LanceDBUnavailableError",
    "LanceDBMemoryWarning",
    "QueueError",
    "QueueNotFoundError",
    "QueueAccessError",
    "QueueUnavailableError",
    "QueueCorruptError",
    "QueueClosedError",
    "RunNotFoundError",
    "CrewFactoryError",
    "WorkerStartError",
    "LockTimeoutError",
    "StorageFullError",
    "CollectionNotFoundError",
    "KeywordSearchUnavailableError",
    "KnowledgeDimensionError",
    "KnowledgeDocumentError",
    "CrewcoreError",
    "EngineError",
    "ToolArgumentsError",
    "ToolFileNotFoundError",
    "ToolPolicyError",
    "ToolRefusedError",
    "ToolTimeoutError",
    "InvalidArgumentError",
    "InvalidRecordError",
    "InvalidScopeError",
    "PgVectorMissingError",
    "RecordNotFoundError",
    "RunFailedError",
    "SchedulerClosedError",
    "WorkerProcessError",
    "StoreAccessError",
    "StoreClosedError",
    "StoreCorruptError",
    "StoreTimeoutError",
    "StoreUnavailableError",
    "EmbeddingAPIError",
    "EmbeddingCacheError",
    "EmbeddingClosedError",
    "EmbeddingConnectionError",
    "EmbeddingDimensionError",
    "EmbeddingError",
    "EmbeddingRateLimitError",
    "EmbeddingResponseError",
    "EmbeddingServerError",
    "EmbeddingTimeoutError",
]
