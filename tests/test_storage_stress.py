"""Storage layer under load and under a killed lock holder.

* Stress: 8 processes x 4 threads for CREWCORE_STRESS_SECONDS (default 30 s,
  the issue's figure; the pure-Python fallback runs
  CREWCORE_STRESS_SECONDS_FALLBACK, default 10 s, to keep the suite within its
  time budget on a 2-core machine). Every thread loops: take one shared
  crewcore lock, increment a counter file inside it (a lost update would show
  two holders at once), write a task output. Checked: zero errors, every write
  present, counter == number of lock holds, no lock file in the working
  directory.
* SIGKILL: a process holding a lock is killed; another process gets the lock
  within its timeout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import pytest

from conftest import child_env

WORKER = r"""
import json, os, sys, threading, time
from crewcore import locks, task_outputs

db, counter, seconds, pid = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]

class T:
    def __init__(self, tid):
        self.id = tid; self.key = "stress"; self.expected_output = "e"

st = task_outputs.TaskOutputStorage(db, timeout=60)
assert st.engine == os.environ.get("EXPECT_ENGINE"), st.engine
print("ready", flush=True)
sys.stdin.readline()  # start together
stop = time.monotonic() + seconds
counts = [0] * 4
errors = []

def work(t):
    n = 0
    while time.monotonic() < stop:
        try:
            with locks.lock("stress-counter", timeout=60):
                fd = os.open(counter, os.O_RDWR)
                v = int(os.read(fd, 32) or b"0")
                os.lseek(fd, 0, 0)
                os.write(fd, str(v + 1).encode().ljust(20))
                os.close(fd)
            tid = f"{pid}-{t}-{n}"
            st.add(T(tid), {"raw": tid, "n": n}, n, inputs={"p": pid})
            n += 1
        except Exception as e:
            errors.append(repr(e))
    counts[t] = n

ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps({"adds": sum(counts), "nerr": len(errors), "errors": errors[:5]}), flush=True)
"""


@pytest.mark.parametrize("engine", ["native", "python"])
def test_stress_8_processes_x_4_threads(engine: str, tmp_path: Path) -> None:
    if engine == "native":
        seconds = float(os.environ.get("CREWCORE_STRESS_SECONDS", "30"))
    else:
        seconds = float(os.environ.get("CREWCORE_STRESS_SECONDS_FALLBACK", "10"))
    work = tmp_path / "work"
    work.mkdir()
    db = tmp_path / "data" / "latest_kickoff_task_outputs.db"
    counter = tmp_path / "counter"
    counter.write_text("0")
    env = child_env(CREWCORE_LOCK_DIR=str(tmp_path / "locks"), EXPECT_ENGINE=engine)
    if engine == "python":
        env["CREWCORE_FORCE_PYTHON"] = "1"
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(db), str(counter), str(seconds), f"p{i}"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, cwd=str(work))
        for i in range(8)
    ]
    results = []
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            assert line.strip() == "ready", (line, p.stderr.read() if p.stderr else "")
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            out, err = p.communicate(timeout=seconds + 180)
            assert p.returncode == 0, err[-2000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    errors = [e for r in results for e in r["errors"]]
    assert sum(r["nerr"] for r in results) == 0, errors
    adds = sum(r["adds"] for r in results)
    assert adds > 8 * 4  # every thread made progress
    # Read back in a fresh process of the same engine.
    check = subprocess.run(
        [sys.executable, "-c",
         "import json,sys\nfrom crewcore import task_outputs\n"
         "rows = task_outputs.TaskOutputStorage(sys.argv[1]).load()\n"
         "print(json.dumps(sorted(r['task_id'] for r in rows)))", str(db)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert check.returncode == 0, check.stderr
    ids = json.loads(check.stdout.strip().splitlines()[-1])
    assert len(ids) == adds and len(set(ids)) == adds
    assert int(counter.read_text().strip()) == adds  # no two holders at once
    assert not list(work.iterdir()), "files left in the working directory"
    assert not list(tmp_path.glob("*.lock")) and not list((tmp_path / "data").glob("*.lock"))


HOLDER = r"""
import sys, time
from crewai_core import lock_store
import crewcore.locks
crewcore.locks.install()  # the holder takes the lock through CrewAI's lock_store
cm = lock_store.lock(sys.argv[1], timeout=5)
cm.__enter__()
print("held", flush=True)
time.sleep(600)
"""

WAITER = r"""
import json, sys, time
from crewcore import locks
from crewcore.errors import LockTimeoutError
try:
    locks.acquire(sys.argv[1], timeout=0)
    print(json.dumps({"first": "acquired"}))
    sys.exit(0)
except LockTimeoutError:
    pass
print("waiting", flush=True)
t0 = time.monotonic()
l = locks.acquire(sys.argv[1], timeout=float(sys.argv[2]))
print(json.dumps({"first": "timeout", "waited": time.monotonic() - t0}), flush=True)
l.release()
"""


@pytest.mark.parametrize("holder", ["native", "python"])
@pytest.mark.parametrize("waiter", ["native", "python"])
def test_sigkill_of_lock_holder_frees_the_lock(holder: str, waiter: str, tmp_path: Path) -> None:
    name = f"sqlite:{tmp_path}/flow_states.db"
    base = dict(CREWCORE_LOCK_DIR=str(tmp_path / "locks"))

    def env(engine: str) -> dict[str, str]:
        e = child_env(**base)
        if engine == "python":
            e["CREWCORE_FORCE_PYTHON"] = "1"
        return e

    h = subprocess.Popen([sys.executable, "-c", HOLDER, name],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(holder), cwd=str(tmp_path))
    try:
        assert h.stdout is not None
        line = h.stdout.readline()
        assert line.strip() == "held", h.stderr.read() if h.stderr else ""
        w = subprocess.Popen([sys.executable, "-c", WAITER, name, "20"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env(waiter), cwd=str(tmp_path))
        assert w.stdout is not None
        assert w.stdout.readline().strip() == "waiting", w.stderr.read() if w.stderr else ""
        time.sleep(0.3)
        h.send_signal(signal.SIGKILL)
        h.wait(timeout=10)
        out, err = w.communicate(timeout=60)
        assert w.returncode == 0, err
        got = json.loads(out.strip().splitlines()[-1])
        assert got["first"] == "timeout" and got["waited"] < 20
    finally:
        if h.poll() is None:
            h.kill()
            h.wait()
