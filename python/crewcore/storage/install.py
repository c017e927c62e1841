"""The storage part of ``crewcore.install()`` / ``uninstall()``: CrewAI's lock
backend, kickoff task-output handler and default flow persistence, each on
or off. The top of the storage package (it imports the three seams)."""

from __future__ import annotations

from crewcore.storage import flows as _flows
from crewcore.storage import locks as _locks
from crewcore.storage import task_outputs as _to


_SEAMS = (("locks", _locks), ("task_outputs", _to), ("flows", _flows))


def install_storage(installed: dict, locks: bool, task_outputs: bool, flows: bool) -> None:
    """The storage part of ``crewcore.install()``: each seam on or off."""
    wanted = {"locks": locks, "task_outputs": task_outputs, "flows": flows}
    for key, mod in _SEAMS:
        if wanted[key]:
            mod.install()
            installed[key] = True
        else:
            mod.uninstall()
            installed.pop(key, None)


def uninstall_storage(installed: dict) -> None:
    """The storage part of ``crewcore.uninstall()``."""
    for key, mod in _SEAMS:
        mod.uninstall()
        installed.pop(key, None)
