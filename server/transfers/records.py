"""Transfer rows: insert, read, list an agency's inbox or outbox, record the decision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..catalog.schema_exchange import transfers
from .manifest import iso

STATES = ("pending", "acknowledged", "rejected")


@dataclass(slots=True, frozen=True)
class Transfer:
    id: str
    case_id: str
    from_agency: str
    to_agency: str
    state: str
    note: str | None
    reason: str | None
    limits: dict[str, Any]
    manifest: dict[str, Any]
    acknowledgement: dict[str, Any] | None
    created_by: str
    created_at: datetime
    decided_by: str | None
    decided_at: datetime | None

    @property
    def evidence_ids(self) -> list[str]:
        items = self.manifest.get("manifest", {}).get("items", [])
        return [str(i.get("evidence_id")) for i in items if isinstance(i, dict)]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "case": self.case_id,
            "from": self.from_agency,
            "to": self.to_agency,
            "state": self.state,
            "note": self.note,
            "reason": self.reason,
            "limits": self.limits,
            "evidence": self.evidence_ids,
            "manifest": self.manifest,
            "acknowledgement": self.acknowledgement,
            "created_by": self.created_by,
            "created_at": iso(self.created_at),
            "decided_by": self.decided_by,
            "decided_at": iso(self.decided_at) if self.decided_at else None,
        }


def _row(row: Any) -> Transfer:
    return Transfer(**{name: getattr(row, name) for name in Transfer.__dataclass_fields__})


async def insert(conn: AsyncConnection, transfer: Transfer) -> None:
    values = {name: getattr(transfer, name) for name in Transfer.__dataclass_fields__}
    await conn.execute(transfers.insert().values(**values))


async def get(
    engine: AsyncEngine, transfer_id: str, *, agency_id: str | None = None
) -> Transfer | None:
    """A transfer; with `agency_id`, only when that agency sent or receives it."""
    query = sa.select(transfers).where(transfers.c.id == transfer_id)
    if agency_id is not None:
        query = query.where(
            sa.or_(transfers.c.from_agency == agency_id, transfers.c.to_agency == agency_id)
        )
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return _row(row) if row is not None else None


async def listing(
    engine: AsyncEngine,
    *,
    agency_id: str,
    inbox: bool = False,
    state: str | None = None,
    case_id: str | None = None,
) -> list[Transfer]:
    """Transfers an agency receives (`inbox`) or takes part in, newest first."""
    if inbox:
        query = sa.select(transfers).where(transfers.c.to_agency == agency_id)
    else:
        query = sa.select(transfers).where(
            sa.or_(transfers.c.from_agency == agency_id, transfers.c.to_agency == agency_id)
        )
    if state is not None:
        query = query.where(transfers.c.state == state)
    if case_id is not None:
        query = query.where(transfers.c.case_id == case_id)
    async with engine.connect() as conn:
        rows = (await conn.execute(query.order_by(transfers.c.created_at.desc()))).all()
    return [_row(r) for r in rows]


async def decide(conn: AsyncConnection, transfer_id: str, **values: Any) -> bool:
    """Move a pending transfer to its decision; False when someone decided it first."""
    result = await conn.execute(
        transfers.update()
        .where(transfers.c.id == transfer_id, transfers.c.state == "pending")
        .values(**values)
    )
    return result.rowcount == 1
