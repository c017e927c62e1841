"""The upgrade of a version 1 or 2 store (vectors in the records table) to
format version 3 (vectors in segment files) by the pure-Python engine, the
same as the Go engine's ``memory/upgrade.go``: a backup of the database
(``VACUUM INTO <database>-v<N>-backup``), then one write transaction that
writes every vector to a segment, copies the rows into a new records table
with their addresses and version 3 checksums, drops the old table and
records version 3; then ``VACUUM``. A row that failed its checksum keeps a
checksum that fails, so it is still reported. A crash before the commit
leaves the store as it was.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from typing import Any

from crewcore.memory.fallback_seg import SEGMENTS_SQL, append_vectors
from crewcore.memory.integrity import LEGACY_RAW_COLS, _crc, _crc3

__all__ = ["upgrade"]

_CHUNK = 1024
_COPY = ("INSERT INTO records_v3(rid, id, content, scope, categories, metadata, importance, created_at, "
         "last_accessed, source, private, seg, row, checksum) SELECT rid, id, content, scope, categories, "
         "metadata, importance, created_at, last_accessed, source, private, ?, ?, ? FROM records WHERE rid = ?")


def upgrade(db: Any, version3: str, records_schema: str, classify: Any) -> None:
    """Upgrade the store of ``db`` (a ``fallback_db.StoreDb``) to ``version3``;
    ``records_schema`` creates its records table, ``classify`` maps sqlite3
    errors (fallback_db passes its own)."""

    def db_version() -> str:
        return version3

    path = db.path
    with db._rconn() as conn:
        (version,) = conn.execute("SELECT value FROM crewcore_meta WHERE key='version'").fetchone()
        if version == db_version():
            return
        backup = f"{path}-v{version}-backup"
        tmp = backup + ".tmp"
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        try:
            conn.execute("VACUUM INTO ?", (tmp,))
        except sqlite3.Error as e:
            raise classify(f"back up store before the upgrade, to {tmp},", path, e) from None
    os.replace(tmp, backup)
    records_v3 = records_schema.replace("CREATE TABLE IF NOT EXISTS records (", "CREATE TABLE records_v3 (")

    def fn(conn: sqlite3.Connection) -> tuple[None, None]:
        (v,) = conn.execute("SELECT value FROM crewcore_meta WHERE key='version'").fetchone()
        if v == db_version():
            return None, None
        (has_sum,) = conn.execute(
            "SELECT count(*) FROM pragma_table_info('records') WHERE name = 'checksum'").fetchone()
        cols = LEGACY_RAW_COLS if has_sum else LEGACY_RAW_COLS.replace("embedding, checksum", "embedding, NULL")
        row = conn.execute("SELECT value FROM crewcore_meta WHERE key='dim'").fetchone()
        dim = int(row[0]) if row else (db.opt_dim or 0)
        conn.execute("DROP TABLE IF EXISTS records_v3")
        conn.execute(records_v3)
        conn.execute(SEGMENTS_SQL)
        last = 0
        while True:
            rows = conn.execute(f"SELECT {cols} FROM records WHERE rid > ? ORDER BY rid LIMIT ?",
                                (last, _CHUNK)).fetchall()
            if not rows:
                break
            last = rows[-1][0]
            with_vec = [r for r in rows if dim and r[11] and len(r[11]) == 4 * dim]
            addrs = dict(zip((r[0] for r in with_vec),
                             append_vectors(conn, path, dim, [bytes(r[11]) for r in with_vec])))
            for r in rows:
                texts = tuple(t if isinstance(t, bytes) else b"" for t in r[1:6] + r[7:9]) + (r[9] or b"",)
                imp, priv = float(r[6] or 0.0), int(r[10] or 0)
                seg, srow, vcrc = addrs.get(r[0], (None, None, 0))
                vlen = 4 * dim if seg is not None else 0
                new = _crc3(texts, imp, priv, vlen, vcrc)
                stored = r[12]
                if stored is None and not has_sum:
                    cks = new  # version 1: taken as it is
                elif stored is None or _crc(texts + (r[11] or b"",), imp, priv) != stored:
                    cks = stored  # damaged: stays damaged
                elif r[11] and seg is None:
                    cks = new ^ 1  # a vector of the wrong size: reported, never served
                else:
                    cks = new
                conn.execute(_COPY, (seg, srow, cks, r[0]))
        for q in ("DROP TABLE records", "ALTER TABLE records_v3 RENAME TO records",
                  f"UPDATE crewcore_meta SET value = '{db_version()}' WHERE key = 'version'",
                  "INSERT INTO changes(record_id) VALUES ('*')"):
            conn.execute(q)
        return None, None

    db.write("upgrade store", fn, sync_first=False)
    with contextlib.suppress(sqlite3.Error), db._rconn() as conn:
        conn.execute("VACUUM")

