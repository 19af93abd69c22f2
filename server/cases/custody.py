"""A case's custody timeline, read from the audit log: uploaded, hashed, transferred,
acknowledged, viewed, exported. The log stays the one record; this is a view of it, limited to
the items and transfers the asking agency may see."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ..agencies import records as agencies_db
from ..audit import log as audit
from ..catalog.schema import audit_log, legal_holds, ticket_evidence, uploads
from ..catalog.schema_exchange import transfers as transfer_rows
from ..transfers import records as transfers_db
from .records import Case, evidence_ids

# Audit action -> the custody steps it stands for.
STEPS: dict[str, tuple[str, ...]] = {
    "evidence.created": ("uploaded", "hashed"),
    "integrity.checked": ("verified",),
    "integrity.failed": ("integrity_failed",),
    "integrity.resolved": ("integrity_resolved",),
    "transfer.created": ("transferred",),
    "transfer.acknowledged": ("acknowledged",),
    "transfer.rejected": ("rejected",),
    "ticket.viewed": ("viewed",),
    "ticket.downloaded": ("downloaded",),
    "admin.command": ("exported",),
}
_DIGESTS = ("blake3", "sha256", "sm3")


def _steps(row: Any) -> tuple[str, ...]:
    """The steps of an entry; a scrub's verdict on a derivative (the viewing copy) is a step
    of its own, so a checked copy never reads as a checked original."""
    steps = STEPS[row.action]
    target = (row.details or {}).get("target", "original")
    if row.action in ("integrity.checked", "integrity.failed") and target != "original":
        return tuple(f"copy_{step}" for step in steps)
    return steps


def _iso(row: Any) -> str:
    return str(row.time.isoformat().replace("+00:00", "Z"))


def _entry(row: Any, step: str) -> dict[str, Any]:
    details = row.details or {}
    entry: dict[str, Any] = {
        "seq": row.seq,
        "time": _iso(row),
        "step": step,
        "action": row.action,
        "actor": row.actor,
        "object": row.object,
    }
    if step == "hashed":
        entry["digests"] = {k: details[k] for k in _DIGESTS if k in details}
    elif row.action.startswith("transfer."):
        entry.update({k: details.get(k) for k in ("from", "to", "evidence")})
        if "reason" in details:
            entry["reason"] = details["reason"]
    elif step in ("viewed", "downloaded"):
        entry.update({k: details.get(k) for k in ("ticket", "recipient", "bytes")})
    return entry


async def timeline(
    engine: AsyncEngine, case: Case, *, agency_id: str, evidence_ids: list[str]
) -> list[dict[str, Any]]:
    """Every custody step of the agency's items in the case and of the case's transfers."""
    transfers = await transfers_db.listing(engine, agency_id=agency_id, case_id=case.id)
    objects = [f"evidence:{i}" for i in evidence_ids] + [f"transfer:{t.id}" for t in transfers]
    if case.agency_id == agency_id:
        objects.append(f"case:{case.number}")  # bundles the owner exported
    query = (
        sa.select(audit_log)
        .where(audit_log.c.object.in_(objects), audit_log.c.action.in_(list(STEPS)))
        .order_by(audit_log.c.time, audit_log.c.seq)
    )
    entries = []
    async with engine.connect() as conn:
        for row in (await conn.execute(query)).all():
            if row.action == "admin.command" and (row.details or {}).get("command") != "export":
                continue
            entries += [_entry(row, step) for step in _steps(row)]
    return entries


# What a ticket's viewer shows of an item's custody: how it was received, checked and handed
# on between agencies. Views and downloads stay out: one recipient need not learn the others.
VIEWER_STEPS = ("uploaded", "hashed", "verified", "integrity_failed", "integrity_resolved",
                "transferred", "acknowledged", "rejected")  # fmt: skip


async def of_evidence(
    engine: AsyncEngine, evidence_id: str, *, case_number: str, limit: int = 200
) -> list[dict[str, Any]]:
    """One item's custody steps for the viewer, oldest first, agencies named."""
    actions = [a for a, steps in STEPS.items() if set(steps) & set(VIEWER_STEPS)]
    transfers = [a for a in actions if a.startswith("transfer.")]
    query = (
        sa.select(audit_log)
        .where(
            audit_log.c.action.in_(actions),
            sa.or_(
                audit_log.c.object == f"evidence:{evidence_id}",
                sa.and_(audit_log.c.action.in_(transfers), audit_log.c.case_id == case_number),
            ),
        )
        .order_by(audit_log.c.time, audit_log.c.seq)
        .limit(limit)
    )
    entries: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    async with engine.connect() as conn:
        for row in (await conn.execute(query)).all():
            details = row.details or {}
            if row.action in transfers and evidence_id not in details.get("evidence", []):
                continue
            for step in _steps(row):
                entry = _entry(row, step)
                for side in ("from", "to"):
                    agency = entry.get(side)
                    if isinstance(agency, str):
                        if agency not in names:
                            found = await agencies_db.by_id(conn, agency)
                            names[agency] = found.name if found is not None else agency
                        entry[side] = names[agency]
                entries.append(entry)
    return entries


async def excerpt_objects(engine: AsyncEngine, case: Case) -> set[str]:
    """The audit objects of one agency's case: its items, their uploads and tickets, its
    transfers, itself, and legal holds on it. The log files entries under a case *number*,
    which two agencies may share; an excerpt (`audit export --case`, an export bundle) keeps
    only entries about these objects, so it never carries another agency's history."""
    items = await evidence_ids(engine, case.id, agency_id=case.agency_id)
    async with engine.connect() as conn:
        uploads_of = await conn.execute(
            sa.select(uploads.c.id).where(
                sa.or_(uploads.c.evidence_id.in_(items), uploads.c.agency_id == case.agency_id)
            )
        )
        tickets_of = await conn.execute(
            sa.select(ticket_evidence.c.ticket_id).where(ticket_evidence.c.evidence_id.in_(items))
        )
        transfers_of = await conn.execute(
            sa.select(transfer_rows.c.id).where(transfer_rows.c.case_id == case.id)
        )
        holds_of = await conn.execute(
            sa.select(legal_holds.c.id).where(
                sa.or_(
                    sa.and_(legal_holds.c.scope == "case", legal_holds.c.target == case.number),
                    sa.and_(legal_holds.c.scope == "evidence", legal_holds.c.target.in_(items)),
                )
            )
        )
        objects = {f"evidence:{i}" for i in items}
        objects |= {f"upload:{i}" for i in uploads_of.scalars()}
        objects |= {f"ticket:{i}" for i in tickets_of.scalars()}
        objects |= {f"transfer:{i}" for i in transfers_of.scalars()}
        objects |= {f"hold:{i}" for i in holds_of.scalars()}
    return objects | {f"case:{case.id}"}


async def excerpt(engine: AsyncEngine, case: Case | None) -> AsyncGenerator[Any, None]:
    """The log's entries (all of them, or the case's: see `excerpt_objects`), in order."""
    objects = await excerpt_objects(engine, case) if case is not None else None
    async with contextlib.aclosing(
        audit.rows(engine, case_id=case.number if case is not None else None)
    ) as rows:
        async for row in rows:
            if objects is None or row.object in objects:
                yield row
