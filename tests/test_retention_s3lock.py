"""Retention on a SeaweedFS bucket with Object Lock: class retention set at finish on originals
and derivatives, deletion refused by the store, legal holds mirrored and blocking purges, purges
after expiry (injected clock), and a locked object's purge reported and backed off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import blake3
import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError

from avidence.server.cases import records as cases_db
from avidence.server.catalog.schema import derivatives, tombstones
from avidence.server.catalog.schema_exchange import DEFAULT_AGENCY
from avidence.server.evidence import records as evidence_db
from avidence.server.retention import holds, purge, records
from avidence.storage import errors as store_errors
from avidence.storage.s3 import S3Store

from support.retention import (
    audit_count,
    clock,
    policy_of,
    retention_api,
    upload,
    wait_for_jobs,
)
from support.seaweed import SeaweedServer
from support.servers import Api


@pytest.fixture()
async def locked(tmp_path: Path, s3_env: SeaweedServer, s3_bucket: str) -> AsyncIterator[Api]:
    s3_env.client().create_bucket(Bucket=s3_bucket, ObjectLockEnabledForBucket=True)
    store = S3Store(endpoint_url=s3_env.endpoint, bucket=s3_bucket, part_size=5 * 1024 * 1024)
    await store.open()
    try:
        async for api in retention_api(tmp_path, store):
            yield api
    finally:
        await store.close()


def s3(api: Api, s3_env: SeaweedServer, s3_bucket: str, call: str, key: str) -> Any:
    method = getattr(s3_env.client(), call)
    return method(Bucket=s3_bucket, Key=key)


async def retention_soon(
    api: Api, s3_env: SeaweedServer, s3_bucket: str, key: str, *, within: float = 10.0
) -> Any:
    """The retention of `key`, waiting for it: the worker locks a job's derivatives right after
    it records the job done, so a test that saw the job done may look a moment too early."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            return s3(api, s3_env, s3_bucket, "get_object_retention", key)["Retention"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code != "ObjectLockConfigurationNotFoundError":
                raise
            if asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(0.1)


async def key_of(api: Api, evidence_id: str) -> str:
    objects = await records.objects_of(api.catalog.engine, evidence_id)
    return objects[0].key


async def test_start_up_reports_object_lock(locked: Api) -> None:
    response = await locked.client.get(
        "/api/admin/retention", headers={"Authorization": f"Bearer {locked.admin}"}
    )
    assert response.status == 200
    body = await response.json()
    assert body["storage"]["object_lock"] is True
    assert {c["name"] for c in body["classes"]} == {"indefinite", "brief", "long", "forever"}


async def test_class_lock_set_at_finish_on_original_and_derivatives(
    tmp_path: Path, s3_env: SeaweedServer, s3_bucket: str, small_ts_clip: Path
) -> None:
    s3_env.client().create_bucket(Bucket=s3_bucket, ObjectLockEnabledForBucket=True)
    store = S3Store(endpoint_url=s3_env.endpoint, bucket=s3_bucket, part_size=5 * 1024 * 1024)
    await store.open()
    try:
        async for api in retention_api(
            tmp_path, store, embedded_worker=True, transcode_profiles="poster"
        ):
            data = await asyncio.to_thread(small_ts_clip.read_bytes)
            evidence_id = await upload(api, data, kind="interrogation", filename="room.ts")
            kept = await records.get(api.catalog.engine, evidence_id)
            assert kept is not None and kept.class_name == "long"
            assert kept.lock_mode == "GOVERNANCE" and kept.locked_until is not None
            key = await key_of(api, evidence_id)
            held = s3(api, s3_env, s3_bucket, "get_object_retention", key)["Retention"]
            assert held["Mode"] == "GOVERNANCE"
            assert abs(held["RetainUntilDate"] - kept.locked_until) < timedelta(minutes=1)
            with pytest.raises(store_errors.ObjectLocked):
                await store.delete(key)

            await wait_for_jobs(api)
            async with api.catalog.engine.connect() as conn:
                copies = list(
                    (
                        await conn.execute(
                            sa.select(derivatives.c.storage_key).where(
                                derivatives.c.evidence_id == evidence_id
                            )
                        )
                    ).scalars()
                )
            assert copies, "the poster job stored no derivative"
            for copy in copies:
                lock = await retention_soon(api, s3_env, s3_bucket, copy)
                assert lock["Mode"] == "GOVERNANCE"
                assert abs(lock["RetainUntilDate"] - held["RetainUntilDate"]) < timedelta(minutes=1)
                with pytest.raises(store_errors.ObjectLocked):
                    await store.delete(copy)
    finally:
        await store.close()


