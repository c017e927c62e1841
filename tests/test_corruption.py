"""A damaged store file is reported, never read back as different data (issue 18, item 6).

SQLite keeps no page checksums: a flipped byte in a record came back as other
content, metadata or vector with no error (tests/corruption_trials.py: 26 of
40 trials on each engine; 14 more raised raw sqlite3 or decoding errors),
and a store truncated to 0 bytes opened as a new empty store (300 records
gone). Now every record carries a CRC-32 of its stored values, computed the
same way by both engines, and verified as it is read; the marker beside the
database makes an emptied file an error. Each case is written by one engine,
damaged on disk, and read by the other one (and by the same one), each in
its own process; ``crewcore memory check`` finds the same damage.
Figures: docs/reliability.md, "Memory: corruption".
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import struct
import subprocess

import pytest

from conftest import child_env, last_json, run_py

from crewcore import _cli
from crewcore.memory.integrity import MARKER_SUFFIX, _crc, row_checksum

pytestmark = pytest.mark.slow

ENGINES = ["native", "python"]
CASES = ["content", "metadata", "vector", "truncate"]
TARGET_VEC = [1000.0 + 1.375 * i for i in range(16)]


def test_checksum_known_values() -> None:
    """The canonical encoding, byte for byte as memory/checksum_test.go (values from zlib)."""
    emb = struct.pack("<3f", 1.0, -2.5, 0.125)
    args = ("rec-1", "héllo wörld", "/crew/a", '["x","y"]', '{"k":1}')
    times = ("2026-01-02T03:04:05.000006", "2026-01-02T03:04:05.000007")
    enc = lambda *t: tuple(x.encode() for x in t)  # noqa: E731
    # Version 2 (the vector's bytes; still checked when a store is upgraded).
    assert _crc(enc(*args, *times, "agent") + (emb,), 0.75, 1) == 0xC930FD7F
    # Version 3 (the vector's CRC-32 in place of its bytes), as memory/checksum_test.go.
    assert row_checksum(*args, 0.75, *times, "agent", 1, emb) == 0x2AD6DBC5
    assert row_checksum(*args, -0.0, *times, None, 0, None) == 0x61780B8D
    assert row_checksum(*args, -0.0, *times, "", 0, b"") == 0x61780B8D  # NULL and empty alike


_WRITE = """
    import json, sys
    from crewai.memory.types import MemoryRecord
    from crewcore import MemoryStorage

    engine, paths, vec = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    for path in paths:
        s = MemoryStorage(path, engine=engine)
        assert s.backend == engine, s.backend
        recs = [MemoryRecord(id=f"r{i:02d}", content=f"content {i}", scope="/other",
                             embedding=[float(i == j) for j in range(16)]) for i in range(39)]
        recs.append(MemoryRecord(id="target", content="TARGET-CONTENT-needle-0123456789",
                                 scope="/target", metadata={"tag": "TARGET-META-needle"},
                                 embedding=vec))
        s.save(recs)
        s.update(MemoryRecord(id="r05", content="updated", scope="/other", embedding=None))
        s.touch_records(["r06", "target"])
        s.close()
    print(json.dumps({"ok": True}))
"""

_READ = """
    import json, sys
    from crewcore import MemoryStorage
    from crewcore.errors import StoreCorruptError

    engine, cases = sys.argv[1], json.loads(sys.argv[2])
    out = {}
    for case, path in cases.items():
        res = out[case] = {}
        try:
            s = MemoryStorage(path, engine=engine)
        except StoreCorruptError as e:
            res["open"] = str(e)
            continue
        assert s.backend == engine, s.backend
        # The search first: the native engine checks a vector against its
        # CRC when it first reads it (the fallback when it loads the store).
        for name, read in [("search", lambda: s.search([1.0] * 16, limit=3)),
                           ("count", lambda: s.count()), ("get", lambda: s.get_record("r01")),
                           ("list", lambda: s.list_records()),
                           ("scopes", lambda: s.list_scopes())]:
            try:
                read()
                res[name] = "no error"
            except StoreCorruptError as e:
                res[name] = str(e)
        res["deleted"] = s.delete(record_ids=["target"])
        res["count_after"] = s.count()
        res["r07"] = s.get_record("r07").content
        res["r05"] = s.get_record("r05").content
        s.close()
    print(json.dumps(out))
