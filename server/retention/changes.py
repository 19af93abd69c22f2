"""Changing an evidence record's retention class: upward freely, downward only by an admin
override, never while a legal hold applies. Every change is audited.

"Upward" means kept at least as long and locked at least as strongly. Storage locks follow the
new class but are never shortened: S3 refuses that for COMPLIANCE, and for GOVERNANCE we choose
not to, so an override shortens the catalog's promise while the bucket's stays as it was.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.storage.base import Store

from ..audit.events import RetentionChanged
from ..audit.unit import unit_of_work
from ..evidence import records as evidence_db
from ..failures import Code, DomainError
from . import locks, records
from .classes import LOCK_RANK, Policy, as_mode
from .holds import is_held
from .records import Clock, Retention, iso, utcnow


class RetentionError(DomainError):
    """A class change, purge or restore that is not allowed; `code` says which kind."""

    default_code = Code.RETENTION_REFUSED


def _upward(old_days: int | None, old_lock: str, new_days: int | None, new_lock: str) -> bool:
    longer = new_days is None or (old_days is not None and new_days >= old_days)
    return longer and LOCK_RANK[new_lock] >= LOCK_RANK[old_lock]


async def change_class(
    engine: AsyncEngine,
    store: Store,
    policy: Policy,
    evidence_id: str,
    *,
    new_class: str,
    actor: str,
    reason: str,
    override: bool = False,
    clock: Clock = utcnow,
) -> Retention:
    """Move a record to `new_class`; RetentionError when the move is not allowed."""
    target = policy.get(new_class)
    if not reason.strip():
        raise RetentionError("a class change needs a reason", code=Code.REASON_REQUIRED)
    now = clock()
    await records.backfill(engine, policy, now=now)
    async with unit_of_work(engine) as unit:
        conn = unit.conn
        row = await evidence_db.get(conn, evidence_id)
        current = await records.get(conn, evidence_id)
        if row is None or current is None:
            raise RetentionError(f"no evidence {evidence_id!r}", code=Code.EVIDENCE_UNKNOWN)
        if current.state != "active":
            raise RetentionError(f"evidence {evidence_id} is {current.state}; restore it first")
        if current.class_name == target.name:
            raise RetentionError(f"evidence {evidence_id} is already in class {target.name}")
        old = policy.classes.get(current.class_name)
        old_days = old.days if old is not None else None  # a removed class counted as forever
        old_lock = old.lock if old is not None else current.lock_mode
        upward = _upward(old_days, old_lock, target.days, target.lock)
        if not upward:
            if not override:
                raise RetentionError(
                    f"class {target.name} keeps evidence {evidence_id} shorter or less locked "
                    f"than {current.class_name}; an admin override (--override) is required"
                )
            if await is_held(conn, evidence_id):
                raise RetentionError(f"evidence {evidence_id} is under legal hold")
        lock = policy.lock_for(target, start=row.received_at, now=now)
        mode, locked_until = current.lock_mode, current.locked_until
        if lock is not None:
            still_locked = locked_until is not None and locked_until > now
            keep_old = still_locked and LOCK_RANK[mode] > LOCK_RANK[lock[0]]
            mode = mode if keep_old else lock[0]
            locked_until = max(lock[1], locked_until) if locked_until else lock[1]
        await records.update(
            conn,
            evidence_id,
            class_name=target.name,
            retain_until=target.until(row.received_at),
            lock_mode=mode,
            locked_until=locked_until,
            updated_at=now,
        )
        keys = [obj.key for obj in await records.objects_of(conn, evidence_id)]
        changed = await records.get(conn, evidence_id)
        assert changed is not None
        unit.record(
            RetentionChanged(
                actor=actor,
                object=f"evidence:{evidence_id}",
                case_id=row.case_id,
                from_class=current.class_name,
                to_class=target.name,
                upward=upward,
                override=override and not upward,
                reason=reason.strip(),
                retain_until=iso(changed.retain_until) if changed.retain_until else None,
                time=now,
            )
        )
    # Storage locks follow the committed class; they are never shortened, so repeating is safe.
    if lock is not None and changed.locked_until is not None:
        mode_set = as_mode(changed.lock_mode)
        await locks.retain(store, keys, mode=mode_set, until=changed.locked_until)
    return changed


def describe_until(moment: datetime | None) -> str:
    return "forever" if moment is None else iso(moment)
