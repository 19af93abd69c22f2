"""One round per period across replicas, for periodic work that must not run N times.

Every replica runs the same background loops; a round of the integrity scrub reads every
original due for a check, so N replicas doing it would read the store N times over. Before a
round a replica claims the period: it moves the schedule's `next_at` forward in one conditional
UPDATE (or creates the row); the replica whose statement changed the row runs the round, every
other replica skips it. No lock is held while the round runs, and a replica that dies mid-round
costs one period at most.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from . import clock
from .catalog.schema import schedules

OWNER = f"{socket.gethostname()}:{os.getpid()}"


async def claim(engine: AsyncEngine, name: str, *, every: timedelta) -> bool:
    """True when this process may run `name`'s round now (and the next is `every` away)."""
    now = clock.now()
    values = {"next_at": now + every, "owner": OWNER[:128], "updated_at": now}
    async with engine.begin() as conn:
        moved = await conn.execute(
            schedules.update()
            .where(schedules.c.name == name, schedules.c.next_at <= now)
            .values(**values)
        )
    if moved.rowcount == 1:
        return True
    try:
        async with engine.begin() as conn:
            exists = (
                await conn.execute(sa.select(schedules.c.name).where(schedules.c.name == name))
            ).first()
            if exists is not None:
                return False  # another replica holds this period
            await conn.execute(schedules.insert().values(name=name, **values))
    except IntegrityError:
        return False  # another replica created it first
    return True
