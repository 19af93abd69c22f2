"""What one counted view allows: a time window and a byte budget, held across replicas.

A view limit that counts only presses of Play lets one view fetch the whole recording again and
again for as long as its grant lives (a `max_views=1` link gave five full copies in 12 hours).
So a view allows, from the moment it is counted:

- time: `view_window` seconds (6 hours by default; a long interrogation with pauses fits);
- bytes: `view_bytes_multiple` times the size of what it plays (3 by default): enough for a
  player's probing requests and for seeking back and forth, not for copying the file many times.

Bytes are taken from the budget before they are sent, by one conditional UPDATE of the view's
row (`bytes_reserved + n <= byte_budget`, window still open, view not ended), so concurrent
ranged requests on any number of replicas sharing the catalog (SQLite or PostgreSQL) can never
send more than the budget between them. A response takes up to `SLAB` bytes at a time (the
next share while the last is sent) and gives back what it did not send when it ends (a player
that seeks cancels responses mid-way). The first refusal ends the view (`ended_at`,
`end_reason` "time" or "bytes", set once by a conditional UPDATE) with one `ticket.view_ended`
audit entry; its grant then answers 410 `view_expired` or `view_spent`, and the viewer offers
to start a new view (which counts).

The same statement carries the conditions under which anything of the ticket may be sent at
all (`live`: the ticket not revoked, the item not deleted nor withheld), so a ranged GET whose
ticket came from memory (`recent.py`) touches the catalog once: a revocation on any replica
still refuses the very next request, and a stream in flight at its next slab. Only a refusal
reads further, to say why (`refused`).

Views counted before this rule have no budget (`byte_budget` NULL): only the window applies.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from .. import clock
from ..audit.events import TicketViewEnded
from ..audit.unit import unit_of_work
from ..catalog.schema import ticket_views
from ..errors import ApiError, ViewExpired, ViewSpent
from . import records
from .quickreads import QuickReads
from .seals import GRANT_TTL

log = logging.getLogger("avidence.tickets.allowance")

# The most one response takes at a time: one reservation (a catalog UPDATE) per 16 MiB sent
# keeps a full-speed stream off the catalog; never more than the response asks. It matches the
# bytes after which a stream re-checks its ticket (`views.CHECK_BYTES`), which each take does.
SLAB = 16 * 1024 * 1024
_RETRIES = 8  # partial takes lost to a concurrent writer before giving up this round
End = Literal["time", "bytes"]


@dataclass(slots=True, frozen=True)
class Terms:
    """What a new view allows: until when, and how many bytes."""

    expires_at: datetime
    byte_budget: int


def terms(*, size: int, window: int, multiple: int, now: datetime | None = None) -> Terms:
    """The allowance of a view of an object of `size` bytes."""
    start = now or clock.now()
    budget = max(1, math.ceil(size * multiple))  # an empty file's view is not spent at once
    return Terms(start + timedelta(seconds=window), budget)


@dataclass(slots=True, frozen=True)
class Who:
    """Whose view it is, for the audit entry that ends it."""

    ticket_id: str
    recipient: str
    evidence_id: str
    case_id: str | None
    client: str | None


@dataclass(slots=True, frozen=True)
class Live:
    """What must hold in the catalog for any byte of a response to go out (the ticket not
    revoked, the item neither deleted nor withheld): `conditions` written once with bind
    parameters (building a statement costs more than running it), `params` their values."""

    conditions: tuple[sa.ColumnElement[bool], ...]
    params: Mapping[str, object]


@functools.cache
def _quick_query(conditions: tuple[sa.ColumnElement[bool], ...]) -> sa.Select[tuple[str]]:
    """The quick read of an open, live view: built once per set of conditions."""
    now = sa.bindparam("live_now", type_=ticket_views.c.expires_at.type)
    return sa.select(ticket_views.c.id).where(
        *_open(sa.bindparam("live_view", type_=sa.String()), now), *conditions
    )


class Pool(Protocol):
    """Bytes this process took from a view's budget for its next requests and has not sent
    (kept on the view's session, given back when the session is written)."""

    held: int


class Allowance:
    """One response's share of a view's allowance: `take` before sending, `finish` after.

    `live`: SQL conditions every take also requires; `refused` is awaited when a take fails
    while they were given, and raises the ApiError that says why when one of them no longer
    holds (a revoked ticket, a deleted item); `taken` is told of every successful take (so a
    stream knows its ticket was alive then).

    With `quick` reads (a SQLite catalog) and a `pool`, a take from the catalog also takes
    `spare` bytes more into the pool, and the next responses take from the pool once a quick
    read finds the view open and every `live` condition holding: a seek then sends without a
    catalog round trip, and a revocation still refuses the very next request. What is left in
    the pool when a view ends on another replica is given back, so a view may end up to
    `spare` bytes per replica before its budget is spent."""

    def __init__(
        self,
        engine: AsyncEngine,
        view_id: str,
        who: Who,
        *,
        live: Live | None = None,
        refused: Callable[[], Awaitable[None]] | None = None,
        taken: Callable[[], None] | None = None,
        quick: QuickReads | None = None,
        pool: Pool | None = None,
        spare: int = 0,
    ) -> None:
        self.engine = engine
        self.view_id = view_id
        self.who = who
        self.live = live or Live((), {})
        self.refused = refused
        self.taken = taken
        self.quick = quick
        self.pool = pool if quick is not None else None
        self.spare = spare if self.pool is not None else 0
        self.held = 0  # taken from the budget, not yet sent
        self.ended: End | None = None
        self.refusal: ApiError | None = None  # why a live condition ended this response
        self._next: asyncio.Future[int] | None = None  # the next share, taken ahead

    async def check(self) -> None:
        """Raise 410 `view_expired` / `view_spent` when the view allows nothing more (or the
        error `refused` raises, for a request that sends no body and so takes nothing)."""
        if self.refused is not None:
            await self.refused()
        row = await self._row()
        if row is None:
            raise ViewExpired()
        if row.ended_at is not None:
            raise _error(row.end_reason)
        if _expired(row, clock.now()):
            await self._end("time")
            raise ViewExpired()
        if row.byte_budget is not None and row.bytes_reserved >= row.byte_budget:
            await self._end("bytes")
            raise ViewSpent()

    async def start(self, ahead: int) -> None:
        """Before a body's first byte: take its first share, or raise the 410 that says why
        nothing may be sent (so a spent view gets an error answer, not an empty 206)."""
        self.held += await self._reserve(min(SLAB, ahead))
        if self.held == 0:
            raise _error(self.ended or "bytes")

    async def take(self, wanted: int, *, ahead: int) -> int:
        """How many of the next `wanted` bytes may be sent (0 to `wanted`); `ahead` is what
        this response still means to send, so nothing is taken beyond it.

        The next share is taken while this one is being sent, so a long body does not wait
        for the catalog between shares."""
        while self.held < wanted and self._open():
            pending, self._next = self._next, None
            want = max(wanted, min(SLAB, ahead)) - self.held
            got = await self._settle(pending or asyncio.ensure_future(self._reserve(want)))
            self.held += got
            if got == 0:
                break
        granted = min(wanted, self.held)
        self.held -= granted
        after = ahead - granted - self.held  # planned beyond what is already taken
        if self._next is None and self._open() and self.held < SLAB // 2 and after > 0:
            self._next = asyncio.ensure_future(self._reserve(min(SLAB, after)))
        return granted

    async def finish(self) -> None:
        """Give back what was taken and not sent."""
        if self._next is not None:
            pending, self._next = self._next, None
            self.held += await self._settle(pending)
        if self.held > 0 and self.pool is not None:
            self.pool.held, self.held = self.pool.held + self.held, 0
        if self.held > 0:
            unsent, self.held = self.held, 0
            async with self.engine.begin() as conn:
                await conn.execute(
                    ticket_views.update()
                    .where(ticket_views.c.id == self.view_id)
                    .values(bytes_reserved=ticket_views.c.bytes_reserved - unsent)
                )

    def _open(self) -> bool:
        return self.ended is None and self.refusal is None

    async def _settle(self, pending: asyncio.Future[int]) -> int:
        """What a take got; a refusal is kept (the headers are out: the stream ends short)."""
        try:
            return await pending
        except ApiError as exc:
            self.refusal = exc
            return 0

    async def _row(self) -> sa.Row[tuple[object, ...]] | None:
        async with self.engine.connect() as conn:
            return (
                await conn.execute(sa.select(ticket_views).where(ticket_views.c.id == self.view_id))
            ).first()

    async def _reserve(self, want: int) -> int:
        """Take up to `want` bytes, from the pool while a quick read finds the view live, the
        rest from the catalog; fewer only when that is all that is left."""
        got = 0
        if self.pool is not None and self.pool.held > 0 and self._quick_live():
            got = min(want, self.pool.held)
            self.pool.held -= got
            if got == want:
                return self._took(got)
        return got + await self._from_catalog(want - got)

    def _quick_live(self) -> bool:
        assert self.quick is not None
        params = {**self.live.params, "live_view": self.view_id, "live_now": clock.now()}
        return self.quick.all_hold(_quick_query(self.live.conditions), params) is True

    async def _whole(self, want: int) -> bool:
        """Take exactly `want` bytes if the view is open, live and has them left."""
        async with self.engine.begin() as conn:
            whole = await conn.execute(
                ticket_views.update()
                .where(
                    *_open(self.view_id, clock.now()),
                    *self.live.conditions,
                    sa.or_(
                        ticket_views.c.byte_budget.is_(None),
                        ticket_views.c.bytes_reserved + want <= ticket_views.c.byte_budget,
                    ),
                )
                .values(bytes_reserved=ticket_views.c.bytes_reserved + want),
                dict(self.live.params),
            )
        return bool(whole.rowcount == 1)

    async def _from_catalog(self, want: int) -> int:
        """Take up to `want` bytes (and `spare` more for the pool when there is room)."""
        if self.spare and await self._whole(want + self.spare):
            assert self.pool is not None
            self.pool.held += self.spare
            return self._took(want)
        if await self._whole(want):
            return self._took(want)
        if self.refused is not None:
            await self.refused()  # raises when a live condition failed
        for _ in range(_RETRIES):  # less than `want` is left, or the view ended
            row = await self._row()
            if row is None or row.ended_at is not None:
                self.ended = "time" if row is None else row.end_reason or "bytes"
                return 0
            if _expired(row, clock.now()):
                await self._end("time")
                return 0
            left = int(row.byte_budget or 0) - int(row.bytes_reserved)
            if left <= 0:
                await self._end("bytes")
                return 0
            part = min(left, want)
            async with self.engine.begin() as conn:
                taken = await conn.execute(
                    ticket_views.update()
                    .where(
                        *_open(self.view_id, clock.now()),
                        *self.live.conditions,
                        ticket_views.c.bytes_reserved == row.bytes_reserved,
                    )
                    .values(bytes_reserved=ticket_views.c.bytes_reserved + part),
                    dict(self.live.params),
                )
            if taken.rowcount == 1:
                return self._took(part)
        return 0  # busy: this response stops here; the next request tries again

    def _took(self, count: int) -> int:
        if self.taken is not None:
            self.taken()
        return count

    async def _end(self, reason: End) -> None:
        """End the view once, across replicas, with its audit entry."""
        self.ended = reason
        now = clock.now()
        async with unit_of_work(self.engine) as unit:
            ended = await unit.conn.execute(
                ticket_views.update()
                .where(ticket_views.c.id == self.view_id, ticket_views.c.ended_at.is_(None))
                .values(ended_at=now, end_reason=reason)
            )
            if ended.rowcount != 1:
                return
            row = (
                await unit.conn.execute(
                    sa.select(ticket_views).where(ticket_views.c.id == self.view_id)
                )
            ).one()
            who = self.who
            unit.record(
                TicketViewEnded(
                    actor=f"ticket:{who.ticket_id} ({who.recipient})",
                    object=f"evidence:{who.evidence_id}",
                    case_id=who.case_id,
                    ticket=who.ticket_id,
                    view=self.view_id,
                    recipient=who.recipient,
                    reason=reason,
                    started_at=records.iso(row.started_at) or "",
                    expires_at=records.iso(row.expires_at),
                    byte_budget=row.byte_budget,
                    bytes_taken=int(row.bytes_reserved),
                    client=who.client,
                    time=now,
                )
            )
        log.info(
            "ticket.view_ended ticket=%s view=%s reason=%s", who.ticket_id, self.view_id, reason
        )


def _open(view_id: object, now: object) -> list[sa.ColumnElement[bool]]:
    """SQL: the view may still send (not ended, its window not closed)."""
    return [
        ticket_views.c.id == view_id,
        ticket_views.c.ended_at.is_(None),
        sa.or_(ticket_views.c.expires_at.is_(None), ticket_views.c.expires_at > now),
    ]


def _expired(row: sa.Row[tuple[object, ...]], now: datetime) -> bool:
    until = row.expires_at
    if until is None:  # a view counted before windows were stored: its grant's lifetime
        started = row.started_at
        assert isinstance(started, datetime)
        until = started + timedelta(seconds=GRANT_TTL)
    assert isinstance(until, datetime)
    return until <= now


def _error(reason: object) -> ApiError:
    return ViewSpent() if reason == "bytes" else ViewExpired()
