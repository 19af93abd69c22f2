"""One job, start to finish: the transcode functions composed with the catalog and the store.

`analyse` copies the original into a work folder, probes it, checks its continuity, records both
and queues one `derive` job per enabled profile that applies, all in one transaction with the
job's completion. `derive` removes what an earlier, killed run of the same job left, runs the
profile's ffmpeg commands, stores each output as its own object and records the derivatives in
the transaction that marks the job done. If the worker lost the job meanwhile (its lease ran out
and another worker took over), that transaction does nothing and this run's objects are removed.

Failures are raised to the worker, which decides between retrying and failing for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.storage.base import Store, Target
from avidence.transcode import continuity
from avidence.transcode.continuity import Continuity
from avidence.transcode.errors import MediaError
from avidence.transcode.plan import Command, applies, plan
from avidence.transcode.probe import MediaInfo, probe
from avidence.transcode.profiles import Profile
from avidence.transcode.run import Progress, execute

from ..audit.events import DerivativeCreated, MediaAnalysed
from ..audit.unit import unit_of_work
from ..evidence import records as evidence_db
from ..evidence.records import Evidence
from ..retention import hooks as retention_hooks
from . import outputs, queue, records, source
from .queue import Job

log = logging.getLogger("avidence.jobs")


class LeaseLost(Exception):
    """Another worker owns the job now; this run's results must not be recorded."""


@dataclass(slots=True)
class Context:
    """What every run needs; built once by the worker."""

    engine: AsyncEngine
    store: Store
    workroot: Path
    worker: str
    profiles: dict[str, Profile]
    enabled: tuple[str, ...]
    ffmpeg_version: str
    ffprobe_version: str


@dataclass(slots=True)
class Meter:
    """The latest progress of a run; the heartbeat stores it with the lease."""

    step: str = "starting"
    percent: float | None = None
    speed: float | None = None
    out_time: float | None = None
    commands: int = 1
    done_commands: int = 0

    def set(self, step: str, percent: float | None = None) -> None:
        self.step, self.percent, self.speed, self.out_time = step, percent, None, None

    async def ffmpeg(self, progress: Progress) -> None:
        share = 100.0 / max(1, self.commands)
        inner = progress.percent if progress.percent is not None else 0.0
        self.percent = round(share * self.done_commands + share * inner / 100.0, 1)
        self.speed, self.out_time = progress.speed, round(progress.out_time, 3)

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "percent": self.percent,
            "speed": self.speed,
            "out_time": self.out_time,
        }


def derivative_key(evidence_id: str, name: str) -> str:
    return f"derivatives/{evidence_id}/{name}"


def _actor(ctx: Context) -> str:
    return f"worker {ctx.worker}"


async def perform(ctx: Context, job: Job, meter: Meter) -> None:
    """Run `job` to completion, or raise."""
    evidence = await evidence_db.get(ctx.engine, job.evidence_id)
    if evidence is None:
        raise MediaError(f"evidence {job.evidence_id} does not exist")
    work = await asyncio.to_thread(outputs.fresh_folder, ctx.workroot / job.id)
    try:
        if job.kind == "analyse":
            await analyse(ctx, job, evidence, work, meter)
        else:
            await derive(ctx, job, evidence, work, meter)
    finally:
        # Shielded: a cancelled run still leaves no working copy of an original behind.
        await asyncio.shield(asyncio.to_thread(shutil.rmtree, work, True))


@asynccontextmanager
async def _source(ctx: Context, evidence: Evidence, work: Path) -> AsyncIterator[Path | str]:
    """The original as the tools read it inside the block: a path or a URL, never a copy
    (see `source.py`)."""
    async with source.located(ctx.store, evidence.storage_key, work, size=evidence.size) as found:
        log.info("job.source evidence=%s how=%s", evidence.id, found.how)
        yield found.url or Path(found.input)


async def analyse(ctx: Context, job: Job, evidence: Evidence, work: Path, meter: Meter) -> None:
    meter.set("locating")
    async with _source(ctx, evidence, work) as original:
        meter.set("probing", 40.0)
        info = await probe(original)
        meter.set("continuity", 50.0)
        report = await continuity.check(original, info)
    wanted = [ctx.profiles[name] for name in ctx.enabled]
    profiles = [p.name for p in wanted if applies(info, p)]
    at = datetime.now(UTC)
    # Audit details are canonical JSON, which has no floats: durations go as text.
    event = MediaAnalysed(
        actor=_actor(ctx),
        object=f"evidence:{evidence.id}",
        case_id=evidence.case_id,
        container=info.container,
        duration=f"{info.duration:.3f}" if info.duration is not None else None,
        video_streams=len(info.videos),
        audio_streams=len(info.audios),
        profiles=profiles,
        continuity={"ok": report.ok, **report.counts} if report is not None else None,
        time=at,
    )
    await _analysed(ctx, job, evidence, info, report, profiles, event)


