"""Crash safety (SIGKILL mid-run) and fork() safety.

Crash: a writer process saves batches of 50 records in a loop and prints each
batch number only after ``save()`` returned. The test kills it with SIGKILL at
a random moment, then opens the store in fresh processes with each engine:
every acknowledged batch is there completely, and no batch is partial.

Fork: a process with the native engine loaded forks; the child keeps using the
same ``MemoryStorage`` object. It must not hang, must warn that it switches to
the pure-Python engine, must see the parent's records, and must exit 0.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import child_env, last_json, run_py, script

pytestmark = pytest.mark.slow

BATCH = 50

_WRITER = """
    import sys
    from crewai.memory.types import MemoryRecord
    from crewcore import MemoryStorage

    eng, path, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
    s = MemoryStorage(path, engine=eng)
    assert s.backend == eng
    DIM = 32
    b = start
    while True:
        recs = [
            MemoryRecord(
                id=f"b{b}-{i}",
                content=f"batch {b} item {i} " + "lorem ipsum " * 40,
                scope=f"/crash/{b % 7}/{i % 3}",
                categories=[f"c{i % 4}"],
                metadata={"batch": b, "i": i},
                embedding=[((b * 31 + i * 17 + k * 7) % 101) / 50.0 - 1.0 for k in range(DIM)],
            )
            for i in range(__BATCH__)
        ]
        s.save(recs)
        print(b, flush=True)
        b += 1
""".replace("__BATCH__", str(BATCH))

_VERIFY = """
    import json, sys
    from collections import Counter
    from crewai.memory.types import MemoryRecord
    from crewcore import MemoryStorage

    eng, path = sys.argv[1], sys.argv[2]
    s = MemoryStorage(path, engine=eng)
    assert s.backend == eng
    n = s.count()
    recs = s.list_records(limit=10**9)
    per_batch = Counter(int(r.id.split("-")[0][1:]) for r in recs)
    probe = [0.1] * 32
    hits = s.search(probe, limit=5)
    # The store is writable after the crash.
    s.save([MemoryRecord(id="probe", content="probe", scope="/probe", embedding=probe)])
    ok_write = s.count() == n + 1 and s.search(probe, scope_prefix="/probe", limit=1)[0][0].id == "probe"
    s.delete(record_ids=["probe"])
    print(json.dumps({"count": n, "listed": len(recs), "per_batch": per_batch,
                      "hits": len(hits), "ok_write": ok_write, "after": s.count()}))
"""


def _kill_writer_midway(writer: str, path: str, start: int, rnd: random.Random) -> list[int]:
    """Run the writer until a random number of batches is acknowledged, then
    SIGKILL it at a random moment. Returns the acknowledged batch numbers."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script(_WRITER), writer, path, str(start)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    acked: list[int] = []
    want = rnd.randint(3, 12)
    try:
        while len(acked) < want:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"writer died early: rc={proc.wait()} stderr={proc.stderr.read()}")
            acked.append(int(line))
        time.sleep(rnd.uniform(0.0, 0.05))  # a random moment, usually inside a save()
        proc.send_signal(signal.SIGKILL)
        # Read through the same buffered file as readline() did (communicate()
        # would read the raw pipe and skip lines already buffered).
        rest = proc.stdout.read()
        err = proc.stderr.read()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, err
    acked += [int(x) for x in rest.split()]
    return acked


