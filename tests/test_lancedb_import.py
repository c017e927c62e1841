"""Importing a CrewAI LanceDB memory (crewcore/memory/lancedb_import.py,
``crewcore memory import``, ``install()``'s notice).

The source memories are written by CrewAI's own ``LanceDBStorage`` and
``Memory`` (crewai 1.15.30, real LanceDB files); every imported record is
compared field by field, and searches by score and order, with what CrewAI's
LanceDBStorage reads back from the same files.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
import hashlib
import io
import os
from pathlib import Path
import random
import subprocess
import sys
import warnings
from typing import Any

import pytest

import crewcore
from crewcore import MemoryStorage
from crewcore.errors import (
    ImportDimensionError,
    InvalidArgumentError,
    LanceDBMemoryWarning,
    LanceDBNotFoundError,
    MemoryImportError,
    NotALanceDBMemoryError,
)
from crewcore.memory import lancedb_import
from crewcore.memory.__main__ import main as cli_main

from conftest import REPO, child_env, rec

DIM = 16
BASE = datetime(2025, 3, 14, 9, 26, 53, 589793)
SCOPES = ["/", "/crew", "/crew/research", "/crew/research/deep", "/crew/ab", "/agent/writer", "/ünï/çødé x"]
CATS = ["facts", "prefs", "tasks", "ünï"]


def _lance(path: Path) -> Any:
    from crewai.memory.storage.lancedb_storage import LanceDBStorage

    return LanceDBStorage(path=str(path), compact_every=0)


def _vec(rng: random.Random) -> list[float]:
    return [rng.uniform(-1.0, 1.0) for _ in range(DIM)]


def _records(n: int, rng: random.Random, prefix: str = "r") -> list[Any]:
    out = []
    for i in range(n):
        created = BASE + timedelta(minutes=37 * i, microseconds=0 if i % 10 == 0 else i)
        if i % 10 == 0:
            created = created.replace(microsecond=0)  # isoformat() without a fraction
        out.append(rec(
            f"{prefix}{i:04d}",
            _vec(rng),
            content=f"memory {i}: 'quoted' \"text\"\nsecond line ✓" if i % 5 == 0 else f"memory {prefix}{i}",
            scope=SCOPES[i % len(SCOPES)],
            categories=[CATS[(i + k) % len(CATS)] for k in range(i % 3)],
            metadata={"i": i, "nested": {"a": [1, 2.5, None, True]}, "s": "x'y\"z"} if i % 2 else {},
            importance=round(i / max(n - 1, 1), 6),
            created_at=created,
            last_accessed=created + timedelta(seconds=i),
            source=None if i % 3 == 0 else f"user-{i % 3}",
            private=i % 7 == 0,
        ))
    return out


def _tree_digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A LanceDB memory written by CrewAI's LanceDBStorage: 240 records in 4
    saves (4 fragments), one without an embedding, one with an aware
    timestamp, then an update, 3 deletes and a touch, as CrewAI's Memory does."""
    path = tmp_path_factory.mktemp("lance") / "memory"
    rng = random.Random(20261204)
    records = _records(240, rng)
    records.append(rec("noemb", None, content="saved without an embedding", scope="/crew", categories=["facts"]))
    records.append(rec("aware", _vec(rng), content="aware timestamps", scope="/crew/research",
                       created_at=datetime(2025, 6, 1, 23, 30, 0, 5, tzinfo=timezone(timedelta(hours=2))),
                       last_accessed=datetime(2025, 6, 2, 1, 0, 0, tzinfo=timezone(timedelta(hours=-5)))))
    st = _lance(path)
    for k in range(0, len(records), 61):
        st.save(records[k:k + 61])
    upd = records[5].model_copy(update={"content": "updated content", "importance": 0.99,
                                        "last_accessed": BASE + timedelta(days=400)})
    st.update(upd)
    assert st.delete(record_ids=["r0007", "r0008", "r0009"]) == 3
    st.touch_records(["r0010", "r0011"])
    truth = {r.id: r for r in st.list_records(limit=10_000)}
    assert len(truth) == 239
    return {"path": path, "store": st, "truth": truth, "rng": rng}


