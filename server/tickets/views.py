"""View sessions: what one player on one evidence item fetched, written to the audit log once.

A player seeking through a recording sends dozens of range requests; one audit entry per request
would drown the log, and none would hide what was watched. So the bytes of a view session are
added up here, in memory, and written as one `ticket.viewed` entry (recipient, client, user
agent, first and last byte time, bytes, requests) when the session has been idle for a minute,
or when the server shuts down. A session that wakes up after that (a long pause) is written
again as a continuation with the same view id.

Also here: `StreamWatch`, which re-reads the ticket while bytes stream, so a revocation or an
expiry ends even a response already in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from .. import clock
from ..audit.events import TicketViewed
from ..audit.unit import unit_of_work
from . import records
from .records import Ticket

log = logging.getLogger("avidence.tickets.views")

IDLE_SECONDS = 60.0
SWEEP_SECONDS = 10.0
# How often a running stream re-reads its ticket: revocation from another process or replica
# takes effect within this much time or this many bytes. Revocation in this process is seen at
# the next chunk.
CHECK_SECONDS = 2.0
CHECK_BYTES = 16 * 1024 * 1024


@dataclass(slots=True)
class Session:
    """One view session's running totals."""

    view_id: str
    ticket_id: str
    evidence_id: str
    case_id: str | None
    recipient: str
    client: str | None
    user_agent: str
    first_byte: datetime | None = None
    last_byte: datetime | None = None
    sent: int = 0
    requests: int = 0
    streams: int = 0  # responses in flight
    # Taken from the view's budget by this process and not sent yet, for its next requests
    # (`allowance.py`); given back when the session is written.
    held: int = 0
    touched: float = field(default_factory=time.monotonic)
    # When this session began: its audit entry is stamped then, not when it is written, so a
    # view sorts before a revocation or acknowledgement that followed it.
    started: datetime = field(default_factory=clock.now)

    def add(self, count: int) -> None:
        now = clock.now()
        if self.first_byte is None:
            self.first_byte = now
        self.last_byte = now
        self.sent += count
        self.touched = time.monotonic()


class ViewTracker:
    """The open sessions of this process, flushed to the audit log when idle."""

    def __init__(self, engine: AsyncEngine, *, idle: float = IDLE_SECONDS) -> None:
        self.engine = engine
        self.idle = idle
        self.sessions: dict[str, Session] = {}
        self._task: asyncio.Task[None] | None = None

    def session(
        self,
        view_id: str,
        ticket: Ticket,
        evidence_id: str,
        *,
        case_id: str | None,
        client: str | None,
        user_agent: str,
    ) -> Session:
        """The running session of `view_id`, opened when this process has none."""
        found = self.sessions.get(view_id)
        if found is None:
            found = self.sessions[view_id] = Session(
                view_id=view_id,
                ticket_id=ticket.id,
                evidence_id=evidence_id,
                case_id=case_id,
                recipient=ticket.recipient,
                client=client,
                user_agent=user_agent[:300],
            )
        found.touched = time.monotonic()
        return found

    async def flush(self, session: Session) -> None:
        """Write the session's entry and add its bytes to the view row."""
        self.sessions.pop(session.view_id, None)
        async with unit_of_work(self.engine) as unit:
            await records.add_view_bytes(
                unit.conn,
                session.view_id,
                sent=session.sent,
                requests=session.requests,
                first=session.first_byte,
                last=session.last_byte,
                unused=session.held,
            )
            session.held = 0
            unit.record(
                TicketViewed(
                    actor=f"ticket:{session.ticket_id} ({session.recipient})",
                    object=f"evidence:{session.evidence_id}",
                    case_id=session.case_id,
                    ticket=session.ticket_id,
                    view=session.view_id,
                    recipient=session.recipient,
                    user_agent=session.user_agent,
                    started_at=records.iso(session.started) or "",
                    first_byte_at=records.iso(session.first_byte),
                    last_byte_at=records.iso(session.last_byte),
                    bytes=session.sent,
                    requests=session.requests,
                    client=session.client,
                    time=session.started,
                )
            )
        log.info(
            "ticket.viewed ticket=%s evidence=%s view=%s bytes=%s requests=%s",
            session.ticket_id,
            session.evidence_id,
            session.view_id,
            session.sent,
            session.requests,
        )

    async def sweep(self, *, now: float | None = None) -> int:
        """Flush every session idle for `idle` seconds with nothing in flight."""
        now = time.monotonic() if now is None else now
        idle = [
            s for s in self.sessions.values() if s.streams == 0 and now - s.touched >= self.idle
        ]
        for session in idle:
            try:
                await self.flush(session)
            except Exception:
                log.exception("ticket.view_flush_failed view=%s", session.view_id)
        return len(idle)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ticket-view-sessions")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(min(SWEEP_SECONDS, self.idle / 2))
            await self.sweep()

    async def close(self) -> None:
        """At shutdown: stop sweeping and write every session, idle or not."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for session in list(self.sessions.values()):
            try:
                await self.flush(session)
            except Exception:
                log.exception("ticket.view_flush_failed view=%s", session.view_id)


class StreamWatch:
    """Answers "should this stream stop?" between chunks, cheaply.

    `revoked` is this process's set of tickets revoked through its API (seen at once); expiry
    is fixed at issue and checked in memory; for a revocation elsewhere the catalog is re-read
    once CHECK_SECONDS or CHECK_BYTES passed since the last check (`alive`: a budget take that
    re-checked the ticket counts as one)."""

    def __init__(self, engine: AsyncEngine, ticket: Ticket, revoked: set[str]) -> None:
        self.engine = engine
        self.ticket = ticket
        self.revoked = revoked
        self.checked_at = time.monotonic()
        self.sent_since = 0
        self.reason: str | None = None

    def count(self, sent: int) -> None:
        self.sent_since += sent

    def alive(self) -> None:
        """The catalog just confirmed the ticket is not revoked (a budget take re-checks it):
        the next re-read can wait."""
        self.checked_at, self.sent_since = time.monotonic(), 0

    async def should_stop(self) -> bool:
        if self.ticket.id in self.revoked:
            self.reason = "revoked"
            return True
        if self.ticket.expires_at <= clock.now():  # fixed at issue: no catalog needed
            self.reason = "expired"
            return True
        # At most CHECK_BYTES go out after a check (a budget take checks before its piece).
        if time.monotonic() - self.checked_at < CHECK_SECONDS and self.sent_since <= CHECK_BYTES:
            return False
        self.checked_at, self.sent_since = time.monotonic(), 0
        fresh = await records.get(self.engine, self.ticket.id)
        state = "revoked" if fresh is None else fresh.state()
        if state in ("revoked", "expired"):  # exhaustion ends no view already counted
            self.reason = state
            return True
        return False
