#!/usr/bin/env python3
"""Start and stop the PostgreSQL + pgvector server the Postgres tests use.

    python tools/pgctl.py up     # idempotent; prints the DSN as its last line
    python tools/pgctl.py down   # stops it (the data directory stays)
    python tools/pgctl.py dsn    # prints the DSN of a running server, or fails

The server comes from the ``pgserver`` wheel (PyPI), which bundles the
PostgreSQL binaries with the pgvector extension under ``pgserver/pginstall``;
this script only uses those binaries (initdb, pg_ctl, createdb), not the
wheel's Python API. It listens on 127.0.0.1 only (no Unix socket), on a free
port chosen at initdb and kept in ``<data dir>/crewcore.port``; the data
directory is ``.pgdata/`` at the repository root (git-ignored) unless
CREWCORE_PGDATA names another. Authentication is ``trust`` for the loopback
address: this is a test server, never a production setup.

PostgreSQL refuses to run as root. Run as root (as CI is), the script creates
the unprivileged system user ``crewcore-pg`` if it is missing (useradd) and
runs every server binary as that user (setpriv).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
from pathlib import Path
import pwd
import socket
import subprocess
import sys
import time

REPO = Path(__file__).resolve().parent.parent


def _others_can_reach(p: Path) -> bool:
    """True when every directory from / to p is searchable by any user."""
    for d in [p, *p.parents]:
        try:
            if not d.stat().st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


# As root the server runs as another user, who must reach the data directory
# and the binaries: under a private parent (a clone in /root, say) both move
# to /tmp.
_TMP = Path("/tmp") / ("crewcore-pg-" + hashlib.sha1(str(REPO).encode()).hexdigest()[:10])
_default_data = REPO / ".pgdata"
if os.geteuid() == 0 and not _others_can_reach(REPO):
    _default_data = _TMP / "data"
DATA = Path(os.environ.get("CREWCORE_PGDATA") or _default_data).resolve()
PGUSER = "crewcore-pg"
DBUSER = "crewcore"
DBNAME = "crewcore"


def bindir() -> Path:
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("pgctl: the pgserver package is not installed (pip install pgserver==0.1.4)")
    pkg = Path(list(spec.submodule_search_locations)[0])
    b = pkg / "pginstall" / "bin"
    if not (b / "postgres").exists():
        sys.exit(f"pgctl: no postgres binary under {b}")
    if os.environ.get("CREWCORE_PG_WITHOUT_VECTOR"):
        # Tests only: a copy of the install without pgvector, to check the
        # error a server without the extension gives.
        dst = DATA.parent / "install-novector"
        if not (dst / "pgserver" / "pginstall" / "bin" / "postgres").exists():
            ignore = shutil.ignore_patterns("vector*")
            shutil.copytree(pkg / "pginstall", dst / "pgserver" / "pginstall", symlinks=True, ignore=ignore)
            libs = pkg.parent / "pgserver.libs"
            if libs.exists():
                shutil.copytree(libs, dst / "pgserver.libs", symlinks=True)
        return dst / "pgserver" / "pginstall" / "bin"
    if os.geteuid() == 0 and not _others_can_reach(b):
        # Copy the install (and its bundled libpq, found at a relative
        # rpath) where the unprivileged user can run it.
        dst = _TMP / "install"
        if not (dst / "pgserver" / "pginstall" / "bin" / "postgres").exists():
            tmp = _TMP / f"install.{os.getpid()}"
            shutil.copytree(pkg / "pginstall", tmp / "pgserver" / "pginstall", symlinks=True)
            libs = pkg.parent / "pgserver.libs"
            if libs.exists():
                shutil.copytree(libs, tmp / "pgserver.libs", symlinks=True)
            os.chmod(_TMP, 0o755)
            try:
                tmp.rename(dst)
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
        b = dst / "pgserver" / "pginstall" / "bin"
    return b


def as_user() -> list[str]:
    """The command prefix that runs a binary as the unprivileged user (root only)."""
    if os.geteuid() != 0:
        return []
    try:
        pw = pwd.getpwnam(PGUSER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PGUSER],
            check=True,
        )
        pw = pwd.getpwnam(PGUSER)
    return ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups",
            "env", f"HOME={DATA}", f"USER={PGUSER}"]


def run(args: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(as_user() + args, check=check, text=True, capture_output=True, **kw)


def free_port() -> int:
    """A free port below the ephemeral range (so no client socket takes it later)."""
    for p in range(15432, 16432):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
            return p
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port() -> int:
    return int((DATA / "crewcore.port").read_text().strip())


def dsn() -> str:
    return f"postgresql://{DBUSER}@127.0.0.1:{port()}/{DBNAME}?sslmode=disable"


def running(b: Path) -> bool:
    if not (DATA / "PG_VERSION").exists():
        return False
    r = run([str(b / "pg_ctl"), "status", "-D", str(DATA)], check=False)
    return r.returncode == 0


def ready(b: Path) -> bool:
    r = run([str(b / "pg_isready"), "-h", "127.0.0.1", "-p", str(port()), "-U", DBUSER, "-d", "postgres"],
            check=False)
    return r.returncode == 0


def init(b: Path) -> None:
    as_user()  # creates the unprivileged user when run as root
    DATA.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        pw = pwd.getpwnam(PGUSER)
        os.chown(DATA, pw.pw_uid, pw.pw_gid)
    DATA.chmod(0o700)
    r = run([str(b / "initdb"), "-D", str(DATA), "-U", DBUSER, "--auth=trust", "-E", "UTF8",
             "--locale=C", "--no-sync"], check=False)
    if r.returncode != 0:
        sys.exit(f"pgctl: initdb failed:\n{r.stdout}\n{r.stderr}")
    conf = DATA / "postgresql.conf"
    with conf.open("a") as f:
        f.write(
            "\n# crewcore test server (tools/pgctl.py)\n"
            "listen_addresses = '127.0.0.1'\n"
            "unix_socket_directories = ''\n"
            "max_connections = 200\n"
            "shared_buffers = 256MB\n"
            "maintenance_work_mem = 1GB\n"
        )
    (DATA / "crewcore.port").write_text(f"{free_port()}\n")
    if os.geteuid() == 0:
        pw = pwd.getpwnam(PGUSER)
        os.chown(DATA / "crewcore.port", pw.pw_uid, pw.pw_gid)


def up() -> None:
    b = bindir()
    if not (DATA / "PG_VERSION").exists():
        init(b)
    if not running(b):
        log = DATA / "server.log"
        r = run([str(b / "pg_ctl"), "start", "-D", str(DATA), "-l", str(log), "-w", "-t", "60",
                 "-o", f"-p {port()}"], check=False)
        if r.returncode != 0 and not running(b):
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            sys.exit(f"pgctl: pg_ctl start failed:\n{r.stdout}\n{r.stderr}\n{tail}")
    for _ in range(200):
        if ready(b):
            break
        time.sleep(0.1)
    else:
        sys.exit("pgctl: the server did not accept connections within 20 s")
    r = run([str(b / "createdb"), "-h", "127.0.0.1", "-p", str(port()), "-U", DBUSER, DBNAME], check=False)
    if r.returncode != 0 and "already exists" not in r.stderr:
        sys.exit(f"pgctl: createdb failed: {r.stderr}")
    print(f"PostgreSQL (pgserver's build, with pgvector) on 127.0.0.1:{port()}, data {DATA}", file=sys.stderr)
    print(dsn())


def down() -> None:
    b = bindir()
    if running(b):
        r = run([str(b / "pg_ctl"), "stop", "-D", str(DATA), "-m", "fast", "-w", "-t", "60"], check=False)
        if r.returncode != 0:
            sys.exit(f"pgctl: pg_ctl stop failed: {r.stderr}")
        print("stopped")
    else:
        print("not running")


def main() -> None:
    cmd = sys.argv[1] if len(sys.argv) > 1 else "up"
    # One pgctl at a time per data directory (test packages start in parallel).
    DATA.parent.mkdir(parents=True, exist_ok=True)
    lock = open(str(DATA) + ".lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    if cmd == "up":
        up()
    elif cmd == "down":
        down()
    elif cmd == "dsn":
        b = bindir()
        if not running(b):
            sys.exit("pgctl: the server is not running (make pg-up)")
        print(dsn())
    else:
        sys.exit("usage: pgctl.py up|down|dsn")


if __name__ == "__main__":
    main()