async def test_legal_hold_is_mirrored_and_blocks_purge_until_lifted(
    locked: Api, s3_env: SeaweedServer, s3_bucket: str
) -> None:
    api, engine, policy, now = locked, locked.catalog.engine, policy_of(locked), clock()
    evidence_id = await upload(api, b"brief evidence", case="H-1")
    key = await key_of(api, evidence_id)
    hold = await holds.add(
        engine, api.store, scope="case", target="H-1", reason="court order 7", actor="admin"
    )
    status = s3(api, s3_env, s3_bucket, "get_object_legal_hold", key)["LegalHold"]["Status"]
    assert status == "ON"
    with pytest.raises(store_errors.ObjectLocked):
        await api.store.delete(key)

    now.advance(days=30)  # long past retain-until + grace + recovery
    assert (
        await purge.apply(engine, api.store, policy, actor="t", reason="expired", clock=now) == []
    )
    planned = await purge.plan(engine, policy, clock=now)
    assert [c.evidence_id for c in planned.held] == [evidence_id]
    assert (await records.get(engine, evidence_id)).state == "active"  # type: ignore[union-attr]

    await holds.remove(engine, api.store, hold.id, reason="case closed", actor="admin")
    status = s3(api, s3_env, s3_bucket, "get_object_legal_hold", key)["LegalHold"]["Status"]
    assert status == "OFF"
    outcomes = await purge.apply(engine, api.store, policy, actor="t", reason="expired", clock=now)
    assert [(o.evidence_id, o.result) for o in outcomes] == [(evidence_id, "deleted")]
    assert (await api.store.stat(key)).size == len(b"brief evidence")  # soft: bytes kept

    now.advance(days=3)  # past the two-day recovery period
    outcomes = await purge.apply(engine, api.store, policy, actor="t", reason="expired", clock=now)
    assert [(o.evidence_id, o.result) for o in outcomes] == [(evidence_id, "purged")]
    with pytest.raises(ClientError):
        s3(api, s3_env, s3_bucket, "head_object", key)
    async with engine.connect() as conn:
        stone = (
            await conn.execute(sa.select(tombstones).where(tombstones.c.evidence_id == evidence_id))
        ).one()
    assert stone.purged_at == now.now and stone.class_name == "brief"
    assert stone.deleted_by == "t" and stone.reason == "expired"
    assert await audit_count(api, "evidence.deleted") == 1
    assert await audit_count(api, "evidence.purged") == 1
    assert await audit_count(api, "hold.added") == 1
    assert await audit_count(api, "hold.removed") == 1


async def test_new_evidence_in_a_held_case_is_held_in_the_bucket(
    locked: Api, s3_env: SeaweedServer, s3_bucket: str
) -> None:
    engine = locked.catalog.engine
    # The case is opened before anything is filed under it (a hold on an unknown number is
    # refused as a typing mistake); its first recording arrives after the hold.
    await cases_db.create(engine, agency_id=DEFAULT_AGENCY, number="H-2", title="held early")
    await holds.add(
        engine, locked.store, scope="case", target="H-2", reason="preserve", actor="admin"
    )
    evidence_id = await upload(locked, b"arrives later", case="H-2")
    key = await key_of(locked, evidence_id)
    status = s3(locked, s3_env, s3_bucket, "get_object_legal_hold", key)["LegalHold"]["Status"]
    assert status == "ON"


