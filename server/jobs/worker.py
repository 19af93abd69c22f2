"""The worker loop: claim a job, run it with a heartbeat, record how it ended.

A worker runs `concurrency` slots, each claiming one job at a time. While a job runs, a
heartbeat renews its lease and stores its progress every `min(5, job_lease / 4)` seconds; if the
catalog says the job is no longer this worker's (the lease ran out and another worker took it),
the run is cancelled and its results are never recorded. When a worker is killed outright, its
jobs' leases run out and other workers (or this one, restarted) take them over; the runner
removes what the dead run left behind.

How a run ends: success (recorded by the runner); a `MediaError` (the input is bad) fails the job
at once with ffmpeg's reason; anything else (a killed encoder, a store outage, a full disk) is
retried after `job_backoff * 2^(attempt-1)` seconds, until `job_attempts` attempts have been
made. Every final failure is an audit entry. A worker that stops (SIGTERM, server shutdown)
hands its running jobs back without counting the attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import socket
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import DBAPIError, OperationalError

from avidence.storage import errors as store_errors
from avidence.storage.base import Store
from avidence.transcode import profiles as transcode_profiles
from avidence.transcode.errors import TranscodeError
from avidence.transcode.tools import version

from ..audit.events import JobFailed
from ..audit.unit import unit_of_work
from ..catalog.db import Catalog
from ..config import ConfigError, Settings
from ..evidence import records as evidence_db
from . import queue, runner
from .queue import Job

log = logging.getLogger("avidence.jobs")

POLL_SECONDS = 1.0
STOP_SECONDS = 30.0  # how long `stop` waits for slots to record their hand-backs
MAX_BACKOFF = 3600.0


def worker_id() -> str:
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(3)}"


def describe(exc: BaseException) -> tuple[str, bool]:
    """(reason for the job record, whether another attempt may succeed)."""
    if isinstance(exc, TranscodeError):
        return exc.reason, exc.transient
    if isinstance(exc, store_errors.NotFound):
        return "the original is missing from the store", False
    if isinstance(exc, store_errors.StoreError):
        return f"store: {exc}", True
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), True
    return f"unexpected error: {exc!r}", True


def enabled_profiles(settings: Settings) -> list[transcode_profiles.Profile]:
    """The profiles `transcode_profiles` names, as configured; ConfigError when invalid."""
    try:
        known = transcode_profiles.build(settings.extra.get("profiles"))
        return transcode_profiles.select(known, settings.transcode_profiles)
    except transcode_profiles.ProfileError as exc:
        raise ConfigError(str(exc)) from None


async def load_profiles(settings: Settings) -> dict[str, transcode_profiles.Profile]:
    """Configured profiles (ConfigError when invalid), hardware encoders checked by a trial."""
    enabled = enabled_profiles(settings)
    usable, notes = await transcode_profiles.with_working_encoders({p.name: p for p in enabled})
    for note in notes:
        log.warning("worker.encoder_fallback %s", note)
    return usable


class Worker:
    """Runs jobs from the catalog until stopped."""

    def __init__(
        self,
        settings: Settings,
        *,
        catalog: Catalog,
        store: Store,
        concurrency: int | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.concurrency = concurrency or settings.worker_concurrency
        self.id = worker_id()
        self.lease = float(settings.job_lease)
        self.beat = min(5.0, self.lease / 4)
        self._wakeup = asyncio.Event()
        self._slots: list[asyncio.Task[None]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.ctx: runner.Context | None = None

    async def start(self) -> None:
        profiles = await load_profiles(self.settings)
        workroot = self.settings.data_dir / "tmp" / "jobs"
        workroot.mkdir(parents=True, exist_ok=True)
        self.ctx = runner.Context(
            engine=self.catalog.engine,
            store=self.store,
            workroot=workroot,
            worker=self.id,
            profiles=profiles,
            enabled=tuple(profiles),
            ffmpeg_version=await version("ffmpeg"),
            ffprobe_version=await version("ffprobe"),
        )
        await self._sweep(workroot)
        queue.subscribe(self._wakeup)
        self._slots = [
            asyncio.create_task(self._slot(), name=f"job-slot-{n}") for n in range(self.concurrency)
        ]
        log.info(
            "worker.started id=%s slots=%s profiles=%s ffmpeg=%s",
            self.id,
            self.concurrency,
            ",".join(f"{p.name}({p.encoder})" for p in profiles.values()),
            self.ctx.ffmpeg_version,
        )

    async def stop(self) -> None:
        """Stop claiming, cancel running jobs and hand them back.

        Only the runs are cancelled: each slot then records the hand-back (or an outcome it was
        recording) before it ends, so no state change is cut in half."""
        self._stopping = True
        queue.unsubscribe(self._wakeup)
        self._wakeup.set()
        for work in list(self._running):
            work.cancel()
        if self._slots:
            _, late = await asyncio.wait(self._slots, timeout=STOP_SECONDS)
            for slot in late:
                slot.cancel()
            await asyncio.gather(*self._slots, return_exceptions=True)
        self._slots = []
        log.info("worker.stopped id=%s", self.id)

    async def _sweep(self, workroot: Path) -> None:
        """Remove work folders of jobs no live worker is running (a previous run's debris)."""
        for folder in await asyncio.to_thread(lambda: list(workroot.iterdir())):
            job = await queue.get(self.catalog.engine, folder.name)
            alive = (
                job is not None
                and job.state == "running"
                and job.lease_until is not None
                and job.lease_until > datetime.now(UTC)
            )
            if not alive:
                await asyncio.to_thread(shutil.rmtree, folder, True)

    async def _slot(self) -> None:
        while not self._stopping:
            try:
                job = await queue.claim(
                    self.catalog.engine,
                    worker=self.id,
                    lease=self.lease,
                    dialect=self.catalog.dialect,
                )
            except (DBAPIError, OperationalError, OSError) as exc:
                log.warning("worker.claim_failed id=%s error=%s", self.id, exc)
                job = None
                await asyncio.sleep(POLL_SECONDS)
            if job is None:
                self._wakeup.clear()
                if self._stopping:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), POLL_SECONDS)
                continue
            try:
                await self._handle(job)
            except Exception:
                # Recording the outcome failed (the catalog went away): the lease will run out
                # and the job will be taken again. The slot itself must live on.
                log.exception("worker.record_failed id=%s job=%s", self.id, job.id)
                await asyncio.sleep(POLL_SECONDS)

    async def _handle(self, job: Job) -> None:
        assert self.ctx is not None
        if self._stopping:
            await queue.release(self.catalog.engine, job, worker=self.id)
            return
        if job.attempts > self.settings.job_attempts:
            await self._give_up(job, f"gave up after {job.attempts - 1} attempts: {job.error}")
            return
        log.info(
            "job.started id=%s job=%s evidence=%s attempt=%s",
            job.id,
            job.label,
            job.evidence_id,
            job.attempts,
        )
        meter = runner.Meter()
        work = asyncio.create_task(runner.perform(self.ctx, job, meter), name=f"job-{job.id}")
        self._running.add(work)
        lost = asyncio.Event()
        beat = asyncio.create_task(self._heartbeat(job, meter, work, lost))
        try:
            await work
        except asyncio.CancelledError:
            if _being_cancelled():  # the slot itself is cancelled: hand back, then end
                with contextlib.suppress(Exception):
                    await asyncio.shield(queue.release(self.catalog.engine, job, worker=self.id))
                raise
            if lost.is_set():
                log.warning("job.lost id=%s reason=lease taken over", job.id)
            else:
                await queue.release(self.catalog.engine, job, worker=self.id)
                log.info("job.released id=%s reason=worker stopping", job.id)
        except runner.LeaseLost:
            log.warning("job.lost id=%s reason=lease taken over", job.id)
        except Exception as exc:
            await self._failed(job, exc)
        else:
            log.info("job.done id=%s job=%s evidence=%s", job.id, job.label, job.evidence_id)
        finally:
            self._running.discard(work)
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    async def _heartbeat(
        self, job: Job, meter: runner.Meter, work: asyncio.Task[None], lost: asyncio.Event
    ) -> None:
        while not work.done():
            await asyncio.sleep(self.beat)
            try:
                mine = await queue.heartbeat(
                    self.catalog.engine,
                    job.id,
                    worker=self.id,
                    lease=self.lease,
                    progress=meter.to_json(),
                )
            except (DBAPIError, OperationalError, OSError) as exc:
                log.warning("job.heartbeat_failed id=%s error=%s", job.id, exc)
                continue
            if not mine:
                lost.set()
                work.cancel()
                return

    async def _failed(self, job: Job, exc: Exception) -> None:
        reason, transient = describe(exc)
        if not transient or job.attempts >= self.settings.job_attempts:
            if transient:
                log.error("job.error id=%s", job.id, exc_info=exc)
                reason = f"gave up after {job.attempts} attempts: {reason}"
            await self._give_up(job, reason)
            return
        delay = min(MAX_BACKOFF, self.settings.job_backoff * 2 ** (job.attempts - 1))
        log.warning(
            "job.retry id=%s attempt=%s in=%ss reason=%s", job.id, job.attempts, delay, reason
        )
        if not await queue.retry_later(
            self.catalog.engine, job.id, worker=self.id, reason=reason, delay=delay
        ):
            log.warning("job.not_retried id=%s reason=no longer this worker's job", job.id)

    async def _give_up(self, job: Job, reason: str) -> None:
        log.warning(
            "job.failed id=%s job=%s evidence=%s reason=%s",
            job.id,
            job.label,
            job.evidence_id,
            reason,
        )
        record = await evidence_db.get(self.catalog.engine, job.evidence_id)
        async with unit_of_work(self.catalog.engine) as unit:
            if not await queue.fail(unit.conn, job.id, worker=self.id, reason=reason):
                return
            unit.record(
                JobFailed(
                    actor=f"worker {self.id}",
                    object=f"evidence:{job.evidence_id}",
                    case_id=record.case_id if record else None,
                    job=job.id,
                    kind=job.kind,
                    profile=job.profile,
                    attempts=job.attempts,
                    reason=reason,
                )
            )


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
