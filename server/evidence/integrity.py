"""Integrity findings: what a scrub flagged, what that withholds, and how an admin resolves it.

A scrub that finds an original or a derivative changed or missing marks its row `failed`
(`scrub.py`). From then on the object is served to no one: the viewer shows a notice instead of
a player, media and downloads answer 409 `integrity_withheld`, and no new ticket covers the
item, on every replica at its next request, since the mark is in the catalog. The evidence
record itself stays as it was: it states what was received.

An admin resolves a finding in one of two ways, each audited as `integrity.resolved`:
- an original: put the right bytes back (from a backup, another agency's copy), then `resolve`
  reads them again; only when they match the record again is the mark cleared (`restored`);
- a derivative: `resolve` drops the job's derivative records and queues the job again
  (`rederived`); the worker removes the damaged objects and makes fresh ones, which the next
  scrub checks like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from avidence.storage.base import Store

from ..audit.events import IntegrityChecked, IntegrityResolved
from ..audit.unit import unit_of_work
from ..catalog.connect import connected
from ..catalog.schema import derivatives, evidence, jobs, schedules
from ..failures import Code, DomainError
from ..jobs import queue
from ..retention.records import purged_evidence
from .scrub import ORIGINAL, check_object


class Withheld(DomainError):
    """The item has an unresolved finding: nothing of it is served or newly shared."""

    default_code = Code.INTEGRITY_WITHHELD


class Unresolved(DomainError):
    """The finding cannot be resolved as asked (nothing flagged, still damaged, busy)."""

    default_code = Code.INTEGRITY_UNRESOLVED


@dataclass(slots=True, frozen=True)
class Finding:
    """One flagged object: the original (`target` "original") or a derivative."""

    evidence_id: str
    case_id: str
    target: str  # "original" or "derivative:<id>"
    role: str  # "original", or the derivative's role (playable, poster, ...)
    storage_key: str
    checked_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        checked = self.checked_at
        return {
            "evidence_id": self.evidence_id,
            "case_id": self.case_id,
            "target": self.target,
            "role": self.role,
            "storage_key": self.storage_key,
            "checked_at": checked.isoformat().replace("+00:00", "Z") if checked else None,
        }


async def findings(
    db: AsyncEngine | AsyncConnection, *, evidence_id: str | None = None
) -> list[Finding]:
    """Every unresolved finding (of one item when `evidence_id` is given), originals first."""
    originals = sa.select(evidence).where(evidence.c.integrity == "failed")
    copies = (
        sa.select(derivatives, evidence.c.case_id)
        .join(evidence, evidence.c.id == derivatives.c.evidence_id)
        .where(derivatives.c.integrity == "failed")
    )
    if evidence_id is not None:
        originals = originals.where(evidence.c.id == evidence_id)
        copies = copies.where(derivatives.c.evidence_id == evidence_id)
    found: list[Finding] = []
    async with connected(db) as conn:
        for row in await conn.execute(originals.order_by(evidence.c.id)):
            found.append(
                Finding(row.id, row.case_id, ORIGINAL, ORIGINAL, row.storage_key, row.checked_at)
            )
        for row in await conn.execute(copies.order_by(derivatives.c.id)):
            found.append(
                Finding(
                    row.evidence_id,
                    row.case_id,
                    f"derivative:{row.id}",
                    row.role,
                    row.storage_key,
                    row.checked_at,
                )
            )
    return found


async def original_flagged(db: AsyncEngine | AsyncConnection, evidence_id: str) -> bool:
    """True while a scrub's finding on this original is unresolved (read fresh: the mark
    changes, unlike the rest of the record)."""
    async with connected(db) as conn:
        value = await conn.scalar(
            sa.select(evidence.c.integrity).where(evidence.c.id == evidence_id)
        )
    return value == "failed"


def original_withheld(evidence_id: object) -> sa.Exists:
    """SQL: the original has an unresolved finding (for a statement that must fail then)."""
    return sa.exists().where(evidence.c.id == evidence_id, evidence.c.integrity == "failed")


def copy_withheld(derivative_id: object) -> sa.Exists:
    """SQL: this derivative has an unresolved finding."""
    return sa.exists().where(
        derivatives.c.id == derivative_id, derivatives.c.integrity == "failed"
    )


async def refuse_withheld(db: AsyncEngine | AsyncConnection, evidence_ids: list[str]) -> None:
    """Raise Withheld when any of the items has an unresolved finding (before a new ticket)."""
    for evidence_id in evidence_ids:
        found = await findings(db, evidence_id=evidence_id)
        if found:
            what = ", ".join(f.target for f in found)
            raise Withheld(
                f"{evidence_id} failed an integrity check ({what}) and is withheld until an "
                "administrator resolves it"
            )


@dataclass(slots=True, frozen=True)
class Resolution:
    evidence_id: str
    target: str
    how: str  # "restored" or "rederived"
    job_id: str | None = None  # the job queued again, for a derivative


async def resolve(
    engine: AsyncEngine,
    store: Store,
    *,
    evidence_id: str,
    target: str,
    reason: str,
    actor: str,
    client: str | None = None,
) -> Resolution:
    """Resolve the finding on `target` ("original" or "derivative:<id>") of one item."""
    reason = reason.strip()
    if not reason:
        raise DomainError("say why the finding is resolved", code=Code.REASON_REQUIRED)
    flagged = {f.target: f for f in await findings(engine, evidence_id=evidence_id)}
    if target not in flagged:
        open_ones = ", ".join(flagged) or "none"
        raise Unresolved(f"{evidence_id}: no unresolved finding on {target} (open: {open_ones})")
    if target == ORIGINAL:
        return await _restored(engine, store, flagged[target], reason, actor, client)
    return await _rederive(engine, flagged[target], reason, actor, client)


async def _restored(
    engine: AsyncEngine,
    store: Store,
    finding: Finding,
    reason: str,
    actor: str,
    client: str | None,
) -> Resolution:
    """Clear an original's mark only when its bytes match the record again."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(sa.select(evidence).where(evidence.c.id == finding.evidence_id))
        ).one()
    check = await check_object(store, row)
    if check.outcome != "ok":
        detail = (
            "is still missing"
            if check.outcome == "missing"
            else ("still differs from its record (" + ", ".join(check.mismatched) + ")")
        )
        raise Unresolved(f"{finding.evidence_id}: the stored original {detail}")
    now = datetime.now(UTC)
    where = {"actor": actor, "object": f"evidence:{finding.evidence_id}"}
    async with unit_of_work(engine) as unit:
        await unit.conn.execute(
            evidence.update()
            .where(evidence.c.id == finding.evidence_id, evidence.c.integrity == "failed")
            .values(integrity="ok", checked_at=now)
        )
        unit.record(
            IntegrityChecked(
                **where,
                case_id=finding.case_id,
                size=int(check.expected["size"]),
                blake3=str(check.expected["blake3"]),
                sha256=_text(check.expected.get("sha256")),
                sm3=_text(check.expected.get("sm3")),
                target=ORIGINAL,
                client=client,
                time=now,
            )
        )
        unit.record(_resolved(finding, ORIGINAL, "restored", reason, actor, client, now))
    return Resolution(finding.evidence_id, ORIGINAL, "restored")


