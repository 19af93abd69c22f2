"""Purging evidence whose retention ran out, in two steps so a mistake can be undone.

1. **Delete** (soft): an active record past `retain_until + grace` and under no legal hold gets
   a tombstone (id, digests, class, objects, who, when, why) and state `deleted`. Its bytes
   stay; `restore` brings it back during the recovery period.
2. **Purge** (hard): a record deleted longer ago than the recovery period, still under no hold,
   loses its original and every derivative from the store; the tombstone keeps the facts.

A store that refuses (an S3 lock still running) is reported and backed off, doubling the wait
each time and never earlier than the lock's own end; after `MAX_ATTEMPTS` the record is
`blocked` until an admin retries it. The plan is computed by `plan`, which changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from avidence.storage import errors as store_errors
from avidence.storage.base import Store

from ..audit.events import EvidenceDeleted, EvidencePurged, EvidenceRestored, PurgeBlocked
from ..audit.unit import unit_of_work
from ..catalog.schema import evidence_retention, tombstones
from ..evidence import records as evidence_db
from ..evidence import tallies
from ..failures import Code
from . import records
from .changes import RetentionError
from .classes import Policy
from .holds import active_hold_on, is_held
from .records import Clock, iso, utcnow

log = logging.getLogger("avidence.retention.purge")

MAX_ATTEMPTS = 5
MAX_BACKOFF = timedelta(days=30)


@dataclass(slots=True, frozen=True)
class Candidate:
    """A record the plan names, with what would happen to it."""

    evidence_id: str
    case_id: str
    class_name: str
    size: int
    retain_until: datetime | None
    deleted_at: datetime | None
    purge_after: datetime | None
    purge_error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "evidence_id": self.evidence_id,
            "case_id": self.case_id,
            "class": self.class_name,
            "size": self.size,
            "retain_until": iso(self.retain_until) if self.retain_until else None,
            "deleted_at": iso(self.deleted_at) if self.deleted_at else None,
            "purge_after": iso(self.purge_after) if self.purge_after else None,
            "purge_error": self.purge_error,
        }


@dataclass(slots=True)
class Plan:
    """What a purge run would do now: `delete` and `purge` are acted on, the rest reported."""

    delete: list[Candidate] = field(default_factory=list)
    purge: list[Candidate] = field(default_factory=list)
    held: list[Candidate] = field(default_factory=list)
    waiting: list[Candidate] = field(default_factory=list)
    blocked: list[Candidate] = field(default_factory=list)

    def to_json(self) -> dict[str, list[dict[str, Any]]]:
        return {
            name: [c.to_json() for c in getattr(self, name)]
            for name in ("delete", "purge", "held", "waiting", "blocked")
        }


@dataclass(slots=True, frozen=True)
class Outcome:
    evidence_id: str
    result: str  # deleted, purged, locked, held, skipped, error
    message: str = ""

    def to_json(self) -> dict[str, str]:
        return {"evidence_id": self.evidence_id, "result": self.result, "message": self.message}


def _candidate(row: Any) -> Candidate:
    return Candidate(
        row.id,
        row.case_id,
        row.class_name,
        row.size,
        row.retain_until,
        row.deleted_at,
        row.purge_after,
        row.purge_error,
    )


async def plan(
    engine: AsyncEngine, policy: Policy, *, clock: Clock = utcnow, limit: int = 1000
) -> Plan:
    """What is due now. Reads only: a dry run leaves catalog, store and audit log untouched."""
    now = clock()
    state = evidence_retention.c.state
    expired = sa.and_(
        state == "active",
        evidence_retention.c.retain_until.is_not(None),
        evidence_retention.c.retain_until <= now - policy.grace,
    )
    recovered = sa.and_(
        state == "deleted", evidence_retention.c.deleted_at <= now - policy.recovery
    )
    result = Plan()
    async with engine.connect() as conn:

        def rows(where: Any) -> Any:
            return tallies.retention_rows(conn, where, held=active_hold_on, limit=limit)

        for row in await rows(expired):
            (result.held if row.held else result.delete).append(_candidate(row))
        for row in await rows(recovered):
            if row.held:
                result.held.append(_candidate(row))
            elif row.purge_after is not None and row.purge_after > now:
                result.waiting.append(_candidate(row))
            else:
                result.purge.append(_candidate(row))
        result.blocked = [_candidate(r) for r in await rows(state == "blocked")]
    return result


async def _tombstone(
    conn: AsyncConnection,
    evidence_id: str,
    *,
    class_name: str,
    actor: str,
    reason: str,
    now: datetime,
) -> dict[str, Any]:
    row = await evidence_db.get(conn, evidence_id)
    if row is None:
        raise RetentionError(f"no evidence {evidence_id!r}", code=Code.EVIDENCE_UNKNOWN)
    objects = [
        {"key": o.key, "role": o.role, "size": o.size, "blake3": o.blake3, "sha256": o.sha256}
        for o in await records.objects_of(conn, evidence_id)
    ]
    values = {
        "case_id": row.case_id,
        "item": row.item,
        "filename": row.filename,
        "size": row.size,
        "blake3": row.blake3,
        "sha256": row.sha256,
        "sm3": row.sm3,
        "class_name": class_name,
        "objects": objects,
        "deleted_by": actor,
        "deleted_at": now,
        "reason": reason,
        "restored_at": None,
        "restored_by": None,
        "purged_at": None,
    }
    # A record deleted, restored and deleted again keeps one tombstone: the audit log has both.
    done = await conn.execute(
        tombstones.update().where(tombstones.c.evidence_id == evidence_id).values(**values)
    )
    if not done.rowcount:
        await conn.execute(tombstones.insert().values(evidence_id=evidence_id, **values))
    return values


async def _soft_delete(
    engine: AsyncEngine, item: Candidate, *, actor: str, reason: str, now: datetime
) -> Outcome:
    async with unit_of_work(engine) as unit:
        conn = unit.conn
        # Checked again inside the transaction: a hold placed since the plan wins.
        current = await records.get(conn, item.evidence_id)
        if current is None or current.state != "active":
            return Outcome(item.evidence_id, "skipped", "no longer active")
        if await is_held(conn, item.evidence_id):
            return Outcome(item.evidence_id, "held", "a legal hold was placed")
        await records.update(
            conn, item.evidence_id, state="deleted", deleted_at=now, updated_at=now
        )
        stone = await _tombstone(
            conn,
            item.evidence_id,
            class_name=current.class_name,
            actor=actor,
            reason=reason,
            now=now,
        )
        unit.record(
            EvidenceDeleted(
                actor=actor,
                object=f"evidence:{item.evidence_id}",
                case_id=item.case_id,
                class_name=item.class_name,
                reason=reason,
                retain_until=iso(item.retain_until) if item.retain_until else None,
                size=stone["size"],
                blake3=stone["blake3"],
                sha256=stone["sha256"],
                objects=len(stone["objects"]),
                time=now,
            )
        )
    return Outcome(item.evidence_id, "deleted")


async def _hard_delete(
    engine: AsyncEngine, store: Store, item: Candidate, *, actor: str, reason: str, now: datetime
) -> Outcome:
    async with engine.connect() as conn:
        current = await records.get(conn, item.evidence_id)
        if current is None or current.state != "deleted":
            return Outcome(item.evidence_id, "skipped", "no longer deleted")
        if await is_held(conn, item.evidence_id):
            return Outcome(item.evidence_id, "held", "a legal hold was placed")
        objects = await records.objects_of(conn, item.evidence_id)
    removed = 0
    try:
        for obj in objects:  # the original first: when it is locked, nothing is lost
            try:
                await store.delete(obj.key)
            except store_errors.NotFound:
                continue  # already gone (an earlier, interrupted run)
            removed += 1
    except store_errors.ObjectLocked as exc:
        return await _refused(
            engine, item, current, str(exc), removed=removed, actor=actor, now=now
        )
    async with unit_of_work(engine) as unit:
        conn = unit.conn
        await records.update(
            conn,
            item.evidence_id,
            state="purged",
            purge_error=None,
            purge_after=None,
            updated_at=now,
        )
        await conn.execute(
            tombstones.update()
            .where(tombstones.c.evidence_id == item.evidence_id)
            .values(purged_at=now)
        )
        unit.record(
            EvidencePurged(
                actor=actor,
                object=f"evidence:{item.evidence_id}",
                case_id=item.case_id,
                reason=reason,
                objects_deleted=removed,
                keys=[o.key for o in objects],
                time=now,
            )
        )
    log.info("evidence.purged id=%s objects=%s", item.evidence_id, removed)
    return Outcome(item.evidence_id, "purged", f"{removed} objects deleted")


async def _refused(
    engine: AsyncEngine,
    item: Candidate,
    current: records.Retention,
    message: str,
    *,
    removed: int,
    actor: str,
    now: datetime,
) -> Outcome:
    """The store kept an object: back off, and give up after MAX_ATTEMPTS."""
    attempts = current.purge_attempts + 1
    wait = min(timedelta(days=2 ** (attempts - 1)), MAX_BACKOFF)
    after = max(now + wait, current.locked_until or now)
    state = "blocked" if attempts >= MAX_ATTEMPTS else "deleted"
    async with unit_of_work(engine) as unit:
        await records.update(
            unit.conn,
            item.evidence_id,
            state=state,
            purge_attempts=attempts,
            purge_after=after,
            purge_error=message,
            updated_at=now,
        )
        unit.record(
            PurgeBlocked(
                actor=actor,
                object=f"evidence:{item.evidence_id}",
                case_id=item.case_id,
                error=message,
                attempt=attempts,
                next_attempt=None if state == "blocked" else iso(after),
                objects_deleted_before=removed,
                time=now,
            )
        )
    log.warning("purge.blocked id=%s attempt=%s error=%s", item.evidence_id, attempts, message)
    return Outcome(item.evidence_id, "locked", message)


async def apply(
    engine: AsyncEngine,
    store: Store,
    policy: Policy,
    *,
    actor: str,
    reason: str,
    clock: Clock = utcnow,
    limit: int = 1000,
) -> list[Outcome]:
    """Carry out the plan: soft-delete what expired, purge what left its recovery period."""
    if not reason.strip():
        raise RetentionError(
            "a purge needs a reason (for the tombstones and the audit log)",
            code=Code.REASON_REQUIRED,
        )
    await records.backfill(engine, policy, now=clock())
    todo = await plan(engine, policy, clock=clock, limit=limit)
    outcomes: list[Outcome] = []
    for item in todo.delete:
        outcomes.append(await _soft_delete(engine, item, actor=actor, reason=reason, now=clock()))
    for item in todo.purge:
        try:
            outcome = await _hard_delete(
                engine, store, item, actor=actor, reason=reason, now=clock()
            )
        except store_errors.StoreError as exc:  # unreachable store: report, try the next run
            outcome = Outcome(item.evidence_id, "error", str(exc))
        outcomes.append(outcome)
    return outcomes


async def restore(
    engine: AsyncEngine,
    policy: Policy,
    evidence_id: str,
    *,
    actor: str,
    reason: str,
    clock: Clock = utcnow,
) -> records.Retention:
    """Undo a soft delete (or unblock a refused purge). The record is kept at least another
    recovery period, time to place a hold or raise its class."""
    if not reason.strip():
        raise RetentionError("a restore needs a reason", code=Code.REASON_REQUIRED)
    now = clock()
    async with unit_of_work(engine) as unit:
        conn = unit.conn
        current = await records.get(conn, evidence_id)
        if current is None or current.state not in ("deleted", "blocked"):
            state = current.state if current else "unknown"
            raise RetentionError(
                f"evidence {evidence_id} is {state}, not deleted: nothing to restore"
            )
        keep = now + policy.recovery
        until = None if current.retain_until is None else max(current.retain_until, keep)
        await records.update(
            conn,
            evidence_id,
            state="active",
            retain_until=until,
            deleted_at=None,
            purge_attempts=0,
            purge_after=None,
            purge_error=None,
            updated_at=now,
        )
        await conn.execute(
            tombstones.update()
            .where(tombstones.c.evidence_id == evidence_id)
            .values(restored_at=now, restored_by=actor)
        )
        case_id = await evidence_db.case_number(conn, evidence_id)
        restored = await records.get(conn, evidence_id)
        unit.record(
            EvidenceRestored(
                actor=actor,
                object=f"evidence:{evidence_id}",
                case_id=case_id,
                reason=reason.strip(),
                was=current.state,
                retain_until=iso(until) if until else None,
                time=now,
            )
        )
    assert restored is not None
    return restored


async def tombstone(engine: AsyncEngine, evidence_id: str) -> dict[str, Any] | None:
    """The tombstone of a deleted record, as JSON; None when it was never deleted."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(sa.select(tombstones).where(tombstones.c.evidence_id == evidence_id))
        ).first()
    if row is None:
        return None
    data = dict(row._mapping)
    for name, value in data.items():
        if isinstance(value, datetime):
            data[name] = iso(value)
    data["class"] = data.pop("class_name")
    return data
