"""Webhooks and their deliveries in the catalog: the outbox the dispatcher works through."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..catalog.connect import transaction
from ..catalog.schema_exchange import webhook_deliveries, webhooks

EVENTS = (
    "evidence.finished",
    "evidence.integrity_failed",
    "transfer.created",
    "transfer.acknowledged",
    "transfer.rejected",
    "ticket.viewed",
)
MAX_PER_AGENCY = 20


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


@dataclass(slots=True, frozen=True)
class Webhook:
    id: str
    agency_id: str
    url: str
    events: list[str]
    created_at: datetime
    disabled_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "agency": self.agency_id,
            "url": self.url,
            "events": self.events,
            "created_at": _iso(self.created_at),
            "active": self.disabled_at is None,
        }


def _webhook(row: Any) -> Webhook:
    return Webhook(
        row.id, row.agency_id, row.url, list(row.events), row.created_at, row.disabled_at
    )


def check(url: Any, events: Any) -> tuple[str, list[str]]:
    """Validated URL and events; ValueError naming the bad field."""
    if not isinstance(url, str) or len(url) > 2000:
        raise ValueError("url: an http(s) URL of at most 2000 characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        raise ValueError("url: an http(s) URL with a host and no credentials")
    if events is None:
        events = list(EVENTS)
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise ValueError("events: a non-empty list of event names")
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        raise ValueError(f"events: unknown {', '.join(unknown)}; known: {', '.join(EVENTS)}")
    return url, sorted(set(events), key=EVENTS.index)


async def create(
    engine: AsyncEngine | AsyncConnection, *, agency_id: str, url: Any, events: Any
) -> tuple[Webhook, str]:
    """A new webhook and its secret (shown once). ValueError for bad input or too many."""
    url, chosen = check(url, events)
    secret = "whsec_" + secrets.token_urlsafe(32)
    hook_id = "whk_" + secrets.token_hex(8)
    now = datetime.now(UTC)
    async with transaction(engine) as conn:
        count = await conn.execute(
            sa.select(sa.func.count()).where(
                webhooks.c.agency_id == agency_id, webhooks.c.disabled_at.is_(None)
            )
        )
        if int(count.scalar() or 0) >= MAX_PER_AGENCY:
            raise ValueError(f"an agency may have at most {MAX_PER_AGENCY} webhooks")
        await conn.execute(
            webhooks.insert().values(
                id=hook_id,
                agency_id=agency_id,
                url=url,
                secret=secret,
                events=chosen,
                created_at=now,
            )
        )
    return Webhook(hook_id, agency_id, url, chosen, now, None), secret


async def listing(engine: AsyncEngine, *, agency_id: str) -> list[Webhook]:
    query = sa.select(webhooks).where(webhooks.c.agency_id == agency_id)
    async with engine.connect() as conn:
        rows = (await conn.execute(query.order_by(webhooks.c.created_at))).all()
    return [_webhook(r) for r in rows]


async def get(engine: AsyncEngine, hook_id: str, *, agency_id: str) -> Webhook | None:
    query = sa.select(webhooks).where(webhooks.c.id == hook_id, webhooks.c.agency_id == agency_id)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return _webhook(row) if row is not None else None


async def disable(engine: AsyncEngine | AsyncConnection, hook_id: str) -> None:
    async with transaction(engine) as conn:
        await conn.execute(
            webhooks.update()
            .where(webhooks.c.id == hook_id, webhooks.c.disabled_at.is_(None))
            .values(disabled_at=datetime.now(UTC))
        )


async def subscribers(conn: AsyncConnection, *, agency_id: str, event: str) -> list[str]:
    """The ids of the agency's active webhooks that want `event`."""
    rows = await conn.execute(
        sa.select(webhooks.c.id, webhooks.c.events).where(
            webhooks.c.agency_id == agency_id, webhooks.c.disabled_at.is_(None)
        )
    )
    return [hook_id for hook_id, events in rows.all() if event in events]


