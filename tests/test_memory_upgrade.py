"""Stores written before format version 3 (memory/testdata/formats: a
version 2 store written by the engine at commit 014bf4c, and the same store
in the version 1 schema) open with either engine, are upgraded once with a
backup, and read back every record exactly; the other engine then reads the
upgraded store (issue 14)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, child_env, last_json, run_py

FORMATS = REPO / "memory" / "testdata" / "formats"

_READ = """
    import json, sys
    from crewcore.memory.storage import MemoryStorage
    s = MemoryStorage(sys.argv[1], engine=sys.argv[2])
    out = {"dim": s._e().dim, "count": s.count(), "records": {}}
    for r in s.list_records(limit=1000):
        g = s.get_record(r.id)
        out["records"][r.id] = [g.content, g.scope, g.categories, g.metadata, g.importance,
                                g.created_at.isoformat(), g.last_accessed.isoformat(), g.source,
                                g.private, g.embedding]
    hits = s.search(json.loads(sys.argv[3]), limit=1)
    out["top_score"] = hits[0][1]
    s.close()
    print(json.dumps(out))
"""


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("engine,other", [("native", "python"), ("python", "native")])
def test_old_store_is_upgraded_once_and_reads_back(tmp_path: Path, version: str, engine: str, other: str) -> None:
    want = json.loads((FORMATS / "expected.json").read_text())
    db = tmp_path / "memory.db"
    shutil.copy(FORMATS / version / "memory.db", db)
    query = json.dumps(want["records"][0]["embedding"])
    for reader in (engine, other):  # the first open upgrades; the other engine reads the result
        got = last_json(run_py(_READ, str(db), reader, query, env=child_env()).stdout)
        assert got["dim"] == want["dim"] and got["count"] == len(want["records"]), got
        assert abs(got["top_score"] - 1.0) < 1e-9
        for w in want["records"]:
            g = got["records"][w["id"]]
            assert g == [w["content"], w["scope"], w["categories"], w["metadata"], w["importance"],
                         w["created_at"], w["last_accessed"], w["source"], w["private"], w["embedding"]], w["id"]
    backup = Path(str(db) + f"-{version}-backup")
    assert backup.is_file() and backup.stat().st_size > 0
    assert (tmp_path / "memory.db-seg-000001.vec").is_file()
    chk = subprocess.run([str(REPO / "python" / "crewcore" / "_lib" / "crewcore"), "memory", "check", str(db)],
                         capture_output=True, text=True)
    assert chk.returncode == 0 and "version    3" in chk.stdout, chk.stdout + chk.stderr
