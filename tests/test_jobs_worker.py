"""The worker loop: retries with backoff, giving up with an audit entry, losing a lease, shutdown;
and the `worker` / `jobs` commands."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from test_custody_api import invoke
from test_jobs_api import local_api, settled, upload_file
from test_jobs_queue import add_evidence

from avidence.server import config
from avidence.server.catalog.db import Catalog
from avidence.server.catalog.schema import audit_log, jobs
from avidence.server.cli import main
from avidence.server.jobs import queue, runner
from avidence.server.jobs.queue import Job
from avidence.server.jobs.worker import Worker, load_profiles
from avidence.storage.local import LocalStore
from avidence.transcode.errors import MediaError, ToolError

from support.servers import Api

Perform = Callable[[runner.Context, Job, runner.Meter], Awaitable[None]]


@pytest.fixture()
async def parts(tmp_path: Path) -> AsyncIterator[tuple[config.Settings, Catalog, LocalStore]]:
    settings = config.load(
        env={}, data_dir=tmp_path / "data", job_lease=1, job_attempts=3, job_backoff=0
    )
    catalog = Catalog(settings.database_url)
    await catalog.migrate()
    store = LocalStore(settings.store_root)
    await store.open()
    try:
        yield settings, catalog, store
    finally:
        await store.close()
        await catalog.close()


async def run_worker(
    parts: tuple[config.Settings, Catalog, LocalStore],
    monkeypatch: pytest.MonkeyPatch,
    perform: Perform,
    until: Callable[[list[Job]], bool],
    *,
    within: float = 20,
) -> list[Job]:
    settings, catalog, store = parts
    monkeypatch.setattr(runner, "perform", perform)
    worker = Worker(settings, catalog=catalog, store=store)
    await worker.start()
    try:
        deadline = time.monotonic() + within
        while not until(found := await queue.listing(catalog.engine)):
            assert time.monotonic() < deadline, f"jobs: {found}"
            await asyncio.sleep(0.05)
        return found
    finally:
        await worker.stop()


async def failed_actions(catalog: Catalog) -> list[dict[str, Any]]:
    async with catalog.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(audit_log.c.details).where(audit_log.c.action == "job.failed")
        )
        return [dict(d) for d in rows.scalars()]


async def test_transient_failures_are_retried_then_given_up_with_an_audit_entry(
    parts: tuple[config.Settings, Catalog, LocalStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_evidence(parts[1])
    calls: list[int] = []

    async def flaky(ctx: runner.Context, job: Job, meter: runner.Meter) -> None:
        calls.append(job.attempts)
        raise ToolError("ffmpeg was killed by SIGKILL while encoding")

    [job] = await run_worker(parts, monkeypatch, flaky, lambda js: js[0].state == "failed")
    assert calls == [1, 2, 3] and job.attempts == 3
    assert job.error == "gave up after 3 attempts: ffmpeg was killed by SIGKILL while encoding"
    [details] = await failed_actions(parts[1])
    assert details["job"] == job.id and details["attempts"] == 3


async def test_bad_input_fails_at_once(
    parts: tuple[config.Settings, Catalog, LocalStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_evidence(parts[1])

    async def broken(ctx: runner.Context, job: Job, meter: runner.Meter) -> None:
        raise MediaError("not a readable media file: Invalid data found when processing input")

    [job] = await run_worker(parts, monkeypatch, broken, lambda js: js[0].state == "failed")
    assert job.attempts == 1 and job.error is not None and job.error.startswith("not a readable")


async def test_a_run_whose_lease_was_taken_over_is_cancelled(
    parts: tuple[config.Settings, Catalog, LocalStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, catalog, _ = parts
    await add_evidence(catalog)
    cancelled = asyncio.Event()

    async def slow(ctx: runner.Context, job: Job, meter: runner.Meter) -> None:
        if job.attempts > 1:
            async with ctx.engine.begin() as conn:
                assert await queue.complete(conn, job.id, worker=ctx.worker)
            return
        async with ctx.engine.begin() as conn:  # another worker "steals" the job
            await conn.execute(jobs.update().values(worker="thief"))
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await run_worker(parts, monkeypatch, slow, lambda js: cancelled.is_set())
    [job] = await queue.listing(catalog.engine)
    assert (job.state, job.worker) == ("running", "thief"), "the loser recorded nothing"


async def test_stopping_a_worker_hands_its_job_back_without_counting_it(
    parts: tuple[config.Settings, Catalog, LocalStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, catalog, _ = parts
    await add_evidence(catalog)

    async def forever(ctx: runner.Context, job: Job, meter: runner.Meter) -> None:
        meter.set("encoding", 12.5)
        await asyncio.sleep(30)

    def beating(found: list[Job]) -> bool:
        return bool(found[0].progress and found[0].progress.get("percent") == 12.5)

    await run_worker(parts, monkeypatch, forever, beating)
    [job] = await queue.listing(catalog.engine)
    assert (job.state, job.attempts, job.worker) == ("queued", 0, None)


async def test_hardware_encoder_fallback_is_logged_and_bad_profiles_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "avidence.toml"
    file.write_text('[profiles.mp4-h264]\nencoder = "h264_vaapi"\n')
    with caplog.at_level(logging.WARNING, logger="avidence.jobs"):
        usable = await load_profiles(config.load(config_file=file, env={}))
    assert usable["mp4-h264"].encoder == "libx264"
    assert "using libx264 instead of h264_vaapi: trial encode with h264_vaapi failed" in caplog.text
    file.write_text('transcode_profiles = ["mp4-h264", "webm"]\n')
    with pytest.raises(config.ConfigError, match="transcode_profiles: no profile 'webm'"):
        await load_profiles(config.load(config_file=file, env={}))


@pytest.fixture()
async def app(tmp_path: Path) -> AsyncIterator[Api]:
    async for api in local_api(tmp_path):
        yield api


async def test_jobs_command_lists_retries_and_enqueues(
    app: Api, small_ts_clip: Path, text_file: Path, tmp_path: Path
) -> None:
    data_dir = str(tmp_path / "data")
    good = await upload_file(app, small_ts_clip)
    bad = await upload_file(app, text_file)
    await settled(app, good)
    failed = (await settled(app, bad))["jobs"][0]
    result = await invoke(main, ["jobs", "--data-dir", data_dir])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 4  # analyse + mp4 + poster, and the failed analysis
    assert any(f"\tdone\tderive:mp4-h264\t{good}\t" in line for line in lines)
    [line] = [x for x in lines if x.startswith(failed["id"])]
    assert "\tfailed\tanalyse\t" in line and line.endswith(
        "Invalid data found when processing input"
    )
    only = await invoke(main, ["jobs", "--data-dir", data_dir, "--state", "failed"])
    assert only.output.splitlines() == [line]

    retried = await invoke(main, ["jobs", "retry", failed["id"], "--data-dir", data_dir])
    assert retried.exit_code == 0 and "queued 1 job(s) again" in retried.output
    refused = await invoke(main, ["jobs", "retry", "jb_nope", "--data-dir", data_dir])
    assert refused.exit_code == 2 and "not failed jobs (or unknown): jb_nope" in refused.output
    again = await settled(app, bad)
    assert again["jobs"][0]["state"] == "failed"

    async with app.catalog.engine.begin() as conn:
        await conn.execute(jobs.delete().where(jobs.c.evidence_id == bad))
    enqueued = await invoke(main, ["jobs", "enqueue", "--missing", "--data-dir", data_dir])
    assert enqueued.exit_code == 0 and "queued 1 analysis job(s)" in enqueued.output
    unknown = await invoke(main, ["jobs", "enqueue", "ev_nope", "--data-dir", data_dir])
    assert unknown.exit_code == 2 and "no such evidence: ev_nope" in unknown.output


async def test_worker_command_refuses_a_bad_profile_in_one_line(tmp_path: Path) -> None:
    file = tmp_path / "avidence.toml"
    file.write_text('[profiles.mp4-h264]\ncrf = "best"\n')
    result = await invoke(
        main, ["worker", "--data-dir", str(tmp_path / "data"), "--config", str(file)]
    )
    assert result.exit_code == 2
    assert result.output.strip() == (
        "avidence-server: error: profiles.mp4-h264.crf: expected int, got 'best'"
    )
