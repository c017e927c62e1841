"""Writes the stores of memory/testdata/formats with the engine of the
checkout it runs in (kept for the record: it was run once, at commit
014bf4c, before format version 3, to make v2/memory.db; v1/memory.db is that
store with the checksum column dropped and version set to 1, the version 1
schema). expected.json lists every record as a reader must find it.

    .venv/bin/python memory/testdata/formats/make_stores.py memory/testdata/formats
"""

import json
import os
import shutil
import sqlite3
import struct
import sys
from datetime import datetime, timedelta, timezone

from crewai.memory.types import MemoryRecord

from crewcore.memory.storage import MemoryStorage

out = sys.argv[1]
dim = 8
recs = []
base = datetime(2025, 3, 1, 12, 0, 0, 123456)
for i in range(40):
    emb = None if i % 13 == 5 else [struct.unpack("<f", struct.pack("<f", ((i * 7 + j * 3) % 11 - 5) / 3.0))[0] for j in range(dim)]
    recs.append(MemoryRecord(
        id=f"rec-{i:03d}",
        content=f"memory number {i}: " + ("héllo wörld ☃ " if i % 3 == 0 else "plain text ") * (1 + i % 4),
        scope=["/", "/crew/a", "/crew/b/x", "/crew/b/y", "/other"][i % 5],
        categories=[["alpha"], ["beta", "gamma"], [], ["alpha", "delta"]][i % 4],
        metadata={"n": i, "tag": f"t{i % 3}", "nested": {"k": [1, 2.5, None, True]}} if i % 2 else {},
        importance=(i % 10) / 10,
        created_at=base + timedelta(hours=i),
        last_accessed=base + timedelta(hours=i, minutes=30),
        source=None if i % 4 else f"agent-{i % 3}",
        private=(i % 7 == 3),
        embedding=emb,
    ))
v2 = os.path.join(out, "v2")
shutil.rmtree(v2, ignore_errors=True)
os.makedirs(v2)
st = MemoryStorage(os.path.join(v2, "memory.db"), engine="native")
st.save(recs[:30])
st.save(recs[30:])
st.delete(record_ids=["rec-007"])
st.close()
# The marker's space reserve is zeros: keep only its text in the repository.
marker = os.path.join(v2, "memory.db-crewcore")
with open(marker, "rb") as f:
    text = f.read().rstrip(b"\0")
with open(marker, "wb") as f:
    f.write(text)
for suffix in ("-wal", "-shm"):
    if os.path.exists(os.path.join(v2, "memory.db" + suffix)):
        raise SystemExit("store not closed cleanly")

v1 = os.path.join(out, "v1")
shutil.rmtree(v1, ignore_errors=True)
os.makedirs(v1)
shutil.copy(os.path.join(v2, "memory.db"), os.path.join(v1, "memory.db"))
c = sqlite3.connect(os.path.join(v1, "memory.db"), isolation_level=None)
c.execute("ALTER TABLE records DROP COLUMN checksum")
c.execute("UPDATE crewcore_meta SET value='1' WHERE key='version'")
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
c.execute("VACUUM")
c.close()
for suffix in ("-wal", "-shm"):
    p = os.path.join(v1, "memory.db" + suffix)
    if os.path.exists(p):
        os.remove(p)

expected = []
for r in recs:
    if r.id == "rec-007":
        continue
    expected.append({
        "id": r.id, "content": r.content, "scope": r.scope, "categories": r.categories,
        "metadata": r.metadata, "importance": r.importance,
        "created_at": r.created_at.isoformat(), "last_accessed": r.last_accessed.isoformat(),
        "source": r.source, "private": r.private, "embedding": r.embedding,
    })
with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump({"dim": dim, "records": expected}, f, indent=1, ensure_ascii=False)
print("wrote", len(expected), "records")
