"""The memory conformance suite (tests/test_conformance.py) against the
PostgreSQL + pgvector store: ``MemoryStorage(dsn=..., schema=...)``, one
schema per test path, on the server of pg_support.server_dsn().

Every test of the suite runs here except those about things a Postgres store
does not have (listed in EXCLUDED with the reason).
"""

from __future__ import annotations

from typing import Iterator

import pytest

from pg_support import PgEngine, server_dsn
import test_conformance as suite

EXCLUDED = {
    # Files: a Postgres store is addressed by a DSN and a schema, not a path.
    "test_path_forms": "file path forms",
    # Two SQLite libraries in one process: no SQLite here.
    "test_engine_guard_one_file_one_sqlite_library": "SQLite library guard",
}

for _name in dir(suite):
    if _name.startswith("test_") and _name not in EXCLUDED:
        globals()[_name] = getattr(suite, _name)


@pytest.fixture
def engine() -> Iterator[PgEngine]:
    e = PgEngine(server_dsn())
    try:
        yield e
    finally:
        e.close_all()


@pytest.fixture
def cc_engine() -> Iterator[PgEngine]:
    e = PgEngine(server_dsn())
    try:
        yield e
    finally:
        e.close_all()
