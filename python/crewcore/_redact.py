"""Passwords out of everything crewcore shows (errors, logs, reprs, CLI).

The Python twin of the Go package internal/redact: a connection string comes
from a user and may be malformed in any way, so nothing here parses it
strictly or fails. ``redact_dsn`` masks the password of a DSN (URL user info,
``password=``/``sslpassword=`` keys or query parameters); ``scrub`` removes a
known DSN's password from any text, e.g. a message another library built.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, unquote_plus

#: What every hidden password is replaced by.
MASK = "xxxxx"

_KV_QUOTED = re.compile(r"(?i)\b((?:ssl)?password\s*=\s*)'(?:[^'\\]|\\.)*'")
_KV_PLAIN = re.compile(r"(?i)\b((?:ssl)?password\s*=\s*)[^\s&']+")


def _authority(rest: str) -> tuple[str, str | None]:
    """(rest with the user info's password masked, the password or None).
    The user info ends at the last '@' (a password may hold '@' or '/')."""
    at = rest.rfind("@")
    if at < 0:
        return rest, None
    colon = rest.find(":", 0, at)
    if colon < 0:
        return rest, None
    return rest[: colon + 1] + MASK + rest[at:], rest[colon + 1 : at]


def redact_dsn(value: object) -> str:
    """``value`` as text with any password replaced by ``xxxxx``."""
    s = str(value)
    i = s.find("://")
    if i >= 0:
        s = s[: i + 3] + _authority(s[i + 3 :])[0]
    s = _KV_QUOTED.sub(lambda m: m.group(1) + MASK, s)
    return _KV_PLAIN.sub(lambda m: m.group(1) + MASK, s)


def passwords(dsn: str) -> list[str]:
    """The passwords ``dsn`` holds, as written and decoded, longest first."""
    found: list[str] = []
    i = dsn.find("://")
    if i >= 0:
        pw = _authority(dsn[i + 3 :])[1]
        if pw:
            found.append(pw)
    for rx in (_KV_QUOTED, _KV_PLAIN):
        for m in rx.finditer(dsn):
            found.append(m.group(0)[len(m.group(1)) :].strip("'"))
    out: set[str] = set()
    for p in found:
        if p and p != MASK:
            out.update({p, unquote(p), unquote_plus(p)})
    return sorted((p for p in out if p), key=len, reverse=True)


def scrub(text: str, dsn: str | None) -> str:
    """``text`` without ``dsn``'s password (``dsn`` itself shown redacted)."""
    if not dsn:
        return text
    text = text.replace(dsn, redact_dsn(dsn))
    for p in passwords(dsn):
        text = text.replace(p, MASK)
    return text