def _expected_dt(dt: datetime) -> datetime:
    return dt.astimezone(timezone.utc).replace(tzinfo=None) if dt.tzinfo else dt


def assert_same_records(store: MemoryStorage, truth: dict[str, Any]) -> None:
    """Every record of ``truth`` (as CrewAI's LanceDBStorage reads it) is in
    ``store`` with every field equal, and the store holds nothing else."""
    assert store.count() == len(truth)
    for rid, want in truth.items():
        got = store.get_record(rid)
        assert got is not None, rid
        assert (got.content, got.scope, got.categories, got.metadata, got.importance, got.source, got.private) == (
            want.content, want.scope, want.categories, want.metadata, want.importance, want.source, want.private
        ), rid
        assert got.created_at == _expected_dt(want.created_at), rid
        assert got.last_accessed == _expected_dt(want.last_accessed), rid
        if any(want.embedding):
            assert got.embedding == want.embedding, rid  # float32 both sides: exact
        else:  # LanceDB's zero vector is its "no embedding"
            assert rid == "noemb" and not got.embedding


def assert_same_search(lance: Any, store: MemoryStorage, rng: random.Random, n: int = 8) -> None:
    """The same ids in the same order with the same scores as LanceDB, apart
    from the record LanceDB holds as a zero vector (it matches every query
    there; crewcore stores no vector and never returns it)."""
    for _ in range(n):
        q = _vec(rng)
        for kw, limit in (({}, 10), ({"scope_prefix": "/crew/research"}, 6), ({"categories": ["prefs"]}, 5)):
            want = [(r, s) for r, s in lance.search(q, limit=limit + 1, **kw) if r.id != "noemb"][:limit]
            got = store.search(q, limit=limit, **kw)
            if "categories" in kw:  # LanceDB filters the top 3*limit rows after the fact: it may under-fill
                got = got[:len(want)]
            assert [r.id for r, _ in got] == [r.id for r, _ in want], kw
            for (_, a), (_, b) in zip(got, want):
                assert a == pytest.approx(b, abs=1e-5)


# --------------------------------------------------------------------------
# the Python API


@pytest.mark.parametrize("engine", ["native", "python"])
def test_import_keeps_every_field_and_search_result(source: dict[str, Any], tmp_path: Path, engine: str) -> None:
    before = _tree_digest(source["path"])
    store = MemoryStorage(tmp_path / "cc", engine=engine, exact=True)
    seen: list[tuple[int, int]] = []
    summary = crewcore.import_lancedb(source["path"], store, batch_size=50, progress=lambda d, t: seen.append((d, t)))
    assert isinstance(summary, crewcore.ImportSummary)
    assert (summary.read, summary.imported, summary.with_embedding, summary.already_present) == (239, 239, 238, 0)
    assert summary.ok and summary.refused == [] and summary.dim == DIM and summary.total == 239
    assert seen[-1] == (239, 239) and [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) == 5
    line = str(summary)
    assert f"imported 239 of 239 records (238 with embeddings, dim {DIM})" in line
    assert str(source["path"]) in line and store.path in line
    assert_same_records(store, source["truth"])
    assert_same_search(source["store"], store, source["rng"])
    # scopes, categories and counts as CrewAI's Memory asks for them
    assert store.list_scopes("/") == sorted({"/" + s.strip("/").split("/")[0] for s in SCOPES if s != "/"})
    cats: dict[str, int] = {}
    for r in source["truth"].values():
        for c in r.categories:
            cats[c] = cats.get(c, 0) + 1
    assert store.list_categories() == cats
    assert store.count("/crew/research") == sum(
        1 for r in source["truth"].values() if r.scope == "/crew/research" or r.scope.startswith("/crew/research/"))
    assert _tree_digest(source["path"]) == before, "the LanceDB files were changed"
    store.close()