async def insert_deliveries(
    conn: AsyncConnection, hook_ids: Sequence[str], *, event: str, payload: dict[str, Any]
) -> int:
    """A pending delivery of `payload` to each webhook, inside the caller's transaction."""
    now = datetime.now(UTC)
    for hook_id in hook_ids:
        await conn.execute(
            webhook_deliveries.insert().values(
                id="dlv_" + secrets.token_hex(12),
                webhook_id=hook_id,
                event=event,
                payload=payload,
                state="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
    return len(hook_ids)


@dataclass(slots=True, frozen=True)
class Due:
    """A claimed delivery with what sending it needs."""

    id: str
    url: str
    secret: str
    event: str
    payload: dict[str, Any]
    attempts: int


async def claim(engine: AsyncEngine, *, lease: timedelta, limit: int = 20) -> list[Due]:
    """Pending deliveries whose time has come (and sends whose lease ran out), each claimed
    by one process only: the UPDATE succeeds for exactly one claimant."""
    now = datetime.now(UTC)
    d = webhook_deliveries
    ready = sa.or_(
        sa.and_(d.c.state == "pending", d.c.next_attempt_at <= now),
        sa.and_(d.c.state == "sending", d.c.lease_until < now),
    )
    query = (
        sa.select(
            d.c.id,
            d.c.state,
            d.c.event,
            d.c.payload,
            d.c.attempts,
            webhooks.c.url,
            webhooks.c.secret,
        )
        .select_from(d.join(webhooks, webhooks.c.id == d.c.webhook_id))
        .where(ready, webhooks.c.disabled_at.is_(None))
        .order_by(d.c.next_attempt_at)
        .limit(limit)
    )
    claimed = []
    async with engine.begin() as conn:
        for row in (await conn.execute(query)).all():
            taken = await conn.execute(
                d.update()
                .where(d.c.id == row.id, d.c.state == row.state)
                .values(state="sending", lease_until=now + lease)
            )
            if taken.rowcount == 1:
                claimed.append(
                    Due(row.id, row.url, row.secret, row.event, row.payload, row.attempts)
                )
    return claimed


async def finish(
    engine: AsyncEngine,
    delivery_id: str,
    *,
    status: int | None,
    error: str | None,
    retry_at: datetime | None,
) -> None:
    """Record an attempt: delivered (no error), pending again (`retry_at`) or failed."""
    now = datetime.now(UTC)
    d = webhook_deliveries
    values: dict[str, Any] = {
        "attempts": d.c.attempts + 1,
        "last_status": status,
        "last_error": error,
        "lease_until": None,
    }
    if error is None:
        values.update(state="delivered", delivered_at=now)
    elif retry_at is not None:
        values.update(state="pending", next_attempt_at=retry_at)
    else:
        values.update(state="failed")
    async with engine.begin() as conn:
        await conn.execute(d.update().where(d.c.id == delivery_id).values(**values))


_REASONS = {"connection failed", "timed out", "target not allowed"}
_ANSWERED = re.compile(r"^answered \d{3}$")


def public_reason(error: str | None) -> str | None:
    """What the API shows of a failed try: the sender records generic reasons; errors stored
    before it did (`ClientConnectorError: Cannot connect to host 10.0.0.5:22 ...`) are shown as
    `connection failed`, so old rows do not leak what the network answered either."""
    if error is None or error in _REASONS or _ANSWERED.match(error):
        return error
    return "connection failed"


async def deliveries(
    engine: AsyncEngine, hook_id: str, *, limit: int = 100
) -> list[dict[str, Any]]:
    d = webhook_deliveries
    query = (
        sa.select(d).where(d.c.webhook_id == hook_id).order_by(d.c.created_at.desc()).limit(limit)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        {
            "id": r.id,
            "event": r.event,
            "state": r.state,
            "attempts": r.attempts,
            "next_attempt_at": _iso(r.next_attempt_at) if r.state == "pending" else None,
            "last_status": r.last_status,
            "last_error": public_reason(r.last_error),
            "created_at": _iso(r.created_at),
            "delivered_at": _iso(r.delivered_at),
            "payload": r.payload,
        }
        for r in rows
    ]


async def replay(engine: AsyncEngine | AsyncConnection, hook_id: str, delivery_id: str) -> bool:
    """Send a delivery again (delivered or failed ones too); False when unknown or in flight."""
    d = webhook_deliveries
    async with transaction(engine) as conn:
        result = await conn.execute(
            d.update()
            .where(d.c.id == delivery_id, d.c.webhook_id == hook_id, d.c.state != "sending")
            .values(state="pending", attempts=0, next_attempt_at=datetime.now(UTC))
        )
    return result.rowcount == 1
