"""Tools that cannot hang or escape (issue 18, items 2-4), with real FIFOs,
sockets, hard links, real addresses and real process trees:

- FileReadTool / FileListTool refuse FIFOs, sockets and devices at once (a
  FIFO used to hang the call forever, past its timeout, and the process then
  ignored SIGTERM), and refuse hard-linked files unless allowed;
- FetchTool refuses IPv6 addresses that embed a refused IPv4 address, at dial
  time;
- guard(tool, isolate=True) holds its deadline whatever the tool's children
  do, and nothing the tool started outlives the call.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import pytest

from crewcore import guard
from conftest import REPO, child_env
import tool_security_helpers as helpers

def outcome(tool: Any, **kwargs: Any) -> tuple[str | None, Any]:
    """(code, message) of one guarded call: the exception class name and text
    when the tool's exception is raised, the ToolFailure's code and message
    when one is returned, (None, result) otherwise."""
    from crewai.tools.tool_failure import ToolFailure

    try:
        r = tool.run(**kwargs)
    except Exception as e:  # noqa: BLE001 - the outcome under test
        return type(e).__name__, str(e)
    if isinstance(r, ToolFailure):
        return r.code, r.message
    return None, r


#: What the isolated runner may take past the deadline to kill the process
#: tree and report (runner._KILL_GRACE is 1 s), plus scheduling slack on a
#: loaded 2-core machine. A correctness bound, not a speed figure.
GRACE = 2.5


# --------------------------------------------------------------------------
# file tools: FIFOs, sockets, devices, hard links


def _special_root(tmp_path: Path) -> tuple[Path, list[str]]:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha")
    os.mkfifo(root / "pipe")
    os.mkfifo(root / "sub" / "pipe2")
    (root / "pipe-link").symlink_to("pipe")
    special = ["pipe", "sub/pipe2", "pipe-link"]
    cwd = os.getcwd()
    os.chdir(root)  # AF_UNIX paths are short: bind from inside the root
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind("sock")
        s.listen()
    finally:
        os.chdir(cwd)
    special.append("sock")
    try:
        os.mknod(root / "null", 0o666 | 0o020000, os.makedev(1, 3))  # a character device, as /dev/null
        special.append("null")
    except OSError:
        pass  # not allowed here: FIFOs and sockets still tested
    return root, special


_FILE_CHILD = r"""
import json, signal, sys, time
from crewai.tools.tool_failure import ToolFailure
# A Python SIGTERM handler, as CrewAI's telemetry installs one: it runs only
# when the main thread gets back to Python code.
signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
from crewcore import guard
from crewcore.tools import FileListTool, FileReadTool
root, paths = sys.argv[1], json.loads(sys.argv[2])
read = guard(FileReadTool(root=root, timeout=2.0), loop_threshold=None)
ls = guard(FileListTool(root=root, timeout=2.0), loop_threshold=None)
out = {}
for p in paths:
    for name, tool in (("read", read), ("list", ls)):
        print("calling", name, p, flush=True)
        t0 = time.monotonic()
        try:
            r = tool.run(path=p)
            code, msg = (r.code, r.message) if isinstance(r, ToolFailure) else (None, r)
        except Exception as e:
            code, msg = type(e).__name__, str(e)
        out[name + " " + p] = [code, msg, time.monotonic() - t0]