async def _analysed(
    ctx: Context,
    job: Job,
    evidence: Evidence,
    info: MediaInfo,
    report: Continuity | None,
    profiles: list[str],
    event: MediaAnalysed,
) -> None:
    """The job done, the media facts, the next jobs and the entry, in one transaction."""
    async with unit_of_work(ctx.engine) as unit:
        conn = unit.conn
        if not await queue.complete(conn, job.id, worker=ctx.worker):
            raise LeaseLost(job.id)
        await records.save_media(
            conn,
            evidence.id,
            probe=info.to_json(),
            continuity=report.to_json() if report else None,
            ffprobe_version=ctx.ffprobe_version,
            at=event.time,
        )
        for name in profiles:
            await queue.enqueue(conn, evidence.id, kind="derive", profile=name)
        unit.record(event)


async def _media_info(ctx: Context, evidence: Evidence, original: Path | str) -> MediaInfo:
    stored = await records.media_of(ctx.engine, evidence.id)
    if stored is not None:
        return MediaInfo.from_json(stored["probe"])
    return await probe(original)


async def derive(ctx: Context, job: Job, evidence: Evidence, work: Path, meter: Meter) -> None:
    profile = ctx.profiles.get(job.profile)
    if profile is None:
        raise MediaError(f"profile {job.profile!r} is not configured on this worker")
    meter.set("locating")
    async with _source(ctx, evidence, work) as original:
        commands = plan(await _media_info(ctx, evidence, original), profile)
        keys = [derivative_key(evidence.id, o.name) for c in commands for o in c.outputs]
        meter.set("cleaning")
        await outputs.remove_leftovers(ctx.store, ctx.engine, staged=job.staged or [], keys=keys)
        await queue.clear_staged(ctx.engine, job.id, worker=ctx.worker)
        meter.set("encoding", 0.0)
        meter.commands = len(commands)
        for n, command in enumerate(commands):
            meter.done_commands = n
            url = original if isinstance(original, str) else None
            await execute(command, cwd=work, on_progress=meter.ffmpeg, source_url=url)
    meter.set("storing", 100.0)
    await _store(ctx, job, evidence, work, commands, profile)


async def _store(
    ctx: Context,
    job: Job,
    evidence: Evidence,
    work: Path,
    commands: list[Command],
    profile: Profile,
) -> None:
    made: list[records.Derivative] = []

    async def staged(target: Target) -> None:
        ok = await queue.stage(
            ctx.engine, job.id, worker=ctx.worker, key=target.key, handle=target.handle
        )
        if not ok:
            await ctx.store.abort(target)
            raise LeaseLost(job.id)

    try:
        for command in commands:
            for output in command.outputs:
                key = derivative_key(evidence.id, output.name)
                size, digests = await outputs.put_replacing(
                    ctx.store, ctx.engine, work / output.name, key, staged=staged
                )
                made.append(
                    records.Derivative(
                        id=records.new_derivative_id(),
                        evidence_id=evidence.id,
                        job_id=job.id,
                        profile=profile.name,
                        role=output.role,
                        angle=output.angle,
                        storage_key=key,
                        content_type=output.content_type,
                        size=size,
                        blake3=digests["blake3"],
                        sha256=digests["sha256"],
                        source_blake3=evidence.blake3,
                        source_sha256=evidence.sha256,
                        command=list(command.argv),
                        ffmpeg_version=ctx.ffmpeg_version,
                        details={**output.details, "copied_video": command.copies_video},
                        created_at=datetime.now(UTC),
                    )
                )
        await _recorded(ctx, job, evidence, made)
    except BaseException:
        # Not recorded: remove what this run stored. If this fails too (the store is down),
        # the staged list on the job lets the next run do it.
        with contextlib.suppress(Exception):
            keys = [d.storage_key for d in made]
            await outputs.remove_leftovers(ctx.store, ctx.engine, staged=[], keys=keys)
        raise
    await retention_hooks.derivatives_stored(
        ctx.engine, ctx.store, evidence.id, [d.storage_key for d in made]
    )


async def _recorded(
    ctx: Context, job: Job, evidence: Evidence, made: list[records.Derivative]
) -> None:
    """The job done, its derivatives and their entries, in one transaction."""
    async with unit_of_work(ctx.engine) as unit:
        if not await queue.complete(unit.conn, job.id, worker=ctx.worker):
            raise LeaseLost(job.id)
        for record in made:
            await records.insert_derivative(unit.conn, record)
            unit.record(
                DerivativeCreated(
                    actor=_actor(ctx),
                    object=f"evidence:{evidence.id}",
                    case_id=evidence.case_id,
                    derivative=record.id,
                    profile=record.profile,
                    storage_key=record.storage_key,
                    size=record.size,
                    blake3=record.blake3,
                    sha256=record.sha256,
                    source_blake3=record.source_blake3,
                    ffmpeg_version=record.ffmpeg_version,
                    command=record.command,
                    time=record.created_at,
                )
            )