"""


def _flip(path: str, needle: bytes, off: int) -> None:
    data = bytearray(open(path, "rb").read())
    assert data.count(needle) == 1, f"{needle!r} found {data.count(needle)} times in {path}"
    data[data.index(needle) + off] ^= 0x04
    open(path, "wb").write(bytes(data))


def _damage(path: str, case: str) -> None:
    assert not os.path.exists(path + "-wal"), "the WAL outlived the writer"
    if case == "truncate":
        os.truncate(path, 0)
    elif case == "content":
        _flip(path, b"TARGET-CONTENT-needle-0123456789", 20)
    elif case == "metadata":
        _flip(path, b"TARGET-META-needle", 3)
    else:  # vectors live in the store's segment files (format version 3)
        _flip(path + "-seg-000001.vec", struct.pack("<16f", *TARGET_VEC), 25)


@pytest.mark.parametrize("writer", ENGINES)
def test_damage_written_by_one_engine_is_reported_by_both(tmp_path, writer: str) -> None:
    paths = {c: str(tmp_path / f"{c}.db") for c in CASES}
    run_py(_WRITE, writer, json.dumps(list(paths.values())), json.dumps(TARGET_VEC))
    for case, path in paths.items():
        assert os.path.exists(path + MARKER_SUFFIX)
        _damage(path, case)

    # crewcore memory check (Go) sees the same damage, whoever wrote the file.
    for case, path in paths.items():
        p = subprocess.run([str(_cli.executable()), "memory", "check", "--json", path],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 1, (case, p.stdout, p.stderr)
        if case == "truncate":
            assert "empty (0 bytes)" in p.stderr and MARKER_SUFFIX in p.stderr, p.stderr
        else:
            rep = json.loads(p.stdout)["report"]
            assert [d["id"] for d in rep["damaged"]] == ["target"], rep
            assert rep["records"] == 40

    for reader in ENGINES:
        # Each reader gets fresh copies: the other one deletes the target.
        copies = {}
        for case, path in paths.items():
            cp = str(tmp_path / f"{reader}-{case}.db")
            with open(path, "rb") as f, open(cp, "wb") as g:
                g.write(f.read())
            # The vectors live beside the database in segment files (format version 3).
            for seg in glob.glob(glob.escape(path) + "-seg-*"):
                shutil.copyfile(seg, cp + seg[len(path):])
            if os.path.exists(path + MARKER_SUFFIX):
                open(cp + MARKER_SUFFIX, "w").close()
            copies[case] = cp
        env = child_env(CREWCORE_FORCE_PYTHON="1") if reader == "python" else child_env()
        got = last_json(run_py(_READ, reader, json.dumps(copies), env=env).stdout)
        for case in CASES:
            res = got[case]
            if case == "truncate":
                assert "empty (0 bytes)" in res["open"] and copies[case] in res["open"], res
                continue
            for name in ("count", "get", "list", "search", "scopes"):
                assert '"target"' in res[name] and "checksum" in res[name], (writer, reader, case, name, res)
                if case == "vector":
                    assert "-seg-000001.vec" in res[name], res  # the message names the file
            assert res["deleted"] == 1 and res["count_after"] == 39, res
            assert res["r07"] == "content 7" and res["r05"] == "updated", res


_FULL = """
    import json, os, random, sys
    from crewai.memory.types import MemoryRecord
    from crewcore import MemoryStorage

    path, engine = sys.argv[1], sys.argv[2]
    s = MemoryStorage(path, engine=engine)
    rnd = random.Random(1)

    def batch(tag):
        return [MemoryRecord(id=f"{tag}-{i}", content=rnd.randbytes(30_000).hex(),
                             embedding=[rnd.random() for _ in range(8)]) for i in range(2)]

    for k in range(100):  # about 12 MiB of records
        s.save(batch(f"a{k}"))
    out = {"reserve": os.path.getsize(path + "-crewcore")}
    with open(os.path.join(os.path.dirname(path), "filler"), "wb") as f:  # the disk fills up
        try:
            while True:
                f.write(bytes(65536))
                f.flush()
        except OSError:
            pass
    out["full"], out["more"] = None, 0
    for n in range(100):
        try:
            s.save(batch(f"b{n}"))
            out["more"] += 2
        except Exception as e:
            out["full"] = f"{type(e).__name__}: {e}"
            break
    out["deleted"] = s.delete(record_ids=[f"a{k}-{i}" for k in range(50) for i in range(2)])
    saved = 0
    for k in range(30):  # the space of the deleted records is used again
        s.save(batch(f"c{k}"))
        saved += 1
    out["saved_after"] = saved
    out["count"] = s.count()
    s.close()
    print(json.dumps(out))
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_delete_frees_space_on_a_full_disk(tmp_path, engine: str) -> None:
    """On a full disk (a 32 MiB tmpfs filled by another file) a delete goes
    through (the store's reserve in its marker is released for it and for the
    checkpoint after), and the space of the deleted records takes new saves."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mnt)], check=True)
    try:
        got = last_json(run_py(_FULL, str(mnt / "memory.db"), engine, timeout=300).stdout)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)
    assert got["reserve"] > 4 << 20, got  # grown with the store
    assert "full" in got["full"].lower() and str(mnt) in got["full"], got
    assert got["deleted"] == 100 and got["saved_after"] == 30, got
    assert got["count"] == 200 + got["more"] - 100 + 60, got
