"""CrewAI's locks, kickoff task outputs and flow state through crewcore (Go
packages ``lock``, ``taskoutputs``, ``flowstate`` on ``sqlitedb``).

- :mod:`~crewcore.storage.locks`: named locks (``lock()``), CrewAI's lock
  backend.
- :mod:`~crewcore.storage.task_outputs`: ``TaskOutputStorage``, CrewAI's
  ``latest_kickoff_task_outputs.db``.
- :mod:`~crewcore.storage.flows`: ``CrewcoreFlowPersistence``, CrewAI's
  ``flow_states.db``.
- :mod:`~crewcore.storage.engine`: what the three share (the engine choice,
  the pure-Python engine's file checks and errors).
- :mod:`~crewcore.storage.install`: the storage part of ``install()``.

Each module holds its native binding and its pure-Python engine side by side.
The public places stay ``crewcore.locks``, ``crewcore.task_outputs`` and
``crewcore.flows``.
"""

from __future__ import annotations
