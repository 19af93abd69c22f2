"""What an agency may do with what it holds: the limits a sender sets on a transfer, how they
narrow along a chain, and whether a ticket stays within them. Which records an agency may see is
decided by the evidence repository (`evidence.records.visible_to` and `can_see`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..catalog.connect import connected
from ..catalog.schema_exchange import holdings
from ..tokens import Principal


async def holding(
    engine: AsyncEngine | AsyncConnection, agency_id: str, evidence_id: str
) -> dict[str, Any] | None:
    """The limits under which `agency_id` holds someone else's item, or None."""
    query = sa.select(holdings.c.limits).where(
        holdings.c.agency_id == agency_id, holdings.c.evidence_id == evidence_id
    )
    async with connected(engine) as conn:
        limits = (await conn.execute(query)).scalar()
    return dict(limits) if limits is not None else None


def owns_upload(principal: Principal, *, agency_id: str, uploader: str) -> bool:
    """Uploads are never shared: an admin sees its agency's, an uploader only its own."""
    if agency_id != principal.agency_id:
        return False
    return principal.role in ("admin", "auditor") or uploader == principal.token_id


# What a sender allows the receiver of a transfer, unless it says otherwise: its own view-only
# tickets (a court to a defence lawyer) for up to 30 days, no downloads.
DEFAULT_LIMITS: dict[str, Any] = {"tickets": True, "download": False, "max_ticket_days": 30}


def normalize_limits(given: Any) -> dict[str, Any]:
    """Validated limits for a transfer; ValueError naming the bad field."""
    if given is None:
        return dict(DEFAULT_LIMITS)
    if not isinstance(given, dict):
        raise ValueError("limits: a JSON object")
    unknown = sorted(set(given) - set(DEFAULT_LIMITS))
    if unknown:
        raise ValueError(f"limits: unknown field(s) {', '.join(unknown)}")
    limits = {**DEFAULT_LIMITS, **given}
    for name in ("tickets", "download"):
        if not isinstance(limits[name], bool):
            raise ValueError(f"limits.{name}: true or false")
    days = limits["max_ticket_days"]
    if isinstance(days, bool) or not isinstance(days, int) or not 0 < days <= 366:
        raise ValueError("limits.max_ticket_days: a number of days from 1 to 366")
    return limits


def narrow(mine: dict[str, Any], held: dict[str, Any]) -> dict[str, Any]:
    """What a holder may pass on: never more than it was given (limits only narrow along a
    chain of transfers, so a receiver cannot widen the first sender's limits by re-sending)."""
    return {
        "tickets": bool(mine["tickets"] and held.get("tickets", False)),
        "download": bool(mine["download"] and held.get("download", False)),
        "max_ticket_days": min(
            int(mine["max_ticket_days"]),
            int(held.get("max_ticket_days", mine["max_ticket_days"])),
        ),
    }


def check_ticket_limits(limits: dict[str, Any], *, download: bool, expires: Any) -> None:
    """Raise PermissionError when a ticket would go beyond what the sender allowed."""
    if not limits.get("tickets", False):
        raise PermissionError("the sending agency allowed no tickets for this item")
    if download and not limits.get("download", False):
        raise PermissionError("the sending agency allowed no downloads of this item")
    if isinstance(expires, timedelta) and expires > timedelta(days=limits["max_ticket_days"]):
        raise PermissionError(
            f"tickets for this item may last at most {limits['max_ticket_days']} days"
        )
