"""Legal holds: a case or one evidence record kept whatever its retention says.

A held record cannot be deleted, purged or moved to a shorter class. On buckets with Object
Lock the hold is mirrored as an S3 legal hold on the original and its derivatives, lifted only
when the last hold covering the record goes. Lifted holds stay in the table as history.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from avidence.storage.base import Store

from ..audit.events import HoldAdded, HoldRemoved
from ..audit.unit import unit_of_work
from ..catalog.schema import legal_holds
from ..catalog.schema_exchange import cases
from ..evidence import records as evidence_db
from ..evidence import tallies
from ..failures import Code, DomainError
from . import locks
from .records import Clock, iso, objects_of, utcnow

log = logging.getLogger("avidence.retention")

SCOPES = ("case", "evidence")
MAX_REASON = 2000


class HoldError(DomainError):
    """A hold request that cannot be honoured; `code` says which kind, the message why."""


@dataclass(slots=True, frozen=True)
class Hold:
    id: str
    scope: str
    target: str
    reason: str
    actor: str
    created_at: datetime
    released_at: datetime | None
    released_by: str | None
    release_reason: str | None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("created_at", "released_at"):
            if data[name] is not None:
                data[name] = iso(data[name])
        data["active"] = self.released_at is None
        return data


_COLUMNS = [f.name for f in fields(Hold)]


def active_hold_on(evidence_id: Any, case_id: Any) -> sa.Exists:
    """SQL: an unreleased hold covers this evidence (by its id or its case)."""
    return sa.exists().where(
        legal_holds.c.released_at.is_(None),
        sa.or_(
            sa.and_(legal_holds.c.scope == "evidence", legal_holds.c.target == evidence_id),
            sa.and_(legal_holds.c.scope == "case", legal_holds.c.target == case_id),
        ),
    )


async def is_held(conn: AsyncConnection, evidence_id: str) -> bool:
    return await tallies.matches(conn, evidence_id, active_hold_on)


async def _covered(conn: AsyncConnection, scope: str, target: str) -> list[str]:
    """Evidence ids a hold covers whose bytes are still stored."""
    if scope == "case":
        return await tallies.stored_ids(conn, case_number=target)
    return await tallies.stored_ids(conn, evidence_id=target)


async def _keys(engine: AsyncEngine, evidence_ids: list[str]) -> list[str]:
    keys: list[str] = []
    async with engine.connect() as conn:
        for evidence_id in evidence_ids:
            keys += [obj.key for obj in await objects_of(conn, evidence_id)]
    return keys


def _check(scope: str, target: str, reason: str) -> None:
    if scope not in SCOPES:
        raise HoldError(f"hold scope must be case or evidence, not {scope!r}")
    if not target.strip() or len(target) > 128:
        raise HoldError("a hold needs a case or evidence id of 1-128 characters")
    if not reason.strip() or len(reason) > MAX_REASON:
        raise HoldError(
            f"a hold needs a reason of 1-{MAX_REASON} characters", code=Code.REASON_REQUIRED
        )


async def _known_case(conn: AsyncConnection, number: str) -> None:
    """A case hold names a case number some agency has, or that evidence was uploaded to;
    anything else is a typing mistake that would hold nothing and say nothing."""
    named = sa.select(sa.exists().where(cases.c.number == number))
    if (await conn.execute(named)).scalar() or await evidence_db.filed_under(conn, number):
        return
    hint = " (a case hold takes the case number, not its id)" if number.startswith("case_") else ""
    raise HoldError(f"no case {number!r}{hint}", code=Code.CASE_UNKNOWN)


async def add(
    engine: AsyncEngine,
    store: Store,
    *,
    scope: str,
    target: str,
    reason: str,
    actor: str,
    clock: Clock = utcnow,
) -> Hold:
    """Place a hold (audited) and mirror it to the storage; a case hold also covers evidence
    the case receives later."""
    _check(scope, target, reason)
    now = clock()
    hold = Hold(
        "hold_" + secrets.token_hex(8), scope, target, reason.strip(), actor, now, None, None, None
    )
    async with unit_of_work(engine) as unit:
        conn = unit.conn
        if scope == "evidence":
            if await evidence_db.case_number(conn, target) is None:
                raise HoldError(f"no evidence {target!r}", code=Code.EVIDENCE_UNKNOWN)
        else:
            await _known_case(conn, target)
        covered = await _covered(conn, scope, target)
        await conn.execute(legal_holds.insert().values({n: getattr(hold, n) for n in _COLUMNS}))
        unit.record(
            HoldAdded(
                actor=actor,
                object=f"hold:{hold.id}",
                case_id=target if scope == "case" else None,
                scope=scope,
                target=target,
                reason=hold.reason,
                evidence=covered,
                time=now,
            )
        )
    # The catalog's hold (what purges obey) is committed; storage mirrors it after.
    mirrored = await locks.legal_hold(store, await _keys(engine, covered), on=True)
    log.info("hold.added id=%s evidence=%s storage_holds=%s", hold.id, len(covered), mirrored)
    return hold


async def remove(
    engine: AsyncEngine,
    store: Store,
    hold_id: str,
    *,
    reason: str,
    actor: str,
    clock: Clock = utcnow,
) -> Hold:
    """Lift a hold (audited); storage holds go only where no other hold still applies."""
    if not reason.strip() or len(reason) > MAX_REASON:
        raise HoldError(
            f"lifting a hold needs a reason of 1-{MAX_REASON} characters",
            code=Code.REASON_REQUIRED,
        )
    now = clock()
    async with unit_of_work(engine) as unit:
        conn = unit.conn
        row = (
            await conn.execute(sa.select(legal_holds).where(legal_holds.c.id == hold_id))
        ).first()
        if row is None or row.released_at is not None:
            raise HoldError(f"no active hold {hold_id!r}", code=Code.HOLD_UNKNOWN)
        await conn.execute(
            legal_holds.update()
            .where(legal_holds.c.id == hold_id)
            .values(released_at=now, released_by=actor, release_reason=reason.strip())
        )
        freed = [
            e for e in await _covered(conn, row.scope, row.target) if not await is_held(conn, e)
        ]
        unit.record(
            HoldRemoved(
                actor=actor,
                object=f"hold:{hold_id}",
                case_id=row.target if row.scope == "case" else None,
                scope=row.scope,
                target=row.target,
                reason=reason.strip(),
                released=freed,
                time=now,
            )
        )
    lifted = await locks.legal_hold(store, await _keys(engine, freed), on=False)
    log.info("hold.removed id=%s released=%s storage_holds=%s", hold_id, len(freed), lifted)
    return Hold(
        **{
            **{n: getattr(row, n) for n in _COLUMNS},
            "released_at": now,
            "released_by": actor,
            "release_reason": reason.strip(),
        }
    )


async def listing(
    engine: AsyncEngine, *, include_released: bool = False, target: str | None = None
) -> list[Hold]:
    query = sa.select(legal_holds).order_by(legal_holds.c.created_at, legal_holds.c.id)
    if not include_released:
        query = query.where(legal_holds.c.released_at.is_(None))
    if target is not None:
        query = query.where(legal_holds.c.target == target)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [Hold(**{n: getattr(r, n) for n in _COLUMNS}) for r in rows]


async def mirror_new_evidence(engine: AsyncEngine, store: Store, evidence_id: str) -> int:
    """A record that arrives in a held case is held in the storage at once."""
    async with engine.connect() as conn:
        if not await is_held(conn, evidence_id):
            return 0
    return await locks.legal_hold(store, await _keys(engine, [evidence_id]), on=True)
