"""Aggregates over many evidence records: bytes stored per case, class, uploader or store, what
a quota counts, which records retention must look at. They sit beside the repository
(`records.py`) because they read the evidence table, which no module outside the custody core
does; retention and quotas ask here and add their own rules (holds, purge states) as clauses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ..catalog.schema import derivatives, evidence, evidence_retention

# Bytes still held: no retention row yet (received before retention existed) or not purged.
STORED = sa.or_(evidence_retention.c.state.is_(None), evidence_retention.c.state != "purged")

# A predicate over (evidence id, case number) columns, such as retention's `active_hold_on`.
ItemClause = Callable[[Any, Any], sa.ColumnElement[bool]]


@dataclass(slots=True, frozen=True)
class Share:
    """Count and bytes of the originals that share one case, class, uploader, store, state and
    owning agency: the finest grain a usage report needs, so one scan feeds every breakdown."""

    case: str
    class_name: str
    uploader: str
    store: str
    state: str  # "" when no retention row exists yet (received before retention): active
    agency: str
    count: int
    bytes: int


async def shares(conn: AsyncConnection) -> list[Share]:
    """Every originals' share, in one grouped scan (a report of millions of records reads the
    table once, not once per breakdown)."""
    keys = (
        evidence.c.case_id,
        evidence_retention.c.class_name,
        evidence.c.uploader,
        evidence.c.store,
        evidence_retention.c.state,
        evidence.c.agency_id,
    )
    query = (
        sa.select(*keys, sa.func.count(), sa.func.coalesce(sa.func.sum(evidence.c.size), 0))
        .select_from(
            evidence.outerjoin(
                evidence_retention, evidence_retention.c.evidence_id == evidence.c.id
            )
        )
        .group_by(*keys)
    )
    found = (await conn.execute(query)).all()
    return [
        Share(
            case=_text(row[0]),
            class_name=_text(row[1]),
            uploader=_text(row[2]),
            store=_text(row[3]),
            state=_text(row[4]),
            agency=_text(row[5]),
            count=int(row[6]),
            bytes=int(row[7]),
        )
        for row in found
    ]


def _text(value: object) -> str:
    return str(value) if value is not None else ""


async def stored_bytes(conn: AsyncConnection, *, uploader: str | None = None) -> int:
    """Bytes of originals still stored, of one uploader or all."""
    query = sa.select(sa.func.coalesce(sa.func.sum(evidence.c.size), 0)).select_from(
        evidence.outerjoin(evidence_retention, evidence_retention.c.evidence_id == evidence.c.id)
    )
    query = query.where(STORED)
    if uploader is not None:
        query = query.where(evidence.c.uploader == uploader)
    return int((await conn.execute(query)).scalar() or 0)


async def received_since(
    conn: AsyncConnection, since: datetime
) -> AsyncIterator[tuple[datetime, int]]:
    """(received_at, size) of every record received since then, streamed."""
    query = sa.select(evidence.c.received_at, evidence.c.size).where(
        evidence.c.received_at >= since
    )
    result = await conn.stream(query.execution_options(yield_per=5000))
    async for received_at, size in result:
        yield received_at, int(size)


async def without_retention(conn: AsyncConnection, *, limit: int) -> list[Any]:
    """Rows (id, metadata, received_at) of records that have no retention row yet."""
    query = (
        sa.select(evidence.c.id, evidence.c.metadata, evidence.c.received_at)
        .outerjoin(evidence_retention, evidence_retention.c.evidence_id == evidence.c.id)
        .where(evidence_retention.c.evidence_id.is_(None))
        .order_by(evidence.c.id)
        .limit(limit)
    )
    return list((await conn.execute(query)).all())


async def stored_ids(
    conn: AsyncConnection, *, case_number: str | None = None, evidence_id: str | None = None
) -> list[str]:
    """Ids of records whose bytes are still stored, filed under a case number or by id."""
    query = (
        sa.select(evidence.c.id)
        .outerjoin(evidence_retention, evidence_retention.c.evidence_id == evidence.c.id)
        .where(STORED)
        .order_by(evidence.c.id)
    )
    if case_number is not None:
        query = query.where(evidence.c.case_id == case_number)
    if evidence_id is not None:
        query = query.where(evidence.c.id == evidence_id)
    return [str(i) for i in (await conn.execute(query)).scalars()]


async def matches(conn: AsyncConnection, evidence_id: str, clause: ItemClause) -> bool:
    """Whether an item-level clause (e.g. an active hold) holds for this record."""
    query = sa.select(clause(evidence.c.id, evidence.c.case_id)).where(evidence.c.id == evidence_id)
    return bool((await conn.execute(query)).scalar())


async def retention_rows(
    conn: AsyncConnection, where: sa.ColumnElement[bool], *, held: ItemClause, limit: int
) -> list[Any]:
    """Records with their retention rows, oldest first, as retention plans them: id, case_id,
    size, class_name, retain_until, deleted_at, purge_after, purge_error and `held`."""
    query = (
        sa.select(
            evidence.c.id,
            evidence.c.case_id,
            evidence.c.size,
            evidence_retention.c.class_name,
            evidence_retention.c.retain_until,
            evidence_retention.c.deleted_at,
            evidence_retention.c.purge_after,
            evidence_retention.c.purge_error,
            held(evidence.c.id, evidence.c.case_id).label("held"),
        )
        .join(evidence_retention, evidence_retention.c.evidence_id == evidence.c.id)
        .where(where)
        .order_by(evidence.c.received_at, evidence.c.id)
        .limit(limit)
    )
    return list((await conn.execute(query)).all())


async def any_stored(conn: AsyncConnection) -> bool:
    """Whether the catalog holds any evidence record at all (a store used before)."""
    row = (await conn.execute(sa.select(evidence.c.id).limit(1))).first()
    return row is not None


async def stored_objects(conn: AsyncConnection, *, after: str, limit: int) -> list[Any]:
    """Every stored object of evidence not purged, by storage key after `after`: (evidence id,
    case number, storage key, role, size, blake3, sha256, sm3), the original's role being
    "original" and a derivative's its own (`encrypt-existing` walks them)."""
    kept = sa.select(evidence.c.id).outerjoin(
        evidence_retention, evidence_retention.c.evidence_id == evidence.c.id
    )
    stored = evidence.c.id.in_(kept.where(STORED))
    originals = sa.select(
        evidence.c.id, evidence.c.case_id, evidence.c.storage_key, sa.literal("original"),
        evidence.c.size, evidence.c.blake3, evidence.c.sha256, evidence.c.sm3,
    ).where(stored)  # fmt: skip
    copies = sa.select(
        derivatives.c.evidence_id, evidence.c.case_id, derivatives.c.storage_key,
        derivatives.c.role, derivatives.c.size, derivatives.c.blake3,
        derivatives.c.sha256, sa.literal(None).label("sm3"),
    )  # fmt: skip
    copies = copies.join(evidence, evidence.c.id == derivatives.c.evidence_id).where(stored)
    both = sa.union_all(originals, copies).subquery()
    key = both.c[2]
    query = sa.select(both).where(key > after).order_by(key).limit(limit)
    return list((await conn.execute(query)).all())
