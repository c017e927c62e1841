"""Import a CrewAI LanceDB memory into a crewcore store.

CrewAI's default memory (``crewai.memory.storage.lancedb_storage.LanceDBStorage``,
crewai 1.15.30) is a LanceDB directory holding one table, ``memories``, with the
columns ``id``, ``content``, ``scope``, ``categories_str`` (JSON list),
``metadata_str`` (JSON object), ``importance`` (double), ``created_at`` and
``last_accessed`` (ISO 8601 strings), ``source`` ("" for none), ``private``
(bool) and ``vector`` (fixed-size float32 list; a record saved without an
embedding holds zeros). :func:`import_lancedb` copies every row into a crewcore
store (a file or a PostgreSQL DSN) as the same ``MemoryRecord``, keeping ids,
so running it again imports nothing twice. The LanceDB directory is only read.

``crewcore memory import --from-lancedb PATH`` (the Go command) runs
``python -m crewcore.memory import`` (``crewcore/memory/__main__.py``), which
calls this. Reading LanceDB needs the ``lancedb`` package (CrewAI installs it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
import json
import os
from pathlib import Path
import threading
import time
from typing import Any, Callable
import warnings

from crewcore.errors import (
    CrewcoreError,
    ImportDimensionError,
    InvalidArgumentError,
    InvalidRecordError,
    InvalidScopeError,
    LanceDBMemoryWarning,
    LanceDBNotFoundError,
    LanceDBUnavailableError,
    MemoryImportError,
    NotALanceDBMemoryError,
)

#: The table CrewAI's LanceDBStorage writes (its ``table_name`` default).
TABLE = "memories"
#: The row CrewAI writes to create a table, then deletes at once.
_PLACEHOLDER_ID = "__schema_placeholder__"
_REQUIRED = ("id", "content", "vector")
_KNOWN = ("id", "content", "scope", "categories_str", "metadata_str", "importance", "created_at",
          "last_accessed", "source", "private", "vector")

Progress = Callable[[int, int], None]


@dataclass
class ImportSummary:
    """What :func:`import_lancedb` did. ``str(summary)`` is the one-line summary
    the command prints."""

    #: The LanceDB directory read, and its table.
    source: str
    table: str
    #: The crewcore store written (a database file, or a redacted DSN).
    target: str
    #: Rows in the LanceDB table (CrewAI's schema placeholder row not counted).
    read: int = 0
    #: Records written to the store by this call.
    imported: int = 0
    #: Of those, records with an embedding (the rest held LanceDB's zero vector).
    with_embedding: int = 0
    #: Records whose id the store already held (an earlier import): left as they are.
    already_present: int = 0
    #: Rows that repeat an id of another row (the newest ``last_accessed`` is kept).
    duplicates: int = 0
    #: Rows that cannot be stored, as (id, reason); nothing else is held back.
    refused: list[tuple[str, str]] = field(default_factory=list)
    #: The embedding dimension of the LanceDB table (0 when it has no vector column size).
    dim: int = 0
    #: Records in the store after the import.
    total: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every row was imported or was already there."""
        return not self.refused

    def __str__(self) -> str:
        s = (f"imported {self.imported} of {self.read} records ({self.with_embedding} with embeddings, "
             f"dim {self.dim}) from the LanceDB memory at {self.source} into {self.target}; "
             f"{self.already_present} already there")
        if self.duplicates:
            s += f", {self.duplicates} duplicate ids"
        s += f", {len(self.refused)} refused; the store holds {self.total} records ({self.seconds:.1f} s)"
        return s