print(json.dumps(out), flush=True)
"""


def test_file_tools_refuse_fifos_sockets_and_devices_without_blocking(tmp_path: Path) -> None:
    root, special = _special_root(tmp_path)
    # In a child process: a call that blocks in the kernel would hang this one.
    proc = subprocess.Popen(
        [sys.executable, "-c", _FILE_CHILD, str(root), json.dumps(special)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=str(REPO),
    )
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
            answered = True
        except subprocess.TimeoutExpired:
            answered = False
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(
            f"a file tool call hung past its 2 s timeout (the child was still running after 120 s;"
            f" it {'answered' if answered else 'ignored'} SIGTERM); last output: {out.splitlines()[-1:]}"
        )
    assert proc.returncode == 0, err
    res = json.loads(out.splitlines()[-1])
    for p in special:
        code, msg, elapsed = res["read " + p]
        assert code == "ToolRefusedError" and "not a regular file" in msg, (p, code, msg)
        assert elapsed < 2.0 + GRACE, (p, elapsed)
        code, msg, elapsed = res["list " + p]
        assert code == "ToolRefusedError", (p, code, msg)
        assert elapsed < 2.0 + GRACE, (p, elapsed)


def test_file_list_names_special_entries(tmp_path: Path) -> None:
    from crewcore.tools import FileListTool

    root, special = _special_root(tmp_path)
    listing = guard(FileListTool(root=str(root)), loop_threshold=None).run(path=".")
    lines = dict(ln.split("\t", 1) if "\t" in ln else (ln, "") for ln in listing.splitlines())
    assert lines["a.txt"] == "5 bytes" and "sub/" in lines, listing
    assert "fifo" in lines["pipe"] and "not readable" in lines["pipe"], listing
    assert "socket" in lines["sock"], listing
    assert "symlink" in lines["pipe-link"], listing


def test_hard_links_are_refused_unless_allowed(tmp_path: Path) -> None:
    from crewcore.tools import FileReadTool

    root, _ = _special_root(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("secret outside the root")
    os.link(secret, root / "hard.txt")
    code, msg = outcome(guard(FileReadTool(root=str(root)), loop_threshold=None), path="hard.txt")
    assert code == "ToolRefusedError", (code, msg)
    assert "hard link" in msg and "secret outside" not in msg, msg
    ok = guard(FileReadTool(root=str(root), allow_hardlinks=True), loop_threshold=None).run(path="hard.txt")
    assert ok == "secret outside the root"
    # A file with one link reads as before.
    assert guard(FileReadTool(root=str(root)), loop_threshold=None).run(path="a.txt") == "alpha"


# --------------------------------------------------------------------------
# fetch: IPv6 addresses that embed an IPv4 address


@pytest.mark.parametrize(
    "host, embedded",
    [
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),  # NAT64: the cloud metadata address
        ("2002:a9fe:a9fe::1", "169.254.169.254"),  # 6to4
        ("2001:0:808:808:8000:ffff:5601:5601", "169.254.169.254"),  # Teredo client
        ("::ffff:169.254.169.254", "169.254.169.254"),  # IPv4-mapped
        ("::a9fe:a9fe", None),  # IPv4-compatible (range refused whole)
    ],
)
def test_fetch_refuses_ipv6_that_embeds_a_private_ipv4(host: str, embedded: str | None) -> None:
    from crewcore.tools import FetchTool

    code, msg = outcome(guard(FetchTool(timeout=5.0), loop_threshold=None), url=f"http://[{host}]/latest/meta-data/")
    assert code == "ToolRefusedError", (code, msg)
    assert "allow_private is off" in msg, msg
    if embedded and not host.startswith("::ffff:"):
        assert f"embeds the IPv4 address {embedded}" in msg, msg
    elif embedded:  # Go dials an IPv4-mapped address as the IPv4 address itself
        assert f"{embedded} is a private" in msg, msg


# --------------------------------------------------------------------------
# isolate=True: the process tree


def _leftovers(record: Path) -> list[str]:
    """Recorded processes still present (running or zombie), by pid and start time."""
    left = []
    for line in record.read_text().split("\n"):
        if not line.strip():
            continue
        pid, start = line.split()
        if helpers.start_time(int(pid)) == start:
            left.append(line)
    return left


def _kill_recorded(record: Path) -> None:
    if not record.exists():
        return
    for line in _leftovers(record):
        try:
            os.kill(int(line.split()[0]), signal.SIGKILL)
        except ProcessLookupError:
            pass


def _recorded(record: Path) -> int:
    return len([ln for ln in record.read_text().split("\n") if ln.strip()]) if record.exists() else 0


def test_isolated_deadline_holds_and_the_whole_tree_dies(tmp_path: Path) -> None:
    record = tmp_path / "pids"
    timeout = 4.0
    g = guard(helpers.spawn_tree, timeout=timeout, isolate=True, loop_threshold=None)
    try:
        t0 = time.monotonic()
        r: Any = g.run(record=str(record), hang=True)
        elapsed = time.monotonic() - t0
        left = _leftovers(record) if record.exists() else []
        assert getattr(r, "code", None) == "crewcore.timeout", r
        assert r.details["killed"] is True
        assert _recorded(record) == helpers.SURVIVORS, record.read_text() if record.exists() else "no record"
        assert left == [], f"{len(left)} processes the tool started outlived the call: {left}"
        assert elapsed < timeout + GRACE, f"the call took {elapsed:.1f} s for a {timeout} s deadline"
        with pytest.raises(ProcessLookupError):
            os.kill(r.details["pid"], 0)
    finally:
        _kill_recorded(record)


def test_isolated_call_that_returns_leaves_nothing_running(tmp_path: Path) -> None:
    record = tmp_path / "pids"
    timeout = 30.0
    g = guard(helpers.spawn_tree, timeout=timeout, isolate=True, loop_threshold=None)
    try:
        t0 = time.monotonic()
        r = g.run(record=str(record), hang=False)
        elapsed = time.monotonic() - t0
        left = _leftovers(record) if record.exists() else []
        assert r == f"started {helpers.SURVIVORS}", r
        assert left == [], f"{len(left)} processes the tool started outlived the call: {left}"
        assert elapsed < timeout, elapsed  # not held by the descendants' open stdout
    finally:
        _kill_recorded(record)


def test_isolated_output_and_abrupt_exit() -> None:
    # A tool that prints still returns its value (the result has its own channel).
    assert guard(helpers.print_then_return, timeout=30, isolate=True).run(x=21) == 42
    # A process that ends without a result is a failure naming its exit status and stderr.
    code, msg = outcome(guard(helpers.exit_abruptly, timeout=30, isolate=True), code=3)
    assert code == "RuntimeError" and "status 3" in msg and "about to exit abruptly" in msg, (code, msg)
