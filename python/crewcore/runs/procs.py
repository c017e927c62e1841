"""Worker processes for ``kickoff_many(..., processes=N)``.

Every CrewAI run spends tens of milliseconds of Python CPU under the GIL
(prompt building, pydantic models, the Flow-based agent executor, events),
so one process tops out at about ``1000 / cpu_ms_per_run`` runs per second
however many runs overlap their LLM waits. ``processes=N`` forks N worker
processes when the batch starts; each runs the runs it is handed on its own
threads under its own GIL, so a machine with N cores can run N times as many.

The parent keeps the Go scheduler (queue, slots, deadlines, cancellation):
a parent worker thread takes an input from it, hands the index to the least
busy worker process over a socket, and waits for the result (the pickled
CrewOutput, or the exception). The crew and inputs reach the workers by
``fork()`` (a Crew cannot be pickled), so they are the parent's objects as
they were when the batch started.

After ``fork()`` a worker:

- uses no Go code (the Go runtime does not survive fork): crewcore's memory
  store, locks and task outputs switch to the pure-Python engine over the
  same files (see crewcore._bridge.forked);
- resets what fork leaves broken: CrewAI's event bus (its handler threads and
  loop thread exist only in the parent), thread pools (``ThreadPoolExecutor``
  objects whose threads exist only in the parent, such as the one CrewAI's
  Memory saves through) and pooled HTTP connections (their sockets are
  shared with the parent and the other workers);
- ignores SIGINT (the parent handles Ctrl-C and tells the workers);
- exits with ``os._exit`` (no parent atexit handlers run twice).

Stopping: a run told to stop (timeout, deadline, cancel) is told in its
worker, whose CrewAI hooks abort its next LLM or tool call, as with threads;
after ``stop_grace`` the stop exception is raised in its thread there; after
another ``stop_grace`` the parent records it as abandoned. Worker processes
are ended when the batch ends (a thread stuck in C dies with its process).
A worker that dies (killed, crashed) fails the runs it held with
:class:`crewcore.errors.WorkerProcessError`; the others go on.

What differs from threads: callbacks (``step_callback``, task callbacks,
tools) run in the worker processes, so changes they make to Python objects
do not reach the parent (files, databases and crewcore stores do).
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import socket
import struct
import sys
import threading
import time
import warnings
from typing import Any

from crewcore.errors import WorkerProcessError
from crewcore.runs import context, loops, relay

_HDR = struct.Struct("!I")


def _send(sock: socket.socket, lock: threading.Lock, msg: Any) -> None:
    data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    with lock:
        sock.sendall(_HDR.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _recv(sock: socket.socket) -> Any:
    """The next message, or None at end of stream."""
    hdr = _recv_exact(sock, _HDR.size)
    if hdr is None:
        return None
    data = _recv_exact(sock, _HDR.unpack(hdr)[0])
    if data is None:
        return None
    return pickle.loads(data)


class _Pending:
    """A run handed to a worker process; the parent thread waits on it."""

    __slots__ = ("event", "ok", "value", "abandoned")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.ok = False
        self.value: Any = None
        self.abandoned = False

    def set(self, ok: bool, value: Any) -> None:
        if not self.event.is_set():
            self.ok, self.value = ok, value
            self.event.set()


class _Worker:
    """The parent's side of one worker process."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock
        self.lock = threading.Lock()
        self.inflight: dict[int, _Pending] = {}
        self.alive = True
        self.status = ""


def pin_plan(processes: int) -> list[int]:
    """The CPU of each worker process (worker i: ``cpus[i % len(cpus)]``),
    by the rule of ``crewcore worker --pin auto`` (runq.PinCPUs): one CPU
    per worker when the workers are as many as the CPUs this process may use
    (``processes="auto"``), none otherwise. A pinned interpreter hands its
    GIL between its threads on one CPU, which costs less CPU per run than
    waking threads across CPUs (docs/architecture.md, "Scaling and its
    limits"). ``CREWCORE_PIN=off`` turns it off."""
    if os.environ.get("CREWCORE_PIN", "auto") == "off" or not hasattr(os, "sched_getaffinity"):
        return []
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) >= 2 and processes == len(allowed):
        return allowed
    return []