def default_lancedb_path() -> Path:
    """Where CrewAI's ``Memory()`` keeps its LanceDB memory by default
    (``LanceDBStorage(path=None)``): ``$CREWAI_STORAGE_DIR/memory``, else
    ``crewai_core.paths.db_storage_path()/memory``."""
    env = os.environ.get("CREWAI_STORAGE_DIR")
    if env:
        return Path(env) / "memory"
    try:  # db_storage_path() without its mkdir: install() creates no directory
        import appdirs
        from crewai_core.paths import get_project_directory_name

        return Path(appdirs.user_data_dir(get_project_directory_name(), "CrewAI")) / "memory"
    except ImportError:
        from crewai_core.paths import db_storage_path

        return Path(db_storage_path()) / "memory"


def _lancedb() -> Any:
    try:
        import lancedb
    except ImportError as e:
        raise LanceDBUnavailableError(
            f"reading a LanceDB memory needs the lancedb package, which cannot be imported here ({e}); "
            "CrewAI installs it: pip install lancedb"
        ) from None
    return lancedb


def _source(path: str | os.PathLike[str] | None, table: str) -> tuple[Path, str]:
    """The LanceDB directory and table a ``path`` names (a ``<table>.lance``
    directory names its parent and that table)."""
    p = default_lancedb_path() if path is None or str(path) == "" else Path(os.path.expanduser(os.fspath(path)))
    if not p.exists():
        raise LanceDBNotFoundError(f"no LanceDB memory at {p}: the path does not exist")
    p = p.resolve()
    if p.is_dir() and p.suffix == ".lance" and (p / "_versions").is_dir():
        return p.parent, p.stem
    if not p.is_dir():
        kind = ("a crewcore memory store (it is already in crewcore's format)"
                if p.suffix.lower() in (".db", ".sqlite", ".sqlite3") else "a file")
        raise NotALanceDBMemoryError(f"{p} is not a LanceDB memory: it is {kind}, not a LanceDB directory")
    return p, table


def _open_table(path: Path, table: str) -> Any:
    if not (path / f"{table}.lance").is_dir():
        others = sorted(q.name for q in path.glob("*.lance") if q.is_dir())
        hint = f" (it holds {', '.join(others)}: give --table)" if others else ""
        if (path / "memory.db").exists() and not others:
            hint = " (it holds memory.db, a crewcore store)"
        raise NotALanceDBMemoryError(
            f"{path} is not a CrewAI LanceDB memory: it has no table {table!r}{hint}")
    lancedb = _lancedb()
    try:
        tbl = lancedb.connect(str(path)).open_table(table)
        names = set(tbl.schema.names)
    except Exception as e:  # lancedb raises builtins (ValueError, OSError, RuntimeError) for damaged tables
        raise NotALanceDBMemoryError(f"{path}: the LanceDB table {table!r} cannot be read: {e}") from None
    missing = [c for c in _REQUIRED if c not in names]
    if missing:
        raise NotALanceDBMemoryError(
            f"{path}: table {table!r} is not a CrewAI memory: no column {', '.join(missing)} "
            f"(it has {', '.join(sorted(names))})")
    return tbl


def count_lancedb(path: str | os.PathLike[str] | None = None, table: str = TABLE) -> int:
    """Records in a CrewAI LanceDB memory (CrewAI's placeholder row not counted)."""
    src, table = _source(path, table)
    tbl = _open_table(src, table)
    try:
        n = int(tbl.count_rows())
        if n and int(tbl.count_rows(f"id = '{_PLACEHOLDER_ID}'")):
            n -= 1
    except Exception as e:
        raise NotALanceDBMemoryError(f"{src}: the LanceDB table {table!r} cannot be read: {e}") from None
    return n


def _parse_dt(value: Any, now: datetime) -> datetime:
    """As CrewAI's LanceDBStorage reads them (``fromisoformat``, ``Z`` as UTC,
    a missing value as now); aware values are converted to naive UTC."""
    if value is None or value == "":
        return now
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt


