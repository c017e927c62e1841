"""`make test` leaves nothing running: scripts/with_test_pg.py, which runs the
test stages with a private PostgreSQL server, stops that server and removes
its data whatever way the command ends (exit code kept, SIGTERM)."""

from __future__ import annotations

import os
from pathlib import Path
import re
import signal
import socket
import subprocess
import sys
import time

from conftest import child_env

REPO = Path(__file__).resolve().parent.parent
WRAPPER = REPO / "scripts" / "with_test_pg.py"
STARTED = re.compile(r"started a private PostgreSQL test server \((postgresql://\S+@127\.0\.0\.1:(\d+)/\S+), "
                     r"data in (\S+)\)")


def _env() -> dict[str, str]:
    env = child_env()
    env.pop("CREWCORE_PG_DSN", None)  # make test sets it; the wrapper must start its own here
    env.pop("CREWCORE_PGDATA", None)
    return env


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


CHILD = """
import os, socket, sys
dsn = os.environ["CREWCORE_PG_DSN"]
port = int(dsn.split("@127.0.0.1:")[1].split("/")[0])
with socket.create_connection(("127.0.0.1", port), timeout=10):
    pass
print("child saw", dsn, flush=True)
sys.exit(7)
"""


def test_private_server_is_stopped_and_removed_after_the_command():
    r = subprocess.run([sys.executable, str(WRAPPER), sys.executable, "-c", CHILD], env=_env(),
                       capture_output=True, text=True, timeout=300)
    m = STARTED.search(r.stderr)
    assert m, r.stderr
    dsn, port, data = m.group(1), int(m.group(2)), Path(m.group(3))
    assert r.returncode == 7, (r.returncode, r.stderr)  # the command's own exit code
    assert f"child saw {dsn}" in r.stdout
    assert "stopped the PostgreSQL test server" in r.stderr
    assert not _accepts(port), f"a server still listens on {port}"
    assert not data.exists(), f"{data} was left behind"


def test_private_server_is_stopped_on_sigterm():
    p = subprocess.Popen([sys.executable, str(WRAPPER), sys.executable, "-c", "import time; time.sleep(300)"],
                         env=_env(), stderr=subprocess.PIPE, text=True)
    try:
        assert p.stderr is not None
        line = p.stderr.readline()
        m = STARTED.search(line)
        assert m, line + p.stderr.read()
        port, data = int(m.group(2)), Path(m.group(3))
        assert _accepts(port)
        time.sleep(0.5)  # the command is running
        p.send_signal(signal.SIGTERM)
        rest = p.stderr.read()
        assert p.wait(timeout=120) == 128 + signal.SIGTERM, rest
    finally:
        if p.poll() is None:
            p.kill()
    assert "stopped the PostgreSQL test server" in rest, rest
    assert not _accepts(port)
    assert not data.exists()


def test_a_given_server_is_used_and_left_alone():
    env = _env()
    env["CREWCORE_PG_DSN"] = "postgresql://someone@127.0.0.1:1/theirs"
    r = subprocess.run([sys.executable, str(WRAPPER), sys.executable, "-c",
                        "import os; print(os.environ['CREWCORE_PG_DSN'])"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "postgresql://someone@127.0.0.1:1/theirs"
    assert "not started or stopped here" in r.stderr and "started a private" not in r.stderr
