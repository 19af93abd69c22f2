"""Evidence records: the immutable facts about each verified original.

This module is the evidence table's repository: no other module of the server reads or writes
the table (tests/test_imports.py checks it), so what a record is, and which records an agency
may see, is decided here once. Aggregates over many records (usage, quotas, purge candidates)
live beside it in `tallies.py`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..catalog.connect import connected
from ..catalog.schema import evidence
from ..catalog.schema_exchange import DEFAULT_AGENCY, case_evidence, holdings

if TYPE_CHECKING:  # tokens' audit events reach the outbox, which reads records here
    from ..tokens import Principal

Db = AsyncEngine | AsyncConnection


@dataclass(slots=True, frozen=True)
class Evidence:
    id: str
    upload_id: str
    case_id: str
    item: str
    filename: str
    filetype: str
    size: int
    blake3: str
    sha256: str | None
    sm3: str | None
    uploader: str
    store: str
    storage_key: str
    metadata: dict[str, str]
    received_at: datetime
    integrity: str = "unchecked"  # "ok" or "failed" once a scrub has re-read the object
    checked_at: datetime | None = None
    agency_id: str = DEFAULT_AGENCY  # the owner; others hold it through acknowledged transfers

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["received_at"] = self.received_at.isoformat().replace("+00:00", "Z")
        if self.checked_at is not None:
            data["checked_at"] = self.checked_at.isoformat().replace("+00:00", "Z")
        return data


_COLUMNS = [f.name for f in fields(Evidence)]


async def insert(conn: AsyncConnection, record: Evidence) -> None:
    await conn.execute(evidence.insert().values({n: getattr(record, n) for n in _COLUMNS}))


async def get(db: Db, evidence_id: str) -> Evidence | None:
    async with connected(db) as conn:
        row = (await conn.execute(sa.select(evidence).where(evidence.c.id == evidence_id))).first()
    return from_row(row) if row is not None else None


def from_row(row: Any) -> Evidence:
    return Evidence(**{n: getattr(row, n) for n in _COLUMNS})


async def case_number(db: Db, evidence_id: str) -> str | None:
    """The case number a record was filed under, or None when there is no such record."""
    query = sa.select(evidence.c.case_id).where(evidence.c.id == evidence_id)
    async with connected(db) as conn:
        found = (await conn.execute(query)).scalar()
    return str(found) if found is not None else None


async def filed_under(db: Db, case_number: str) -> bool:
    """Whether any record was filed under this case number."""
    query = sa.select(sa.exists().where(evidence.c.case_id == case_number))
    async with connected(db) as conn:
        return bool((await conn.execute(query)).scalar())


async def known(db: Db, evidence_ids: list[str]) -> set[str]:
    """Which of these ids name records."""
    query = sa.select(evidence.c.id).where(evidence.c.id.in_(evidence_ids))
    async with connected(db) as conn:
        return {str(i) for i in (await conn.execute(query)).scalars()}


async def ids_not_in(db: Db, taken: sa.Select[Any], *, limit: int | None = None) -> list[str]:
    """Records whose id the subquery does not name (e.g. never analysed), oldest first."""
    query = (
        sa.select(evidence.c.id)
        .where(evidence.c.id.not_in(taken))
        .order_by(evidence.c.received_at, evidence.c.id)
        .limit(limit)
    )
    async with connected(db) as conn:
        return [str(i) for i in (await conn.execute(query)).scalars()]


def visible_to(agency_id: str) -> sa.ColumnElement[bool]:
    """A WHERE clause on the evidence table: the rows this agency owns or holds after
    acknowledging a transfer. The one definition of what an agency may see."""
    held = sa.select(holdings.c.evidence_id).where(holdings.c.agency_id == agency_id)
    return sa.or_(evidence.c.agency_id == agency_id, evidence.c.id.in_(held))


async def holds_item(db: Db, agency_id: str, evidence_id: str) -> bool:
    query = sa.select(holdings.c.evidence_id).where(
        holdings.c.agency_id == agency_id, holdings.c.evidence_id == evidence_id
    )
    async with connected(db) as conn:
        return (await conn.execute(query)).first() is not None


async def can_see(db: Db, principal: Principal, record: Evidence) -> bool:
    """True when the principal's agency owns or holds the record (an uploader: its own only).
    Anything else answers 404 like a missing item, so nobody can probe another agency's ids."""
    if principal.role == "uploader":
        return record.agency_id == principal.agency_id and record.uploader == principal.token_id
    if record.agency_id == principal.agency_id:
        return True
    return await holds_item(db, principal.agency_id, record.id)


async def ids_in_case(db: Db, case_id: str, *, agency_id: str) -> list[str]:
    """The items of a case (by its global id) that the agency owns or holds, oldest first."""
    query = (
        sa.select(evidence.c.id)
        .select_from(evidence.join(case_evidence, case_evidence.c.evidence_id == evidence.c.id))
        .where(case_evidence.c.case_id == case_id, visible_to(agency_id))
        .order_by(evidence.c.received_at, evidence.c.id)
    )
    async with connected(db) as conn:
        return [str(i) for i in (await conn.execute(query)).scalars()]


async def many(db: Db, evidence_ids: list[str]) -> list[Evidence]:
    """The named records in the order they were received (unknown ids are left out)."""
    query = (
        sa.select(evidence)
        .where(evidence.c.id.in_(evidence_ids))
        .order_by(evidence.c.received_at, evidence.c.id)
    )
    async with connected(db) as conn:
        return [from_row(row) for row in (await conn.execute(query)).all()]
