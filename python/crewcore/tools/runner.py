"""Running Python code under a deadline: worker threads (abandoned at the
deadline) and isolated calls (a process tree killed at the deadline, and after
the call whatever the tool left running)."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable

from crewcore.errors import ToolArgumentsError

# --------------------------------------------------------------------------
# running Python code under a deadline


class _Worker:
    __slots__ = ("go", "done", "fn", "ctx", "ok", "value", "finished", "abandoned", "thread")

    def __init__(self) -> None:
        self.go = threading.Lock()
        self.go.acquire()
        self.done = threading.Lock()
        self.done.acquire()
        self.fn: Callable[[], Any] | None = None
        self.ctx: contextvars.Context | None = None
        self.ok = False
        self.value: Any = None
        self.finished = False
        self.abandoned = False


class _Saturated(Exception):
    pass


class _Runner:
    """Worker threads that run tool calls under a deadline.

    Handing a call to an idle worker is two lock operations (no queue, no
    future). A call that passes its deadline leaves its worker running
    ("abandoned"); when it finishes, the worker comes back to the pool. At
    most ``max_abandoned`` workers may be abandoned at once: past that, new
    calls are refused (_Saturated) rather than starting more threads.
    """

    MAX_IDLE = 16

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self.abandoned = 0
        self.threads = 0
        self.abandoned_total = 0

    def _loop(self, w: _Worker) -> None:
        while True:
            w.go.acquire()
            fn, ctx = w.fn, w.ctx
            if fn is None:  # retire
                return
            try:
                assert ctx is not None
                v = ctx.run(fn)
                if inspect.iscoroutine(v):
                    v = asyncio.run(v)
                w.ok, w.value = True, v
            except BaseException as e:  # noqa: BLE001 - a tool's BaseException is reported, not raised
                w.ok, w.value = False, e
            w.fn = w.ctx = None
            with self._lock:
                w.finished = True
                if not w.abandoned:
                    w.done.release()
                    continue
                # Nobody waits for this result any more: recycle the worker.
                self.abandoned -= 1
                w.abandoned = False
                w.value = None
                if len(self._idle) >= self.MAX_IDLE:
                    self.threads -= 1
                    return
                self._idle.append(w)

    def run(self, fn: Callable[[], Any], ctx: contextvars.Context, timeout: float | None, cap: int) -> tuple[bool, Any, bool]:
        """Run fn in ctx on a worker: (ok, value or exception, timed_out)."""
        with self._lock:
            if self._idle:
                w = self._idle.pop()
            else:
                if self.abandoned >= cap:
                    raise _Saturated(self.abandoned)
                w = _Worker()
                self.threads += 1
                w.thread = threading.Thread(target=self._loop, args=(w,), name="crewcore-tool", daemon=True)
                w.thread.start()
        w.finished = False
        w.fn, w.ctx = fn, ctx
        w.go.release()
        try:
            got = w.done.acquire(timeout=-1 if timeout is None else timeout)
        except BaseException:
            # Ctrl-C (or another async exception) while waiting: nobody will
            # collect this result; the worker recycles itself when it ends.
            with self._lock:
                if w.finished:
                    w.done.acquire()
                    w.value = None
                    self._idle.append(w)
                else:
                    w.abandoned = True
                    self.abandoned += 1
                    self.abandoned_total += 1
            raise
        if got:
            ok, v = w.ok, w.value
            w.value = None
            with self._lock:
                self._idle.append(w)
            return ok, v, False
        with self._lock:
            if w.finished:  # finished in the instant between the wait and the lock
                w.done.acquire()
                ok, v = w.ok, w.value
                w.value = None
                self._idle.append(w)
                return ok, v, False
            w.abandoned = True
            self.abandoned += 1
            self.abandoned_total += 1
        return False, None, True


_runner = _Runner()


def _new_runner_in_child() -> None:
    # The workers' threads do not exist in a forked child (and the pool's
    # lock may have been held at fork time): start from an empty pool.
    global _runner
    _runner = _Runner()


os.register_at_fork(after_in_child=_new_runner_in_child)

# --------------------------------------------------------------------------
# isolated calls: a process tree, contained
#
# The call starts a supervisor (a fresh interpreter running _SUPERVISOR, in a
# session of its own). The supervisor makes itself a child subreaper
# (prctl(PR_SET_CHILD_SUBREAPER)): every process the tool starts stays its
# descendant, whatever double forks and setsid() calls it makes, because an
# orphan is re-parented to the nearest subreaper instead of to init. It forks
# the worker, which runs the tool and sends its result over a socket; when the
# worker exits, or on SIGTERM from the caller at the deadline, or when the
# caller goes away, the supervisor SIGKILLs every descendant it finds under
# /proc and reaps until waitpid says it has no child left (as a subreaper, no
# child means no descendant), then reports and exits. The caller never waits
# for end-of-file on a pipe a descendant may hold: it reads framed messages
# with a deadline and watches the supervisor itself (a pidfd). Output of the
# whole tree goes to an unlinked temporary file (its tail names a crash).

log = logging.getLogger("crewcore.tools")

#: How long past the deadline (or past the result) the supervisor gets to kill
#: and reap the tree before the caller kills what it finds itself.
_KILL_GRACE = 1.0

_SUPERVISOR = r"""
import os, select, signal, socket, struct, sys