def test_import_is_idempotent_and_adds_only_new_records(tmp_path: Path) -> None:
    rng = random.Random(5)
    src = tmp_path / "memory"
    lance = _lance(src)
    lance.save(_records(30, rng))
    target = tmp_path / "cc"
    first = crewcore.import_lancedb(src, target)
    assert (first.imported, first.already_present, first.total) == (30, 0, 30)
    # The store moves on: a record is touched, one is changed, one is deleted.
    store = MemoryStorage(target)
    changed = store.get_record("r0003").model_copy(update={"content": "changed in crewcore"})
    store.update(changed)
    store.touch_records(["r0004"])
    touched = store.get_record("r0004").last_accessed
    store.close()
    again = crewcore.import_lancedb(src, target)
    assert (again.read, again.imported, again.already_present, again.total) == (30, 0, 30, 30)
    assert "imported 0 of 30" in str(again) and "30 already there" in str(again)
    # New records in LanceDB are imported by the next run, nothing else is touched.
    lance.save(_records(5, rng, prefix="new"))
    third = crewcore.import_lancedb(src, target)
    assert (third.read, third.imported, third.already_present, third.total) == (35, 5, 30, 35)
    store = MemoryStorage(target)
    assert store.get_record("r0003").content == "changed in crewcore"
    assert store.get_record("r0004").last_accessed == touched
    assert store.get_record("new0002") is not None
    store.close()


def test_records_crewcore_refuses_are_listed_and_the_rest_imported(tmp_path: Path) -> None:
    rng = random.Random(11)
    src = tmp_path / "memory"
    lance = _lance(src)
    good = _records(6, rng)
    lance.save(good + [rec("dotdot", _vec(rng), scope="/a/../b"), rec("nul", _vec(rng), content="a\x00b")])
    summary = crewcore.import_lancedb(src, tmp_path / "cc")
    assert (summary.read, summary.imported) == (8, 6) and not summary.ok
    refused = dict(summary.refused)
    assert set(refused) == {"dotdot", "nul"}
    assert "InvalidScopeError" in refused["dotdot"] and "'..'" in refused["dotdot"]
    assert "InvalidRecordError" in refused["nul"]
    assert "2 refused" in str(summary)
    # the command's exit status says so, and names each record
    out, err = io.StringIO(), io.StringIO()
    code = cli_main(["import", "--from-lancedb", str(src), "--to", str(tmp_path / "cc")], out, err)
    assert code == 1
    assert "refused record dotdot: InvalidScopeError" in err.getvalue()
    assert "refused record nul" in err.getvalue()
    assert "imported 0 of 8" in out.getvalue() and "6 already there" in out.getvalue()


