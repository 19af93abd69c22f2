"""The job queue on SQLite and PostgreSQL: claims, leases, retries, hand-backs, clean-up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from avidence.server import tokens
from avidence.server.catalog.db import Catalog
from avidence.server.catalog.schema import jobs, uploads
from avidence.server.config import normalize_database_url
from avidence.server.evidence import records as evidence_db
from avidence.server.jobs import outputs, queue, records
from avidence.storage.base import Target
from avidence.storage.errors import NotFound
from avidence.storage.local import LocalStore

from support.stores import chunks_of


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return normalize_database_url(f"sqlite:///{tmp_path / 'catalog.db'}")
    return normalize_database_url(request.getfixturevalue("postgres_url"))


@pytest.fixture()
async def catalog(database_url: str) -> AsyncIterator[Catalog]:
    catalog = Catalog(database_url)
    await catalog.migrate()
    try:
        yield catalog
    finally:
        await catalog.close()


async def add_evidence(catalog: Catalog, n: int = 1) -> list[str]:
    """Evidence rows (no bytes behind them), each with its analysis job queued."""
    principal, _ = await tokens.create(catalog.engine, role="uploader", name="room")
    ids = []
    for i in range(n):
        record = evidence_db.Evidence(
            id=f"ev_{i:04d}",
            upload_id=f"up_{i:04d}",
            case_id="C-1",
            item="",
            filename="x.ts",
            filetype="",
            size=1,
            blake3="0" * 64,
            sha256=None,
            sm3=None,
            uploader=principal.token_id,
            store="local",
            storage_key=f"originals/{i:04d}",
            metadata={},
            received_at=datetime.now(UTC),
        )
        async with catalog.engine.begin() as conn:
            await _insert(conn, record)
            await queue.enqueue(conn, record.id)
        ids.append(record.id)
    return ids


async def _insert(conn: AsyncConnection, record: evidence_db.Evidence) -> None:
    """The evidence row and the finished upload it came from."""
    now = datetime.now(UTC)
    await conn.execute(
        uploads.insert().values(
            id=record.upload_id,
            state="done",
            length=1,
            offset=1,
            metadata={},
            concat="",
            store="local",
            storage_key=record.storage_key,
            store_handle="",
            uploader=record.uploader,
            created_at=now,
            updated_at=now,
        )
    )
    await evidence_db.insert(conn, record)


async def claim(catalog: Catalog, worker: str, lease: float = 60) -> queue.Job | None:
    return await queue.claim(catalog.engine, worker=worker, lease=lease, dialect=catalog.dialect)


async def test_enqueue_is_idempotent_and_analyses_are_claimed_first(catalog: Catalog) -> None:
    [evidence_id] = await add_evidence(catalog)
    async with catalog.engine.begin() as conn:
        assert await queue.enqueue(conn, evidence_id) is None  # already queued
        assert await queue.enqueue(conn, evidence_id, kind="derive", profile="poster")
    first = await claim(catalog, "w1")
    second = await claim(catalog, "w1")
    assert first is not None and second is not None
    assert (first.kind, second.kind, second.profile) == ("analyse", "derive", "poster")
    assert (first.state, first.attempts, first.worker) == ("running", 1, "w1")
    assert await claim(catalog, "w1") is None
    with pytest.raises(ValueError, match="unknown job kind"):
        async with catalog.engine.begin() as conn:
            await queue.enqueue(conn, evidence_id, kind="nonsense")


async def test_concurrent_claims_never_share_a_job(catalog: Catalog) -> None:
    await add_evidence(catalog, 6)
    claimed = await asyncio.gather(*(claim(catalog, f"w{i}") for i in range(10)))
    ids = [j.id for j in claimed if j is not None]
    assert len(ids) == len(set(ids))
    rest = [await claim(catalog, "late") for _ in range(10)]
    ids += [j.id for j in rest if j is not None]
    assert len(ids) == len(set(ids)) == 6


async def test_expired_lease_passes_the_job_on_and_fences_the_old_worker(catalog: Catalog) -> None:
    await add_evidence(catalog)
    old = await claim(catalog, "old", lease=0.2)
    assert old is not None
    assert await claim(catalog, "new") is None  # the lease still runs
    await asyncio.sleep(0.3)
    new = await claim(catalog, "new")
    assert new is not None and new.id == old.id
    assert new.attempts == 2 and new.error is not None and "stopped sending heartbeats" in new.error
    engine = catalog.engine
    assert not await queue.heartbeat(engine, old.id, worker="old", lease=60, progress=None)
    async with engine.begin() as conn:
        assert not await queue.complete(conn, old.id, worker="old")
    assert not await queue.fail(engine, old.id, worker="old", reason="x")
    assert await queue.heartbeat(engine, new.id, worker="new", lease=60, progress={"percent": 5})
    async with engine.begin() as conn:
        assert await queue.complete(conn, new.id, worker="new")
    done = await queue.get(engine, new.id)
    assert done is not None and (done.state, done.error, done.staged) == ("done", None, None)


async def test_retry_waits_for_its_backoff_and_release_does_not_count(catalog: Catalog) -> None:
    await add_evidence(catalog)
    job = await claim(catalog, "w")
    assert job is not None
    assert await queue.retry_later(catalog.engine, job.id, worker="w", reason="disk", delay=0.3)
    assert await claim(catalog, "w") is None
    await asyncio.sleep(0.35)
    again = await claim(catalog, "w")
    assert again is not None and again.attempts == 2 and again.error == "disk"
    assert await queue.release(catalog.engine, again, worker="w")
    back = await claim(catalog, "w")
    assert back is not None and back.attempts == 2


async def test_requeue_only_restarts_failed_jobs(catalog: Catalog) -> None:
    await add_evidence(catalog)
    job = await claim(catalog, "w")
    assert job is not None
    assert not await queue.requeue(catalog.engine, job.id)  # running
    assert await queue.fail(catalog.engine, job.id, worker="w", reason="bad input")
    assert await queue.requeue(catalog.engine, job.id)
    again = await claim(catalog, "w")
    assert again is not None and again.attempts == 1


async def test_leftovers_of_a_dead_run_are_removed_recorded_ones_kept(
    catalog: Catalog, tmp_path: Path
) -> None:
    [evidence_id] = await add_evidence(catalog)
    store = LocalStore(tmp_path / "store")
    await store.open()
    try:
        job = await claim(catalog, "w")
        assert job is not None
        staged = await store.create("derivatives/ev_0000/mp4-h264.mp4")
        await store.append(staged, offset=0, chunks=chunks_of(b"half an mp4", 4))
        assert await queue.stage(catalog.engine, job.id, worker="w", key=staged.key, handle="")
        orphan = await store.create("derivatives/ev_0000/poster.jpg")
        await store.append(orphan, offset=0, chunks=chunks_of(b"jpeg", 4))
        await store.finish(orphan, size=4)
        kept = await store.create("derivatives/ev_0000/kept.jpg")
        await store.append(kept, offset=0, chunks=chunks_of(b"kept", 4))
        await store.finish(kept, size=4)
        async with catalog.engine.begin() as conn:
            await records.insert_derivative(conn, _derivative(evidence_id, job.id, kept.key))
        current = await queue.get(catalog.engine, job.id)
        assert current is not None
        entries = current.staged or []
        assert entries == [{"key": staged.key, "handle": ""}]
        deleted = await outputs.remove_leftovers(
            store, catalog.engine, staged=entries, keys=[orphan.key, kept.key]
        )
        assert deleted == [orphan.key]
        with pytest.raises(NotFound):
            await store.offset(Target(staged.key))  # the half-written target is gone
        with pytest.raises(NotFound):
            await store.stat(orphan.key)
        assert (await store.stat(kept.key)).size == 4
        assert await outputs.remove_leftovers(store, catalog.engine, staged=entries, keys=[]) == []
    finally:
        await store.close()


def _derivative(evidence_id: str, job_id: str, key: str) -> records.Derivative:
    return records.Derivative(
        id=records.new_derivative_id(),
        evidence_id=evidence_id,
        job_id=job_id,
        profile="poster",
        role="poster",
        angle=0,
        storage_key=key,
        content_type="image/jpeg",
        size=4,
        blake3="1" * 64,
        sha256="2" * 64,
        source_blake3="0" * 64,
        source_sha256=None,
        command=["ffmpeg"],
        ffmpeg_version="5.1",
        details={},
        created_at=datetime.now(UTC),
    )


async def test_listing_filters_by_state_and_evidence(catalog: Catalog) -> None:
    ids = await add_evidence(catalog, 3)
    job = await claim(catalog, "w")
    assert job is not None
    listed = await queue.listing(catalog.engine, state="running")
    assert [j.id for j in listed] == [job.id]
    assert len(await queue.listing(catalog.engine, evidence_id=ids[2])) == 1
    async with catalog.engine.connect() as conn:
        total = (await conn.execute(sa.select(sa.func.count()).select_from(jobs))).scalar()
    assert total == 3
    assert job.run_after <= datetime.now(UTC) + timedelta(seconds=1)
