"""A small per-process memory of recent lookups, for the media path.

A player seeking sends one ranged GET per seek; reading the ticket and the item's playable copy
from the catalog on each of them cost more than sending the bytes. What is kept here is only
what cannot change under a running view (a ticket's recipient, expiry, items, access code) or
what may be a few seconds stale without harm (which copy plays). Everything that can end access
(revocation, deletion, an integrity finding) is not trusted from here: the one statement that
takes the response's bytes from the view's budget re-checks it in the catalog
(`allowance.py`), and a refusal drops the entries (`forget`).
"""

from __future__ import annotations

import time
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

MAX_ENTRIES = 10_000


class Recent(Generic[K, V]):
    """Values remembered for `seconds`, at most MAX_ENTRIES of them (then all are dropped:
    a burst of distinct links costs lookups, never memory)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        found = self._entries.get(key)
        if found is None:
            return None
        until, value = found
        if until <= time.monotonic():
            del self._entries[key]
            return None
        return value

    def put(self, key: K, value: V) -> None:
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self.seconds, value)

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)