def test_an_interrupted_command_in_process_leaves_sigint_as_it_found_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during ``main()`` called inside a program: exit status 130,
    the message, and the program's SIGINT handler back afterwards (left
    ignored, every later child process would inherit Ctrl-C ignored)."""
    import signal

    def interrupted(*a: Any, **k: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(lancedb_import, "import_lancedb", interrupted)
    before = signal.getsignal(signal.SIGINT)
    out, err = io.StringIO(), io.StringIO()
    assert cli_main(["import", "--from-lancedb", str(tmp_path), "--to", str(tmp_path / "cc")], out, err) == 130
    assert "interrupted; the batches written so far are kept" in err.getvalue()
    assert signal.getsignal(signal.SIGINT) is before


# --------------------------------------------------------------------------
# bad input: typed errors, nothing lost


def test_bad_sources_raise_typed_errors(tmp_path: Path) -> None:
    target = tmp_path / "cc"
    with pytest.raises(LanceDBNotFoundError, match="does not exist") as ei:
        crewcore.import_lancedb(tmp_path / "nowhere", target)
    assert isinstance(ei.value, FileNotFoundError) and str(tmp_path / "nowhere") in str(ei.value)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("hello")
    with pytest.raises(NotALanceDBMemoryError, match="it is a file"):
        crewcore.import_lancedb(a_file, target)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NotALanceDBMemoryError, match="has no table 'memories'"):
        crewcore.import_lancedb(empty, target)
    # a crewcore store given as the source
    cc = MemoryStorage(tmp_path / "other")
    cc.save([rec("x", [1.0] * 4)])
    cc.close()
    with pytest.raises(NotALanceDBMemoryError, match="crewcore"):
        crewcore.import_lancedb(tmp_path / "other", target)
    with pytest.raises(NotALanceDBMemoryError, match="crewcore memory store"):
        crewcore.import_lancedb(tmp_path / "other" / "memory.db", target)
    # a LanceDB table that is not CrewAI's
    import lancedb

    foreign = tmp_path / "foreign"
    lancedb.connect(str(foreign)).create_table("memories", [{"a": 1, "text": "x"}])
    with pytest.raises(NotALanceDBMemoryError, match="no column id, content, vector"):
        crewcore.import_lancedb(foreign, target)
    lancedb.connect(str(foreign)).create_table("notes", [{"a": 1}])
    with pytest.raises(NotALanceDBMemoryError, match="give --table"):
        crewcore.import_lancedb(empty.parent / "foreign", target, table="other")
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        crewcore.import_lancedb(foreign, target, batch_size=0)
    assert not target.exists(), "a refused import created the store"
    for cls in (LanceDBNotFoundError, NotALanceDBMemoryError, ImportDimensionError):
        assert issubclass(cls, MemoryImportError) and issubclass(cls, crewcore.CrewcoreError)


def test_a_damaged_lancedb_table_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "memory"
    _lance(src).save(_records(3, random.Random(1)))
    for m in (src / "memories.lance" / "_versions").glob("*.manifest"):
        m.write_bytes(b"\x00garbage" * 8)
    with pytest.raises(NotALanceDBMemoryError, match="cannot be read"):
        crewcore.import_lancedb(src, tmp_path / "cc")


def test_dimension_mismatch_with_a_non_empty_store_imports_nothing(source: dict[str, Any], tmp_path: Path) -> None:
    store = MemoryStorage(tmp_path / "cc")
    mine = rec("mine", [0.5] * 8, content="kept")
    store.save([mine])
    with pytest.raises(ImportDimensionError, match=f"{DIM} dimensions.*8-dimensional") as ei:
        crewcore.import_lancedb(source["path"], store)
    assert (ei.value.stored_dim, ei.value.new_dim) == (8, DIM) and isinstance(ei.value, ValueError)
    assert store.count() == 1
    kept = store.get_record("mine")
    assert (kept.content, kept.embedding) == ("kept", [0.5] * 8)
    store.close()
    out, err = io.StringIO(), io.StringIO()
    assert cli_main(["import", "--from-lancedb", str(source["path"]), "--to", str(tmp_path / "cc")], out, err) == 1
    assert "crewcore memory import: the LanceDB memory's embeddings have 16 dimensions" in err.getvalue()
    assert out.getvalue() == ""


# --------------------------------------------------------------------------
# the crewcore command (Go), which runs the Python half


def _binary() -> Path:
    for p in (REPO / "python/crewcore/_lib/crewcore", REPO / "bin/crewcore"):
        if p.exists():
            return p
    pytest.fail("the crewcore command is not built: run `make build`")


def test_command_imports_with_a_progress_bar_on_a_terminal(source: dict[str, Any], tmp_path: Path) -> None:
    import pty

    target = tmp_path / "cc"
    env = child_env()
    env.pop("CREWCORE_PYTHON", None)  # the interpreter is found from the binary's place (the checkout's .venv)
    env.pop("VIRTUAL_ENV", None)
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(_binary()), "memory", "import", "--from-lancedb", str(source["path"]),
                             "--to", str(target), "--batch-size", "40"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env, cwd=tmp_path)
    os.close(slave)
    tty = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        tty += chunk
    os.close(master)
    out = proc.stdout.read().decode() if proc.stdout else ""
    assert proc.wait(timeout=300) == 0, tty.decode(errors="replace")
    text = tty.decode(errors="replace")
    assert "importing [" in text and "239/239 records" in text, text
    assert out.count("\n") == 1 and out.startswith("imported 239 of 239 records (238 with embeddings, dim 16)"), out
    store = MemoryStorage(target, exact=True)
    assert_same_records(store, source["truth"])
    assert_same_search(source["store"], store, source["rng"], n=3)
    store.close()
    # again, off a terminal: no bar, nothing imported twice
    again = subprocess.run([str(_binary()), "memory", "import", "--from-lancedb", str(source["path"]), "--to", str(target)],
                           capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "importing [" not in again.stderr
    assert again.stdout.startswith("imported 0 of 239 records") and "239 already there" in again.stdout


# --------------------------------------------------------------------------
# install(): the notice, and import_existing


def _fixed_embedder(texts: list[str]) -> list[list[float]]:
    out = []
    for t in texts:
        h = hashlib.sha256(t.encode()).digest()
        out.append([b / 255.0 - 0.5 for b in h[:DIM]])
    return out


FACTS = ["the sky is blue", "grass is green", "the launch is on Friday", "Ana prefers tea", "the budget is 40k"]


@pytest.fixture
def crewai_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A CrewAI storage dir whose default Memory (LanceDB) remembered FACTS,
    written through CrewAI's Memory with a fixed embedder; no install()."""
    monkeypatch.setenv("CREWAI_STORAGE_DIR", str(tmp_path / "storage"))
    monkeypatch.setattr(lancedb_import, "_noticed", set())
    crewcore.uninstall()
    from crewai.memory import Memory

    mem = Memory(embedder=_fixed_embedder)
    assert type(mem._storage).__name__ == "LanceDBStorage"
    for i, fact in enumerate(FACTS):
        mem.remember(fact, scope=f"/crew/{i % 2}", categories=["facts"], importance=0.2 * i, source="ana")
    mem.close()
    yield tmp_path / "storage"
    crewcore.uninstall()


