"""The native engine's index snapshot (``memory.db-index``, memory/snapshot.go)
through the Python package: a process that exits without closing its store
still leaves the snapshot (the package writes it at exit), the next process
opens from it, and the store answers the same as when loaded from SQLite.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import crewcore
from conftest import child_env, last_json, run_py

pytestmark = pytest.mark.skipif(crewcore.backend() != "native", reason="the snapshot is the native engine's")

N = 2100  # over the engine's snapshotMin (2000)

WRITE = """
import sys, random
from datetime import datetime
from crewai.memory.types import MemoryRecord
from crewcore import MemoryStorage
rnd = random.Random(5)
s = MemoryStorage(sys.argv[1])
s.save([MemoryRecord(id=f"r{i}", content=f"fact {i}", scope=f"/crew/a{i % 7}", categories=[f"c{i % 5}"],
                     importance=0.5, created_at=datetime(2026, 1, 1), last_accessed=datetime(2026, 1, 1),
                     embedding=[rnd.uniform(-1, 1) for _ in range(8)]) for i in range(int(sys.argv[2]))])
print("{}")
"""  # exits without close()

READ = """
import sys, json, os
from crewcore import MemoryStorage
s = MemoryStorage(sys.argv[1])
hits = s.search([0.5, -0.2, 0.1, 0.9, -0.7, 0.3, 0.0, 0.4], limit=5)
print(json.dumps({"count": s.count(), "scopes": s.list_scopes("/crew"), "cats": s.list_categories(),
                  "hits": [[r.id, round(score, 6)] for r, score in hits]}))
"""


def _read(db: Path) -> dict:
    return last_json(run_py(READ, str(db), env=child_env()).stdout)


def test_exit_without_close_leaves_the_snapshot(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    run_py(WRITE, str(db), str(N), env=child_env())
    snap = Path(str(db) + "-index")
    assert snap.exists(), "a process that saved 2,100 records and exited left no index snapshot"
    first = _read(db)  # from the snapshot
    assert first["count"] == N
    snap.unlink()
    from_db = _read(db)  # from SQLite; writes the snapshot again at exit at the latest
    assert snap.exists(), "an open that loaded 2,100 records from SQLite left no snapshot"
    assert first == from_db


def test_small_store_has_no_snapshot(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    run_py(WRITE, str(db), "50", env=child_env())
    assert _read(db)["count"] == 50
    assert not Path(str(db) + "-index").exists()
