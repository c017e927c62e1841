"""crewcore's version, read from the installed distribution's metadata.

The version is written once, in pyproject.toml; an install (wheel, sdist or
editable) records it in the metadata read here, and setup.py stamps the same
string into the Go library and command.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _dist_version


def _read() -> str:
    try:
        return _dist_version("crewcore")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "0+unknown"


__version__ = _read()
