"""The results of a batch: ``ManyResults`` (input order), a ``RunFailure``
per run that produced no CrewOutput, and the ``RunSummary`` counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

#: The states of one input, in the Go engine's order (its state bytes).
_STATE_NAMES = ("pending", "running", "done", "failed", "timed_out", "cancelled")


@dataclass(frozen=True)
class RunFailure:
    """A run that did not produce a CrewOutput. Falsy, so ``[r for r in
    results if r]`` keeps the successful outputs.

    ``kind`` is ``"error"`` (the crew raised), ``"timeout"`` (per-run
    ``timeout``), ``"deadline"`` (overall ``deadline``) or ``"cancelled"``
    (``cancel()``, Ctrl-C, or ``on_error`` stopping the batch). ``elapsed`` is
    the run time in seconds (0 for an input that never started).
    """

    index: int
    kind: str
    error_type: str
    message: str
    elapsed: float
    started: bool = True
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    def __bool__(self) -> bool:
        return False


@dataclass(frozen=True)
class RunSummary:
    """Counts and run times of one batch (times in seconds).

    ``failed`` counts runs whose crew raised; ``timed_out`` runs stopped by
    ``timeout`` or ``deadline``; ``cancelled`` inputs cancelled before or
    while running. ``p50``/``p95``/``max`` are run times of successful runs
    (nearest rank). ``throughput`` is successful runs per second of
    ``elapsed``. ``stop`` is ``""``, ``"cancelled"`` or ``"deadline"``.
    ``abandoned`` counts runs whose thread did not stop (see the module doc).
    ``concurrency`` is the number of runs allowed at once at the end (the
    adaptive limit, or ``concurrency`` as given with ``adaptive=False``).
    """

    total: int
    done: int
    failed: int
    timed_out: int
    cancelled: int
    p50: float
    p95: float
    max: float
    elapsed: float
    throughput: float
    stop: str = ""
    abandoned: int = 0
    concurrency: int = 0


class ManyResults(list):
    """The results of a batch, in input order: ``results[i]`` is input i's
    CrewOutput or its :class:`RunFailure`. ``.summary`` is a
    :class:`RunSummary`; ``.failures`` and ``.outputs`` filter the list."""

    summary: RunSummary

    def __init__(self, items: Iterable[Any], summary: RunSummary) -> None:
        super().__init__(items)
        self.summary = summary

    @property
    def failures(self) -> list[RunFailure]:
        return [r for r in self if isinstance(r, RunFailure)]

    @property
    def outputs(self) -> list[Any]:
        return [r for r in self if not isinstance(r, RunFailure)]

    def __repr__(self) -> str:
        return f"ManyResults({len(self)} results, {self.summary!r})"
