"""The Python package's shape: layers without import cycles, every module
importable on its own, modules of a readable size, and the public API at its
documented places.

The layers, bottom to top (a module may import its own layer and lower ones,
never a higher one; the check reads every import statement, the lazy ones
inside functions included):

    0  crewcore.errors, crewcore._sqlitedb      (import nothing of crewcore)
       crewcore._redact
    1  crewcore._bridge                         (loads the library, the call)
    2  crewcore._backend                        (the engine choice)
    3  crewcore.memory, crewcore.storage        (capabilities; crewcore.knowledge, crewcore.embeddings, crewcore.llm too)
       crewcore.tools, crewcore.runs
    4  crewcore._install, crewcore (__init__), the compatibility aliases
       crewcore.locks / task_outputs / flows, crewcore._cli, crewcore.__main__
"""

from __future__ import annotations

import ast
import concurrent.futures
import os
from pathlib import Path
import subprocess
import sys

import pytest

PKG = Path(__file__).resolve().parent.parent / "python" / "crewcore"

#: Longest module (lines). The layout issue asks for ~600; the few modules a
#: little above it are single seams (one class) that do not split further.
MAX_LINES = 700


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


MODULES = _modules()


def _layer(mod: str) -> int:
    if mod in ("crewcore.errors", "crewcore._sqlitedb", "crewcore._redact"):
        return 0
    if mod in ("crewcore._bridge", "crewcore._floats"):
        return 1
    if mod == "crewcore._backend":
        return 2
    for cap in ("memory", "storage", "tools", "runs", "knowledge", "embeddings", "llm"):
        if mod == f"crewcore.{cap}" or mod.startswith(f"crewcore.{cap}."):
            return 3
    return 4


def _imports(mod: str, path: Path) -> set[str]:
    """The crewcore modules ``mod`` imports (explicit statements, lazy ones too).

    ``from crewcore.x import y`` counts as importing ``crewcore.x.y`` when that
    is a module, else ``crewcore.x``; the implicit import of parent packages
    is not counted (it is how every Python package works).
    """
    tree = ast.parse(path.read_text(), str(path))
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("crewcore"):
                    out.add(_nearest(a.name))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if not base.startswith("crewcore"):
                continue
            for a in node.names:
                full = f"{base}.{a.name}"
                out.add(full if full in MODULES else _nearest(base))
    out.discard(mod)
    return out


