"""A Python worker process of ``crewcore worker`` (``python -m crewcore._worker``).

The Go supervisor (runq/proc.go) starts one of these per ``--processes``;
each runs up to ``--concurrency`` crews at once on threads, under its own
GIL, with ``crewcore.install()`` done (CrewAI's memory, locks, task outputs
and flow state through crewcore). Requests arrive on fd 3 and replies leave
on fd 4, as length-prefixed JSON frames (the protocol is documented in
runq/proc.go). The process exits when fd 3 ends (its supervisor is gone).

A run told to stop (its timeout, a cancel, a shutdown) stops at its next LLM
or tool call (CrewAI hooks raise the stop exception there); one that reaches
none within the stop grace gets the exception raised in its threads; the
supervisor kills the process if it still does not end.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
import time
from typing import Any

from crewcore.runs import crews
from crewcore.runs.context import _by_crew, _interrupt, _kickoff_copy, _raise_in_thread, _Run, _tls


class _Channel:
    """Frames over the two pipes."""

    def __init__(self, rfd: int, wfd: int) -> None:
        self._r = os.fdopen(rfd, "rb", buffering=1 << 16)
        self._w = os.fdopen(wfd, "wb", buffering=0)
        self._wlock = threading.Lock()

    def recv(self) -> dict[str, Any] | None:
        hdr = self._r.read(4)
        if len(hdr) < 4:
            return None
        (n,) = struct.unpack(">I", hdr)
        body = self._r.read(n)
        if len(body) < n:
            return None
        return json.loads(body)

    def send(self, msg: dict[str, Any]) -> None:
        body = json.dumps(msg, ensure_ascii=False, allow_nan=False, default=str).encode()
        with self._wlock:
            self._w.write(struct.pack(">I", len(body)) + body)


class _NoEngine:
    """The stand-in batch engine of a run: stops come as messages and are
    recorded on the run itself (``_Run.told``), which the hooks read first."""

    def check(self, index: int) -> str:
        return ""


class _Batch:
    engine = _NoEngine()


class _PlainStop(Exception):
    """The stop exception of a run when CrewAI is not imported (a factory of
    something else than a CrewAI crew): no hook can raise it, the
    interrupt does."""


_PLAIN = {
    r: type(n, (_PlainStop,), {"__module__": "crewcore.runs.scheduler", "reason_code": r})
    for r, n in (("timeout", "RunTimeout"), ("cancelled", "RunCancelled"))
}


class _Process:
    """Runs on ``concurrency + 1`` threads taking turns at reading (leader and
    followers): the thread that reads a "run" hands the pipe to the next
    thread and runs the crew itself, so a run starts on the thread that
    received it, with no hand-off to wait for (on a busy machine waking
    another thread costs milliseconds)."""

    def __init__(self, chan: _Channel, concurrency: int, stop_grace: float) -> None:
        self.chan = chan
        self.concurrency = concurrency
        self.stop_grace = stop_grace
        self.runs: dict[int, _Run] = {}
        self.lock = threading.Lock()
        self.reading = threading.Lock()  # held by the thread reading the pipe
        self.batch = _Batch()
        self.done = threading.Event()

    def serve(self) -> None:
        """Serve until "exit" (returns) or the pipe's end (exits the process)."""
        for k in range(self.concurrency):
            threading.Thread(target=self._turns, name=f"crewcore-run-{k}", daemon=True).start()
        self._turns()

    def _turns(self) -> None:
        while not self.done.is_set():
            try:
                with self.reading:
                    if self.done.is_set():
                        return
                    msg = self._next_run()
                if msg is None:
                    return
                r = _Run(self.batch, int(msg["id"]))
                with self.lock:
                    self.runs[r.index] = r
                self.run(r, msg)
            except BaseException as e:  # noqa: BLE001
                if type(e).__module__ != "crewcore.runs.scheduler":
                    raise
                # A stop exception that landed just after its run ended.

    def _next_run(self) -> dict[str, Any] | None:
        """Read until a "run" (returned) or "exit" (None)."""
        while True:
            msg = self.chan.recv()
            if msg is None:  # the supervisor is gone: so are we
                os._exit(0)
            op = msg.get("op")
            if op == "run":
                return msg
            if op == "stop":
                self.stop(int(msg["id"]), str(msg.get("reason") or "cancelled"))
            elif op == "exit":
                self.done.set()
                return None

    def stop(self, run_id: int, reason: str) -> None:
        with self.lock:
            r = self.runs.get(run_id)
        if r is None:
            return
        reason = {"timeout": "timeout"}.get(reason, "cancelled")
        r.told = r.told or reason

        def interrupt() -> None:
            with self.lock:
                live = self.runs.get(run_id) is r
            if not live:
                return
            if "crewai.hooks" in sys.modules:
                _interrupt(r, reason)
            elif r.thread_id is not None:
                _raise_in_thread(r.thread_id, _PLAIN[reason])

        t = threading.Timer(self.stop_grace, interrupt)
        t.daemon = True
        t.start()

    def run(self, r: _Run, msg: dict[str, Any]) -> None:
        t0 = time.time()
        base = {"pid": os.getpid(), "attempt": msg.get("attempt"), "started": t0}
        reply: dict[str, Any] = {"op": "done", "id": r.index}
        try:
            ok, value, permanent = self._kickoff(r, msg)
        except BaseException as e:  # noqa: BLE001 - a late stop exception
            ok, value, permanent = False, e, False
        t1 = time.time()
        with self.lock:
            self.runs.pop(r.index, None)
        if r.crew_id is not None:
            _by_crew.pop(r.crew_id, None)
        if ok:
            try:
                result = crews.encode_result(value)
            except BaseException as e:  # noqa: BLE001
                ok, value = False, e
        if ok:
            reply.update(ok=True, record={"ok": True, "result": result, **base, "finished": t1})
        else:
            err = crews.error_record(value)
            stopped = ""
            if type(value).__module__ == "crewcore.runs.scheduler":  # a stop exception
                stopped = getattr(value, "reason_code", "") or r.told
            reply.update(
                ok=False, permanent=permanent, stopped=stopped,
                error=f"{err['type']}: {err['message']}"[:4000],
                record={"ok": False, "error": err, "permanent": permanent, "stopped": stopped, **base, "finished": t1},
            )
        try:
            self.chan.send(reply)
        except OSError:
            os._exit(0)

    def _kickoff(self, r: _Run, msg: dict[str, Any]) -> tuple[bool, Any, bool]:
        inputs = msg.get("inputs")
        if not isinstance(inputs, dict):
            return False, TypeError(f"inputs must be a JSON object, got {type(inputs).__name__}"), True
        try:
            obj, shared = crews.crew_for(str(msg.get("crew")))
        except crews.CrewFactoryError as e:
            return False, e, True
        if shared:
            ok, value = _kickoff_copy(r, obj, inputs, {})
            return ok, value, False
        r.thread_id = threading.get_ident()
        _tls.run = r
        try:
            return True, obj.kickoff(inputs=inputs), False
        except BaseException as e:  # noqa: BLE001 - every failure is a result
            return False, e, False
        finally:
            _tls.run = None


