"""Originals are write-once: never overwritten through the API, and Object Lock on S3."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from avidence.storage import errors as store_errors
from avidence.storage.s3 import S3Store

from support.seaweed import SeaweedServer
from support.servers import Api, make_api, metadata

OCTET = "application/offset+octet-stream"


@pytest.fixture()
async def locked_api(tmp_path: Path, s3_env: SeaweedServer, s3_bucket: str) -> AsyncIterator[Api]:
    s3_env.client().create_bucket(Bucket=s3_bucket, ObjectLockEnabledForBucket=True)
    store = S3Store(endpoint_url=s3_env.endpoint, bucket=s3_bucket, part_size=5 * 1024 * 1024)
    await store.open()
    try:
        async for api in make_api(
            tmp_path, store, object_lock_mode="governance", object_lock_days=1
        ):
            yield api
    finally:
        await store.close()


async def test_finished_original_gets_object_lock_retention(locked_api: Api) -> None:
    api = locked_api
    headers = {**api.auth(), "Upload-Length": "5", "Upload-Metadata": metadata(case="L-1")}
    response = await api.client.post("/files/", headers=headers)
    url = "/files/" + response.headers["Location"].rsplit("/", 1)[1]
    patch = {**api.auth(), "Upload-Offset": "0", "Content-Type": OCTET}
    response = await api.client.patch(url, data=b"proof", headers=patch)
    assert response.status == 204
    record = await (
        await api.client.get(
            f"/api/evidence/{response.headers['Avidence-Evidence-Id']}", headers=api.auth()
        )
    ).json()
    with pytest.raises(store_errors.ObjectLocked):
        await api.store.delete(record["storage_key"])
    stream = await api.store.read(record["storage_key"])
    assert b"".join([chunk async for chunk in stream]) == b"proof"


async def test_no_api_can_overwrite_an_original(api: Api) -> None:
    headers = {**api.auth(), "Upload-Length": "2", "Upload-Metadata": metadata(case="W")}
    response = await api.client.post("/files/", headers=headers)
    url = "/files/" + response.headers["Location"].rsplit("/", 1)[1]
    patch = {**api.auth(), "Upload-Offset": "0", "Content-Type": OCTET}
    assert (await api.client.patch(url, data=b"ab", headers=patch)).status == 204
    again = await api.client.patch(url, data=b"zz", headers=patch)
    assert again.status == 409
    assert (await api.client.delete(url, headers=api.auth())).status == 403
    probe = await api.client.head(url, headers=api.auth())
    assert probe.headers["Avidence-Upload-State"] == "done"
