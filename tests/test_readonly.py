"""A store in a read-only directory: an existing store opens read-only (reads
served, writes refused with a StoreAccessError naming the file), a new one
cannot be created (a clear StoreAccessError), nothing is lost.

Tests run as root in CI, where chmod does not stop writes; a read-only bind
mount does. Without root, chmod 0555 is used.
"""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys

import pytest

from conftest import read_only  # type: ignore[import-not-found]
import crewcore
from crewcore import errors as E


def _can_mount() -> bool:
    if os.geteuid() != 0:
        return True  # chmod path
    probe = Path("/proc/self/mountinfo")
    return probe.exists() and subprocess.run(["which", "mount"], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not _can_mount(), reason="LOUD SKIP: no way to make a read-only directory here")


def _run(engine: str, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CREWAI_DISABLE_TELEMETRY="true", OTEL_SDK_DISABLED="true")
    if engine == "python":
        env["CREWCORE_FORCE_PYTHON"] = "1"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120
    )


_WRITE = """
import sys, crewcore
from crewai.memory.types import MemoryRecord
s = crewcore.MemoryStorage(sys.argv[1])
s.save([MemoryRecord(id=f"r{i}", content=f"c{i}", embedding=[float(i), 1.0]) for i in range(5)])
s.close()
"""

_OPEN = """
import sys, crewcore
from crewcore import errors as E
try:
    s = crewcore.MemoryStorage(sys.argv[1])
    print("OPENED", s.count())
except E.StoreAccessError as e:
    print("ACCESS", e)
except Exception as e:
    print("OTHER", type(e).__name__, e)
"""


_READ = """
import sys, crewcore
from crewcore import errors as E
from crewai.memory.types import MemoryRecord
s = crewcore.MemoryStorage(sys.argv[1])
print("BACKEND", s.backend)
print("READ_ONLY", s.read_only)
print("FOUND", " ".join(r.id for r, _ in s.search([3.0, 1.0], limit=2)))
print("GOT", s.get_record("r2").content)
rec = MemoryRecord(id="new", content="new", embedding=[9.0, 1.0])
writes = {
    "save": lambda: s.save([rec]), "update": lambda: s.update(MemoryRecord(id="r1", content="x", embedding=[1.0, 1.0])),
    "delete": lambda: s.delete(record_ids=["r1"]), "reset": lambda: s.reset(),
    "touch": lambda: s.touch_records(["r1"]), "optimize": lambda: s.optimize(),
}
for op, fn in writes.items():
    try:
        fn()
        print(op, "WROTE")
    except E.StoreAccessError as e:
        print(op, "ACCESS", e)
print("COUNT", s.count())
"""


@pytest.mark.parametrize("engine", ["native", "python"])
def test_read_only_directory(tmp_path: Path, engine: str) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    w = _run(engine, _WRITE, str(existing))
    assert w.returncode == 0, w.stderr
    before = sorted(os.listdir(existing))
    with read_only(existing), read_only(fresh):
        # A new store cannot be created in a read-only directory.
        r = _run(engine, _OPEN, str(fresh / "memory.db"))
        assert r.stdout.startswith("ACCESS"), r.stdout + r.stderr
        assert str(fresh) in r.stdout
        # An existing store opens read-only (issue 12 item 2): SQLite cannot
        # create its -shm/-wal beside it, so it reads the file alone.
        r = _run(engine, _OPEN, str(existing))
        assert r.stdout.strip() == "OPENED 5", r.stdout + r.stderr
        r = _run(engine, _READ, str(existing))
        db = str(existing / "memory.db")
        lines = r.stdout.splitlines()
        assert lines[:4] == [f"BACKEND {engine}", "READ_ONLY True", "FOUND r3 r4", "GOT c2"], r.stdout + r.stderr
        # Every write is refused with a StoreAccessError naming the file.
        for op in ("save", "update", "delete", "reset", "touch", "optimize"):
            line = next((x for x in lines if x.startswith(op + " ")), "")
            assert line.startswith(f"{op} ACCESS "), r.stdout + r.stderr
            assert db in line and "read-only" in line, line
        assert lines[-1] == "COUNT 5", r.stdout + r.stderr
        assert sorted(os.listdir(existing)) == before  # nothing created or removed beside it
    # Nothing was lost, and the store is writable again.
    r = _run(engine, _OPEN, str(existing))
    assert r.stdout.strip() == "OPENED 5", r.stdout + r.stderr
    r = _run(engine, _WRITE, str(existing))
    assert r.returncode == 0, r.stderr


def test_access_error_is_permission_error() -> None:
    assert issubclass(E.StoreAccessError, PermissionError)
    assert issubclass(E.StoreAccessError, crewcore.CrewcoreError)


def _cli() -> str:
    from crewcore import _cli

    exe = _cli.executable()
    if not exe.exists():
        pytest.fail(f"the crewcore command is not built ({exe}): run make build")
    return str(exe)


def test_cli_on_read_only_store(tmp_path: Path) -> None:
    """`crewcore memory` inspects a store in a read-only directory; a command
    that writes it fails with one line naming the file."""
    existing = tmp_path / "existing"
    existing.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    for d in (existing, other):
        w = _run("native", _WRITE, str(d))
        assert w.returncode == 0, w.stderr
    exe = _cli()
    db = str(existing / "memory.db")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, "memory", *args], capture_output=True, text=True, timeout=120)

    with read_only(existing):
        r = cli("stats", "--json", "--path", str(existing))
        assert r.returncode == 0, r.stderr
        assert '"records": 5' in r.stdout and '"read_only": true' in r.stdout, r.stdout
        r = cli("search", "--path", str(existing), "--vector", "[3, 1]", "--limit", "2", "--json")
        assert r.returncode == 0, r.stderr
        assert '"id": "r3"' in r.stdout and '"id": "r4"' in r.stdout, r.stdout
        r = cli("scopes", "--path", str(existing))
        assert r.returncode == 0 and r.stdout.startswith("/ (5)"), r.stdout + r.stderr
        r = cli("check", str(existing))
        assert r.returncode == 0, r.stdout + r.stderr
        # A write: one clear line naming the file, no panic or traceback.
        r = cli("migrate", "--from", str(other), "--to", str(existing))
        assert r.returncode == 1, r.stdout + r.stderr
        err = r.stderr.strip().splitlines()
        assert len(err) == 1 and db in err[0] and "read-only" in err[0], r.stderr
    r = _run("native", _OPEN, str(existing))
    assert r.stdout.strip() == "OPENED 5", r.stdout + r.stderr