def _pin(cpu: str) -> None:
    """Pin this process to the CPU its supervisor chose (runq.PinCPUs)."""
    if not cpu or not hasattr(os, "sched_setaffinity"):
        return
    from crewcore.runs.procs import pin_process

    try:
        pin_process(int(cpu))
    except (OSError, ValueError) as e:
        sys.stderr.write(f"crewcore worker process {os.getpid()}: cannot pin to CPU {cpu}: {e}; running unpinned\n")


def main() -> None:
    fds = os.environ.get("CREWCORE_RUNQ_FDS", "")
    if not fds:
        sys.stderr.write("crewcore._worker is started by `crewcore worker`, not by hand\n")
        raise SystemExit(2)
    rfd, wfd = (int(x) for x in fds.split(","))
    _pin(os.environ.get("CREWCORE_RUNQ_CPU", ""))
    concurrency = max(1, int(os.environ.get("CREWCORE_RUNQ_CONCURRENCY", "1")))
    stop_grace = float(os.environ.get("CREWCORE_RUNQ_STOP_GRACE", "2"))
    crews.add_crew_path(os.environ.get("CREWCORE_RUNQ_CREW_PATH", ""))
    if "" not in sys.path:
        sys.path.append(os.getcwd())
    info = "crewcore installed"
    if os.environ.get("CREWCORE_RUNQ_INSTALL", "1") != "0":
        try:
            import crewcore
            from crewcore.runs.context import _hooks_acquire

            crewcore.install()
            _hooks_acquire()
        except Exception as e:  # noqa: BLE001 - runs can go on without it
            info = f"crewcore.install() failed: {type(e).__name__}: {e}"
            sys.stderr.write(f"crewcore worker process {os.getpid()}: {info}\n")
    else:
        info = "crewcore not installed (CREWCORE_RUNQ_INSTALL=0)"
    from crewcore.runs.loops import install_shared_executor

    install_shared_executor()
    chan = _Channel(rfd, wfd)
    chan.send({"op": "ready", "pid": os.getpid(), "info": info})
    proc = _Process(chan, concurrency, stop_grace)
    proc.serve()
    # "exit": the supervisor has no run here any more (it stopped River first).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