def _nearest(name: str) -> str:
    while name not in MODULES and "." in name:
        name = name.rpartition(".")[0]
    return name


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_check_finds_a_cycle() -> None:
    """The checker itself: a planted cycle is found, a chain is not."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


def test_lower_layers_never_import_higher_ones() -> None:
    bad = [
        f"{m} (layer {_layer(m)}) imports {d} (layer {_layer(d)})"
        for m, deps in GRAPH.items()
        for d in sorted(deps)
        if _layer(d) > _layer(m)
    ]
    assert bad == []


def test_capabilities_do_not_import_each_other() -> None:
    """memory, storage, tools and runs stand on the bridge and the engine
    choice alone; install() (the top) is what ties them together."""
    caps = ("memory", "storage", "tools", "runs", "knowledge", "embeddings", "llm")

    def cap(m: str) -> str | None:
        for c in caps:
            if m == f"crewcore.{c}" or m.startswith(f"crewcore.{c}."):
                return c
        return None

    bad = [
        f"{m} imports {d}"
        for m, deps in GRAPH.items()
        for d in deps
        if cap(m) and cap(d) and cap(m) != cap(d)
    ]
    assert bad == []


def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    env = dict(os.environ)

    def one(mod: str) -> tuple[str, int, str]:
        r = subprocess.run([sys.executable, "-c", f"import {mod}"], capture_output=True, text=True,
                           env=env, timeout=120)
        return mod, r.returncode, r.stderr[-2000:]

    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        results = list(ex.map(one, sorted(MODULES)))
    failed = [f"{m}: {err}" for m, rc, err in results if rc != 0]
    assert failed == []


def test_modules_stay_readable_in_size() -> None:
    big = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert big == {}


# name -> the place README.md and docs/ show it at
DOCUMENTED = [
    ("crewcore", "install"),
    ("crewcore", "uninstall"),
    ("crewcore", "backend"),
    ("crewcore", "MemoryStorage"),
    ("crewcore", "ToolPolicy"),
    ("crewcore", "guard"),
    ("crewcore", "tool_stats"),
    ("crewcore", "kickoff_many"),
    ("crewcore", "akickoff_many"),
    ("crewcore", "start_many"),
    ("crewcore", "astart_many"),
    ("crewcore", "ManyHandle"),
    ("crewcore", "AsyncManyHandle"),
    ("crewcore", "ManyResults"),
    ("crewcore", "RunFailure"),
    ("crewcore", "RunSummary"),
    ("crewcore", "__version__"),
    ("crewcore.errors", "CrewcoreError"),
    ("crewcore.errors", "InvalidRecordError"),
    ("crewcore.errors", "InvalidScopeError"),
    ("crewcore.errors", "InvalidArgumentError"),
    ("crewcore.errors", "RecordNotFoundError"),
    ("crewcore.errors", "StoreCorruptError"),
    ("crewcore.errors", "StoreAccessError"),
    ("crewcore.errors", "StoreTimeoutError"),
    ("crewcore.errors", "StoreClosedError"),
    ("crewcore.errors", "StoreUnavailableError"),
    ("crewcore.errors", "PgVectorMissingError"),
    ("crewcore.errors", "LockTimeoutError"),
    ("crewcore.errors", "StorageFullError"),
    ("crewcore.errors", "ToolPolicyError"),
    ("crewcore.errors", "ToolArgumentsError"),
    ("crewcore.errors", "ToolRefusedError"),
    ("crewcore.errors", "ToolTimeoutError"),
    ("crewcore.errors", "ToolFileNotFoundError"),
    ("crewcore.errors", "EngineError"),
    ("crewcore.errors", "SchedulerClosedError"),
    ("crewcore.errors", "WorkerProcessError"),
    ("crewcore.errors", "RunFailedError"),
    ("crewcore.tools", "FetchTool"),
    ("crewcore.tools", "FileReadTool"),
    ("crewcore.tools", "FileListTool"),
    ("crewcore.tools", "GuardedTool"),
    ("crewcore.tools", "ToolPolicy"),
    ("crewcore.tools", "guard"),
    ("crewcore.tools", "tool_stats"),
    ("crewcore.locks", "lock"),
    ("crewcore.locks", "acquire"),
    ("crewcore.locks", "crewai_lock_backend"),
    ("crewcore.task_outputs", "TaskOutputStorage"),
    ("crewcore.flows", "CrewcoreFlowPersistence"),
    ("crewcore.memory", "MemoryStorage"),
    ("crewcore.runs", "kickoff_many"),
    ("crewcore.embeddings", "Embedder"),
    ("crewcore.embeddings", "EmbeddingOptions"),
    ("crewcore.embeddings", "cache_stats"),
    ("crewcore.embeddings", "clear_cache"),
    ("crewcore.embeddings", "embedding_stats"),
    ("crewcore.embeddings", "shared_embedder"),
    ("crewcore.errors", "EmbeddingError"),
    ("crewcore.errors", "EmbeddingAPIError"),
    ("crewcore.errors", "EmbeddingRateLimitError"),
    ("crewcore.errors", "EmbeddingServerError"),
    ("crewcore.errors", "EmbeddingTimeoutError"),
    ("crewcore.errors", "EmbeddingConnectionError"),
    ("crewcore.errors", "EmbeddingDimensionError"),
    ("crewcore.llm", "install_llm_clients"),
    ("crewcore.runs", "submit"),
    ("crewcore.runs", "Queue"),
    ("crewcore.runs", "Worker"),
    ("crewcore.runs", "RunHandle"),
    ("crewcore.runs", "RunBatch"),
    ("crewcore.errors", "QueueError"),
    ("crewcore.errors", "QueueNotFoundError"),
    ("crewcore.errors", "QueueAccessError"),
    ("crewcore.errors", "QueueUnavailableError"),
    ("crewcore.errors", "QueueCorruptError"),
    ("crewcore.errors", "RunNotFoundError"),
    ("crewcore.errors", "CrewFactoryError"),
    ("crewcore.errors", "WorkerStartError"),
    # importing a CrewAI LanceDB memory (docs/migration.md)
    ("crewcore", "import_lancedb"),
    ("crewcore", "ImportSummary"),
    ("crewcore", "LanceDBMemoryWarning"),
    ("crewcore.errors", "MemoryImportError"),
    ("crewcore.errors", "LanceDBNotFoundError"),
    ("crewcore.errors", "NotALanceDBMemoryError"),
    ("crewcore.errors", "ImportDimensionError"),
    ("crewcore.errors", "LanceDBUnavailableError"),
    ("crewcore.memory.lancedb_import", "default_lancedb_path"),
]


@pytest.mark.parametrize(("module", "name"), DOCUMENTED, ids=[f"{m}.{n}" for m, n in DOCUMENTED])
def test_documented_name_imports_from_its_documented_place(module: str, name: str) -> None:
    import importlib

    obj = getattr(importlib.import_module(module), name)
    assert obj is not None


def test_documented_names_are_listed_in_all() -> None:
    import crewcore

    for module, name in DOCUMENTED:
        if module == "crewcore":
            assert name in crewcore.__all__, name


def test_alias_modules_are_the_implementation_modules() -> None:
    """``crewcore.locks`` is ``crewcore.storage.locks`` (one module object:
    patches and state are shared, never copied)."""
    import crewcore.flows
    import crewcore.locks
    import crewcore.storage.flows
    import crewcore.storage.locks
    import crewcore.storage.task_outputs
    import crewcore.task_outputs

    assert crewcore.locks is crewcore.storage.locks
    assert crewcore.task_outputs is crewcore.storage.task_outputs
    assert crewcore.flows is crewcore.storage.flows


def _crewcore_imports_in(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name) of every ``import crewcore...`` / ``from crewcore... import name``."""
    out: list[tuple[int, str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, None) for a in node.names if a.name.split(".")[0] == "crewcore"]
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "crewcore":
            out += [(node.lineno, node.module or "", a.name) for a in node.names if a.name != "*"]
    return out


def test_examples_benchmarks_and_tests_import_what_exists() -> None:
    """``make demo`` and ``make bench`` are not run by the suite: check statically
    that every crewcore name they (and the tests) import still exists."""
    import importlib

    root = PKG.parent.parent
    bad = []
    for folder in ("examples", "bench", "tests"):
        for path in sorted((root / folder).rglob("*.py")):
            for line, module, name in _crewcore_imports_in(path):
                where = f"{path.relative_to(root)}:{line}"
                try:
                    mod = importlib.import_module(module)
                except ImportError as e:
                    bad.append(f"{where}: import {module}: {e}")
                    continue
                if name is not None and not hasattr(mod, name):
                    try:
                        importlib.import_module(f"{module}.{name}")
                    except ImportError:
                        bad.append(f"{where}: {module} has no {name}")
    assert bad == []
