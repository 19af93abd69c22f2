"""Issuing and revoking tickets: the functions the CLI, the API and `make run` call.

Issuing checks the evidence exists, stores the token's hash and the code's hash, fixes the list
of evidence, and writes `ticket.issued` to the audit log, so no caller can forget the record.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from .. import clock
from ..audit.events import TicketIssued, TicketRevoked
from ..audit.unit import unit_of_work
from ..catalog.schema import ticket_evidence, tickets
from ..catalog.schema_exchange import DEFAULT_AGENCY
from ..config import Settings
from ..evidence import integrity
from ..evidence import records as evidence_db
from ..tokens import Principal
from . import codes, records
from .records import Ticket

MAX_LIFETIME = timedelta(days=366)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*([0-9]{1,9})\s*([smhdw]?)\s*$", re.IGNORECASE)


def parse_expiry(text: str | int) -> timedelta:
    """`7d`, `12h`, `30m`, `3600s`, `2w` or a number of seconds."""
    match = _DURATION.match(str(text))
    if match is None:
        raise ValueError(f"expires: {text!r} is not a duration like 7d, 12h or 30m")
    seconds = int(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    if seconds <= 0:
        raise ValueError("expires: must be in the future")
    # Checked before any date arithmetic: 999999999w is past what timedelta and datetime hold
    # (OverflowError, a 500 and a traceback from `ticket create`).
    if seconds > MAX_LIFETIME.total_seconds():
        raise ValueError("expires: must be in the future and within 366 days")
    return timedelta(seconds=seconds)


def link(settings: Settings, token: str) -> str:
    """The URL to hand to the recipient: `public_url`, else this server's own address."""
    return f"{settings.base_url}/t/{token}"


def _check_text(name: str, value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if len(value) > limit or not all(c.isprintable() or c in "\n\t" for c in value):
        raise ValueError(f"{name}: at most {limit} printable characters")
    return value or None


async def issue_ticket(
    engine: AsyncEngine,
    *,
    evidence_ids: list[str] | tuple[str, ...],
    recipient: str,
    expires: timedelta | datetime,
    download: bool = False,
    max_views: int | None = None,
    note: str | None = None,
    access_code: bool = False,
    issuer: str | Principal,
    case_id: str | None = None,
    client: str | None = None,
) -> tuple[Ticket, str, str | None]:
    """Create a ticket and return it with its link token and access code (None without one).

    Neither the token nor the code is kept anywhere: show them once. Raises ValueError for
    unknown evidence or out-of-range settings, `integrity.Withheld` (a DomainError) for an item
    with an unresolved integrity finding."""
    ids = list(dict.fromkeys(evidence_ids))  # keep the order, drop repeats
    if not ids:
        raise ValueError("a ticket needs at least one evidence item")
    name = _check_text("recipient", recipient, 200)
    if not name or "\n" in name:
        raise ValueError('recipient: give a name and role, e.g. "Li Ming (judge)"')
    note = _check_text("note", note, 2000)
    if max_views is not None and not 0 < max_views <= 1_000_000:
        raise ValueError("max_views: must be a positive number")
    now = clock.now()
    expires_at = now + expires if isinstance(expires, timedelta) else expires
    if expires_at <= now or expires_at - now > MAX_LIFETIME:
        raise ValueError("expires: must be in the future and within 366 days")
    records_found = [await evidence_db.get(engine, evidence_id) for evidence_id in ids]
    missing = [i for i, found in zip(ids, records_found, strict=True) if found is None]
    if missing:
        raise ValueError(f"unknown evidence: {', '.join(missing)}")
    await integrity.refuse_withheld(engine, ids)  # nothing a scrub flagged is newly shared
    if isinstance(issuer, Principal):
        label, issuer_token, agency_id = issuer.label, issuer.token_id, issuer.agency_id
    else:  # the CLI or the demo: the ticket belongs to the agency owning the first item
        first = records_found[0]
        label, issuer_token = issuer, None
        agency_id = first.agency_id if first is not None else DEFAULT_AGENCY
    token = records.new_token()
    pin = codes.new_code() if access_code else None
    ticket_id = "tkt_" + secrets.token_hex(8)
    cases = {record.case_id for record in records_found if record is not None}
    async with unit_of_work(engine) as unit:
        conn = unit.conn
        await conn.execute(
            tickets.insert().values(
                id=ticket_id,
                token_hash=records.hash_token(token),
                recipient=name,
                note=note,
                case_id=case_id,
                can_download=download,
                max_views=max_views,
                views_used=0,
                access_code_hash=codes.hash_code(pin) if pin else None,
                code_failures=0,
                issuer=label[:200],
                issuer_token=issuer_token,
                created_at=now,
                expires_at=expires_at,
                agency_id=agency_id,
            )
        )
        await conn.execute(
            ticket_evidence.insert(),
            [
                {"ticket_id": ticket_id, "evidence_id": evidence_id, "position": position}
                for position, evidence_id in enumerate(ids)
            ],
        )
        unit.record(
            TicketIssued(
                actor=label,
                object=f"ticket:{ticket_id}",
                case_id=case_id or (cases.pop() if len(cases) == 1 else None),
                recipient=name,
                evidence=ids,
                permissions=["view", "download"] if download else ["view"],
                expires_at=expires_at.isoformat().replace("+00:00", "Z"),
                max_views=max_views,
                access_code=pin is not None,
                note=note,
                token_sha256_prefix=records.hash_token(token)[:12],
                client=client,
                time=now,
            )
        )
    ticket = await records.get(engine, ticket_id)
    assert ticket is not None
    return ticket, token, pin


async def revoke_ticket(
    engine: AsyncEngine, ticket_id: str, *, actor: str, client: str | None = None
) -> bool:
    """Revoke at once and record who did; False when unknown or already revoked.

    Every replica sees it on its next request for the ticket, and streams in flight within
    `views.CHECK_SECONDS`."""
    async with unit_of_work(engine) as unit:
        revoked = await records.revoke(unit.conn, ticket_id, by=actor)
        if revoked:
            ticket = await records.get(unit.conn, ticket_id)
            unit.record(
                TicketRevoked(
                    actor=actor,
                    object=f"ticket:{ticket_id}",
                    case_id=ticket.case_id if ticket else None,
                    recipient=ticket.recipient if ticket else None,
                    client=client,
                )
            )
    return revoked