def frame(sock, kind, body):
    sock.sendall(kind + struct.pack("!Q", len(body)) + body)

def descendants(root):
    kids = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/" + name + "/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        for c in kids.get(todo.pop(), ()):
            out.append(c)
            todo.append(c)
    return out

def kill_tree(worker):
    # SIGKILL every descendant, reap, again, until no child is left.
    killed = set()
    while True:
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return len(killed)
        try:
            found = descendants(os.getpid())
        except OSError:  # no /proc: the worker's process group is what can be found
            found = []
            try:
                os.killpg(worker, signal.SIGKILL)
            except OSError:
                pass
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                if pid != worker:
                    killed.add(pid)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return len(killed)

def main():
    sock = socket.socket(fileno=int(sys.argv[1]))
    contained = False
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        contained = libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG: the caller died
    except Exception:
        libc = None
    if os.getppid() != int(sys.argv[2]):
        os._exit(1)  # the caller died before the death signal was armed
    r, w = os.pipe()
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w)
    signal.signal(signal.SIGTERM, lambda *a: None)
    signal.signal(signal.SIGCHLD, lambda *a: None)
    head = b""
    while len(head) < 8:
        c = sock.recv(8 - len(head))
        if not c:
            os._exit(1)
        head += c
    n = struct.unpack("!Q", head)[0]
    data = bytearray()
    while len(data) < n:
        c = sock.recv(min(1 << 20, n - len(data)))
        if not c:
            os._exit(1)
        data += c
    worker = os.fork()
    if worker == 0:
        signal.set_wakeup_fd(-1)
        os.close(r)
        os.close(w)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setpgid(0, 0)  # a group of its own: what is killed where /proc cannot be read
        if libc is not None:
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # the worker dies with its supervisor
        run_tool(sock, bytes(data))
    del data
    status, stop = None, False
    while status is None and not stop:
        pid, st = os.waitpid(worker, os.WNOHANG)
        if pid:
            status = st
            break
        ready = select.select([r, sock], [], [])[0]
        if r in ready:
            stop = signal.SIGTERM in os.read(r, 512)
        if sock in ready and not sock.recv(1):
            stop = True  # the caller went away
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    killed = kill_tree(worker)
    if status is None:
        status = -1
    try:
        frame(sock, b"D", struct.pack("!qqq", status, killed, contained))
    except OSError:
        pass
    os._exit(0)

def run_tool(sock, data):
    # The worker's frames: P (its pid) first, R (the result) last. Only the
    # worker writes until it has exited; then only the supervisor (D).
    frame(sock, b"P", struct.pack("!q", os.getpid()))
    import pickle, traceback, asyncio, inspect
    try:
        path, payload = pickle.loads(data)
        sys.path[:0] = [p for p in path if p not in sys.path]
        fn, kwargs = pickle.loads(payload)
        v = fn(**kwargs)
        if inspect.iscoroutine(v):
            v = asyncio.run(v)
        try:
            res = pickle.dumps(("ok", v))
        except Exception:
            res = pickle.dumps(("ok", repr(v)))
    except BaseException as e:
        t = type(e)
        qual = t.__qualname__ if t.__module__ == "builtins" else t.__module__ + "." + t.__qualname__
        tb = "".join(traceback.format_list(traceback.extract_tb(e.__traceback__)[-5:])).rstrip()
        res = pickle.dumps(("err", qual, t.__name__, str(e), tb, isinstance(e, Exception)))
    try:
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except Exception:
                pass
        frame(sock, b"R", res)
    finally:
        os._exit(0)

