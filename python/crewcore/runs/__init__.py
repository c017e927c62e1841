"""Many crew runs at once (Go package ``sched``): ``kickoff_many`` and its
twins, in threads or forked worker processes.

- :mod:`~crewcore.runs.scheduler`: the public API (how runs are stopped).
- :mod:`~crewcore.runs.handle`: ``ManyHandle``, ``start_many``,
  ``kickoff_many`` (worker threads).
- :mod:`~crewcore.runs.ahandle`: ``AsyncManyHandle``, ``astart_many``,
  ``akickoff_many`` (asyncio tasks).
- :mod:`~crewcore.runs.batch`: argument checks, the engine choice and
  ``_Batch``, shared by both front ends.
- :mod:`~crewcore.runs.procs`: worker processes (``processes=N``).
- :mod:`~crewcore.runs.context`: the run context, CrewAI hooks and the stop
  exception (used by the batch and by worker processes).
- :mod:`~crewcore.runs.native`: the engine, the Go scheduler through the
  bridge; :mod:`~crewcore.runs.fallback`: its pure-Python twin.
- :mod:`~crewcore.runs.results`: ``RunFailure``, ``RunSummary``,
  ``ManyResults``.

Imports go one way: scheduler -> handle, ahandle -> batch (handle -> procs)
-> context, native, fallback -> results.
"""

from __future__ import annotations

from crewcore.runs.scheduler import (
    AsyncManyHandle,
    ManyHandle,
    ManyResults,
    RunFailure,
    RunSummary,
    akickoff_many,
    astart_many,
    kickoff_many,
    start_many,
)

__all__ = [
    "AsyncManyHandle",
    "ManyHandle",
    "ManyResults",
    "RunFailure",
    "RunSummary",
    "akickoff_many",
    "astart_many",
    "kickoff_many",
    "start_many",
]
