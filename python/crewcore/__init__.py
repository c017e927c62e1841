"""crewcore: a Go engine for CrewAI.

    import crewcore
    crewcore.install()      # CrewAI's Memory now stores through crewcore

See README.md and docs/architecture.md. One subpackage per capability, named
like its Go package: ``memory``, ``storage`` (locks, task outputs, flow state),
``tools``, ``runs``; the bridge to the Go library is ``_bridge``, the engine
choice ``_backend``, the exceptions ``errors``.
"""

from __future__ import annotations

from crewcore._backend import backend
from crewcore._install import install, uninstall
from crewcore.errors import (
    CrewcoreError,
    EngineError,
    InvalidArgumentError,
    InvalidRecordError,
    InvalidScopeError,
    LockTimeoutError,
    PgVectorMissingError,
    RecordNotFoundError,
    StoreAccessError,
    StoreClosedError,
    StoreCorruptError,
    StoreTimeoutError,
    StorageFullError,
    StoreUnavailableError,
)
from crewcore.memory import MemoryStorage
from crewcore.tools import ToolPolicy, guard, tool_stats
from crewcore.errors import (
    ToolArgumentsError,
    ToolFileNotFoundError,
    ToolPolicyError,
    ToolRefusedError,
    ToolTimeoutError,
)
from crewcore.runs import (
    AsyncManyHandle,
    ManyHandle,
    ManyResults,
    RunFailure,
    RunSummary,
    akickoff_many,
    astart_many,
    kickoff_many,
    start_many,
)
from crewcore.errors import RunFailedError, SchedulerClosedError, WorkerProcessError
# The embedding layer's, the knowledge store's and the durable run queue's errors.
from crewcore.errors import (
    CollectionNotFoundError,
    CrewFactoryError,
    EmbeddingAPIError,
    EmbeddingCacheError,
    EmbeddingClosedError,
    EmbeddingConnectionError,
    EmbeddingDimensionError,
    EmbeddingError,
    EmbeddingRateLimitError,
    EmbeddingResponseError,
    EmbeddingServerError,
    EmbeddingTimeoutError,
    KeywordSearchUnavailableError,
    KnowledgeDimensionError,
    KnowledgeDocumentError,
    QueueAccessError,
    QueueClosedError,
    QueueCorruptError,
    QueueError,
    QueueNotFoundError,
    QueueUnavailableError,
    RunNotFoundError,
    WorkerStartError,
)

# Importing a CrewAI LanceDB memory (crewcore/memory/lancedb_import.py; `crewcore memory import`).
from crewcore.memory.lancedb_import import ImportSummary, import_lancedb
from crewcore.errors import (
    ImportDimensionError,
    LanceDBMemoryWarning,
    LanceDBNotFoundError,
    LanceDBUnavailableError,
    MemoryImportError,
    NotALanceDBMemoryError,
)

from crewcore._version import __version__

__all__ = [
    "CrewcoreError",
    "EngineError",
    "InvalidArgumentError",
    "InvalidRecordError",
    "InvalidScopeError",
    "LockTimeoutError",
    "StorageFullError",
    "MemoryStorage",
    "PgVectorMissingError",
    "RecordNotFoundError",
    "StoreAccessError",
    "StoreClosedError",
    "StoreCorruptError",
    "StoreTimeoutError",
    "StoreUnavailableError",
    "AsyncManyHandle",
    "ManyHandle",
    "ManyResults",
    "RunFailedError",
    "RunFailure",
    "RunSummary",
    "SchedulerClosedError",
    "WorkerProcessError",
    "akickoff_many",
    "astart_many",
    "kickoff_many",
    "start_many",
    "ToolArgumentsError",
    "ToolFileNotFoundError",
    "ToolPolicy",
    "ToolPolicyError",
    "ToolRefusedError",
    "ToolTimeoutError",
    "guard",
    "tool_stats",
    "CollectionNotFoundError",
    "CrewFactoryError",
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
    "KeywordSearchUnavailableError",
    "KnowledgeDimensionError",
    "KnowledgeDocumentError",
    "QueueAccessError",
    "QueueClosedError",
    "QueueCorruptError",
    "QueueError",
    "QueueNotFoundError",
    "QueueUnavailableError",
    "RunNotFoundError",
    "WorkerStartError",
    "ImportDimensionError",
    "ImportSummary",
    "LanceDBMemoryWarning",
    "LanceDBNotFoundError",
    "LanceDBUnavailableError",
    "MemoryImportError",
    "NotALanceDBMemoryError",
    "import_lancedb",
    "__version__",
    "backend",
    "install",
    "uninstall",
]
