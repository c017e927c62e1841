"""``crewcore.runs.Worker``: the ``crewcore worker`` command, from Python.

    crewcore.runs.Worker("runs.db", processes="auto").run()   # until SIGTERM / Ctrl-C

    with crewcore.runs.Worker(dsn, processes=2) as w:         # in the background
        ...                                                    # stopped (gracefully) on exit

The worker is the Go command shipped in the package (River's client fetches
and leases the runs) with ``processes`` Python processes of this interpreter
running the crews, ``concurrency`` at once each, every one with
``crewcore.install()`` done. It stops when this process exits (its stdin, a
pipe from here, closes).
"""

from __future__ import annotations

import collections
import json
import math
import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any, Iterable

from crewcore.errors import InvalidArgumentError, WorkerStartError
from crewcore.runs import crews


def executable() -> Path:
    """The Go ``crewcore`` command of this installation."""
    return Path(__file__).resolve().parent.parent / "_lib" / "crewcore"


def _dur(name: str, v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise InvalidArgumentError(f"{name} must be a number of seconds > 0, got {v!r}")
    return f"{float(v) * 1000:.0f}ms"


class Worker:
    """Work the runs of a queue (see the module doc and ``crewcore worker -h``).

    - ``queue``: a SQLite file or a ``postgresql://`` DSN (default: the
      default queue of ``crewcore.runs.submit``).
    - ``processes``: Python processes (``"auto"``: one per CPU);
      ``concurrency``: runs at once in each.
    - ``crew_path``: directories put first on the processes' ``sys.path``
      (where the crew factories' modules are).
    - ``timeout``: seconds per run that sets none; ``rescue_after``: seconds
      after which River retries a run whose worker is gone (default: timeout
      plus the stop time plus 30 s); ``shutdown_grace``: on stop, seconds
      running crews may finish; ``stop_grace``: a stopped run's seconds
      before its thread is interrupted, and again before its process is killed.
    - ``periodic``: dicts ``{"id", "crew", "every" (s), "inputs", "run_on_start",
      "priority", "attempts", "timeout"}``: crews River enqueues on a schedule
      (only the elected leader among the workers enqueues).
    - ``keep``: seconds completed and cancelled runs (and results) stay in
      the queue before River's cleaner deletes them (default 24 h).
    - ``pin``: pin each process to one CPU (``"auto"``: when ``processes``
      equals the CPUs the worker may use, e.g. ``"auto"``; ``"on"``; ``"off"``;
      or CPU numbers like ``[0, 2]`` or ``"4-7"``). A pinned interpreter's
      threads hand the GIL over on one CPU: less CPU per run and more runs
      per second (docs/architecture.md, "Scaling and its limits").
    - ``log``: where the command's stderr goes (default ``sys.stderr``).
    """

    def __init__(
        self,
        queue: Any = None,
        *,
        processes: int | str = 1,
        concurrency: int = 4,
        crew_path: Iterable[str | os.PathLike[str]] = (),
        python: str | None = None,
        timeout: float = 600.0,
        rescue_after: float | None = None,
        shutdown_grace: float = 30.0,
        stop_grace: float = 2.0,
        river_queue: str = "crewcore",
        periodic: Iterable[dict[str, Any]] = (),
        poll: float | None = None,
        keep: float | None = None,
        install: bool = True,
        log: IO[str] | None = None,
        env: dict[str, str] | None = None,
        pin: str | Iterable[int] = "auto",
    ) -> None:
        from crewcore.runs.queue import _spec

        self.queue = _spec(queue)
        if processes != "auto" and (isinstance(processes, bool) or not isinstance(processes, int) or processes < 1):
            raise InvalidArgumentError(f'processes must be an int >= 1 or "auto", got {processes!r}')
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidArgumentError(f"concurrency must be an int >= 1, got {concurrency!r}")
        args = [
            "worker", "--queue", self.queue, "--processes", str(processes), "--concurrency", str(concurrency),
            "--timeout", _dur("timeout", timeout), "--shutdown-grace", _dur("shutdown_grace", shutdown_grace),
            "--stop-grace", _dur("stop_grace", stop_grace), "--river-queue", str(river_queue),
            "--python", python or sys.executable, "--stop-on-stdin-eof",
        ]
        if not isinstance(pin, str):
            try:
                pin = ",".join(str(int(c)) for c in pin)
            except (TypeError, ValueError):
                raise InvalidArgumentError(f'pin must be "auto", "on", "off" or CPU numbers, got {pin!r}') from None
        args += ["--pin", pin]
        if rescue_after is not None:
            args += ["--rescue-after", _dur("rescue_after", rescue_after)]
        if poll is not None:
            args += ["--poll", _dur("poll", poll)]
        if keep is not None:
            args += ["--keep", _dur("keep", keep)]
        for d in crew_path:
            p = Path(d)
            if not p.is_dir():
                raise InvalidArgumentError(f"crew_path {str(p)!r} is not a directory")
            args += ["--crew-path", str(p.resolve())]
        for p in periodic:
            if not isinstance(p, dict):
                raise InvalidArgumentError(f"a periodic crew is a dict, got {type(p).__name__}")
            crews.check_spec(p.get("crew"))
            try:
                args += ["--periodic", json.dumps(p, allow_nan=False)]
            except (TypeError, ValueError) as e:
                raise InvalidArgumentError(f"periodic crew {p.get('id')!r} is not JSON: {e}") from None
        if not install:
            args.append("--no-install")
        self.args = args
        self.log = log
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.ready_line = ""
        self._ready = threading.Event()
        self._tail: collections.deque[str] = collections.deque(maxlen=40)
        self._threads: list[threading.Thread] = []

    def command(self) -> list[str]:
        """The command line this worker runs."""
        return [str(executable()), *self.args]

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait: bool = True, ready_timeout: float = 300.0) -> Worker:
        """Start the command; with ``wait``, return once its Python processes
        are up and runs are being fetched (``WorkerStartError`` if it exits
        first or is not ready within ``ready_timeout`` seconds)."""
        if self.proc is not None:
            raise InvalidArgumentError("this Worker was started already")
        exe = executable()
        if not os.access(exe, os.X_OK):
            raise WorkerStartError(
                f"the crewcore command is missing from this installation ({exe}); install a crewcore "
                "wheel for this platform or build it (`make build` in a checkout)"
            )
        env = dict(os.environ)
        env.update(self.env or {})
        env.setdefault("CREWCORE_PYTHON", sys.executable)
        self.proc = subprocess.Popen(
            self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env, start_new_session=True,
        )
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True, name="crewcore-worker-stdout"),
            threading.Thread(target=self._read_stderr, daemon=True, name="crewcore-worker-stderr"),
        ]
        for t in self._threads:
            t.start()
        if wait:
            self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float = 300.0) -> None:
        """Wait until the worker fetches runs (see ``start``)."""
        assert self.proc is not None
        end = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None:
                for t in self._threads:
                    t.join(timeout=2)
                raise WorkerStartError(
                    f"crewcore worker exited with status {self.proc.returncode} before it was ready:\n"
                    + "".join(self._tail)
                )
            if time.monotonic() > end:
                self.kill()
                raise WorkerStartError(f"crewcore worker not ready after {timeout} s:\n" + "".join(self._tail))

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("crewcore worker ready"):
                self.ready_line = line.strip()
                self._ready.set()
            self._write(line)

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._tail.append(line)
            self._write(line)

    def _write(self, line: str) -> None:
        out = self.log if self.log is not None else sys.stderr
        try:
            out.write(line)
            out.flush()
        except (OSError, ValueError):
            pass

    def signal(self, sig: int) -> None:
        """Send a signal to the worker command."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float | None = None) -> int | None:
        """Graceful stop (SIGTERM): no new runs, running crews finish within
        the shutdown grace, the rest go back to the queue. Waits up to
        ``timeout`` seconds (default: forever) and returns the exit status."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the command (its Python processes die with it); its
        running runs come back through River's rescuer after rescue_after."""
        self.signal(signal.SIGKILL)
        self.wait(30)

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the command to exit; its status (None on timeout)."""
        if self.proc is None:
            return None
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        for t in self._threads:
            t.join(timeout=2)
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        return rc

    def run(self) -> int:
        """Start and work until the command exits; Ctrl-C asks for a graceful
        stop, a second Ctrl-C stops at once. Returns the exit status."""
        self.start(wait=False)
        while True:
            try:
                rc = self.wait()
                return rc if rc is not None else 1
            except KeyboardInterrupt:
                # The command counts them: the first stops gracefully, the
                # second at once.
                self.signal(signal.SIGINT)

    def __enter__(self) -> Worker:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Worker({self.queue!r}, pid={self.pid})"