@pytest.mark.parametrize("writer", ["native", "python"])
def test_sigkill_mid_write_loses_no_acknowledged_batch(tmp_path, writer):
    rnd = random.Random()
    seed = rnd.randrange(1 << 30)
    rnd.seed(seed)
    path = str(tmp_path / "crash")
    all_acked: list[int] = []
    durable: set[int] = set()  # batches seen complete after an earlier crash
    start = 0
    for rnd_no in range(2):
        acked = _kill_writer_midway(writer, path, start, rnd)
        assert acked == list(range(start, start + len(acked))), (acked, start)
        all_acked += acked
        views = {}
        for verifier in ("native", "python"):
            v = last_json(run_py(_VERIFY, verifier, path, timeout=120).stdout)
            views[verifier] = v
            per_batch = {int(k): c for k, c in v["per_batch"].items()}
            ctx = f"seed={seed} round={rnd_no} writer={writer} verifier={verifier} acked={all_acked[-3:]}"
            assert v["count"] == v["listed"] == sum(per_batch.values()), ctx
            assert v["count"] % BATCH == 0, f"partial batch: {ctx} per_batch={per_batch}"
            assert all(c == BATCH for c in per_batch.values()), f"partial batch: {ctx} {per_batch}"
            missing = (set(all_acked) | durable) - set(per_batch)
            assert not missing, f"acknowledged batches lost: {sorted(missing)} {ctx}"
            # At most one batch committed but not yet acknowledged when killed.
            extra = set(per_batch) - set(all_acked) - durable
            assert extra <= {all_acked[-1] + 1}, f"unexpected batches {extra} {ctx}"
            assert v["hits"] == 5 and v["ok_write"] and v["after"] == v["count"], ctx
        assert views["native"]["count"] == views["python"]["count"]
        assert views["native"]["per_batch"] == views["python"]["per_batch"]
        durable |= {int(b) for b in views["native"]["per_batch"]}
        start = max(durable) + 1


_FORK = """
    import json, os, signal, sys, time, warnings
    from crewai.memory.types import MemoryRecord
    import crewcore
    from crewcore import MemoryStorage

    path, path2 = sys.argv[1], sys.argv[2]
    DIM = 8

    def v(i):
        return [float(i) + k * 0.5 for k in range(DIM)]

    s = MemoryStorage(path)
    assert s.backend == "native", s.backend
    s.save([MemoryRecord(id=f"p{i}", content=f"parent {i}", scope=f"/parent/{i % 2}", embedding=v(i))
            for i in range(20)])
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        out = {}
        rc = 1
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out["count"] = s.count()
                out["search"] = [x.id for x, _ in s.search(v(3), limit=3)]
                out["scoped"] = sorted(x.id for x, _ in s.search(v(3), scope_prefix="/parent/1", limit=50))
                s.save([MemoryRecord(id="child", content="from the child", scope="/child", embedding=v(99))])
                out["count_after"] = s.count()
                out["get_parent"] = s.get_record("p7").content
                out["backend"] = s.backend
                out["auto"] = crewcore.backend()
                fresh = MemoryStorage(path2)
                fresh.save([MemoryRecord(id="x", content="x", embedding=v(1))])
                out["fresh_backend"] = fresh.backend
                out["fresh_count"] = fresh.count()
            out["warnings"] = [[c.category.__name__, str(c.message)] for c in caught]
            rc = 0
        except BaseException as e:
            out["error"] = repr(e)
        os.write(w, json.dumps(out).encode())
        os.close(w)
        sys.exit(rc)  # an ordinary interpreter exit in the child
    os.close(w)
    deadline = time.monotonic() + 60
    status = None
    while time.monotonic() < deadline:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
            break
        time.sleep(0.05)
    hung = status is None
    if hung:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    child = json.loads(b"".join(chunks) or b"{}")
    print(json.dumps({
        "hung": hung,
        "exit": None if hung else os.waitstatus_to_exitcode(status),
        "child": child,
        "parent_backend": s.backend,
        "parent_count": s.count(),
        "parent_sees_child": s.get_record("child") is not None,
    }))
"""


def test_fork_child_switches_to_python_engine(tmp_path):
    out = last_json(run_py(_FORK, str(tmp_path / "forked"), str(tmp_path / "fresh"), timeout=120).stdout)
    assert not out["hung"], "the forked child hung"
    child = out["child"]
    assert "error" not in child, child.get("error")
    assert out["exit"] == 0
    assert child["count"] == 20
    assert child["search"][0] == "p3"
    assert child["scoped"] == sorted(f"p{i}" for i in range(1, 20, 2))
    assert child["count_after"] == 21
    assert child["get_parent"] == "parent 7"
    assert child["backend"] == "python"
    assert child["auto"] == "python"
    assert child["fresh_backend"] == "python" and child["fresh_count"] == 1
    switching = [m for c, m in child["warnings"] if c == "RuntimeWarning" and "fork" in m]
    assert switching, child["warnings"]
    assert any("switch" in m and "pure-Python" in m for m in switching), switching
    # The parent keeps its native engine and sees what the child wrote.
    assert out["parent_backend"] == "native"
    assert out["parent_count"] == 21
    assert out["parent_sees_child"]
