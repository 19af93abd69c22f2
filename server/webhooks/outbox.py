"""Audit entries become webhook deliveries: the one place events are mapped and addressed.

Called by `audit.log.append` as an entry is chained, in the same transaction, in whatever process
wrote it; the deliveries are catalog rows, so a server's dispatcher sends them even when a worker
or the CLI wrote the entry, and an entry and its deliveries commit together or not at all. The
payload's `id` is the audit sequence number, the same on every retry and replay, so a receiver
can drop duplicates.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ..audit.events import AuditEvent
from ..catalog.schema import evidence, tickets, uploads
from . import records

log = logging.getLogger("avidence.webhooks")

# Audit action -> webhook event.
EVENT_OF = {
    "evidence.created": "evidence.finished",
    "integrity.failed": "evidence.integrity_failed",
    "upload.quarantined": "evidence.integrity_failed",
    "transfer.created": "transfer.created",
    "transfer.acknowledged": "transfer.acknowledged",
    "transfer.rejected": "transfer.rejected",
    "ticket.viewed": "ticket.viewed",
}
# Set by a dispatcher in this process so new deliveries go out at once, not at the next poll.
WAKE: asyncio.Event | None = None


async def _scalar(conn: AsyncConnection, query: Any) -> Any:
    return (await conn.execute(query)).scalar()


async def _evidence_data(
    conn: AsyncConnection, evidence_id: str
) -> tuple[str | None, dict[str, Any]]:
    row = (await conn.execute(sa.select(evidence).where(evidence.c.id == evidence_id))).first()
    if row is None:
        return None, {}
    data = {
        "evidence_id": row.id,
        "case": row.case_id,
        "item": row.item,
        "kind": (row.metadata or {}).get("kind", "other"),
        "filename": row.filename,
        "size": row.size,
        "blake3": row.blake3,
        "sha256": row.sha256,
    }
    return row.agency_id, data


async def _addressees(conn: AsyncConnection, event: AuditEvent) -> tuple[list[str], dict[str, Any]]:
    """The agencies to tell and what to tell them."""
    kind, _, ident = event.object.partition(":")
    details = event.details()
    if event.action.startswith("transfer."):
        data = {k: details.get(k) for k in ("case", "from", "to", "evidence", "state")}
        data["transfer_id"] = ident
        if "reason" in details:
            data["reason"] = details["reason"]
        return [a for a in dict.fromkeys([details.get("from"), details.get("to")]) if a], data
    if event.action == "ticket.viewed":
        agency = await _scalar(
            conn, sa.select(tickets.c.agency_id).where(tickets.c.id == details.get("ticket"))
        )
        data = {k: details.get(k) for k in ("ticket", "recipient", "bytes", "view")}
        data["evidence_id"] = ident
        return ([agency] if agency else []), data
    if kind == "upload":  # a quarantined upload: declared digests did not match
        agency = await _scalar(conn, sa.select(uploads.c.agency_id).where(uploads.c.id == ident))
        data = {"upload_id": ident, "reason": details.get("reason")}
        return ([agency] if agency else []), data
    agency, data = await _evidence_data(conn, ident)
    if event.action == "integrity.failed":
        data["reason"] = details.get("reason") or details.get("outcome")
    return ([agency] if agency else []), data


@dataclass(slots=True, frozen=True)
class Plan:
    """The deliveries one audit entry calls for: (agency, webhook ids) and the event's data."""

    name: str | None
    hooks: tuple[tuple[str, tuple[str, ...]], ...] = ()
    data: dict[str, Any] = field(default_factory=dict)


async def plan(conn: AsyncConnection, event: AuditEvent) -> Plan:
    """Whom an entry is for and what to tell them (reads only: done before the log's lock)."""
    name = EVENT_OF.get(event.action)
    if name is None:
        return Plan(None)
    agencies, data = await _addressees(conn, event)
    hooks = []
    for agency_id in agencies:
        wanting = await records.subscribers(conn, agency_id=agency_id, event=name)
        if wanting:
            hooks.append((agency_id, tuple(wanting)))
    return Plan(name, tuple(hooks), data)


async def queue(conn: AsyncConnection, plan: Plan, event: AuditEvent, seq: int) -> int:
    """Write the planned deliveries of entry `seq` in its own transaction; the number queued.
    The payload's id is the sequence number, the same on every retry and replay."""
    if plan.name is None:
        return 0
    queued = 0
    for agency_id, hook_ids in plan.hooks:
        payload = {
            "id": f"evt_{seq}",
            "event": plan.name,
            "created_at": event.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "agency": agency_id,
            "data": plan.data,
        }
        queued += await records.insert_deliveries(conn, hook_ids, event=plan.name, payload=payload)
    return queued


def wake() -> None:
    """Tell this process's dispatcher that deliveries were committed (after the commit)."""
    if WAKE is not None:
        WAKE.set()
