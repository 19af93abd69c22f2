"""The names of sealed copies that `encrypt-existing` stages beside a plain object.

A copy is written as `<key>.s<16 hex digits of its object id>` and renamed (or copied) over the
object once checked. A run killed before that leaves the copy, finished or half written, under
a name no later run would choose again (a new copy gets a new id): these names are how
`Replacer.leftovers` finds such copies to remove.
"""

from __future__ import annotations

import re

_ID = re.compile(r"[0-9a-f]{16}")


def staging_key(key: str, object_id: bytes) -> str:
    """Where the sealed copy of `key` with object id `object_id` waits."""
    return f"{key}.s{object_id.hex()[:16]}"


def is_staged_copy(key: str, name: str) -> bool:
    """Whether `name` is a copy of `key` staged by some run."""
    return name.startswith(f"{key}.s") and _ID.fullmatch(name[len(key) + 2 :]) is not None