def pin_process(cpu: int) -> None:
    """Pin this process, every thread it has and (by inheritance) every
    thread it starts, to one CPU; OSError when it cannot (the process then
    stays as it was). Used by the forked workers here and by the processes
    of ``crewcore worker`` (crewcore._worker)."""
    tasks = "/proc/self/task"
    tids = [int(t) for t in os.listdir(tasks)] if os.path.isdir(tasks) else [0]
    for tid in tids:
        os.sched_setaffinity(tid, {cpu})


class Pool:
    """N forked worker processes running one batch's runs."""

    def __init__(self, batch: Any, processes: int) -> None:
        self._b = batch
        self._lock = threading.Lock()
        self.workers: list[_Worker] = []
        self._readers: list[threading.Thread] = []
        self._closed = False
        # Stores in the crew that cannot cross a fork (LanceDB, ChromaDB, a
        # PostgreSQL store): the workers relay their calls to this process.
        relay.check(batch.crew)
        self._hazards = relay.find(batch.crew)
        self._knowledge = relay.uses_knowledge(batch.crew)
        self._relay = relay.Server(self._hazards)
        # Objects alive now are shared copy-on-write with the workers; moved
        # out of the collector's reach while forking, the workers' collections
        # do not touch (and so copy) them.
        cpus = pin_plan(processes)
        gc.freeze()
        try:
            for i in range(processes):
                self.workers.append(self._fork(cpus[i % len(cpus)] if cpus else None))
        finally:
            gc.unfreeze()  # the parent's collector as before
        for w in self.workers:
            t = threading.Thread(target=self._read, args=(w,), name=f"crewcore-proc-{w.pid}", daemon=True)
            t.start()
            self._readers.append(t)

    # -- parent -----------------------------------------------------------
    def _fork(self, cpu: int | None = None) -> _Worker:
        parent_end, child_end = socket.socketpair()
        sys.stdout.flush()
        sys.stderr.flush()
        with warnings.catch_warnings():
            # Python >= 3.12 warns about fork() in a multi-threaded process:
            # the worker resets what it inherits (see the module doc).
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the worker: never returns (its objects stay frozen)
            code = 0
            try:
                if cpu is not None:
                    try:
                        pin_process(cpu)
                    except OSError:
                        pass  # unpinned, as before
                parent_end.close()
                for w in self.workers:
                    w.sock.close()
                _Child(self._b, child_end, self._hazards, self._knowledge).main()
            except BaseException:  # noqa: BLE001 - a worker must never unwind into the caller's code
                code = 70
                try:
                    import traceback

                    traceback.print_exc()
                except BaseException:  # noqa: BLE001
                    pass
            finally:
                os._exit(code)
        child_end.close()
        return _Worker(pid, parent_end)

    def submit(self, idx: int) -> _Pending:
        """Hand input idx to the least busy live worker (another one if that
        worker turns out to be gone)."""
        while True:
            with self._lock:
                live = [w for w in self.workers if w.alive]
                if not live or self._closed:
                    p = _Pending()
                    p.set(False, WorkerProcessError(f"no worker process left to run input {idx}"))
                    return p
                w = min(live, key=lambda x: len(x.inflight))
                p = _Pending()
                w.inflight[idx] = p
            try:
                _send(w.sock, w.lock, ("run", idx))
                return p
            except OSError:
                with self._lock:
                    w.inflight.pop(idx, None)
                    w.alive = False  # its reader reports how it ended

    def tell(self, idx: int, reason: str, interrupt: bool = False) -> None:
        """Tell the worker running idx that it must stop (its hooks abort the
        next call); with interrupt, raise the stop exception in its thread."""
        with self._lock:
            w = next((w for w in self.workers if idx in w.inflight), None)
        if w is None or not w.alive:
            return
        try:
            _send(w.sock, w.lock, ("interrupt" if interrupt else "stop", idx, reason))
        except OSError:
            pass

    def abandon(self, idx: int) -> None:
        """Give up on idx (its result no longer counts): wake its parent thread."""
        with self._lock:
            for w in self.workers:
                p = w.inflight.pop(idx, None)
                if p is not None:
                    p.abandoned = True
                    p.set(False, None)

    def _read(self, w: _Worker) -> None:
        while True:
            try:
                msg = _recv(w.sock)
            except Exception as e:  # noqa: BLE001 - a message that does not decode
                msg = ("broken", repr(e))
            if msg is None or msg[0] == "broken":
                break
            if msg[0] == "call":  # a worker's call on a store that stayed here (relay.py)
                self._relay.handle(msg, lambda m, w=w: _send(w.sock, w.lock, m))
                continue
            if msg[0] == "end":
                _, idx, ok, blob = msg
                try:
                    value = pickle.loads(blob)
                except Exception as e:  # noqa: BLE001 - e.g. a class the parent cannot import
                    ok, value = False, WorkerProcessError(
                        f"the result of input {idx} from worker process {w.pid} could not be decoded: "
                        f"{type(e).__name__}: {e}"
                    )
                with self._lock:
                    p = w.inflight.pop(idx, None)
                if p is not None:
                    p.set(ok, value)
        # The worker is gone (or its stream broke): no new runs go to it; fail
        # what it held, saying how it ended.
        with self._lock:
            w.alive = False
        status = self._reap(w.pid, block=self._closed)
        with self._lock:
            w.status = status
            held = list(w.inflight.items())
            w.inflight.clear()
        if not self._closed:
            for idx, p in held:
                p.set(False, WorkerProcessError(f"worker process {w.pid} {status or 'went away'} while running input {idx}"))

    @staticmethod
    def _reap(pid: int, block: bool) -> str:
        """How the worker ended. Its socket closes while the kernel tears it
        down, a moment before its exit status exists: wait up to 1 s."""
        end = time.monotonic() + 1.0
        while True:
            try:
                got, st = os.waitpid(pid, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return ""
            if got:
                break
            if time.monotonic() > end:
                return ""
            time.sleep(0.005)
        if os.WIFSIGNALED(st):
            return f"was killed by signal {os.WTERMSIG(st)}"
        return f"exited with status {os.WEXITSTATUS(st)}"

    def close(self, grace: float = 2.0) -> None:
        """End every worker process (asked, then killed) and reap it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for w in self.workers:
            try:
                _send(w.sock, w.lock, ("exit",))
            except OSError:
                pass
        end = time.monotonic() + grace
        for w in self.workers:
            while time.monotonic() < end:
                try:
                    got, _ = os.waitpid(w.pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if got:
                    break
                time.sleep(0.01)
            else:
                try:
                    os.kill(w.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                w.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._readers:
            t.join(timeout=grace)
        self._relay.close()
        for w in self.workers:
            try:
                os.waitpid(w.pid, 0)
            except ChildProcessError:
                pass
            w.sock.close()


# --------------------------------------------------------------------------
# the worker process


class _ChildEngine:
    """What the scheduler's CrewAI hooks ask in a worker: has the parent
    told run idx to stop?"""

    def __init__(self) -> None:
        self.told: dict[int, str] = {}

    def check(self, idx: int) -> str:
        return self.told.get(idx, "")


class _ChildBatch:
    def __init__(self) -> None:
        self.engine = _ChildEngine()


def _reset_after_fork() -> None:
    """Reset what fork() leaves broken in a worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The switch of crewcore's stores to the Python engine after fork is
    # expected here (the batch forked on purpose): no warning per worker.
    warnings.filterwarnings("ignore", message="crewcore: this process was forked", category=RuntimeWarning)
    try:
        from crewai.events.event_bus import crewai_event_bus as bus

        # Its handler pool and loop thread exist only in the parent: a fresh
        # pool and loop start on the next emit; futures the parent's threads
        # would complete never will here.
        bus._executor_initialized = False
        bus._pending_futures = set()
        bus._has_pending_events = False
        bus._futures_lock = threading.Lock()
        type(bus)._instance_lock = threading.RLock()
        rw = getattr(bus, "_rwlock", None)
        if rw is not None:
            bus._rwlock = type(rw)()
    except Exception:  # noqa: BLE001 - another CrewAI layout: nothing to reset
        pass
    try:
        import httpcore

        pools = tuple(
            c for c in (getattr(httpcore, "ConnectionPool", None), getattr(httpcore, "AsyncConnectionPool", None)) if c
        )
    except ImportError:
        pools = ()
    from concurrent.futures import ThreadPoolExecutor

    # The parent froze its objects before fork (gc.freeze), and
    # gc.get_objects() does not list frozen ones: thaw to look, then freeze
    # again. type(o), not isinstance: isinstance reads o.__class__, which on
    # lazy proxies (openai's module proxies) imports whole packages.
    gc.unfreeze()
    objects = gc.get_objects()
    gc.freeze()
    kinds: dict[type, int] = {}
    for o in objects:
        t = type(o)
        k = kinds.get(t)
        if k is None:
            k = kinds[t] = 1 if issubclass(t, ThreadPoolExecutor) else 2 if pools and issubclass(t, pools) else 0
        if not k:
            continue
        try:
            if k == 1:
                # Its threads exist only in the parent, and its idle count
                # says they are waiting: work submitted here would never
                # run (CrewAI's Memory saves through one). Forget them so
                # the pool starts its own.
                o._threads = set()
                o._idle_semaphore = threading.Semaphore(0)
                o._shutdown_lock = threading.Lock()
            else:
                # Pooled connections share their sockets with the parent and
                # the other workers: drop them (closing our copy of the fd
                # sends nothing while the parent holds it); the pool dials
                # new ones.
                o._connections = []
                lk = getattr(o, "_optional_thread_lock", None)
                if lk is not None:
                    o._optional_thread_lock = type(lk)()
        except Exception:  # noqa: BLE001 - another library layout: leave it
            pass
    del objects


class _Child:
    def __init__(self, batch: Any, sock: socket.socket, hazards: list[relay.Hazard], knowledge: bool) -> None:
        self.b = batch
        self.sock = sock
        self.lock = threading.Lock()
        self.cb = _ChildBatch()
        self.runs: dict[int, Any] = {}
        self.relay = relay.Client(lambda m: _send(self.sock, self.lock, m))
        self.hazards = hazards
        self.knowledge = knowledge

    def main(self) -> None:
        _reset_after_fork()
        relay.install_child(self.hazards, self.relay, self.knowledge)
        # This process is crewcore's: its asyncio loops (CrewAI makes several
        # per run) share one thread pool instead of starting one each.
        loops.install_shared_executor()
        while True:
            msg = _recv(self.sock)
            if msg is None or msg[0] == "exit":
                return
            op = msg[0]
            if op == "reply":
                self.relay.deliver(msg)
            elif op == "run":
                threading.Thread(target=self._run, args=(msg[1],), name="crewcore-proc-run", daemon=True).start()
            elif op in ("stop", "interrupt"):
                _, idx, reason = msg
                self.cb.engine.told[idx] = reason
                r = self.runs.get(idx)
                if r is not None:
                    r.told = r.told or reason
                    if op == "interrupt":
                        context._interrupt(r, reason)

    def _run(self, idx: int) -> None:
        b = self.b
        r = context._Run(self.cb, idx)
        self.runs[idx] = r
        try:
            ok, value = context._kickoff_copy(r, b.crew, b.inputs[idx], b.kw)
        finally:
            self.runs.pop(idx, None)
            if r.crew_id is not None:
                context._by_crew.pop(r.crew_id, None)
        self._reply(idx, ok, value)

    def _reply(self, idx: int, ok: bool, value: Any) -> None:
        try:
            blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            if not ok:
                pickle.loads(blob)  # exceptions whose __init__ needs more than args do not load
        except Exception as e:  # noqa: BLE001 - the result or exception does not pickle
            why = f"{type(e).__name__}: {e}"
            if ok:
                err: BaseException = WorkerProcessError(
                    f"input {idx} finished in worker process {os.getpid()} but its result could not be sent "
                    f"to the parent ({why})"
                )
            else:
                err = WorkerProcessError(f"{type(value).__name__}: {value}")
            ok, blob = False, pickle.dumps(err, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            _send(self.sock, self.lock, ("end", idx, ok, blob))
        except OSError:
            pass  # the parent is gone
