"""Many crew runs at once (Go package ``sched``): ``kickoff_many`` and its
twins, in threads or forked worker processes.

- :mod:`~crewcore.runs.scheduler`: the public API, the batch, the engine
  (the Go scheduler through the bridge or its Python twin).
- :mod:`~crewcore.runs.procs`: worker processes (``processes=N``).
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
