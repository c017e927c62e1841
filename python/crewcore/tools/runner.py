"""Running Python code under a deadline: worker threads (abandoned at the
deadline) and isolated calls (a subprocess killed at the deadline)."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import os
import pickle
import signal
import subprocess
import sys
import threading
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
# isolated calls: a subprocess killed at the deadline

_CHILD = r"""
import sys, pickle, traceback, asyncio, inspect
data = sys.stdin.buffer.read()
path, payload = pickle.loads(data)
sys.path[:0] = [p for p in path if p not in sys.path]
out = sys.stdout.buffer
try:
    fn, kwargs = pickle.loads(payload)
    v = fn(**kwargs)
    if inspect.iscoroutine(v):
        v = asyncio.run(v)
    try:
        res = pickle.dumps(("ok", v))
    except Exception as e:
        res = pickle.dumps(("ok", repr(v)))
except BaseException as e:
    t = type(e)
    qual = t.__qualname__ if t.__module__ == "builtins" else t.__module__ + "." + t.__qualname__
    tb = "".join(traceback.format_list(traceback.extract_tb(e.__traceback__)[-5:])).rstrip()
    res = pickle.dumps(("err", qual, t.__name__, str(e), tb, isinstance(e, Exception)))
out.write(res)
out.flush()
"""


class _IsolatedError(Exception):
    def __init__(self, qual: str, name: str, msg: str, tb: str, is_exc: bool) -> None:
        super().__init__(msg)
        self.qual, self.name, self.msg, self.tb, self.is_exc = qual, name, msg, tb, is_exc


def _run_isolated(fn: Callable[..., Any], kwargs: dict[str, Any], timeout: float) -> tuple[bool, Any, bool]:
    """Run fn(**kwargs) in a fresh interpreter; kill its process group at the deadline."""
    try:
        payload = pickle.dumps((fn, kwargs))
    except Exception as e:
        raise ToolArgumentsError(f"isolate=True needs a picklable tool function and arguments: {e}") from None
    data = pickle.dumps((list(sys.path), payload))
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.kill()
        proc.communicate()
        return False, proc.pid, True
    finally:
        if proc.poll() is None:  # an exception of our own: never leave it running
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    try:
        res = pickle.loads(out)
    except Exception:
        tail = err.decode("utf-8", "replace")[-2000:]
        return False, RuntimeError(f"isolated tool process exited with status {proc.returncode}: {tail}"), False
    if res[0] == "ok":
        return True, res[1], False
    return False, _IsolatedError(*res[1:]), False
