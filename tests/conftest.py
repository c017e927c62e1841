"""Shared fixtures and helpers for the crewcore test suites.

* ``engine``: parametrized over ``native``, ``python`` and ``lancedb``; yields a
  factory ``make(path, **kw)`` that opens a store backend at ``path`` (a
  directory): ``crewcore.MemoryStorage(path, engine=...)`` or CrewAI's own
  ``LanceDBStorage(path=..., compact_every=0)``. Every backend it opened is
  closed at teardown.
* ``lance_defect``: a helper (fixture) for the places where LanceDB's behaviour
  is a known defect: the body asserts crewcore's behaviour; for LanceDB the
  failure is turned into a strict xfail naming the defect, after checking
  LanceDB's actual (different) behaviour, so the difference stays visible and
  the test fails once LanceDB starts behaving correctly.
* record helpers: ``rec()``, ``vec()``, ``unit()``, ``dt()``, ``l2_score()``.
* ``run_py()``: run Python code in a fresh interpreter of this venv.

Within one process Python's sqlite3 (the fallback engine) and the Go engine
never open the same database file: each test uses its own ``tmp_path`` per
engine, and cross-engine reads happen in subprocesses.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
import json
import math
import os
from pathlib import Path
import subprocess
import sys
import textwrap
from typing import Any, Callable, Iterator

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")

import pytest  # noqa: E402

ENGINES = ["native", "python", "lancedb"]
CREWCORE_ENGINES = ["native", "python"]

#: The dimension most tests use.
DIM = 8


# --------------------------------------------------------------------------
# records and vectors


def vec(*values: float, dim: int = DIM) -> list[float]:
    """A vector of ``dim`` floats starting with ``values`` (zero padded)."""
    out = [float(x) for x in values]
    assert len(out) <= dim
    return out + [0.0] * (dim - len(out))


def unit(i: int, dim: int = DIM, scale: float = 1.0) -> list[float]:
    """The i-th basis vector times ``scale``."""
    v = [0.0] * dim
    v[i] = float(scale)
    return v


_T0 = datetime(2024, 5, 17, 12, 30, 45, 123456)


def dt(seconds: float = 0.0) -> datetime:
    """A fixed naive UTC datetime (with microseconds) shifted by ``seconds``."""
    return _T0 + timedelta(seconds=seconds)


def rec(
    rid: str,
    embedding: list[float] | None = None,
    *,
    content: str | None = None,
    scope: str = "/",
    categories: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    importance: float = 0.5,
    created_at: datetime | None = None,
    last_accessed: datetime | None = None,
    source: str | None = None,
    private: bool = False,
    construct: bool = False,
) -> Any:
    """Build a CrewAI ``MemoryRecord``.

    ``construct=True`` skips pydantic validation (for deliberately bad input
    such as an ``object()`` in metadata).
    """
    from crewai.memory.types import MemoryRecord

    fields = dict(
        id=rid,
        content=content if content is not None else f"content of {rid}",
        scope=scope,
        categories=list(categories or []),
        metadata=dict(metadata or {}),
        importance=importance,
        created_at=created_at or datetime.utcnow(),
        last_accessed=last_accessed or created_at or datetime.utcnow(),
        embedding=embedding,
        source=source,
        private=private,
    )
    if construct:
        return MemoryRecord.model_construct(**fields)
    return MemoryRecord(**fields)


def sq_l2(a: list[float], b: list[float]) -> float:
    """Squared L2 distance computed in float32 like the engines."""
    import numpy as np

    x = np.asarray(a, dtype=np.float32)
    y = np.asarray(b, dtype=np.float32)
    d = x - y
    return float(np.dot(d, d))


def l2_score(a: list[float], b: list[float]) -> float:
    """CrewAI/LanceDB's score convention: 1 / (1 + squared L2 distance)."""
    return 1.0 / (1.0 + sq_l2(a, b))


def ids_of(results: list[Any]) -> list[str]:
    """Record ids of search results ``[(record, score)]`` or of records."""
    out = []
    for r in results:
        if isinstance(r, tuple):
            r = r[0]
        out.append(r.id)
    return out


# --------------------------------------------------------------------------
# the engine fixture


class Engine:
    """Factory for one backend kind; call it as ``make(path, **kw)``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.opened: list[Any] = []

    @property
    def is_lance(self) -> bool:
        return self.name == "lancedb"

    def __call__(self, path: str | os.PathLike[str], **kw: Any) -> Any:
        if self.name == "lancedb":
            from crewai.memory.storage.lancedb_storage import LanceDBStorage

            kw.setdefault("compact_every", 0)
            for k in ("metric", "return_embeddings", "engine", "exact"):
                kw.pop(k, None)
            st = LanceDBStorage(path=str(path), **kw)
        else:
            from crewcore import MemoryStorage

            st = MemoryStorage(path, engine=self.name, **kw)
            assert st.backend == self.name
        self.opened.append(st)
        return st

    def close_all(self) -> None:
        for st in reversed(self.opened):
            close = getattr(st, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
        self.opened.clear()

    def __repr__(self) -> str:
        return f"Engine({self.name})"


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    e = Engine(request.param)
    try:
        yield e
    finally:
        e.close_all()


@pytest.fixture(params=CREWCORE_ENGINES)
def cc_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """Only crewcore's own engines (native, python)."""
    e = Engine(request.param)
    try:
        yield e
    finally:
        e.close_all()


