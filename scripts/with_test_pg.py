#!/usr/bin/env python3
"""Run a command with a PostgreSQL + pgvector test server of its own, and stop
that server after it (``make test`` runs its test stages through this).

    python scripts/with_test_pg.py COMMAND [ARGS...]

* ``CREWCORE_PG_DSN`` already set (a server someone else runs): the command
  runs with it; nothing is started or stopped here.
* Otherwise a private server is started with tools/pgctl.py in a fresh
  temporary data directory (``CREWCORE_PGDATA``), its DSN handed to the
  command as ``CREWCORE_PG_DSN``, and after the command (whatever its exit,
  Ctrl-C and SIGTERM included) the server is stopped and the directory
  removed. A private server is never one another engineer's tests (or
  ``make pg-up``) use, so stopping it cannot pull it from under them.
* A server that cannot start: under CI (``CI`` set) that fails the run here;
  elsewhere the command runs without one and the Postgres tests skip loudly.

Run as root, tools/pgctl.py runs the server as the unprivileged system user
``crewcore-pg`` (PostgreSQL refuses to run as root) and creates that user if
it is missing; this script says so before it happens.
"""

from __future__ import annotations

import os
from pathlib import Path
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile

REPO = Path(__file__).resolve().parent.parent
PGCTL = REPO / "tools" / "pgctl.py"
PGUSER = "crewcore-pg"


def say(msg: str) -> None:
    print(f"with_test_pg: {msg}", file=sys.stderr, flush=True)


def pgctl(cmd: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PGCTL), cmd], env=env, capture_output=True, text=True,
                          timeout=180)


def _terminate(signum, _frame):
    raise SystemExit(128 + signum)


def main() -> int:
    cmd = sys.argv[1:]
    if not cmd:
        sys.exit("usage: with_test_pg.py COMMAND [ARGS...]")
    if os.environ.get("CREWCORE_PG_DSN"):
        say("CREWCORE_PG_DSN is set: using that server (not started or stopped here)")
        return subprocess.call(cmd)
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PGUSER)
        except KeyError:
            say(f"running as root: tools/pgctl.py will create the system user {PGUSER!r} "
                f"(useradd --system --no-create-home --shell /usr/sbin/nologin {PGUSER}); "
                "PostgreSQL refuses to run as root, so the test server runs as that user")
    tmp = Path(tempfile.mkdtemp(prefix="crewcore-test-pg-"))
    tmp.chmod(0o755)  # reachable by the server's user when run as root
    env = dict(os.environ, CREWCORE_PGDATA=str(tmp / "data"))
    signal.signal(signal.SIGTERM, _terminate)
    started = False
    try:
        r = pgctl("up", env)
        lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
        if r.returncode == 0 and lines:
            started = True
            dsn = lines[-1].strip()
            say(f"started a private PostgreSQL test server ({dsn}, data in {tmp}); it is stopped after the tests")
            env["CREWCORE_PG_DSN"] = dsn
        elif os.environ.get("CI"):
            say(f"FAILED: the PostgreSQL test server did not start under CI:\n{r.stdout}\n{r.stderr}")
            return 1
        else:
            say(f"WARNING: no PostgreSQL test server ({r.stderr.strip()[-500:]}); the Postgres tests will skip")
        env.pop("CREWCORE_PGDATA")  # tests that start servers of their own choose their own directory
        return subprocess.call(cmd, env=env)
    finally:
        if started:
            env["CREWCORE_PGDATA"] = str(tmp / "data")
            r = pgctl("down", env)
            if r.returncode != 0:
                say(f"WARNING: stopping the test server failed: {r.stderr.strip()}")
            else:
                say("stopped the PostgreSQL test server")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