main()
"""


class _IsolatedError(Exception):
    def __init__(self, qual: str, name: str, msg: str, tb: str, is_exc: bool) -> None:
        super().__init__(msg)
        self.qual, self.name, self.msg, self.tb, self.is_exc = qual, name, msg, tb, is_exc


class _Tree:
    """The caller's side of one isolated call: the supervisor process, the
    socket to it, the frames received."""

    def __init__(self, data: bytes) -> None:
        self.out = tempfile.TemporaryFile()
        self.sock, child = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _SUPERVISOR, str(child.fileno()), str(os.getpid())],
                stdin=subprocess.DEVNULL,
                stdout=self.out,
                stderr=self.out,
                pass_fds=(child.fileno(),),
                start_new_session=True,
            )
        except BaseException:
            self.sock.close()
            self.out.close()
            raise
        finally:
            child.close()
        self.sock.setblocking(False)
        try:
            self.pidfd: int | None = os.pidfd_open(self.proc.pid)
        except (AttributeError, OSError):
            self.pidfd = None  # no pidfd: the supervisor is polled
        self.send = struct.pack("!Q", len(data)) + data
        self.buf = b""
        self.eof = False
        self.exited = False
        self.worker: int | None = None
        self.result: bytes | None = None
        self.done: tuple[int, int, int] | None = None

    def pump(self, until: float) -> None:
        """Move data and watch the supervisor until something happens or
        ``until`` (a monotonic time) passes."""
        rl: list[Any] = [] if self.eof else [self.sock]
        if self.pidfd is not None and not self.exited:
            rl.append(self.pidfd)
        wl = [self.sock] if self.send and not self.exited else []
        wait = max(0.0, until - time.monotonic())
        if self.pidfd is None:
            wait = min(wait, 0.05)
        r, w, _ = select.select(rl, wl, [], wait)
        if w:
            try:
                n = self.sock.send(self.send[: 1 << 20])
                self.send = self.send[n:]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self.send = b""  # the supervisor is gone; its exit tells the rest
        if self.sock in r:
            self.read()
        if (self.pidfd is not None and self.pidfd in r) or (self.pidfd is None and self.proc.poll() is not None):
            self.exited = True
            self.read()  # what it sent before it exited

    def read(self) -> None:
        while not self.eof:
            try:
                chunk = self.sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.eof = True
                break
            self.buf += chunk
        while len(self.buf) >= 9:
            n = struct.unpack("!Q", self.buf[1:9])[0]
            if len(self.buf) < 9 + n:
                break
            kind, body, self.buf = self.buf[:1], self.buf[9 : 9 + n], self.buf[9 + n :]
            if kind == b"P" and n == 8:
                self.worker = struct.unpack("!q", body)[0]
            elif kind == b"R" and self.result is None:
                self.result = body
            elif kind == b"D" and n == 24:
                self.done = struct.unpack("!qqq", body)  # type: ignore[assignment]
            else:  # not ours: a descendant wrote into the socket it inherited
                self.buf = b""
                break

    def wait_exit(self, until: float) -> bool:
        while not self.exited and time.monotonic() < until:
            self.pump(until)
        return self.exited

    def stop(self) -> None:
        """Make sure nothing of the tree is left: SIGTERM to the supervisor (it
        kills and reaps the tree), and past the grace SIGKILL to every process
        found under it, then to it."""
        if not self.exited and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            if not self.wait_exit(time.monotonic() + _KILL_GRACE):
                log.warning("crewcore: isolated tool supervisor %d did not stop within %.1f s; killing its tree", self.proc.pid, _KILL_GRACE)
                for _ in range(3):
                    for pid in _descendants(self.proc.pid):
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                self.proc.kill()
        try:
            self.proc.wait(timeout=_KILL_GRACE)
        except subprocess.TimeoutExpired:  # pragma: no cover - stuck in the kernel (D state)
            log.warning("crewcore: isolated tool supervisor %d is stuck in the kernel; left to exit", self.proc.pid)

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        self.sock.close()
        self.out.close()

    def tail(self) -> str:
        try:
            self.out.seek(max(0, self.out.seek(0, os.SEEK_END) - 2000))
            return self.out.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""


def _descendants(root: int) -> list[int]:
    """Processes under root (from /proc), children before their children."""
    kids: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        for c in kids.get(todo.pop(), ()):
            out.append(c)
            todo.append(c)
    return out


def _run_isolated(fn: Callable[..., Any], kwargs: dict[str, Any], timeout: float) -> tuple[bool, Any, bool]:
    """Run fn(**kwargs) in a fresh interpreter under a supervisor that kills
    every process the tool started, at the deadline or when the tool returns.
    On timeout the value is the worker's pid (the supervisor's before the
    worker started)."""
    try:
        payload = pickle.dumps((fn, kwargs))
    except Exception as e:
        raise ToolArgumentsError(f"isolate=True needs a picklable tool function and arguments: {e}") from None
    data = pickle.dumps((list(sys.path), payload))
    deadline = time.monotonic() + timeout
    t = _Tree(data)
    try:
        while t.result is None and not t.exited and time.monotonic() < deadline:
            t.pump(deadline)
        if t.result is not None:
            # The tool returned: the supervisor is killing what it left; give it
            # the rest of the deadline and the grace, then stop it ourselves.
            t.wait_exit(max(deadline, time.monotonic()) + _KILL_GRACE)
        timed_out = t.result is None and not t.exited
        t.stop()
        if t.done and t.done[1]:
            log.info("crewcore: isolated tool left %d processes running; killed", t.done[1])
        if timed_out:
            return False, t.worker if t.worker is not None else t.proc.pid, True
        if t.result is None:
            status = t.done[0] if t.done else -1
            how = _exit_text(status) if t.done and status >= 0 else f"its supervisor exited with status {t.proc.returncode}"
            return False, RuntimeError(f"isolated tool process ended without a result ({how}): {t.tail()}"), False
        try:
            res = pickle.loads(t.result)
        except Exception as e:
            return False, RuntimeError(f"the isolated tool's result could not be unpickled: {e!r}"), False
    except BaseException:
        t.stop()  # an exception of our own (Ctrl-C included): never leave the tree running
        raise
    finally:
        t.close()
    if res[0] == "ok":
        return True, res[1], False
    return False, _IsolatedError(*res[1:]), False


def _exit_text(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"exit status {code}" if code >= 0 else f"killed by signal {-code} ({signal.Signals(-code).name})"
