"""SIGKILL trials of the segment crash protocol (issue 14; docs/reliability.md,
"Memory: segment files").

Each trial starts a writer process that saves batches of records (random
sizes, 1-64 records, 24-dim vectors; some replace earlier ids, some have no
vector) and prints the ids of each batch once save() returned, then kills it
with SIGKILL after a random delay. The store is then opened in this process:
every acknowledged record must be there with its exact vector, nothing else
may be half there (every record read back is one the writer saved, whole),
and `crewcore memory check` must find the store intact.

    .venv/bin/python tests/segment_crash_trials.py --trials 300 --engine native
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

WRITER = r"""
import json, random, struct, sys
from crewai.memory.types import MemoryRecord
from crewcore.memory.storage import MemoryStorage

path, engine, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rnd = random.Random(seed)
s = MemoryStorage(path, engine=engine)
print("open", flush=True)
n = 0
while True:
    batch = []
    for _ in range(rnd.randint(1, 64)):
        i = rnd.randrange(n + 1) if rnd.random() < 0.1 else n
        n = max(n, i + 1)
        v = [float(struct.unpack("<f", struct.pack("<f", rnd.uniform(-1, 1)))[0]) for _ in range(24)]
        batch.append(MemoryRecord(id=f"r{i}", content=f"c{i}-{rnd.random()}", scope=f"/s{i % 3}",
                                  embedding=None if i % 17 == 5 else v))
    print("P " + json.dumps([[r.id, r.content, r.embedding] for r in batch]), flush=True)
    s.save(batch)
    print("A", flush=True)
"""


def trial(dirpath: str, engine: str, seed: int, reader_engine: str) -> dict:
    path = os.path.join(dirpath, f"t{seed}", "memory.db")
    os.makedirs(os.path.dirname(path))
    env = dict(os.environ)
    env.pop("CREWCORE_FORCE_PYTHON", None)
    p = subprocess.Popen([sys.executable, "-c", WRITER, path, engine, str(seed)], stdout=subprocess.PIPE,
                         text=True, env=env)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "open"
    time.sleep(random.Random(seed).uniform(0.0, 0.6))
    p.send_signal(signal.SIGKILL)
    out, _ = p.communicate()
    # The acknowledged state: every batch whose save() returned ("A" after
    # its "P" line). The batch the kill interrupted may or may not have
    # committed: its records may be there, whole, or not at all.
    acked: dict[str, tuple] = {}
    pending: dict[str, tuple] = {}
    for line in out.splitlines():
        if line == "A":
            acked.update(pending)
            pending = {}
        elif line.startswith("P "):
            try:
                pending = {rid: (c, e) for rid, c, e in json.loads(line[2:])}
            except ValueError:
                pending = {}  # cut by the kill: save() was not called
    code = ("import json, sys\nfrom crewcore.memory.storage import MemoryStorage\n"
            "s = MemoryStorage(sys.argv[1], engine=sys.argv[2])\n"
            "out = {r.id: [r.content, r.embedding] for r in s.list_records(limit=10**6)}\n"
            "full = {i: s.get_record(i) for i in out}\n"
            "print(json.dumps({i: [r.content, r.embedding] for i, r in full.items()}))\n")
    got = json.loads(subprocess.run([sys.executable, "-c", code, path, reader_engine], capture_output=True,
                                    text=True, check=True, env=env).stdout.splitlines()[-1])
    missing = [i for i in acked if i not in got]
    ok = lambda i, v: (i in acked and v == list(acked[i])) or (i in pending and v == list(pending[i]))  # noqa: E731
    wrong = [i for i in acked if i in got and not ok(i, got[i])]
    torn = [i for i, v in got.items() if i not in acked and not ok(i, v)]
    # All or nothing: the interrupted batch is there whole or not at all.
    new = [i for i in pending if i not in acked]
    if new and any(i in got for i in new) and not all(i in got for i in new):
        torn.append("interrupted batch half there")
    crewcore = os.path.join(os.path.dirname(__file__), "..", "python", "crewcore", "_lib", "crewcore")
    chk = subprocess.run([crewcore, "memory", "check", path], capture_output=True, text=True)
    return {"acked": len(acked), "read": len(got), "missing": missing, "wrong": wrong, "torn": torn,
            "check": chk.returncode, "check_out": chk.stdout[-300:]}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--engine", default="native", choices=["native", "python"])
    ap.add_argument("--reader", default=None, choices=["native", "python"])
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    bad = 0
    acked = 0
    with tempfile.TemporaryDirectory() as d:
        for k in range(a.trials):
            r = trial(d, a.engine, a.seed * 100000 + k, a.reader or a.engine)
            acked += r["acked"]
            if r["missing"] or r["wrong"] or r["torn"] or r["check"] != 0:
                bad += 1
                print("FAIL", k, json.dumps(r)[:2000], flush=True)
    print(json.dumps({"engine": a.engine, "reader": a.reader or a.engine, "trials": a.trials,
                      "failed": bad, "acknowledged_records": acked}))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