def _read(tbl: Any, src: Path, table: str) -> tuple[dict[str, list[Any]], Any, int]:
    """The table's scalar columns as lists, its vectors as an ``n x dim``
    float32 matrix (a null vector as a zero row: no embedding), and ``dim``."""
    import numpy as np

    try:
        data = tbl.to_arrow()
    except Exception as e:
        raise NotALanceDBMemoryError(f"{src}: the LanceDB table {table!r} cannot be read: {e}") from None
    cols = {c: data.column(c).to_pylist() for c in _KNOWN if c != "vector" and c in data.column_names}
    vec = data.column("vector").combine_chunks()
    n = len(vec)
    dim = int(getattr(vec.type, "list_size", 0) or 0)
    if n == 0:
        return cols, np.zeros((0, dim), dtype=np.float32), dim
    if dim <= 0:
        raise NotALanceDBMemoryError(f"{src}: table {table!r}: the vector column is {vec.type}, "
                                     "not a fixed-size float list as CrewAI writes it")
    values = vec.flatten() if vec.null_count == 0 else None
    if values is not None and len(values) == n * dim:
        mat = values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(n, dim)
    else:
        mat = np.zeros((n, dim), dtype=np.float32)
        for i, v in enumerate(vec.to_pylist()):
            if v is not None:
                mat[i] = v
    return cols, mat, dim


def _record(cols: dict[str, list[Any]], i: int, vec: Any, now: datetime, record_cls: Any) -> Any:
    """Row ``i`` as the MemoryRecord CrewAI's LanceDBStorage would return,
    except that LanceDB's zero vector (its "no embedding") becomes None."""

    def col(name: str, default: Any = None) -> Any:
        c = cols.get(name)
        return default if c is None else c[i]

    cats, meta = col("categories_str"), col("metadata_str")
    importance = col("importance")
    emb = vec.tolist() if vec.any() else None
    return record_cls(
        id=str(col("id")),
        content=str(col("content") or ""),
        scope=str(col("scope") or "/"),
        categories=json.loads(cats) if cats else [],
        metadata=json.loads(meta) if meta else {},
        importance=0.5 if importance is None else float(importance),
        created_at=_parse_dt(col("created_at"), now),
        last_accessed=_parse_dt(col("last_accessed"), now),
        embedding=emb,
        source=col("source") or None,
        private=bool(col("private", False)),
    )


def _order(cols: dict[str, list[Any]], n: int, summary: ImportSummary) -> list[int]:
    """Row indices to import, oldest created_at first (so ties between equal
    scores favour newer records, as in the source), one row per id (the
    newest last_accessed), without CrewAI's placeholder row."""
    ids = cols["id"]
    keep: dict[str, int] = {}
    accessed = cols.get("last_accessed") or [""] * n
    for i in range(n):
        rid = ids[i]
        if rid == _PLACEHOLDER_ID:
            continue
        summary.read += 1
        j = keep.get(rid)
        if j is None:
            keep[rid] = i
        else:
            summary.duplicates += 1
            if str(accessed[i] or "") >= str(accessed[j] or ""):
                keep[rid] = i
    created = cols.get("created_at") or [""] * n

    def key(i: int) -> tuple[str, int]:
        try:
            return _parse_dt(created[i], datetime.max).isoformat(), i
        except (TypeError, ValueError):
            return "9999", i

    return sorted(keep.values(), key=key)


def _open_target(to: Any) -> tuple[Any, bool, str]:
    from crewcore.memory.storage import MemoryStorage

    if isinstance(to, MemoryStorage):
        return to, False, to.path
    store = MemoryStorage(to)
    return store, True, store.path


def _check_dim(store: Any, dim: int, target: str) -> None:
    """Refuse, before anything is written, a source whose dimension differs
    from the store's (CrewAI's EmbeddingDimensionMismatchError from a search)."""
    from crewai.memory.storage.backend import EmbeddingDimensionMismatchError

    try:
        store.search([0.0] * dim, limit=1)
    except EmbeddingDimensionMismatchError as e:
        stored = int(getattr(e, "stored_dim", 0) or 0)
        raise ImportDimensionError(
            f"the LanceDB memory's embeddings have {dim} dimensions but the store {target} holds "
            f"{stored}-dimensional ones: nothing was imported; import into another store (--to), or re-embed",
            stored_dim=stored, new_dim=dim,
        ) from None


