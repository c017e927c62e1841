"""crewcore: a Go engine for CrewAI.

    import crewcore
    crewcore.install()      # CrewAI's Memory now stores through crewcore

See README.md and docs/architecture.md.
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
    PgVectorMissingError,
    RecordNotFoundError,
    StoreAccessError,
    StoreClosedError,
    StoreCorruptError,
    StoreTimeoutError,
    StoreUnavailableError,
)
from crewcore.storage import MemoryStorage

__version__ = "0.1.0"

__all__ = [
    "CrewcoreError",
    "EngineError",
    "InvalidArgumentError",
    "InvalidRecordError",
    "InvalidScopeError",
    "MemoryStorage",
    "PgVectorMissingError",
    "RecordNotFoundError",
    "StoreAccessError",
    "StoreClosedError",
    "StoreCorruptError",
    "StoreTimeoutError",
    "StoreUnavailableError",
    "__version__",
    "backend",
    "install",
    "uninstall",
]
