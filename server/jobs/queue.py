"""The job queue in the catalog: enqueue, claim, heartbeat, and the ways a run ends.

States: `queued` (waiting, not before `run_after`), `running` (claimed by `worker`, whose lease
runs until `lease_until`), `done`, `failed` (for good, with `error`). Kinds: `analyse` (probe and
continuity check of an original, queued when the evidence record is created) and `derive` (one
profile's derivatives, queued by the analysis when the profile applies).

Claiming is safe across processes and hosts. On PostgreSQL the candidate row is locked with
`FOR UPDATE SKIP LOCKED`, so concurrent workers take different jobs without waiting on each
other. On SQLite (one box, one writer at a time) the claim is a conditional UPDATE that only
succeeds when the row still has the state and attempt count the worker read, so two claimers of
one row cannot both win. A running row whose lease has run out is claimable too: its worker is
gone. Every later write by a worker is conditional on `worker` still being its own id, so a
worker that lost its lease cannot overwrite its successor's state.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..catalog.connect import transaction
from ..catalog.schema import jobs

KINDS = ("analyse", "derive")
STATES = ("queued", "running", "done", "failed")


@dataclass(slots=True, frozen=True)
class Job:
    id: str
    evidence_id: str
    kind: str
    profile: str
    state: str
    attempts: int
    run_after: datetime
    worker: str | None
    lease_until: datetime | None
    heartbeat_at: datetime | None
    progress: dict[str, Any] | None
    staged: list[dict[str, str]] | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.profile}" if self.profile else self.kind


_COLUMNS = [f.name for f in fields(Job)]

# Events of the workers in this process, set when a job is queued, so an embedded worker starts
# at once instead of at its next poll.
_wakeups: set[asyncio.Event] = set()


def subscribe(wakeup: asyncio.Event) -> None:
    _wakeups.add(wakeup)


def unsubscribe(wakeup: asyncio.Event) -> None:
    _wakeups.discard(wakeup)


def _wake(*_: object) -> None:
    for wakeup in list(_wakeups):
        wakeup.set()


def _row(row: Any) -> Job:
    return Job(**{name: getattr(row, name) for name in _COLUMNS})


def now() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return "jb_" + secrets.token_hex(12)


async def enqueue(
    conn: AsyncConnection, evidence_id: str, *, kind: str = "analyse", profile: str = ""
) -> str | None:
    """Queue a job inside the caller's transaction; None when that job exists already.

    Runs in the transaction that creates the evidence record (or ends the analysis), so a
    crash cannot leave evidence without its jobs. Local workers are woken after the commit."""
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    exists = await conn.execute(
        sa.select(jobs.c.id).where(
            jobs.c.evidence_id == evidence_id, jobs.c.kind == kind, jobs.c.profile == profile
        )
    )
    if exists.first() is not None:
        return None
    job_id, moment = new_job_id(), now()
    await conn.execute(
        jobs.insert().values(
            id=job_id,
            evidence_id=evidence_id,
            kind=kind,
            profile=profile,
            state="queued",
            attempts=0,
            run_after=moment,
            created_at=moment,
        )
    )
    _wake_after_commit(conn)
    return job_id


def _wake_after_commit(conn: AsyncConnection) -> None:
    sync = conn.sync_connection
    if sync is not None and sync.in_transaction():
        event.listen(sync, "commit", _wake, once=True)
    else:
        _wake()


def _claimable(moment: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(
        sa.and_(jobs.c.state == "queued", jobs.c.run_after <= moment),
        sa.and_(jobs.c.state == "running", jobs.c.lease_until < moment),
    )


async def claim(engine: AsyncEngine, *, worker: str, lease: float, dialect: str) -> Job | None:
    """Take the next runnable job (analyses first, then oldest) for `worker`, or None."""
    for _ in range(5):  # a lost race on SQLite: look again
        moment = now()
        query = (
            sa.select(jobs)
            .where(_claimable(moment))
            .order_by(sa.case((jobs.c.kind == "analyse", 0), else_=1), jobs.c.run_after, jobs.c.id)
            .limit(1)
        )
        if dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
            async with engine.begin() as conn:
                row = (await conn.execute(query)).first()
                if row is None:
                    return None
                claimed = await _take(conn, _row(row), worker=worker, lease=lease, at=moment)
        else:
            async with engine.connect() as conn:  # a plain read; the write below decides
                row = (await conn.execute(query)).first()
            if row is None:
                return None
            async with engine.begin() as conn:
                claimed = await _take(conn, _row(row), worker=worker, lease=lease, at=moment)
        if claimed is not None:
            return claimed
    return None


async def _take(
    conn: AsyncConnection, seen: Job, *, worker: str, lease: float, at: datetime
) -> Job | None:
    error = seen.error
    if seen.state == "running":
        error = f"worker {seen.worker} stopped sending heartbeats (lease expired)"
    result = await conn.execute(
        jobs.update()
        .where(
            jobs.c.id == seen.id,
            jobs.c.state == seen.state,
            jobs.c.attempts == seen.attempts,
            _claimable(at),  # a heartbeat that renewed the lease meanwhile wins
        )
        .values(
            state="running",
            worker=worker,
            attempts=seen.attempts + 1,
            lease_until=at + timedelta(seconds=lease),
            heartbeat_at=at,
            started_at=at,
            progress=None,
            error=error,
        )
    )
    if result.rowcount != 1:
        return None
    row = (await conn.execute(sa.select(jobs).where(jobs.c.id == seen.id))).first()
    return _row(row)


def _mine(job_id: str, worker: str) -> sa.ColumnElement[bool]:
    return sa.and_(jobs.c.id == job_id, jobs.c.worker == worker, jobs.c.state == "running")


async def _update(
    engine: AsyncEngine | AsyncConnection, job_id: str, owner: str, **values: Any
) -> bool:
    """Set columns of a running job, only while `owner` still holds it."""
    async with transaction(engine) as conn:
        result = await conn.execute(jobs.update().where(_mine(job_id, owner)).values(**values))
    return result.rowcount == 1


async def heartbeat(
    engine: AsyncEngine,
    job_id: str,
    *,
    worker: str,
    lease: float,
    progress: dict[str, Any] | None,
) -> bool:
    """Renew the lease and store the progress; False when the job is no longer this worker's."""
    moment = now()
    values: dict[str, Any] = {"lease_until": moment + timedelta(seconds=lease)}
    values["heartbeat_at"] = moment
    if progress is not None:
        values["progress"] = progress
    return await _update(engine, job_id, worker, **values)