async def _rederive(
    engine: AsyncEngine, finding: Finding, reason: str, actor: str, client: str | None
) -> Resolution:
    """Drop the records of the damaged copy's job and queue the job again. The job's other
    outputs go too: the run writes all of them again, at the same keys."""
    derivative_id = finding.target.split(":", 1)[1]
    async with unit_of_work(engine) as unit:
        conn = unit.conn
        job_id = await conn.scalar(
            sa.select(derivatives.c.job_id).where(derivatives.c.id == derivative_id)
        )
        state = await conn.scalar(sa.select(jobs.c.state).where(jobs.c.id == job_id))
        if job_id is None or state not in ("done", "failed"):
            raise Unresolved(f"{finding.evidence_id}: its derive job is {state or 'gone'}; wait")
        flagged = [
            f.target
            for f in await findings(conn, evidence_id=finding.evidence_id)
            if f.target.startswith("derivative:")
        ]
        job_rows = await conn.execute(
            sa.select(derivatives.c.id).where(derivatives.c.job_id == job_id)
        )
        mine = {f"derivative:{i}" for i in job_rows.scalars()}
        await conn.execute(derivatives.delete().where(derivatives.c.job_id == job_id))
        await queue.rerun(conn, job_id)
        now = datetime.now(UTC)
        for target in sorted(mine.intersection(flagged)):
            unit.record(_resolved(finding, target, "rederived", reason, actor, client, now))
    return Resolution(finding.evidence_id, finding.target, "rederived", job_id=str(job_id))


def _resolved(
    finding: Finding,
    target: str,
    how: str,
    reason: str,
    actor: str,
    client: str | None,
    now: datetime,
) -> IntegrityResolved:
    return IntegrityResolved(
        actor=actor,
        object=f"evidence:{finding.evidence_id}",
        case_id=finding.case_id,
        target=target,
        how=how,
        reason=reason,
        client=client,
        time=now,
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


# What the admin views show: counts by outcome, the last check, the next periodic round and
# every original whose last check failed. Read from the evidence rows and the scrub's schedule,
# not the audit log, which grows with every check ever made.
FAILURES_SHOWN = 200


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


async def summary(engine: AsyncEngine, *, interval: float) -> dict[str, Any]:
    """Originals still stored, by their last check's outcome; `interval` is the setting."""
    stored = ~purged_evidence(evidence.c.id)
    async with engine.connect() as conn:
        counts = {
            str(state): int(count)
            for state, count in (
                await conn.execute(
                    sa.select(evidence.c.integrity, sa.func.count())
                    .where(stored)
                    .group_by(evidence.c.integrity)
                )
            ).all()
        }
        last = (await conn.execute(sa.select(sa.func.max(evidence.c.checked_at)))).scalar()
        round_ = (
            await conn.execute(sa.select(schedules).where(schedules.c.name == "scrub"))
        ).first()
        failed = (
            await conn.execute(
                sa.select(
                    evidence.c.id,
                    evidence.c.case_id,
                    evidence.c.filename,
                    evidence.c.agency_id,
                    evidence.c.checked_at,
                )
                .where(evidence.c.integrity == "failed", stored)
                .order_by(evidence.c.checked_at.desc())
                .limit(FAILURES_SHOWN)
            )
        ).all()
    return {
        "counts": {k: counts.get(k, 0) for k in ("ok", "failed", "unchecked")},
        "last_checked_at": _iso(last),
        "scrub_interval": interval,
        "last_round_at": _iso(round_.updated_at) if round_ is not None else None,
        "next_round_at": _iso(round_.next_at) if round_ is not None and interval > 0 else None,
        "failures": [
            {
                "evidence_id": row.id,
                "case_id": row.case_id,
                "filename": row.filename,
                "agency": row.agency_id,
                "checked_at": _iso(row.checked_at),
            }
            for row in failed
        ],
    }
