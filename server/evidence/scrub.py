"""Integrity scrub: re-read stored originals and their derivatives and compare them with their
records.

A digest taken at upload proves what arrived; only reading the bytes again proves they are still
there, unchanged, years later (bit rot, a bad disk, someone with bucket credentials). The copy a
judge watches is a derivative (the browser-playable MP4), so derivatives are read too, against
the digests recorded when the worker stored them. Each check records its outcome on the row
(`integrity`, `checked_at` of the evidence or derivative) and in the audit log:
`integrity.checked` when the bytes match, `integrity.failed` with expected and found values (or
"missing") when they do not; `target` says which object ("original" or "derivative:<id>").

A flagged object (`integrity = "failed"`) is withheld from viewing, download and new tickets
(`integrity.py`). Later scrubs check it again and report what they find, but never clear the
mark: only an admin does, by restoring the original or re-deriving the copy (`integrity.resolve`).

Originals are checked first, then derivatives; within each, by `checked_at`: the rows never
checked come first, then the longest unchecked.
A check moves `checked_at` past the run's start, so a run works through its selection exactly
once even when it fetches rows page by page, and an interrupted run resumes where it stopped.
A store that cannot be reached stops the run (`StoreUnavailable` propagates): that says nothing
about the evidence, so nothing is recorded for it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.storage.base import Store
from avidence.storage.digests import MultiDigest
from avidence.storage.errors import NotFound, Tampered

from .. import schedules
from ..audit.events import AuditEvent, IntegrityChecked, IntegrityFailed
from ..audit.unit import unit_of_work
from ..catalog.schema import derivatives, evidence
from ..metrics import Metrics
from ..retention.records import purged_evidence

log = logging.getLogger("avidence.scrub")

PAGE = 100
Outcome = Literal["ok", "failed", "missing"]


ORIGINAL = "original"


@dataclass(slots=True, frozen=True)
class Check:
    """The outcome for one object; `found` is empty when the object is missing. `target` is
    "original" or "derivative:<id>"."""

    evidence_id: str
    case_id: str
    outcome: Outcome
    expected: dict[str, str | int]
    found: dict[str, str | int] = field(default_factory=dict)
    target: str = ORIGINAL

    @property
    def derivative_id(self) -> str | None:
        return self.target.split(":", 1)[1] if self.target != ORIGINAL else None

    @property
    def mismatched(self) -> list[str]:
        """The fields (size, blake3, ...) whose found value differs from the expected one."""
        return [k for k, v in self.expected.items() if k in self.found and self.found[k] != v]


@dataclass(slots=True)
class ScrubReport:
    """What one run checked; `problems` keeps every failed or missing original."""

    checked: int = 0
    ok: int = 0
    problems: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(1 for c in self.problems if c.outcome == "failed")

    @property
    def missing(self) -> int:
        return sum(1 for c in self.problems if c.outcome == "missing")


def _expected(row: sa.Row[tuple[object, ...]]) -> dict[str, str | int]:
    """Size and every digest the record holds (SHA-256 and SM3 only when recorded)."""
    values: dict[str, str | int] = {"size": int(row.size), "blake3": str(row.blake3)}
    for algorithm in ("sha256", "sm3"):
        value = getattr(row, algorithm, None)
        if value:
            values[algorithm] = str(value)
    return values


async def check_object(
    store: Store, row: sa.Row[tuple[object, ...]], *, derivative: bool = False
) -> Check:
    """Stream one original (an evidence row) or, with `derivative`, one derivative (a
    derivatives row with its evidence's `case_id`) through the digests its record holds and
    compare."""
    expected = _expected(row)
    evidence_id = str(row.evidence_id if derivative else row.id)
    target = f"derivative:{row.id}" if derivative else ORIGINAL
    case_id = str(row.case_id)
    digest = MultiDigest([a for a in expected if a != "size"])
    tampered: str | None = None
    try:
        async for chunk in await store.read(str(row.storage_key)):
            await digest.update_async(chunk)
    except NotFound:
        return Check(evidence_id, case_id, "missing", expected, target=target)
    except Tampered as exc:  # a sealed segment failed authentication: what was read so far
        tampered = str(exc)
    found: dict[str, str | int] = {"size": digest.length, **digest.hexdigests()}
    if tampered is not None:
        found["tampered"] = tampered
    outcome: Outcome = "ok" if found == expected else "failed"
    return Check(evidence_id, case_id, outcome, expected, found, target=target)


def _event(check: Check, *, actor: str, now: datetime) -> AuditEvent:
    where = {"actor": actor, "object": f"evidence:{check.evidence_id}", "case_id": check.case_id}
    if check.outcome == "ok":
        expected = check.expected
        return IntegrityChecked(
            **where,
            size=int(expected["size"]),
            blake3=_text(expected.get("blake3")),
            sha256=_text(expected.get("sha256")),
            sm3=_text(expected.get("sm3")),
            target=check.target,
            time=now,
        )
    failed = check.outcome == "failed"
    return IntegrityFailed(
        **where,
        reason=check.outcome,
        expected=dict(check.expected),
        found=dict(check.found) if failed and check.found is not None else None,
        mismatched=list(check.mismatched) if failed else None,
        target=check.target,
        time=now,
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


async def _record(
    engine: AsyncEngine, check: Check, *, actor: str, metrics: Metrics | None
) -> None:
    """The record's integrity mark and the scrub's entry, in one transaction."""
    now = datetime.now(UTC)
    table = evidence if check.derivative_id is None else derivatives
    key = check.evidence_id if check.derivative_id is None else check.derivative_id
    # A match clears no earlier finding: that is an admin's call (`integrity.resolve`).
    kept = sa.case((table.c.integrity == "failed", "failed"), else_="ok")
    mark = {"integrity": kept if check.outcome == "ok" else "failed", "checked_at": now}
    async with unit_of_work(engine) as unit:
        await unit.conn.execute(table.update().where(table.c.id == key).values(mark))
        unit.record(_event(check, actor=actor, now=now))
    if check.outcome != "ok":
        if metrics is not None:
            metrics.integrity_failures.labels(f"scrub_{check.outcome}").inc()
        log.warning(
            "integrity.failed evidence=%s target=%s case=%s reason=%s mismatched=%s",
            check.evidence_id,
            check.target,
            check.case_id,
            check.outcome,
            ",".join(check.mismatched),
        )


def _originals(cutoff: datetime, case_id: str | None) -> sa.Select[tuple[object, ...]]:
    stale = sa.or_(evidence.c.checked_at.is_(None), evidence.c.checked_at < cutoff)
    # Purged evidence has no bytes left to check; its tombstone holds the digests.
    query = sa.select(evidence).where(stale, ~purged_evidence(evidence.c.id))
    if case_id is not None:
        query = query.where(evidence.c.case_id == case_id)
    return query.order_by(
        sa.nulls_first(evidence.c.checked_at.asc()), evidence.c.received_at, evidence.c.id
    )


def _derivatives(cutoff: datetime, case_id: str | None) -> sa.Select[tuple[object, ...]]:
    stale = sa.or_(derivatives.c.checked_at.is_(None), derivatives.c.checked_at < cutoff)
    query = (
        sa.select(derivatives, evidence.c.case_id)
        .join(evidence, evidence.c.id == derivatives.c.evidence_id)
        .where(stale, ~purged_evidence(derivatives.c.evidence_id))
    )
    if case_id is not None:
        query = query.where(evidence.c.case_id == case_id)
    return query.order_by(
        sa.nulls_first(derivatives.c.checked_at.asc()), derivatives.c.created_at, derivatives.c.id
    )


async def scrub(
    engine: AsyncEngine,
    store: Store,
    *,
    case_id: str | None = None,
    older_than: timedelta | None = None,
    limit: int | None = None,
    metrics: Metrics | None = None,
    actor: str = "scrub",
) -> ScrubReport:
    """Check originals, then derivatives, not checked since `older_than` ago (all of them
    when None), of one case or of every case, at most `limit` objects in all, never-checked and
    longest-unchecked first."""
    started = datetime.now(UTC)
    cutoff = started - older_than if older_than is not None else started
    report = ScrubReport()
    for derivative, query in (
        (False, _originals(cutoff, case_id)),
        (True, _derivatives(cutoff, case_id)),
    ):
        while limit is None or report.checked < limit:
            page = PAGE if limit is None else min(PAGE, limit - report.checked)
            async with engine.connect() as conn:
                batch = (await conn.execute(query.limit(page))).all()
            if not batch:
                break
            for row in batch:
                check = await check_object(store, row, derivative=derivative)
                await _record(engine, check, actor=actor, metrics=metrics)
                report.checked += 1
                if check.outcome == "ok":
                    report.ok += 1
                else:
                    report.problems.append(check)
    log.info(
        "scrub.finished checked=%s ok=%s failed=%s missing=%s case=%s",
        report.checked,
        report.ok,
        report.failed,
        report.missing,
        case_id or "*",
    )
    return report


async def run_periodically(
    engine: AsyncEngine,
    store: Store,
    *,
    interval: float,
    older_than: timedelta = timedelta(days=30),
    limit: int | None = 1000,
    metrics: Metrics | None = None,
) -> None:
    """Every `interval` seconds check up to `limit` objects unchecked for `older_than`, until
    cancelled. The bounded batch keeps one round's I/O predictable; the ordering makes
    successive rounds cover every original. Of several replicas, one runs each round (see
    `schedules`). A failing round is logged and retried next time."""
    every = timedelta(seconds=interval)
    while True:
        try:
            if await schedules.claim(engine, "scrub", every=every):
                await scrub(
                    engine,
                    store,
                    older_than=older_than,
                    limit=limit,
                    metrics=metrics,
                    actor="server",
                )
            else:
                log.debug("scrub.skipped reason=another replica has this period")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("scrub.round_failed")
        await asyncio.sleep(interval)
