"""The PostgreSQL + pgvector server the Postgres tests run against.

``server_dsn()`` returns CREWCORE_PG_DSN when set, else starts (idempotently)
the repository's test server with tools/pgctl.py (``make pg-up``). Without a
server the tests skip with a loud message, except under CI (CI=true), where
.ci/run guarantees one and a missing server is a failure.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
import subprocess
import sys
from typing import Any

import pytest

from conftest import Engine

REPO = Path(__file__).resolve().parent.parent
PGCTL = REPO / "tools" / "pgctl.py"

_dsn: str | None = None
_why: str | None = None


def pgctl(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """Run tools/pgctl.py; return its last stdout line (the DSN for ``up``)."""
    e = dict(os.environ)
    e.update(env or {})
    proc = subprocess.run([sys.executable, str(PGCTL), *args], capture_output=True, text=True,
                          timeout=timeout, env=e)
    if proc.returncode != 0:
        raise RuntimeError(f"pgctl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def server_dsn() -> str:
    """The test server's DSN, or skip (loudly) / fail under CI."""
    global _dsn, _why
    if _dsn is None and _why is None:
        env = os.environ.get("CREWCORE_PG_DSN")
        if env:
            _dsn = env
        else:
            try:
                _dsn = pgctl("up")
            except Exception as e:  # noqa: BLE001 - any failure means no server
                _why = str(e)
    if _dsn:
        return _dsn
    msg = (
        "\n" + "!" * 78 + "\n!!! NO POSTGRESQL SERVER: the Postgres tests cannot run.\n"
        f"!!! {_why}\n!!! Run `make pg-up` (pgserver wheel in .venv) or set CREWCORE_PG_DSN.\n" + "!" * 78
    )
    sys.stderr.write(msg + "\n")
    if os.environ.get("CI"):
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def schema_for(path: Any) -> str:
    """A schema name per test path (the conformance suite passes directories)."""
    return "py_" + hashlib.sha1(os.fspath(path).encode()).hexdigest()[:20]


def drop_schema(dsn: str, schema: str) -> None:
    from crewcore._bridge import call

    call(["pg_drop_schema", 0, dsn, schema])


class PgEngine(Engine):
    """The conformance suite's engine factory for the Postgres store: each
    path is a schema of the test server."""

    def __init__(self, dsn: str) -> None:
        super().__init__("postgres")
        self.dsn = dsn
        self.schemas: set[str] = set()

    def __call__(self, path: Any, **kw: Any) -> Any:
        from crewcore import MemoryStorage

        kw.pop("engine", None)
        schema = schema_for(path)
        self.schemas.add(schema)
        st = MemoryStorage(dsn=self.dsn, schema=schema, **kw)
        assert st.backend == "postgres"
        self.opened.append(st)
        return st

    def close_all(self) -> None:
        super().close_all()
        for s in self.schemas:
            drop_schema(self.dsn, s)
        self.schemas.clear()
