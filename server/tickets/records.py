"""Ticket records in the catalog: lookup by token hash, state, listing, views, revocation.

The link token is `secrets.token_urlsafe(32)` (256 random bits, 43 characters); links issued
before carry 192 bits in 32 characters and keep opening until they expire (366 days at most).
Only the token's SHA-256 is stored, so a copy of the catalog opens no link, and the lookup by
hash leaks nothing through timing about the token itself. State that several replicas must agree
on (revocation, views counted, access-code failures) lives here, never only in one process's
memory.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .. import clock
from ..catalog.connect import connected, transaction
from ..catalog.schema import ticket_evidence, ticket_views, tickets
from ..catalog.schema_exchange import DEFAULT_AGENCY
from ..evidence import records as evidence_db
from ..retention import records as retention_records

TOKEN_BYTES = 32
# A ticket's evidence list never changes after issue, so each process keeps it once read: a media
# request then costs one catalog query (the ticket's mutable state), not two.
_EVIDENCE_IDS: dict[str, tuple[str, ...]] = {}
_EVIDENCE_IDS_MAX = 10_000
# token_urlsafe(32) is 43 characters; 32 are links issued with token_urlsafe(24) before.
TOKEN_PATTERN = re.compile(r"^(?:[A-Za-z0-9_-]{43}|[A-Za-z0-9_-]{32})$")


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True, frozen=True)
class Ticket:
    """A ticket as the viewer and the APIs see it; the code hash never leaves this module."""

    id: str
    recipient: str
    note: str | None
    case_id: str | None
    can_download: bool
    max_views: int | None
    views_used: int
    has_access_code: bool
    code_locked_until: datetime | None
    issuer: str
    issuer_token: str | None
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    last_used_at: datetime | None
    evidence_ids: tuple[str, ...]
    agency_id: str = DEFAULT_AGENCY  # the issuing agency; only it lists and revokes the ticket

    def state(self, now: datetime | None = None) -> str:
        """`revoked`, `expired`, `exhausted` or `active`, in that order of precedence."""
        now = now or clock.now()
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= now:
            return "expired"
        if self.max_views is not None and self.views_used >= self.max_views:
            return "exhausted"
        return "active"

    @property
    def views_left(self) -> int | None:
        return None if self.max_views is None else max(0, self.max_views - self.views_used)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state(),
            "recipient": self.recipient,
            "note": self.note,
            "case": self.case_id,
            "evidence": list(self.evidence_ids),
            "permissions": ["view", "download"] if self.can_download else ["view"],
            "max_views": self.max_views,
            "views_used": self.views_used,
            "access_code": self.has_access_code,
            "issuer": self.issuer,
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at),
            "revoked_by": self.revoked_by,
            "last_used_at": iso(self.last_used_at),
        }


async def _load(conn: AsyncConnection, where: Any) -> Ticket | None:
    row = (await conn.execute(sa.select(tickets).where(where))).first()
    if row is None:
        return None
    evidence_ids = _EVIDENCE_IDS.get(row.id)
    if evidence_ids is None:
        result = await conn.execute(
            sa.select(ticket_evidence.c.evidence_id)
            .where(ticket_evidence.c.ticket_id == row.id)
            .order_by(ticket_evidence.c.position)
        )
        evidence_ids = tuple(result.scalars())
        if len(_EVIDENCE_IDS) >= _EVIDENCE_IDS_MAX:
            _EVIDENCE_IDS.clear()
        _EVIDENCE_IDS[row.id] = evidence_ids
    return Ticket(
        id=row.id,
        recipient=row.recipient,
        note=row.note,
        case_id=row.case_id,
        can_download=bool(row.can_download),
        max_views=row.max_views,
        views_used=int(row.views_used),
        has_access_code=row.access_code_hash is not None,
        code_locked_until=row.code_locked_until,
        issuer=row.issuer,
        issuer_token=row.issuer_token,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
        last_used_at=row.last_used_at,
        evidence_ids=evidence_ids,
        agency_id=row.agency_id,
    )


async def by_token(engine: AsyncEngine, token: str) -> Ticket | None:
    """The ticket a link token opens, or None (also for anything not shaped like a token)."""
    if not TOKEN_PATTERN.match(token):
        return None
    async with engine.connect() as conn:
        return await _load(conn, tickets.c.token_hash == hash_token(token))


async def get(engine: AsyncEngine | AsyncConnection, ticket_id: str) -> Ticket | None:
    async with connected(engine) as conn:
        return await _load(conn, tickets.c.id == ticket_id)


async def listing(
    engine: AsyncEngine, *, issuer_token: str | None = None, agency_id: str | None = None
) -> list[Ticket]:
    """Every ticket, oldest first (or those one agency, or one API token, issued)."""
    query = sa.select(tickets.c.id).order_by(tickets.c.created_at)
    if agency_id is not None:
        query = query.where(tickets.c.agency_id == agency_id)
    if issuer_token is not None:
        query = query.where(tickets.c.issuer_token == issuer_token)
    async with engine.connect() as conn:
        found = []
        for ticket_id in (await conn.execute(query)).scalars().all():
            ticket = await _load(conn, tickets.c.id == ticket_id)
            if ticket is not None:
                found.append(ticket)
        return found


async def evidence_of(engine: AsyncEngine, ticket: Ticket) -> list[evidence_db.Evidence]:
    """The ticket's evidence records still available, in the order they were listed at issue
    (an item deleted under its retention class leaves the link; restoring it brings it back)."""
    found = []
    for evidence_id in ticket.evidence_ids:
        record = await evidence_db.get(engine, evidence_id)
        if record is not None and await available(engine, evidence_id):
            found.append(record)
    return found


async def available(engine: AsyncEngine, evidence_id: str) -> bool:
    """False once the evidence was deleted (soft, still restorable) or purged."""
    kept = await retention_records.get(engine, evidence_id)
    return kept is None or kept.state not in ("deleted", "purged")


def not_revoked(ticket_id: object) -> sa.Exists:
    """SQL: the ticket exists and is not revoked (for a statement that must fail otherwise)."""
    return sa.exists().where(tickets.c.id == ticket_id, tickets.c.revoked_at.is_(None))


async def revoke(engine: AsyncEngine | AsyncConnection, ticket_id: str, *, by: str) -> bool:
    """Revoke at once; False when unknown or already revoked."""
    async with transaction(engine) as conn:
        result = await conn.execute(
            tickets.update()
            .where(tickets.c.id == ticket_id, tickets.c.revoked_at.is_(None))
            .values(revoked_at=clock.now(), revoked_by=by[:200])
        )
    return result.rowcount > 0


async def touch(engine: AsyncEngine, ticket_id: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            tickets.update().where(tickets.c.id == ticket_id).values(last_used_at=clock.now())
        )


async def start_view(
    engine: AsyncEngine,
    ticket: Ticket,
    evidence_id: str,
    *,
    client: str | None,
    user_agent: str,
    expires_at: datetime | None = None,
    byte_budget: int | None = None,
) -> str | None:
    """Count one view and open its row with what it allows (`allowance.terms`); None when the
    view limit is used up.

    The count is one conditional UPDATE, so two players starting at once on two replicas can
    never both take the last view."""
    view_id = "vw_" + secrets.token_hex(10)
    now = clock.now()
    async with engine.begin() as conn:
        condition = [tickets.c.id == ticket.id, tickets.c.revoked_at.is_(None)]
        condition.append(tickets.c.expires_at > now)
        condition.append(
            sa.or_(tickets.c.max_views.is_(None), tickets.c.views_used < tickets.c.max_views)
        )
        counted = await conn.execute(
            tickets.update()
            .where(*condition)
            .values(views_used=tickets.c.views_used + 1, last_used_at=now)
        )
        if counted.rowcount == 0:
            return None
        await conn.execute(
            ticket_views.insert().values(
                id=view_id,
                ticket_id=ticket.id,
                evidence_id=evidence_id,
                client=(client or "")[:64] or None,
                user_agent=user_agent[:300],
                started_at=now,
                bytes_served=0,
                requests=0,
                expires_at=expires_at,
                byte_budget=byte_budget,
                bytes_reserved=0,
            )
        )
    return view_id


async def add_view_bytes(
    engine: AsyncEngine | AsyncConnection,
    view_id: str,
    *,
    sent: int,
    requests: int,
    first: datetime | None,
    last: datetime | None,
    unused: int = 0,
) -> None:
    """Add a finished session's bytes to its view row (several sessions may share one view),
    and give back the `unused` bytes it had taken from the view's budget and not sent."""
    async with transaction(engine) as conn:
        row = (
            await conn.execute(
                sa.select(ticket_views.c.first_byte_at).where(ticket_views.c.id == view_id)
            )
        ).first()
        if row is None:
            return
        values: dict[str, Any] = {
            "bytes_served": ticket_views.c.bytes_served + sent,
            "requests": ticket_views.c.requests + requests,
        }
        if unused:
            values["bytes_reserved"] = ticket_views.c.bytes_reserved - unused
        if row.first_byte_at is None and first is not None:
            values["first_byte_at"] = first
        if last is not None:
            values["last_byte_at"] = last
        await conn.execute(ticket_views.update().where(ticket_views.c.id == view_id).values(values))


async def views(engine: AsyncEngine, ticket_id: str) -> list[dict[str, Any]]:
    """The ticket's view sessions, oldest first (`GET /api/tickets/{id}/views`)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(ticket_views)
            .where(ticket_views.c.ticket_id == ticket_id)
            .order_by(ticket_views.c.started_at, ticket_views.c.id)
        )
        return [
            {
                "id": row.id,
                "evidence": row.evidence_id,
                "client": row.client,
                "user_agent": row.user_agent,
                "started_at": iso(row.started_at),
                "first_byte_at": iso(row.first_byte_at),
                "last_byte_at": iso(row.last_byte_at),
                "bytes_served": int(row.bytes_served),
                "requests": int(row.requests),
                "expires_at": iso(row.expires_at),
                "byte_budget": None if row.byte_budget is None else int(row.byte_budget),
                "bytes_taken": int(row.bytes_reserved),
                "ended_at": iso(row.ended_at),
                "end_reason": row.end_reason,
            }
            for row in rows
        ]
