"""The C bridge: exported symbols, panics, the GIL, lazy loading, packaging."""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import subprocess
import sys
import threading
import zipfile

import pytest

import crewcore
from crewcore import _bridge as _native
from crewcore import errors as E

ROOT = Path(__file__).resolve().parent.parent


def test_only_the_bridge_is_exported() -> None:
    """The bundled SQLite must not be visible to the host process (Python's own
    sqlite3 loads libsqlite3 too); only the crewcore_* entry points are."""
    nm = shutil.which("nm")
    if nm is None:
        pytest.fail("nm (binutils) is needed to inspect the shared library")
    out = subprocess.run(
        [nm, "-D", "--defined-only", str(_native.library_path())],
        capture_output=True, text=True, check=True,
    ).stdout
    names = {line.split()[-1] for line in out.splitlines() if line.strip()}
    assert {"crewcore_call", "crewcore_free"} <= names
    assert not [n for n in names if "sqlite" in n.lower()], "SQLite symbols leak"
    exported = ("crewcore_call", "crewcore_free", "crewcore_count", "crewcore_tool_begin", "crewcore_f32_list",
                "crewcore_f32_lists")
    assert not [n for n in names if n.startswith("crewcore_") and n not in exported]


def test_go_panic_becomes_engine_error(tmp_path: Path) -> None:
    s = crewcore.MemoryStorage(tmp_path / "p.db", engine="native")
    try:
        h = s._e()._h
        with pytest.raises(E.EngineError, match="panic"):
            _native.call(["panic", h])
        # The engine is still usable after a recovered panic.
        assert s.count() == 0
    finally:
        s.close()


def test_bad_requests_are_typed_errors() -> None:
    with pytest.raises(E.EngineError, match="unknown op"):
        _native.call(["no-such-op", 1])
    with pytest.raises(E.StoreClosedError):
        _native.call(["count", 987654321, None])


def test_gil_is_released_during_calls(tmp_path: Path) -> None:
    """While one thread is inside a long native call, another thread runs.

    With the GIL held for the call (ctypes.PyDLL), the main thread could not
    run at all between the worker entering and leaving the call."""
    import numpy as np
    from crewai.memory.types import MemoryRecord

    s = crewcore.MemoryStorage(tmp_path / "g.db", engine="native", exact=True)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4000, 1536)).astype(np.float32)
    s.save([MemoryRecord(content="x", embedding=x[i].tolist()) for i in range(len(x))])
    q = x[0].tolist()
    entered = threading.Event()
    done = threading.Event()

    def worker() -> None:
        entered.set()
        for _ in range(40):  # exact scans of 24 MB each
            s.search(q, limit=5)
        done.set()

    t = threading.Thread(target=worker)
    t.start()
    entered.wait()
    spins = 0
    while not done.is_set():
        spins += 1
    t.join()
    s.close()
    assert spins > 1000, f"main thread ran only {spins} loop iterations during native calls"


def test_library_loads_lazily() -> None:
    code = (
        "import crewcore, crewcore._bridge as n; "
        "print(n._lib is None); crewcore.backend(); print(n._lib is None)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, CREWAI_DISABLE_TELEMETRY="true"))
    assert out.stdout.split() == ["True", "False"], out.stderr


@pytest.mark.slow
def test_pip_builds_the_library(tmp_path: Path) -> None:
    """`pip install .` (here: building the wheel) compiles libcrewcore.so and
    the crewcore command into the package."""
    src = tmp_path / "src"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(src)], check=True)
    # Include uncommitted changes of the files that matter for the build.
    for rel in ("setup.py", "pyproject.toml"):
        shutil.copy(ROOT / rel, src / rel)
    wheels = tmp_path / "wheels"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(src)],
        capture_output=True, text=True, timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = wheels.glob("crewcore-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "crewcore/_lib/libcrewcore.so" in names
    assert "crewcore/_lib/crewcore" in names


def test_crewcore_command_on_venv_path(tmp_path: Path) -> None:
    """Installing the package puts the Go `crewcore` command beside python."""
    exe = Path(sys.executable).parent / "crewcore"
    assert exe.exists(), f"{exe} missing: the console script was not installed"
    r = subprocess.run([str(exe), "help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "mockllm" in r.stderr and "memory" in r.stderr
    s = crewcore.MemoryStorage(tmp_path / "cli.db", engine="native")
    from crewai.memory.types import MemoryRecord

    s.save([MemoryRecord(content="hello", scope="/crew/x", embedding=[1.0, 0.0])])
    s.close()
    r = subprocess.run([str(exe), "memory", "stats", "--path", str(tmp_path / "cli.db"), "--json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    import json

    assert json.loads(r.stdout)["records"] == 1
