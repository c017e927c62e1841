"""``crewcore.locks``: the public name of :mod:`crewcore.storage.locks`, where the code lives."""

from __future__ import annotations

import sys

from crewcore.storage import locks as _impl

# The same module object under both names: attributes, monkeypatches and
# module state are shared, never copied.
sys.modules[__name__] = _impl
