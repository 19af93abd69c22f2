"""A case's custody timeline, read from the audit log: uploaded, hashed, transferred,
acknowledged, viewed, exported. The log stays the one record; this is a view of it, limited to
the items and transfers the asking agency may see."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ..agencies import records as agencies_db
from ..catalog.schema import audit_log
from ..transfers import records as transfers_db
from .records import Case

# Audit action -> the custody steps it stands for.
STEPS: dict[str, tuple[str, ...]] = {
    "evidence.created": ("uploaded", "hashed"),
    "integrity.checked": ("verified",),
    "integrity.failed": ("integrity_failed",),
    "transfer.created": ("transferred",),
    "transfer.acknowledged": ("acknowledged",),
    "transfer.rejected": ("rejected",),
    "ticket.viewed": ("viewed",),
    "ticket.downloaded": ("downloaded",),
    "admin.command": ("exported",),
}
_DIGESTS = ("blake3", "sha256", "sm3")


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
            entries += [_entry(row, step) for step in STEPS[row.action]]
    return entries


# What a ticket's viewer shows of an item's custody: how it was received, checked and handed
# on between agencies. Views and downloads stay out: one recipient need not learn the others.
VIEWER_STEPS = ("uploaded", "hashed", "verified", "integrity_failed", "transferred",
                "acknowledged", "rejected")  # fmt: skip


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
            for step in STEPS[row.action]:
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