async def test_purge_of_a_locked_object_is_reported_backed_off_then_blocked(locked: Api) -> None:
    api, engine, policy, now = locked, locked.catalog.engine, policy_of(locked), clock()
    evidence_id = await upload(api, b"still locked", kind="interrogation")
    key = await key_of(api, evidence_id)
    # The catalog's clock runs ahead of the bucket's: the S3 lock (real time) still holds.
    now.advance(days=14)
    outcomes = await purge.apply(engine, api.store, policy, actor="t", reason="r", clock=now)
    assert [o.result for o in outcomes] == ["deleted"]
    results: list[str] = []
    for attempt in range(1, purge.MAX_ATTEMPTS + 1):
        now.advance(days=40)  # past recovery and any back-off
        outcomes = await purge.apply(engine, api.store, policy, actor="t", reason="r", clock=now)
        results += [o.result for o in outcomes]
        again = await purge.apply(engine, api.store, policy, actor="t", reason="r", clock=now)
        assert again == [], "a refused purge is retried before its back-off ends"
        kept = await records.get(engine, evidence_id)
        assert kept is not None and kept.purge_attempts == attempt
        assert kept.purge_error and "retention or legal hold" in kept.purge_error
    assert results == ["locked"] * purge.MAX_ATTEMPTS
    kept = await records.get(engine, evidence_id)
    assert kept is not None and kept.state == "blocked"
    now.advance(days=400)
    planned = await purge.plan(engine, policy, clock=now)
    assert [c.evidence_id for c in planned.blocked] == [evidence_id]
    assert planned.purge == []
    assert await audit_count(api, "purge.blocked") == purge.MAX_ATTEMPTS
    assert (await api.store.stat(key)).size == len(b"still locked")


async def test_another_s3_client_reads_the_original_and_sees_it_locked(
    locked: Api, s3_env: SeaweedServer, s3_bucket: str
) -> None:
    """An independent oracle: the MinIO SDK (not boto3, which the store itself uses) reads what
    avidence wrote byte for byte, sees its retention and legal hold, and cannot delete it."""
    from minio import Minio
    from minio.error import S3Error

    api, engine = locked, locked.catalog.engine
    payload = b"what another S3 client must see " * 1000
    evidence_id = await upload(api, payload, kind="interrogation", case="O-1")
    key = await key_of(api, evidence_id)
    kept = await records.get(engine, evidence_id)
    assert kept is not None and kept.locked_until is not None
    await holds.add(engine, api.store, scope="case", target="O-1", reason="oracle", actor="admin")

    endpoint = s3_env.endpoint.split("://", 1)[1]
    oracle = Minio(
        endpoint, access_key=s3_env.access_key, secret_key=s3_env.secret_key, secure=False
    )

    def look() -> tuple[bytes, Any, bool]:
        response = oracle.get_object(s3_bucket, key)
        try:
            body = response.read()
        finally:
            response.close()
            response.release_conn()
        retention = oracle.get_object_retention(s3_bucket, key)
        return body, retention, oracle.is_object_legal_hold_enabled(s3_bucket, key)

    body, retention, held = await asyncio.to_thread(look)
    record = await evidence_db.get(engine, evidence_id)
    assert record is not None
    assert body == payload and blake3.blake3(body).hexdigest() == record.blake3
    assert retention is not None and retention.mode == "GOVERNANCE"
    assert abs(retention.retain_until_date - kept.locked_until) < timedelta(minutes=1)
    assert held is True
    # Object Lock protects versions: deleting the stored version itself is what must fail.
    version = (await asyncio.to_thread(oracle.stat_object, s3_bucket, key)).version_id
    assert version
    with pytest.raises(S3Error):
        await asyncio.to_thread(oracle.remove_object, s3_bucket, key, version_id=version)
    assert (await api.store.stat(key)).size == len(payload)
