"""The unit of work: an action's rows, its audit entries and its webhook deliveries commit in one
transaction, or none of them do.

    async with unit_of_work(engine) as unit:
        await unit.conn.execute(...)          # the action's own rows
        unit.record(TicketRevoked(...))       # what the log will say about it

The events are chained at the end of the block, just before the commit, so the audit head's lock
is held only for the chaining and the commit itself. A crash anywhere before the commit leaves no
trace of the action and no entry; after it, both. After the commit this process's webhook
dispatcher is woken, so the deliveries go out at once rather than at its next poll.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..webhooks import outbox
from . import log as audit
from .events import AuditEvent


@dataclass(slots=True)
class Unit:
    """One transaction's connection and the audit events it will commit with."""

    conn: AsyncConnection
    events: list[AuditEvent] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)  # filled in when the events are chained

    def record(self, *events: AuditEvent) -> None:
        self.events.extend(events)


@contextlib.asynccontextmanager
async def unit_of_work(engine: AsyncEngine) -> AsyncIterator[Unit]:
    """A transaction whose recorded events are chained into the audit log before it commits."""
    async with engine.begin() as conn:
        unit = Unit(conn)
        yield unit
        if unit.events:
            unit.seqs = await audit.append(conn, *unit.events)
    if unit.events:
        outbox.wake()


async def record(engine: AsyncEngine, *events: AuditEvent) -> list[int]:
    """Commit events that are the whole action (a refused login, an export read out)."""
    async with unit_of_work(engine) as unit:
        unit.record(*events)
    return unit.seqs
