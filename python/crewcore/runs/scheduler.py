"""Run many CrewAI kickoffs with bounded concurrency, deadlines and cancellation.

    results = crewcore.kickoff_many(crew, inputs, concurrency=64, timeout=120)
    results[i]          # CrewOutput, or a RunFailure (falsy) for input i
    results.summary     # RunSummary: done, failed, timed_out, cancelled, p50, p95, ...

    handle = crewcore.start_many(crew, inputs)   # same, in the background
    handle.cancel(); results = handle.result()

    results = await crewcore.akickoff_many(crew, inputs)   # asyncio twin (Crew.akickoff)

    results = crewcore.kickoff_many(crew, inputs, processes="auto")  # one worker
    # process per CPU, each under its own GIL (crewcore/runs/procs.py); call
    # crewcore.install() first so CrewAI's locks are crewcore's

The engine (package ``sched`` in Go, behind the bridge) owns the queue, the
slots, the per-run and overall deadlines and the cancellation state. Python
worker threads pull inputs from it with one bridge call per dequeue (ctypes
releases the GIL while Go blocks; every wait is bounded, so Ctrl-C and
``cancel()`` are noticed within a fraction of a second).

How a run is stopped (cancel, Ctrl-C, ``timeout``, ``deadline``):

1. pending inputs never start;
2. a running run stops at its next LLM or tool call: crewcore registers a
   CrewAI ``pre_model_call``/``pre_tool_call`` hook (only while a batch is
   active) that asks the engine and raises CrewAI's ``HookAborted`` (a
   blocked tool call is reported to the model, whose next call is aborted);
3. a run that reaches no such call within ``stop_grace`` seconds (a tool
   that hangs in Python code) gets the stop exception raised in its thread;
4. a run still not finished ``stop_grace`` seconds later (a thread stuck in a
   blocking C call cannot be interrupted by Python) is abandoned: its result
   is recorded as stopped, its slot goes to a new worker thread, and
   ``summary.abandoned`` counts it. Worker threads are daemon threads.

Each run gets its own ``crew.copy()``, made when the run starts (as CrewAI's
``kickoff_for_each`` does, so copies share the crew's Memory, whose storage
must be safe for concurrent use: crewcore's MemoryStorage is).
"""

from __future__ import annotations

from crewcore.runs.ahandle import AsyncManyHandle, akickoff_many, astart_many
from crewcore.runs.handle import ManyHandle, kickoff_many, start_many
from crewcore.runs.results import ManyResults, RunFailure, RunSummary

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
