"""`avidence-server worker` and `avidence-server jobs`: run media jobs, and look at them.

`worker` runs until SIGINT/SIGTERM on the catalog and store the settings name, exactly as
`serve` would; several may run on several hosts against one PostgreSQL catalog. `jobs` prints
one line per job (state, progress, speed, last heartbeat, reason of failure); `jobs retry` runs
a failed job again; `jobs enqueue` queues the analysis of evidence received before workers ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import click
import sqlalchemy as sa

from avidence.transcode.errors import TranscodeError

from .. import logs
from ..catalog.schema import jobs
from ..commands import Context, fail, opened_catalog, run, shared_options
from ..config import ConfigError, Settings, redact
from ..evidence import records as evidence_db
from ..stores import configured_store
from . import queue, views
from .worker import Worker, enabled_profiles


@click.command("worker")
@shared_options
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Jobs run at once by this process (default: the worker_concurrency setting, 1).",
)
def worker_command(ctx: Context, concurrency: int | None) -> None:
    """Run media jobs (probe, continuity check, transcodes) until interrupted."""
    settings = ctx.settings(worker_concurrency=concurrency)
    try:
        enabled_profiles(settings)  # a bad profile stops us before anything else happens
    except ConfigError as exc:
        fail(str(exc))
    logs.setup(level=settings.log_level, fmt=settings.log_format)
    run(_work(settings))


async def _work(settings: Settings) -> None:
    async with opened_catalog(settings, migrate=True) as catalog:
        store = await configured_store(settings, catalog.engine)
        await store.open()
        try:
            worker = Worker(settings, catalog=catalog, store=store)
            try:
                await worker.start()
            except TranscodeError as exc:
                raise ValueError(exc.reason) from None  # one line, exit code 2
            click.echo(
                f"avidence worker {worker.id}: {worker.concurrency} slot(s) on "
                f"{redact(settings.database_url)}"
            )
            try:
                await _wait_for_signal()
            finally:
                await worker.stop()
        finally:
            await store.close()


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@click.group("jobs", invoke_without_command=True)
@shared_options
@click.option("--state", type=click.Choice(queue.STATES), default=None)
@click.option("--evidence", "evidence_id", default=None, help="Only this evidence item's jobs.")
@click.option("--limit", type=click.IntRange(min=1), default=1000)
def jobs_group(ctx: Context, state: str | None, evidence_id: str | None, limit: int) -> None:
    """List media jobs, one per line: id, state, kind:profile, evidence, attempt, progress."""
    if click.get_current_context().invoked_subcommand is not None:
        return
    settings = ctx.settings()

    async def go() -> list[queue.Job]:
        async with opened_catalog(settings) as catalog:
            return await queue.listing(
                catalog.engine, evidence_id=evidence_id, state=state, limit=limit
            )

    for job in run(go()):
        click.echo(views.job_line(job))


@jobs_group.command("retry")
@shared_options
@click.argument("job_ids", nargs=-1, required=True)
def jobs_retry(ctx: Context, job_ids: tuple[str, ...]) -> None:
    """Queue failed jobs again, from their first attempt."""
    settings = ctx.settings()

    async def go() -> list[str]:
        async with opened_catalog(settings) as catalog:
            return [j for j in job_ids if not await queue.requeue(catalog.engine, j)]

    refused = run(go())
    if refused:
        fail(f"not failed jobs (or unknown): {', '.join(refused)}")
    click.echo(f"queued {len(job_ids)} job(s) again")


@jobs_group.command("enqueue")
@shared_options
@click.argument("evidence_ids", nargs=-1)
@click.option("--missing", is_flag=True, help="Every evidence item that was never analysed.")
def jobs_enqueue(ctx: Context, evidence_ids: tuple[str, ...], missing: bool) -> None:
    """Queue the analysis (and so the derivatives) of evidence items."""
    if not evidence_ids and not missing:
        fail("name evidence ids, or give --missing")
    settings = ctx.settings()

    async def go() -> int:
        async with opened_catalog(settings) as catalog:
            async with catalog.engine.begin() as conn:
                ids = list(evidence_ids)
                if missing:
                    analysed = sa.select(jobs.c.evidence_id).where(jobs.c.kind == "analyse")
                    ids += await evidence_db.ids_not_in(conn, analysed)
                known = await evidence_db.known(conn, ids)
                unknown = [i for i in ids if i not in known]
                if unknown:
                    raise ValueError(f"no such evidence: {', '.join(unknown)}")
                return sum([await queue.enqueue(conn, i) is not None for i in ids])

    click.echo(f"queued {run(go())} analysis job(s)")


def register(group: click.Group) -> None:
    """Attach this module's commands to `avidence-server` (see `cli.py`)."""
    group.add_command(worker_command)
    group.add_command(jobs_group)
