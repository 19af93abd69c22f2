"""A worker killed with SIGKILL mid-transcode loses nothing: another finishes the job, once.

Real processes: the app receives the upload in-process (no embedded worker), `avidence-server
worker` children share its SQLite catalog and local store through `--data-dir`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import blake3
import pytest
import sqlalchemy as sa
from test_jobs_api import local_api, upload_file

from avidence.server.catalog.schema import audit_log
from avidence.server.jobs import queue, records
from avidence.server.jobs.queue import Job

from support.servers import Api

BIN = Path(sys.executable).parent
LEASE = 2


@pytest.fixture()
async def app(tmp_path: Path) -> AsyncIterator[Api]:
    async for api in local_api(tmp_path, embedded_worker=False):
        yield api


@pytest.fixture()
def start_worker(tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Start `avidence-server worker` children on the app's data dir; all killed at the end."""
    config = tmp_path / "worker.toml"
    config.write_text('transcode_profiles = ["mp4-h264"]\n')
    env = {**os.environ, "AVIDENCE_JOB_LEASE": str(LEASE), "AVIDENCE_JOB_BACKOFF": "0"}
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        log = (tmp_path / f"worker-{len(started)}.log").open("wb")
        argv = [str(BIN / "avidence-server"), "worker", "--data-dir", str(tmp_path / "data")]
        process = subprocess.Popen(
            [*argv, "--config", str(config)], stdout=log, stderr=log, env=env
        )
        log.close()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


async def wait_for(
    api: Api, evidence_id: str, check: Callable[[Job], bool], *, within: float = 60
) -> Job:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for job in await queue.listing(api.catalog.engine, evidence_id=evidence_id):
            if job.kind == "derive" and check(job):
                return job
        await asyncio.sleep(0.1)
    raise AssertionError("the derive job never reached the expected state")


async def eventually(condition: Callable[[], bool], *, within: float = 10) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def processes_in(folder: Path) -> list[int]:
    """Pids of processes whose working directory is `folder` (an orphaned ffmpeg)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd") == str(folder):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


async def test_killed_worker_job_completes_once_elsewhere_without_leftovers(
    app: Api,
    noisy_clip: Path,
    tmp_path: Path,
    start_worker: Callable[[], subprocess.Popen[bytes]],
) -> None:
    evidence_id = await upload_file(app, noisy_clip)
    first = start_worker()
    running = await wait_for(
        app,
        evidence_id,
        lambda j: j.state == "running" and (j.progress or {}).get("step") == "encoding",
    )
    workdir = tmp_path / "data" / "tmp" / "jobs" / running.id
    assert await eventually(lambda: bool(processes_in(workdir))), "ffmpeg runs in the work folder"
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert await eventually(lambda: not processes_in(workdir)), "ffmpeg died with its worker"

    second = start_worker()
    done = await wait_for(app, evidence_id, lambda j: j.state in ("done", "failed"))
    assert (done.id, done.state, done.attempts) == (running.id, "done", 2)
    made = await records.derivatives_of(app.catalog.engine, evidence_id)
    assert [(d.profile, d.job_id) for d in made] == [("mp4-h264", done.id)]

    store_root = tmp_path / "data" / "store"
    objects = sorted(
        p.name for p in (store_root / "objects" / "derivatives" / evidence_id).iterdir()
    )
    assert objects == ["mp4-h264.mp4"]
    staging = store_root / "staging" / "derivatives"
    assert not staging.exists() or not any(p.is_file() for p in staging.rglob("*"))
    # "done" commits before the run's last steps (audit, locks); the folder goes right after.
    assert await eventually(lambda: not workdir.exists())
    data = await asyncio.to_thread((store_root / "objects" / made[0].storage_key).read_bytes)
    assert blake3.blake3(data).hexdigest() == made[0].blake3

    async with app.catalog.engine.connect() as conn:
        actions = (
            await conn.execute(
                sa.select(audit_log.c.action).where(audit_log.c.object == f"evidence:{evidence_id}")
            )
        ).scalars()
        created = [a for a in actions if a == "derivative.created"]
    assert len(created) == 1

    second.send_signal(signal.SIGTERM)
    assert second.wait(20) == 0