async def stage(engine: AsyncEngine, job_id: str, *, worker: str, key: str, handle: str) -> bool:
    """Note an upload target opened in the store, before any byte goes to it."""
    async with engine.begin() as conn:
        staged = (
            await conn.execute(sa.select(jobs.c.staged).where(_mine(job_id, worker)))
        ).scalar()
        entries = [*(staged or []), {"key": key, "handle": handle}]
        result = await conn.execute(
            jobs.update().where(_mine(job_id, worker)).values(staged=entries)
        )
    return result.rowcount == 1


async def clear_staged(engine: AsyncEngine, job_id: str, *, worker: str) -> bool:
    return await _update(engine, job_id, worker, staged=None)


async def complete(conn: AsyncConnection, job_id: str, *, worker: str) -> bool:
    """Mark done inside the transaction that records the job's results."""
    result = await conn.execute(
        jobs.update()
        .where(_mine(job_id, worker))
        .values(
            state="done",
            finished_at=now(),
            lease_until=None,
            staged=None,
            error=None,
            progress={"percent": 100.0},
        )
    )
    return result.rowcount == 1


async def fail(
    engine: AsyncEngine | AsyncConnection, job_id: str, *, worker: str, reason: str
) -> bool:
    """Give up for good: the reason stays on the job for the API and `avidence-server jobs`."""
    return await _update(
        engine, job_id, worker, state="failed", error=reason, finished_at=now(), lease_until=None
    )


async def retry_later(
    engine: AsyncEngine, job_id: str, *, worker: str, reason: str, delay: float
) -> bool:
    """Put the job back in the queue, not to be claimed for `delay` seconds."""
    return await _update(
        engine,
        job_id,
        worker,
        state="queued",
        error=reason,
        run_after=now() + timedelta(seconds=delay),
        worker=None,
        lease_until=None,
    )


async def release(engine: AsyncEngine, job: Job, *, worker: str) -> bool:
    """Hand a job back untouched (worker shutting down); the attempt does not count."""
    return await _update(
        engine,
        job.id,
        worker,
        state="queued",
        attempts=max(0, job.attempts - 1),
        run_after=now(),
        worker=None,
        lease_until=None,
    )


async def requeue(engine: AsyncEngine, job_id: str) -> bool:
    """Run a failed job again from its first attempt (operator's `jobs retry`)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            jobs.update()
            .where(jobs.c.id == job_id, jobs.c.state == "failed")
            .values(state="queued", attempts=0, run_after=now(), finished_at=None)
        )
    if result.rowcount == 1:
        _wake()
    return result.rowcount == 1


async def rerun(conn: AsyncConnection, job_id: str) -> bool:
    """Queue a finished (done or failed) job again from its first attempt, inside the caller's
    transaction (re-deriving a copy a scrub flagged); workers here are woken after the commit."""
    result = await conn.execute(
        jobs.update()
        .where(jobs.c.id == job_id, jobs.c.state.in_(("done", "failed")))
        .values(
            state="queued",
            attempts=0,
            run_after=now(),
            finished_at=None,
            error=None,
            progress=None,
            worker=None,
            lease_until=None,
        )
    )
    if result.rowcount == 1:
        _wake_after_commit(conn)
    return result.rowcount == 1


async def get(engine: AsyncEngine, job_id: str) -> Job | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(jobs).where(jobs.c.id == job_id))).first()
    return _row(row) if row is not None else None


async def listing(
    engine: AsyncEngine,
    *,
    evidence_id: str | None = None,
    state: str | None = None,
    limit: int = 1000,
) -> list[Job]:
    """Jobs oldest first, optionally of one evidence item or in one state."""
    query = sa.select(jobs).order_by(jobs.c.created_at, jobs.c.id).limit(limit)
    if evidence_id is not None:
        query = query.where(jobs.c.evidence_id == evidence_id)
    if state is not None:
        query = query.where(jobs.c.state == state)
    async with engine.connect() as conn:
        return [_row(r) for r in (await conn.execute(query)).all()]
