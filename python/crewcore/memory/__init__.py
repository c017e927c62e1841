"""The memory store behind CrewAI's ``Memory`` (Go packages ``memory`` and
``pgmemory``).

- :mod:`~crewcore.memory.storage`: ``MemoryStorage``, CrewAI's
  ``StorageBackend``; picks the engine and shares one per file per process.
- :mod:`~crewcore.memory.native`: ``NativeStore``, the Go store through the
  bridge.
- :mod:`~crewcore.memory.fallback`: ``PyStore``, the pure-Python engine over
  the same files, composed of ``fallback_db`` (the SQLite side: file checks,
  connections, write transactions, refresh), ``fallback_state`` (the records
  in memory) and ``fallback_scan`` (the vector scans and filtered selection).
- :mod:`~crewcore.memory.postgres`: ``PgStore``, the PostgreSQL + pgvector
  store (Go package ``pgmemory``).
- :mod:`~crewcore.memory.validate`: input checks and the stored form shared
  by all of them.
"""

from __future__ import annotations

from crewcore.memory.storage import MemoryStorage, default_path, resolve_db_path

__all__ = ["MemoryStorage", "default_path", "resolve_db_path"]
