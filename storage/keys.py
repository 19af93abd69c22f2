"""Validation of object keys, shared by every backend.

Keys are relative, slash-separated names made of a conservative character set, so that a key can
never escape a local root, collide with a backend's own bookkeeping objects or smuggle control
characters into logs.
"""

from __future__ import annotations

import re

from .errors import InvalidKey

MAX_KEY_LENGTH = 512
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Suffixes a backend keeps for its own staging objects; a caller's key may not end with them.
RESERVED_SUFFIXES = (".part", ".tmp", ".info")


def check_key(key: str) -> str:
    """Return `key` unchanged when it is safe, else raise `InvalidKey` saying why."""
    if not isinstance(key, str) or not key:
        raise InvalidKey("key is empty", key=None)
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(f"key longer than {MAX_KEY_LENGTH} characters", key=key[:64])
    if "\x00" in key:
        raise InvalidKey("key contains NUL", key=key.replace("\x00", "\\0"))
    if key.startswith("/") or key.startswith("\\") or re.match(r"^[A-Za-z]:", key):
        raise InvalidKey("key is absolute", key=key)
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKey("key has an empty, '.' or '..' segment", key=key)
        if not _SEGMENT.match(segment):
            raise InvalidKey(
                f"key segment {segment!r} has characters outside [A-Za-z0-9._-]", key=key
            )
    if key.endswith(RESERVED_SUFFIXES):
        raise InvalidKey("key ends with a suffix reserved for staging objects", key=key)
    return key
