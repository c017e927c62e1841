"""Many crew runs at once (Go package ``sched``): ``kickoff_many`` and its
twins, in threads or forked worker processes.

- :mod:`~crewcore.runs.scheduler`: the public API (its docstring is the guide).
- :mod:`~crewcore.runs.handle` / :mod:`~crewcore.runs.ahandle`: ``kickoff_many``,
  ``start_many`` and their asyncio twins.
- :mod:`~crewcore.runs.batch`: argument checks, the batch, the engine choice.
- :mod:`~crewcore.runs.native` / :mod:`~crewcore.runs.fallback`: the Go
  scheduler through the bridge, and its pure-Python twin.
- :mod:`~crewcore.runs.context`: the run context, CrewAI hooks, stop exceptions.
- :mod:`~crewcore.runs.results`: ``RunFailure``, ``RunSummary``, ``ManyResults``.
- :mod:`~crewcore.runs.procs`: worker processes (``processes=N``).
- :mod:`~crewcore.runs.lean`: per-run work CrewAI repeats with the same result,
  removed (``install(lean_runs=True)``).
- :mod:`~crewcore.runs.queue`, :mod:`~crewcore.runs.queued`,
  :mod:`~crewcore.runs.worker`, :mod:`~crewcore.runs.crews`: durable runs on
  a River queue (Go package ``runq``): ``submit``, ``Queue``, ``Worker``,
  ``kickoff_many(queue=...)``.
"""

from __future__ import annotations

from crewcore.runs.scheduler import *  # noqa: F403  (the public API, listed once there)
from crewcore.runs.scheduler import __all__  # noqa: F401
from crewcore.runs.queue import Queue, QueueStats, RunBatch, RunHandle, RunInfo, submit  # noqa: E402,F401
from crewcore.runs.worker import Worker  # noqa: E402,F401
