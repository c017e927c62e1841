"""CrewAI's locks, kickoff task outputs and flow state through crewcore (Go
packages ``lock``, ``taskoutputs``, ``flowstate`` on ``sqlitedb``).

- :mod:`~crewcore.storage.locks`: named locks (``lock()``), CrewAI's lock
  backend.
- :mod:`~crewcore.storage.task_outputs`: ``TaskOutputStorage``, CrewAI's
  ``latest_kickoff_task_outputs.db``.
- :mod:`~crewcore.storage.flows`: ``CrewcoreFlowPersistence``, CrewAI's
  ``flow_states.db``.
- :mod:`~crewcore.storage.engine`: what the three share (the engine choice,
  CrewAI's storage directory).
- :mod:`~crewcore.storage.fallback_locks`: the pure-Python lock engine
  (``flock(2)`` plus an in-process mutex per name).
- :mod:`~crewcore.storage.fallback_db`: the pure-Python engine of the task
  outputs and flow state files (sqlite3), with its file checks and errors.
- :mod:`~crewcore.storage.install`: the storage part of ``install()``.

Native and fallback side by side: each public module holds its class and its
native binding (a ``_NativeEngine`` with the methods of the pure-Python
``_PyEngine``; for locks, the two calls into Go), chosen once per object by
:func:`~crewcore.storage.engine.use_native`; the pure-Python engines live in
the ``fallback_*`` modules. The public places stay ``crewcore.locks``,
``crewcore.task_outputs`` and ``crewcore.flows``.
"""

from __future__ import annotations
