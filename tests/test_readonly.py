"""A store in a read-only directory: a clear StoreAccessError, nothing lost.

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


@pytest.mark.parametrize("engine", ["native", "python"])
def test_read_only_directory(tmp_path: Path, engine: str) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    w = _run(engine, _WRITE, str(existing))
    assert w.returncode == 0, w.stderr
    with read_only(existing), read_only(fresh):
        # A new store cannot be created in a read-only directory.
        r = _run(engine, _OPEN, str(fresh / "memory.db"))
        assert r.stdout.startswith("ACCESS"), r.stdout + r.stderr
        assert str(fresh) in r.stdout
        # An existing WAL store needs to write its -shm/-wal beside it: a clear
        # error, or a successful read-only open; never a crash or a lost record.
        r = _run(engine, _OPEN, str(existing))
        assert r.stdout.startswith(("ACCESS", "OPENED 5")), r.stdout + r.stderr
    # Nothing was lost.
    r = _run(engine, _OPEN, str(existing))
    assert r.stdout.strip() == "OPENED 5", r.stdout + r.stderr


def test_access_error_is_permission_error() -> None:
    assert issubclass(E.StoreAccessError, PermissionError)
    assert issubclass(E.StoreAccessError, crewcore.CrewcoreError)