def import_lancedb(
    source: str | os.PathLike[str] | None = None,
    to: Any = None,
    *,
    table: str = TABLE,
    batch_size: int = 500,
    progress: Progress | None = None,
) -> ImportSummary:
    """Copy a CrewAI LanceDB memory into a crewcore memory store.

    Args:
        source: the LanceDB directory CrewAI's ``LanceDBStorage`` writes
            (``Memory(storage="lancedb")`` or a path spec); a ``<table>.lance``
            directory also works. Default: CrewAI's default location,
            :func:`default_lancedb_path`.
        to: the crewcore store: a path (database file or directory), a
            ``postgresql://`` DSN (``#schema`` allowed), or a ``MemoryStorage``
            (left open). Default: crewcore's default store (the one
            ``crewcore.install()`` uses when not given ``memory=``).
        table: the LanceDB table (CrewAI's default ``"memories"``).
        batch_size: records per write (each batch is one transaction).
        progress: called as ``progress(done, total)`` after each batch.

    Every field is kept: id, content, scope (normalized as crewcore stores
    scopes), categories, metadata, importance, created_at, last_accessed,
    source, private and the embedding (LanceDB's all-zero vector, its form of
    "no embedding", is imported as no embedding). A record whose id the store
    already holds is left as it is, so importing again adds only new records.
    Rows crewcore cannot store (for example a scope with a ``..`` segment) are
    listed in ``summary.refused``; the others are imported. The LanceDB files
    are only read.

    Returns:
        an :class:`ImportSummary`.

    Raises:
        LanceDBNotFoundError: ``source`` does not exist.
        NotALanceDBMemoryError: ``source`` is not a CrewAI LanceDB memory.
        ImportDimensionError: the store holds embeddings of another dimension
            (checked before anything is written).
        LanceDBUnavailableError: the ``lancedb`` package cannot be imported.
    """
    from crewcore.memory import validate

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
    t0 = time.monotonic()
    src, table = _source(source, table)
    tbl = _open_table(src, table)
    cols, mat, dim = _read(tbl, src, table)
    summary = ImportSummary(source=str(src), table=table, target="", dim=dim)
    order = _order(cols, len(cols["id"]), summary)
    from crewai.memory.types import MemoryRecord

    store, owned, summary.target = _open_target(to)
    try:
        had = store.count() > 0
        if order and dim:
            _check_dim(store, dim, summary.target)
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        done = 0
        for start in range(0, len(order), batch_size):
            batch = []
            for i in order[start:start + batch_size]:
                rid = str(cols["id"][i])
                try:
                    rec = _record(cols, i, mat[i], now, MemoryRecord)
                    validate.to_row(rec)
                except (CrewcoreError, ValueError, TypeError) as e:  # pydantic's ValidationError is a ValueError
                    summary.refused.append((rid, _reason(e)))
                    continue
                if had and store.get_record(rec.id) is not None:
                    summary.already_present += 1
                    continue
                batch.append(rec)
            if batch:
                _save(store, batch, dim, summary)
            done = min(start + batch_size, len(order))
            if progress is not None:
                progress(done, len(order))
        if progress is not None and not order:
            progress(0, 0)
        summary.total = store.count()
    finally:
        if owned:
            store.close()
    summary.seconds = time.monotonic() - t0
    return summary


def _reason(e: Exception) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}"