def _install(**kw: Any) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        crewcore.install(**kw)
    return [w for w in caught if issubclass(w.category, LanceDBMemoryWarning)]


def _recall(storage: Any) -> list[tuple[str, float]]:
    from crewai.memory import Memory

    mem = Memory(embedder=_fixed_embedder, storage=storage) if storage is not None else Memory(embedder=_fixed_embedder)
    try:
        return [(m.record.content, m.record.id) for m in mem.recall("when is the launch", depth="shallow", limit=5,
                                                                    include_private=True)]
    finally:
        mem.close()


def test_install_warns_once_then_the_import_brings_the_memories_back(crewai_dir: Path) -> None:
    lance_path = crewai_dir / "memory"
    store_path = crewai_dir / "crewcore" / "memory.db"
    with_lance = _recall(None)  # CrewAI's own LanceDB memory, before install()
    assert len(with_lance) == 5
    caught = _install()
    assert len(caught) == 1, [str(w.message) for w in caught]
    msg = str(caught[0].message)
    assert str(lance_path) in msg and str(store_path) in msg and "holds 5 records" in msg
    assert f"crewcore memory import --from-lancedb {lance_path}" in msg
    assert caught[0].filename == __file__  # points at the caller of install()
    assert _install() == []  # once per process
    other = crewai_dir.parent / "team-store"
    caught = _install(memory=str(other))  # another target: its own notice, naming it in the command
    assert len(caught) == 1 and f"--from-lancedb {lance_path} --to {other / 'memory.db'}" in str(caught[0].message)
    assert not other.exists()  # the check created nothing
    crewcore.install()
    assert _recall(None) == []  # what the issue found: the old memories are not seen
    summary = crewcore.import_lancedb()  # the defaults: CrewAI's LanceDB memory -> crewcore's default store
    assert (summary.source, summary.target, summary.imported) == (str(lance_path), str(store_path), 5)
    assert _recall(None) == with_lance  # the same memories, in the same order
    lancedb_import._noticed.clear()
    assert _install() == []  # the store is no longer empty


def test_install_import_existing_imports_without_a_warning(crewai_dir: Path) -> None:
    assert _install(import_existing=True) == []
    done = crewcore._install.installed()["memory_import"]
    assert done.startswith("imported 5 of 5 records") and str(crewai_dir / "memory") in done
    assert sorted(c for c, _ in _recall(None)) == sorted(FACTS)
    assert _install(import_existing=True) == []  # nothing more to do: no second import
    assert crewcore._install.installed()["memory_import"] == done
    store = MemoryStorage(crewai_dir / "crewcore" / "memory.db")
    assert store.count() == 5
    store.close()


