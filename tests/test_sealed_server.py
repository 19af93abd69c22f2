"""Encryption at rest in the running server (issue 21): a new data folder seals, a killed
upload resumes sealed with the right digest, a purge under S3 Object Lock destroys the data key,
an existing plain store stays readable."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import blake3
import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError

from avidence.server.catalog.schema import data_keys
from avidence.server.keys.datakeys import CatalogKeyRing
from avidence.server.keys.kek import FileKeks, Kek
from avidence.server.retention import purge, records
from avidence.server.stores import configured_store
from avidence.storage.errors import NotFound
from avidence.storage.local import LocalStore
from avidence.storage.s3 import S3Store
from avidence.storage.sealed import SealedStore
from avidence.storage.sealformat import MAGIC, Suite

from support.cluster import Cluster
from support.retention import INTERROGATION, clock, policy_of, retention_api, upload
from support.seaweed import SeaweedServer
from support.servers import Api, make_api, metadata
from support.stores import Sealed, collect, sealed_over

MiB = 1024 * 1024
OCTET = "application/offset+octet-stream"
PATTERN = b"INTERROGATION-ROOM-3-FRAME;"


def _headers(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0", **extra}


async def _drip(data: bytes, *, first: int) -> AsyncIterator[bytes]:
    for i in range(0, first, 256 * 1024):
        yield data[i : min(i + 256 * 1024, first)]
    await asyncio.sleep(30)  # stalls until the server is killed


@pytest.mark.parametrize("storage", ["local", "s3"])
async def test_new_data_folder_seals_and_a_killed_upload_resumes(
    storage: str, server_factory: Any, request: pytest.FixtureRequest
) -> None:
    args: list[str] = []
    env: dict[str, str] = {}
    seaweed: SeaweedServer | None = None
    bucket = ""
    if storage == "s3":
        seaweed = request.getfixturevalue("seaweed")
        bucket = request.getfixturevalue("s3_bucket")
        args = ["--storage", "s3", "--s3-endpoint", seaweed.endpoint, "--s3-bucket", bucket]
        env = {
            "AWS_ACCESS_KEY_ID": seaweed.access_key,
            "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AVIDENCE_S3_PART_SIZE": str(5 * MiB),
        }
    server = server_factory(*args, env=env)  # a new data folder, no encryption setting
    token = server.token()
    data = (PATTERN * (20 * MiB // len(PATTERN) + 1))[: 20 * MiB + 12345]
    async with aiohttp.ClientSession() as session:
        create = _headers(
            token, **{"Upload-Length": str(len(data)), "Upload-Metadata": metadata(case="E-1")}
        )
        async with session.post(f"{server.url}/files/", headers=create) as r:
            assert r.status == 201
            url = server.url + "/files/" + r.headers["Location"].rsplit("/", 1)[1]
        patch_headers = _headers(token, **{"Upload-Offset": "0", "Content-Type": OCTET})
        patch = asyncio.create_task(
            session.patch(url, data=_drip(data, first=9 * MiB + 1000), headers=patch_headers)
        )
        await asyncio.sleep(1.5)
        server.kill()
        with pytest.raises(aiohttp.ClientError):
            await patch
        server.start()
        for _ in range(10):
            async with session.head(url, headers=_headers(token)) as r:
                offset = int(r.headers["Upload-Offset"])
            headers = _headers(token, **{"Upload-Offset": str(offset), "Content-Type": OCTET})
            async with session.patch(url, data=io.BytesIO(data[offset:]), headers=headers) as r:
                if r.status == 204:
                    evidence_id = r.headers["Avidence-Evidence-Id"]
                    break
        else:
            raise AssertionError("the upload did not finish")
        async with session.get(
            f"{server.url}/api/evidence/{evidence_id}", headers=_headers(token)
        ) as r:
            record = await r.json()
    assert record["blake3"] == blake3.blake3(data).hexdigest()
    # What the store holds is sealed: the recording's frames appear nowhere in it.
    if seaweed is None:
        stored = [p.read_bytes() for p in (server.data_dir / "store").rglob("*") if p.is_file()]
    else:
        client = seaweed.client()
        listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
        stored = [client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed]
    assert any(blob.startswith(MAGIC) for blob in stored)
    assert not any(PATTERN in blob for blob in stored)
    assert list((server.data_dir / "keys").glob("kek-*.json"))


async def test_an_existing_plain_store_stays_plain_unless_told(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data" / "store")
    await store.open()
    try:
        async for api in make_api(tmp_path, store):
            evidence_id = await upload(api, b"recorded before encryption existed")
            key = (await records.objects_of(api.catalog.engine, evidence_id))[0].key
            kept = await configured_store(api.settings, api.catalog.engine)
            assert not isinstance(kept, SealedStore)  # auto: the store was plain
            on = dataclasses.replace(api.settings, encryption="on")
            sealed = await configured_store(on, api.catalog.engine)
            assert isinstance(sealed, SealedStore)
            await sealed.open()
            assert await collect(await sealed.read(key)) == b"recorded before encryption existed"
            await sealed.close()
    finally:
        await store.close()


@pytest.fixture()
async def sealed_locked(
    tmp_path: Path, s3_env: SeaweedServer, s3_bucket: str
) -> AsyncIterator[tuple[Api, Sealed]]:
    s3_env.client().create_bucket(Bucket=s3_bucket, ObjectLockEnabledForBucket=True)
    inner = S3Store(endpoint_url=s3_env.endpoint, bucket=s3_bucket, part_size=5 * MiB)
    async with sealed_over(inner, tmp_path) as sealed:
        async for api in retention_api(tmp_path, sealed.store):
            yield api, sealed


async def test_purge_under_object_lock_destroys_the_data_key(
    sealed_locked: tuple[Api, Sealed], s3_env: SeaweedServer, s3_bucket: str
) -> None:
    api, sealed = sealed_locked
    engine, policy, now = api.catalog.engine, policy_of(api), clock()
    data = PATTERN * 10_000
    evidence_id = await upload(api, data, kind="interrogation")
    key = (await records.objects_of(engine, evidence_id))[0].key
    assert await collect(await api.store.read(key, start=5, length=100)) == data[5:105]
    now.advance(days=14)  # past the class's ten days in the catalog; the bucket's lock holds
    assert [
        o.result
        for o in await purge.apply(engine, api.store, policy, actor="t", reason="r", clock=now)
    ] == ["deleted"]
    now.advance(days=40)
    outcomes = await purge.apply(engine, api.store, policy, actor="t", reason="r", clock=now)
    assert [o.result for o in outcomes] == ["purged"]
    # Object Lock keeps the ciphertext; without its data key nobody can read it.
    client = s3_env.client()
    kept = client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    assert kept.startswith(MAGIC) and PATTERN not in kept
    with pytest.raises(ClientError):
        client.delete_object(
            Bucket=s3_bucket,
            Key=key,
            VersionId=client.head_object(Bucket=s3_bucket, Key=key)["VersionId"],
        )
    assert await CatalogKeyRing(sealed.catalog.engine).get(key) is None
    with pytest.raises(NotFound):
        await api.store.read(key)


async def _key_rows(sealed: Sealed) -> int:
    async with sealed.catalog.engine.connect() as conn:
        rows = await conn.execute(sa.select(sa.func.count()).select_from(data_keys))
        return int(rows.scalar_one())


async def _joined_upload(api: Api, pieces: list[bytes], **fields: str) -> str:
    """Partial uploads of `pieces` (creation-with-upload), joined by a final upload; its
    evidence id."""
    urls = []
    for piece in pieces:
        headers = {
            **api.auth(),
            "Upload-Length": str(len(piece)),
            "Upload-Concat": "partial",
            "Content-Type": OCTET,
        }
        response = await api.client.post("/files/", data=io.BytesIO(piece), headers=headers)
        assert response.status == 201, await response.text()
        urls.append("/files/" + response.headers["Location"].rsplit("/", 1)[1])
    headers = {
        **api.auth(),
        "Upload-Concat": "final;" + " ".join(urls),
        "Upload-Metadata": metadata(**{**INTERROGATION, **fields}),
    }
    response = await api.client.post("/files/", headers=headers)
    assert response.status == 201, await response.text()
    return str(response.headers["Avidence-Evidence-Id"])


async def test_a_joined_upload_keeps_its_parts_keys_until_purged_under_object_lock(
    sealed_locked: tuple[Api, Sealed], s3_env: SeaweedServer, s3_bucket: str
) -> None:
    api, sealed = sealed_locked
    engine, policy, now = api.catalog.engine, policy_of(api), clock()
    pieces = [PATTERN * 200_000, PATTERN * 3, b"", PATTERN * 70_001]
    whole = b"".join(pieces)
    evidence_id = await _joined_upload(api, pieces, case="J-1", kind="interrogation")
    record = await (await api.client.get(f"/api/evidence/{evidence_id}", headers=api.auth())).json()
    assert record["blake3"] == blake3.blake3(whole).hexdigest()
    key = (await records.objects_of(engine, evidence_id))[0].key
    ring = CatalogKeyRing(sealed.catalog.engine)
    joined = await ring.get(key)
    assert joined is not None and joined.runs is not None
    assert await _key_rows(sealed) == 1  # the parts are gone with their own records
    edge = len(pieces[0])
    assert await collect(await api.store.read(key, start=edge - 5, length=90)) == (
        whole[edge - 5 : edge + 85]
    )
    now.advance(days=14)
    await purge.apply(engine, api.store, policy, actor="t", reason="r", clock=now)
    now.advance(days=40)
    outcomes = await purge.apply(engine, api.store, policy, actor="t", reason="r", clock=now)
    assert [o.result for o in outcomes] == ["purged"]
    kept = s3_env.client().get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    assert kept.startswith(MAGIC) and PATTERN not in kept
    assert await ring.get(key) is None and await _key_rows(sealed) == 0
    with pytest.raises(NotFound):
        await api.store.read(key)


async def test_unreachable_kek_is_503_with_a_code_and_loses_nothing(tmp_path: Path) -> None:
    async with sealed_over(LocalStore(tmp_path / "store"), tmp_path) as sealed:
        async for api in make_api(tmp_path, sealed.store):
            data = PATTERN * 5000
            headers = {
                **api.auth(),
                "Tus-Resumable": "1.0.0",
                "Upload-Length": str(len(data)),
                "Upload-Metadata": metadata(case="K-1"),
            }
            created = await api.client.post("/files/", headers=headers)
            url = "/files/" + created.headers["Location"].rsplit("/", 1)[1]
            patch = {**api.auth(), "Tus-Resumable": "1.0.0", "Content-Type": OCTET}
            first = await api.client.patch(
                url, data=data[:70_000], headers={**patch, "Upload-Offset": "0"}
            )
            assert first.status == 204
            # The KEK folder is gone (an unmounted volume): this process knows another KEK only.
            keks = sealed.store.kek
            sealed.store.kek = FileKeks(
                tmp_path / "unmounted", Kek("other", Suite.INTERNATIONAL, os.urandom(32))
            )
            refused = await api.client.patch(
                url, data=data[70_000:], headers={**patch, "Upload-Offset": "70000"}
            )
            assert refused.status == 503
            assert (await refused.json())["error"]["code"] == "encryption_keys_unavailable"
            sealed.store.kek = keks  # mounted again: nothing was lost
            head = await api.client.head(url, headers={**api.auth(), "Tus-Resumable": "1.0.0"})
            assert head.headers["Upload-Offset"] == "70000"
            done = await api.client.patch(
                url, data=data[70_000:], headers={**patch, "Upload-Offset": "70000"}
            )
            assert done.status == 204
            evidence_id = done.headers["Avidence-Evidence-Id"]
            record = await (
                await api.client.get(f"/api/evidence/{evidence_id}", headers=api.auth())
            ).json()
            assert record["blake3"] == blake3.blake3(data).hexdigest()


async def test_replicas_sharing_a_kek_folder_store_only_sealed_bytes(
    cluster: Cluster,
) -> None:
    # Three replicas started together on a fresh catalog (support/cluster.py), KEKs in one
    # shared folder: the bucket holds only sealed bytes (test_replicas_viewing streams them
    # through every replica).
    data = PATTERN * (MiB // len(PATTERN))
    async with aiohttp.ClientSession() as session:
        headers = cluster.auth(
            **{
                "Upload-Length": str(len(data)),
                "Upload-Metadata": metadata(case="S-1"),
                "Content-Type": OCTET,
            }
        )
        async with session.post(
            f"{cluster.url}/files/", data=io.BytesIO(data), headers=headers
        ) as r:
            assert r.status == 201, await r.text()
            evidence_id = r.headers["Avidence-Evidence-Id"]
        for replica in cluster.replicas:  # the record from each (bytes: test_replicas_viewing)
            async with session.get(
                f"{replica.url}/api/evidence/{evidence_id}", headers=cluster.auth()
            ) as r:
                assert (await r.json())["size"] == len(data)
    client = cluster.seaweed.client()
    listed = client.list_objects_v2(Bucket=cluster.bucket).get("Contents", [])
    stored = [client.get_object(Bucket=cluster.bucket, Key=o["Key"])["Body"].read() for o in listed]
    assert any(blob.startswith(MAGIC) for blob in stored)
    assert not any(PATTERN in blob for blob in stored)
    keks = Path(cluster.env["AVIDENCE_KEK_DIR"])
    assert await asyncio.to_thread(lambda: list(keks.glob("kek-*.json")))