# --------------------------------------------------------------------------
# LanceDB defects


class LanceDefectHelper:
    """``with lance_defect(reason, lance=check):`` around assertions of
    crewcore's behaviour.

    For native/python the body simply runs. For lancedb:
    * the body is expected to fail (AssertionError); then ``lance`` (if given)
      is called to assert what LanceDB does instead, and the test ends as a
      strict xfail naming the defect;
    * if the body passes, LanceDB no longer has the defect: the test fails
      (strict xfail semantics), so this file gets updated.
    """

    def __init__(self, engine: Engine | None) -> None:
        self.engine = engine

    @contextlib.contextmanager
    def __call__(self, reason: str, lance: Callable[[], Any] | None = None) -> Iterator[None]:
        if self.engine is None or not self.engine.is_lance:
            yield
            return
        try:
            yield
        except AssertionError as e:
            if lance is not None:
                try:
                    lance()
                except AssertionError as e2:
                    raise AssertionError(
                        f"LanceDB behaves neither as crewcore nor as the recorded defect "
                        f"({reason}): {e2}"
                    ) from e
            pytest.xfail(f"LanceDB defect: {reason}")
        else:
            pytest.fail(
                f"[XPASS(strict)] LanceDB no longer shows the known defect: {reason}",
                pytrace=False,
            )


@pytest.fixture
def lance_defect(request: pytest.FixtureRequest) -> LanceDefectHelper:
    eng = None
    if "engine" in request.fixturenames:
        eng = request.getfixturevalue("engine")
    return LanceDefectHelper(eng)


# --------------------------------------------------------------------------
# subprocesses


REPO = Path(__file__).resolve().parent.parent


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a child interpreter: telemetry off, no forced fallback.

    CREWCORE_LIB is passed on, so a suite run against a given library
    (``CREWCORE_LIB=/path/libcrewcore.so pytest``) uses it in children too.
    """
    env = dict(os.environ)
    env.pop("CREWCORE_FORCE_PYTHON", None)
    env["CREWAI_DISABLE_TELEMETRY"] = "true"
    env["OTEL_SDK_DISABLED"] = "true"
    env["CREWAI_TRACING_ENABLED"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


#: Prepended to child scripts that only need CrewAI's storage types: loads
#: ``crewai.memory.types`` and ``crewai.memory.storage.backend`` (CrewAI's own
#: classes, unchanged) without running ``crewai/__init__.py``, whose imports
#: take ~10 s of CPU on this 2-core machine. crewcore itself is not touched.
LIGHT_CREWAI = """\
import importlib.util as _ilu, os as _os, sys as _sys, types as _types
_root = _os.path.dirname(_ilu.find_spec("crewai").origin)
for _name, _sub in (("crewai", ""), ("crewai.memory", "memory")):
    _m = _types.ModuleType(_name)
    _m.__path__ = [_os.path.join(_root, _sub) if _sub else _root]
    _m.__package__ = _name
    _sys.modules[_name] = _m
"""


def script(code: str, light: bool = True) -> str:
    """A child script: ``code`` dedented, with the light CrewAI prelude."""
    body = textwrap.dedent(code)
    return (LIGHT_CREWAI + body) if light else body


def run_py(
    code: str,
    *args: str,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    check: bool = True,
    light: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) in a fresh interpreter; ``sys.argv[1:] = args``.

    ``light`` (default) uses the light CrewAI prelude; pass ``light=False``
    to import CrewAI the ordinary way.
    """
    proc = subprocess.run(
        [sys.executable, "-c", script(code, light), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env if env is not None else child_env(),
        cwd=str(REPO),
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"child exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


def last_json(stdout: str) -> Any:
    """The JSON document on the last non-empty line of ``stdout``."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert lines, "child printed nothing"
    return json.loads(lines[-1])


def isclose(a: float, b: float, tol: float = 1e-4) -> bool:
    return math.isclose(a, b, rel_tol=0.0, abs_tol=tol)


def pytest_configure(config: pytest.Config) -> None:
    # CrewAI's LanceDB store calls a deprecated lancedb API on every open.
    config.addinivalue_line(
        "filterwarnings", "ignore:create_scalar_index is deprecated:DeprecationWarning"
    )


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make a directory or file read-only for this block, even for root.

    chmod does not stop root (CI runs as root); a read-only bind mount does.
    """
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True, capture_output=True)
    try:
        r = subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.fail(f"cannot remount {path} read-only: {r.stderr}")
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True, capture_output=True)
