"""``crewcore.flows``: the public name of :mod:`crewcore.storage.flows`, where the code lives."""

from __future__ import annotations

import sys

from crewcore.storage import flows as _impl

# The same module object under both names: attributes, monkeypatches and
# module state are shared, never copied.
sys.modules[__name__] = _impl
