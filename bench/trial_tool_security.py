"""Trials behind docs/reliability.md, section "Tools" (issue 18, items 2-4).

Not a benchmark: it counts outcomes. For each trial of the isolated runner a
tool starts the process tree of tests/tool_security_helpers.spawn_tree (a
child ignoring SIGTERM, a double-forked setsid grandchild holding stdout,
three setsid daemons, an exec'd sleep in its own session) and then hangs past
a 2 s deadline, or returns at once; the figures are the time the call took and
the processes of that tree still present when it returned. The file and fetch
trials call the Go-native tools through the bridge on a FIFO, a socket and
IPv6 forms embedding 169.254.169.254.

    .venv/bin/python bench/trial_tool_security.py [--trials N] [--runner PATH]

``--runner PATH`` loads the isolated runner from another copy of
python/crewcore/tools/runner.py (e.g. the one before the fix:
``git show 4ac0594:python/crewcore/tools/runner.py > /tmp/runner_before.py``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "python"))

import tool_security_helpers as helpers  # noqa: E402


def _runner(path: str | None):  # type: ignore[no-untyped-def]
    if path is None:
        from crewcore.tools import runner

        return runner
    spec = importlib.util.spec_from_file_location("runner_under_trial", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _present(record: Path) -> list[int]:
    out = []
    if not record.exists():
        return out
    for line in record.read_text().split("\n"):
        if line.strip():
            pid, start = line.split()
            if helpers.start_time(int(pid)) == start:
                out.append(int(pid))
    return out


def isolation(runner, trials: int, hang: bool, timeout: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    elapsed, left, started = [], [], []
    for _ in range(trials):
        with tempfile.TemporaryDirectory() as d:
            record = Path(d) / "pids"
            t0 = time.monotonic()
            runner._run_isolated(helpers.spawn_tree, {"record": str(record), "hang": hang}, timeout)
            elapsed.append(time.monotonic() - t0)
            pids = _present(record)
            left.append(len(pids))
            started.append(len([ln for ln in record.read_text().split("\n") if ln.strip()]) if record.exists() else 0)
            for pid in pids:  # clean up after the runner under trial
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    return {
        "trials": trials,
        "started": sum(started),
        "left": sum(left),
        "trials_with_leftovers": sum(1 for n in left if n),
        "p50": statistics.median(elapsed),
        "max": max(elapsed),
    }


_FILE_CHILD = r"""
import sys, time
from crewcore import _bridge
root, path, op = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.monotonic()
try:
    if op == "read":
        _bridge.call(["tool_read_file", 0, root, path, 100, 2000.0])
    else:
        _bridge.call(["tool_list_dir", 0, root, path, 100, 2000.0])
    print("read", time.monotonic() - t0)
except Exception as e:
    print(type(e).__name__, time.monotonic() - t0)
"""


def files(limit: float = 30.0) -> list[tuple[str, str, str]]:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        os.mkfifo(root / "pipe")
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(root / "sock"))
        for path in ("pipe", "sock"):
            for op in ("read", "list"):
                p = subprocess.Popen([sys.executable, "-c", _FILE_CHILD, str(root), path, op], stdout=subprocess.PIPE, text=True)
                try:
                    out, _ = p.communicate(timeout=limit)
                    kind, secs = out.split()
                    rows.append((f"{op} {path}", kind, f"{float(secs) * 1000:.1f} ms"))
                except subprocess.TimeoutExpired:
                    p.send_signal(signal.SIGTERM)
                    try:
                        p.wait(timeout=5)
                        term = "exited on SIGTERM"
                    except subprocess.TimeoutExpired:
                        term = "ignored SIGTERM"
                    p.kill()
                    p.communicate()
                    rows.append((f"{op} {path}", f"hung > {limit:.0f} s", term))
        s.close()
    return rows


def fetch() -> list[tuple[str, str, str]]:
    from crewcore import _bridge

    rows = []
    for host in ("64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1", "2001:0:808:808:8000:ffff:5601:5601", "::a9fe:a9fe", "::ffff:169.254.169.254"):
        t0 = time.monotonic()
        try:
            _bridge.call(["tool_fetch", 0, f"http://[{host}]/", 5000.0, 1000, 0, False])
            kind = "fetched"
        except Exception as e:  # noqa: BLE001
            kind = f"{type(e).__name__}: {str(e)[-80:]}"
        rows.append((host, kind, f"{(time.monotonic() - t0) * 1000:.1f} ms"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--runner", default=None)
    ap.add_argument("--skip-native", action="store_true", help="only the isolated-runner trials")
    a = ap.parse_args()
    runner = _runner(a.runner)
    print(f"runner: {a.runner or 'python/crewcore/tools/runner.py'}; load: {os.getloadavg()[0]:.2f}; cpus: {os.cpu_count()}")
    print("| isolated call | trials | processes started | left after the call | trials with leftovers | time p50 | time max |")
    print("|---|---|---|---|---|---|---|")
    for label, hang, timeout in (("tool hangs, 2 s deadline", True, 2.0), ("tool returns at once, 30 s deadline", False, 30.0)):
        r = isolation(runner, a.trials, hang, timeout)
        print(f"| {label} | {r['trials']} | {r['started']} | {r['left']} | {r['trials_with_leftovers']} | {r['p50']:.2f} s | {r['max']:.2f} s |")
    if a.skip_native:
        return
    print()
    print("| file call (2 s timeout) | outcome | time |")
    print("|---|---|---|")
    for row in files():
        print("| " + " | ".join(row) + " |")
    print()
    print("| fetch http://[host]/ | outcome | time |")
    print("|---|---|---|")
    for row in fetch():
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