def _save(store: Any, batch: list[Any], dim: int, summary: ImportSummary) -> None:
    from crewai.memory.storage.backend import EmbeddingDimensionMismatchError

    try:
        store.save(batch)
    except EmbeddingDimensionMismatchError as e:
        raise ImportDimensionError(
            f"the store {summary.target} took embeddings of another dimension while importing "
            f"({e}); {summary.imported} records were imported before", stored_dim=e.stored_dim, new_dim=dim,
        ) from None
    except (InvalidRecordError, InvalidScopeError):
        # A record the engine refused (a check the Python validation leaves to
        # it): store the batch one by one to name it; a failing store (full,
        # read-only, unreachable) raises other errors, which end the import.
        for rec in batch:
            try:
                store.save([rec])
            except (InvalidRecordError, InvalidScopeError) as e1:
                summary.refused.append((rec.id, _reason(e1)))
                continue
            _count(summary, rec)
        return
    for rec in batch:
        _count(summary, rec)


def _count(summary: ImportSummary, rec: Any) -> None:
    summary.imported += 1
    if rec.embedding:
        summary.with_embedding += 1


# ---------------------------------------------------------------------------
# install(): the notice about an existing LanceDB memory

_noticed: set[tuple[str, str]] = set()
_noticed_lock = threading.Lock()


def _has_lancedb_data(path: Path, table: str = TABLE) -> bool:
    """Whether a LanceDB table directory with data files exists (stat calls only)."""
    data = path / f"{table}.lance" / "data"
    try:
        with os.scandir(data) as it:
            return any(e.name.endswith(".lance") for e in it)
    except OSError:
        return False


def _store_is_empty(target: str | None) -> bool:
    """Whether the crewcore store ``target`` holds no record (a missing or
    empty file without opening it). A store that cannot be opened counts as
    not empty: nothing is said about it here."""
    from crewcore.memory.postgres import is_dsn
    from crewcore.memory.storage import MemoryStorage, resolve_db_path

    if target is None or not is_dsn(target.partition("#")[0]):
        p = Path(resolve_db_path(target))
        try:
            if p.stat().st_size == 0:
                return True
        except FileNotFoundError:
            return True
        except OSError:
            return False
    try:
        store = MemoryStorage(target)
    except CrewcoreError:
        return False
    try:
        return store.count() == 0
    except CrewcoreError:
        return False
    finally:
        store.close()


def notice_existing(target: str | None, import_existing: bool = False) -> ImportSummary | None:
    """``crewcore.install()``'s check: when CrewAI's default LanceDB memory
    holds records and the crewcore store CrewAI's default memory now uses
    (``target``: install's ``memory=``, None for the default) is empty, warn
    once per process with :class:`LanceDBMemoryWarning` naming both and the
    import command, or (``import_existing``) import it and return the summary.

    Costs a few ``stat`` calls when there is no LanceDB directory; lancedb is
    imported only when a LanceDB table with data files exists and the store
    is empty."""
    src = default_lancedb_path()
    if not _has_lancedb_data(src):
        return None
    key = (str(src), str(target))
    with _noticed_lock:
        if key in _noticed and not import_existing:
            return None
    if not _store_is_empty(target):
        return None
    try:
        n = count_lancedb(src)
    except MemoryImportError:
        return None
    if n == 0:
        return None
    if import_existing:
        return import_lancedb(src, target)
    with _noticed_lock:
        if key in _noticed:
            return None
        _noticed.add(key)
    from crewcore.memory.storage import resolve_db_path
    from crewcore.memory.postgres import is_dsn, redact

    where = redact(target) if target is not None and is_dsn(target.partition("#")[0]) else resolve_db_path(target)
    to = f" --to {where}" if target is not None else ""
    warnings.warn(
        LanceDBMemoryWarning(
            f"crewcore: CrewAI's LanceDB memory at {src} holds {n} records, but CrewAI's memory now "
            f"stores in crewcore at {where}, which is empty, so recall() will not see them. Import them "
            f"once with: crewcore memory import --from-lancedb {src}{to} "
            "(or crewcore.install(import_existing=True)); the LanceDB files are left as they are"
        ),
        stacklevel=3,
    )
    return None
