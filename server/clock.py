"""The server's notion of now, in one place, so expiry rules can be tested across clock jumps.

Expiry of uploads, tickets, tokens, access-code locks and upload leases, and the times on audit
entries and receipts, all read `now()`. `shifted()` moves it forward or back for a test, as an
NTP step or a wrong hardware clock would; production code never calls it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

_offset = timedelta(0)


def now() -> datetime:
    """The current time, UTC, timezone-aware."""
    return datetime.now(UTC) + _offset


@contextlib.contextmanager
def shifted(delta: timedelta) -> Iterator[None]:
    """Within the block, `now()` is off by `delta` (cumulative when nested)."""
    global _offset
    before = _offset
    _offset = before + delta
    try:
        yield
    finally:
        _offset = before