def test_install_says_nothing_for_an_empty_lancedb_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREWAI_STORAGE_DIR", str(tmp_path / "storage"))
    monkeypatch.setattr(lancedb_import, "_noticed", set())
    lance = _lance(tmp_path / "storage" / "memory")
    lance.save(_records(2, random.Random(3)))
    lance.delete(record_ids=["r0000", "r0001"])
    assert lancedb_import._has_lancedb_data(tmp_path / "storage" / "memory")  # files remain, records do not
    try:
        assert _install() == []
        assert _install(memory=str(tmp_path / "elsewhere")) == []
    finally:
        crewcore.uninstall()


def test_install_without_a_lancedb_memory_does_not_import_lancedb(tmp_path: Path) -> None:
    code = (
        "import sys, warnings\n"
        "import crewcore\n"
        "warnings.simplefilter('error', crewcore.LanceDBMemoryWarning)\n"
        "crewcore.install()\n"
        "print('lancedb' in sys.modules, 'crewai.memory.storage.lancedb_storage' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=child_env(CREWAI_STORAGE_DIR=str(tmp_path / "storage")), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


# --------------------------------------------------------------------------
# other targets, and the way back (docs/migration.md)


def test_import_into_postgres(source: dict[str, Any]) -> None:
    from pg_support import drop_schema, server_dsn

    dsn = server_dsn()
    schema = "py_lancedb_import_" + hashlib.sha1(str(source["path"]).encode()).hexdigest()[:12]
    drop_schema(dsn, schema)
    try:
        summary = crewcore.import_lancedb(source["path"], f"{dsn}#{schema}")
        assert (summary.imported, summary.with_embedding, summary.total) == (239, 238, 239)
        assert summary.target.endswith(f"#{schema}")
        store = MemoryStorage(dsn=dsn, schema=schema, exact=True)
        assert store.backend == "postgres"
        assert_same_records(store, source["truth"])
        assert_same_search(source["store"], store, source["rng"], n=3)
        again = crewcore.import_lancedb(source["path"], store)
        assert (again.imported, again.already_present) == (0, 239)
        store.close()
    finally:
        drop_schema(dsn, schema)


def test_back_to_lancedb_with_crewais_own_storage(source: dict[str, Any], tmp_path: Path) -> None:
    """The recipe of docs/migration.md ("Back to CrewAI's LanceDB memory"):
    every record of a crewcore store written with CrewAI's LanceDBStorage."""
    crewcore.import_lancedb(source["path"], tmp_path / "cc")
    # --- the recipe, as the guide shows it (paths adapted) ---
    from crewai.memory.storage.lancedb_storage import LanceDBStorage

    src = MemoryStorage(tmp_path / "cc", return_embeddings=True)
    dst = LanceDBStorage(path=str(tmp_path / "back"))
    offset = 0
    while batch := src.list_records(limit=500, offset=offset):
        offset += len(batch)
        new = [r for r in batch if dst.get_record(r.id) is None]
        if new:
            dst.save(new)
    src.close()
    # ---
    back = {r.id: r for r in dst.list_records(limit=10_000)}
    assert set(back) == set(source["truth"])
    for rid, want in source["truth"].items():
        got = back[rid]
        assert (got.content, got.scope, got.categories, got.metadata, got.importance, got.source, got.private) == (
            want.content, want.scope, want.categories, want.metadata, want.importance, want.source, want.private)
        assert got.created_at == _expected_dt(want.created_at) and got.embedding == want.embedding


def test_default_lancedb_path_is_where_crewai_puts_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CREWAI_STORAGE_DIR: CrewAI's data dir of the project directory
    (found without creating it), as CrewAI's own LanceDBStorage() computes it."""
    from crewai.memory.storage.lancedb_storage import LanceDBStorage

    monkeypatch.delenv("CREWAI_STORAGE_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    (tmp_path / "myproj").mkdir()
    monkeypatch.chdir(tmp_path / "myproj")
    ours = lancedb_import.default_lancedb_path()
    assert not (tmp_path / "xdg").exists()  # nothing created
    assert Path(LanceDBStorage(compact_every=0)._path) == ours == tmp_path / "xdg" / "myproj" / "memory"
    monkeypatch.setenv("CREWAI_STORAGE_DIR", str(tmp_path / "sd"))
    assert Path(LanceDBStorage(compact_every=0)._path) == lancedb_import.default_lancedb_path()
