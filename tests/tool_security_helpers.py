"""Tool functions for crewcore's tool-security tests (tests/test_tool_security.py).

Plain functions, importing nothing from CrewAI, so that the fresh interpreter
an ``isolate=True`` call starts unpickles them quickly. ``spawn_tree`` starts
the kind of process tree that used to escape an isolated call: a child that
ignores SIGTERM, a double-forked ``setsid`` grandchild keeping the call's
stdout/stderr (and every other descriptor) open, three ``setsid`` daemons and
an exec'd ``sleep`` in a session of its own, all ignoring SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

SURVIVORS = 6  # processes spawn_tree leaves running: 1 child, 1 grandchild, 3 daemons, 1 exec'd sleep


def start_time(pid: int) -> str | None:
    """The kernel's start time of pid (field 22 of /proc/pid/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _record(record: str, pid: int | None = None) -> None:
    pid = os.getpid() if pid is None else pid
    fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{pid} {start_time(pid)}\n".encode())
    finally:
        os.close(fd)


def _linger(seconds: float) -> None:
    """Sleep (SIGTERM ignored) for seconds, then exit without any cleanup."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
    os._exit(0)


def _daemon(record: str, seconds: float, keep_stdio: bool) -> None:
    """Double fork with setsid in between; the grandchild records itself and lingers."""
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)  # the intermediate exits at once: the grandchild is an orphan
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if not keep_stdio:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
        _record(record)
        _linger(seconds)
    finally:
        os._exit(0)


def spawn_tree(record: str, hang: bool, linger: float = 30.0, daemon_linger: float = 120.0) -> str:
    """Start SURVIVORS processes that try to outlive this call (their pids and
    start times are appended to record), then hang (SIGTERM ignored) or return."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # 1. a plain child in the call's process group, stdout/stderr kept open
    if os.fork() == 0:
        try:
            _record(record)
            _linger(linger)
        finally:
            os._exit(0)
    # 2. a setsid grandchild keeping stdout/stderr and every descriptor open
    _daemon(record, linger, keep_stdio=True)
    # 3. three setsid daemons with their stdio on /dev/null
    for _ in range(3):
        _daemon(record, daemon_linger, keep_stdio=False)
    # 4. an exec'd program in a session of its own, SIGTERM ignored across exec
    sleep = shutil.which("sleep") or "/bin/sleep"
    p = subprocess.Popen(
        [sleep, str(int(daemon_linger))],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN),
    )
    _record(record, p.pid)
    p.returncode = 0  # never waited for here: keep Popen's destructor quiet
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(record) as f:
            if len(f.read().split("\n")) > SURVIVORS:
                break
        time.sleep(0.01)
    if hang:
        while True:
            time.sleep(3600)
    return f"started {SURVIVORS}"


def print_then_return(x: int) -> int:
    """Print to stdout and stderr, then return 2 * x."""
    print("noise on stdout", flush=True)
    print("noise on stderr", file=sys.stderr, flush=True)
    return 2 * x


def exit_abruptly(code: int) -> None:
    """End the process without returning a result."""
    sys.stderr.write("about to exit abruptly\n")
    sys.stderr.flush()
    os._exit(code)
