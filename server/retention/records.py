"""Catalog rows of retention: the class, retain-until and lifecycle state of each record.

Evidence received before retention existed has no row; `backfill` gives it one from the
current rules, so every query below can join on the table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..catalog.connect import connected
from ..catalog.schema import derivatives, evidence_retention
from ..evidence import records as evidence_db
from ..evidence import tallies
from .classes import Policy

STATES = ("active", "deleted", "purged", "blocked")


@dataclass(slots=True, frozen=True)
class Retention:
    evidence_id: str
    class_name: str
    retain_until: datetime | None
    lock_mode: str
    locked_until: datetime | None
    state: str
    deleted_at: datetime | None
    purge_attempts: int
    purge_after: datetime | None
    purge_error: str | None
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in data.items():
            if isinstance(value, datetime):
                data[name] = iso(value)
        data["class"] = data.pop("class_name")
        data["lock_mode"] = self.lock_mode.lower() or "none"
        return data


@dataclass(slots=True, frozen=True)
class StoredObject:
    """One stored object of an evidence record: the original or a derivative."""

    key: str
    role: str
    size: int
    blake3: str
    sha256: str | None


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


_COLUMNS = [f.name for f in fields(Retention)]


def _row(row: Any) -> Retention:
    return Retention(**{name: getattr(row, name) for name in _COLUMNS})


async def assign(
    conn: AsyncConnection,
    *,
    evidence_id: str,
    metadata: Mapping[str, str],
    received_at: datetime,
    policy: Policy,
    now: datetime,
) -> Retention:
    """Give a new evidence record its class by the rules; called in the creating transaction."""
    cls = policy.classify(metadata)
    lock = policy.lock_for(cls, start=received_at, now=now)
    row = Retention(
        evidence_id=evidence_id,
        class_name=cls.name,
        retain_until=cls.until(received_at),
        lock_mode=lock[0] if lock else "",
        locked_until=lock[1] if lock else None,
        state="active",
        deleted_at=None,
        purge_attempts=0,
        purge_after=None,
        purge_error=None,
        updated_at=now,
    )
    await conn.execute(evidence_retention.insert().values({n: getattr(row, n) for n in _COLUMNS}))
    return row


async def backfill(engine: AsyncEngine, policy: Policy, *, now: datetime) -> int:
    """Rows for evidence that has none (received before retention existed); returns how many."""
    count = 0
    for _ in range(10_000):  # bounded: 10 million records
        async with engine.begin() as conn:
            batch = await tallies.without_retention(conn, limit=1000)
            for row in batch:
                await assign(
                    conn,
                    evidence_id=row.id,
                    metadata=row.metadata or {},
                    received_at=row.received_at,
                    policy=policy,
                    now=now,
                )
        count += len(batch)
        if len(batch) < 1000:
            break
    return count


async def get(engine: AsyncEngine | AsyncConnection, evidence_id: str) -> Retention | None:
    query = sa.select(evidence_retention).where(evidence_retention.c.evidence_id == evidence_id)
    async with connected(engine) as conn:
        row = (await conn.execute(query)).first()
    return _row(row) if row is not None else None


async def update(conn: AsyncConnection, evidence_id: str, **values: Any) -> None:
    await conn.execute(
        evidence_retention.update()
        .where(evidence_retention.c.evidence_id == evidence_id)
        .values(**values)
    )


async def objects_of(engine: AsyncEngine | AsyncConnection, evidence_id: str) -> list[StoredObject]:
    """The original first, then its derivatives: everything purged or locked together."""
    copies = (
        sa.select(
            derivatives.c.storage_key,
            derivatives.c.role,
            derivatives.c.size,
            derivatives.c.blake3,
            derivatives.c.sha256,
        )
        .where(derivatives.c.evidence_id == evidence_id)
        .order_by(derivatives.c.storage_key)
    )
    async with connected(engine) as conn:
        record = await evidence_db.get(conn, evidence_id)
        found = (await conn.execute(copies)).all()
    original = (
        [StoredObject(record.storage_key, "original", record.size, record.blake3, record.sha256)]
        if record is not None
        else []
    )
    return [*original, *(StoredObject(r[0], r[1], r[2], r[3], r[4]) for r in found)]


Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The real clock; tests pass their own callable so nothing ever sleeps."""
    return datetime.now(UTC)


def removed_evidence(evidence_id: Any) -> sa.Exists:
    """SQL: the evidence with this id was deleted (restorable) or purged: it is not served."""
    return sa.exists().where(
        evidence_retention.c.evidence_id == evidence_id,
        evidence_retention.c.state.in_(("deleted", "purged")),
    )


def purged_evidence(evidence_id: Any) -> sa.Exists:
    """SQL: the evidence with this id was purged (its bytes are gone)."""
    return sa.exists().where(
        evidence_retention.c.evidence_id == evidence_id, evidence_retention.c.state == "purged"
    )
