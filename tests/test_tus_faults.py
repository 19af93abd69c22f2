"""Faults: a server killed mid-PATCH, replicas sharing PostgreSQL + S3, competing writers,
stalled bodies. After each, every upload is resumable and finishes as the right evidence."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import blake3
import pytest

from avidence.storage.local import LocalStore

from support.seaweed import SeaweedServer
from support.servers import Api, make_api, metadata

MiB = 1024 * 1024
OCTET = "application/offset+octet-stream"


def _headers(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0", **extra}


async def _create(session: aiohttp.ClientSession, base: str, token: str, length: int) -> str:
    async with session.post(
        f"{base}/files/",
        headers=_headers(
            token, **{"Upload-Length": str(length), "Upload-Metadata": metadata(case="F-1")}
        ),
    ) as r:
        assert r.status == 201, await r.text()
        return "/files/" + r.headers["Location"].rsplit("/", 1)[1]


async def _offset(session: aiohttp.ClientSession, url: str, token: str) -> int:
    async with session.head(url, headers=_headers(token)) as r:
        assert r.status == 200, r.status
        return int(r.headers["Upload-Offset"])


async def _patch(
    session: aiohttp.ClientSession, url: str, token: str, data: Any, offset: int
) -> Any:
    headers = _headers(token, **{"Upload-Offset": str(offset), "Content-Type": OCTET})
    if isinstance(data, bytes):
        data = io.BytesIO(data)
    async with session.patch(url, data=data, headers=headers) as r:
        return r.status, dict(r.headers), await r.read()


async def _drip(data: bytes, *, first: int, then_wait: float) -> AsyncIterator[bytes]:
    """Send `first` bytes quickly, then stall."""
    for i in range(0, first, 256 * 1024):
        yield data[i : min(i + 256 * 1024, first)]
    await asyncio.sleep(then_wait)


async def _resume_to_end(
    session: aiohttp.ClientSession, base: str, url: str, token: str, data: bytes
) -> dict[str, str]:
    for _ in range(20):
        offset = await _offset(session, base + url, token)
        status, headers, body = await _patch(
            session, base + url, token, io.BytesIO(data[offset:]), offset
        )
        if status == 204:
            return headers
        assert status in (409, 423), (status, body)
        await asyncio.sleep(0.2)
    raise AssertionError("could not finish the upload")


@pytest.mark.parametrize("storage", ["local", "s3"])
async def test_server_killed_mid_patch_resumes_after_restart(
    storage: str, server_factory: Any, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    args: list[str] = []
    env: dict[str, str] = {}
    if storage == "s3":
        seaweed: SeaweedServer = request.getfixturevalue("seaweed")
        args = [
            "--storage",
            "s3",
            "--s3-endpoint",
            seaweed.endpoint,
            "--s3-bucket",
            request.getfixturevalue("s3_bucket"),
        ]
        env = {
            "AWS_ACCESS_KEY_ID": seaweed.access_key,
            "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AVIDENCE_S3_PART_SIZE": str(5 * MiB),
        }
    server = server_factory(*args, env=env)
    token = server.token()
    data = os.urandom(24 * MiB)
    async with aiohttp.ClientSession() as session:
        url = await _create(session, server.url, token, len(data))
        patch = asyncio.create_task(
            _patch(session, server.url + url, token, _drip(data, first=12 * MiB, then_wait=30), 0)
        )
        await asyncio.sleep(1.5)
        server.kill()
        with pytest.raises(aiohttp.ClientError):
            await patch
        server.start()
        offset = await _offset(session, server.url + url, token)
        assert 0 <= offset <= 12 * MiB
        headers = await _resume_to_end(session, server.url, url, token, data)
        assert headers["Avidence-Upload-State"] == "done"
        async with session.get(
            f"{server.url}/api/evidence/{headers['Avidence-Evidence-Id']}", headers=_headers(token)
        ) as r:
            record = await r.json()
    # The running digest died with the process: the evidence was re-hashed from the store.
    assert record["blake3"] == blake3.blake3(data).hexdigest()


async def test_upload_started_on_one_replica_finishes_on_another(
    server_factory: Any, postgres_url: str, seaweed: SeaweedServer, s3_bucket: str, tmp_path: Path
) -> None:
    args = [
        "--database",
        postgres_url,
        "--storage",
        "s3",
        "--s3-endpoint",
        seaweed.endpoint,
        "--s3-bucket",
        s3_bucket,
    ]
    env = {
        "AWS_ACCESS_KEY_ID": seaweed.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AVIDENCE_S3_PART_SIZE": str(5 * MiB),
    }
    one = server_factory(*args, env=env, data_dir=tmp_path / "one")
    two = server_factory(*args, env=env, data_dir=tmp_path / "two")
    token = one.token()
    data = os.urandom(13 * MiB + 11)
    async with aiohttp.ClientSession() as session:
        url = await _create(session, one.url, token, len(data))
        status, _, _ = await _patch(session, one.url + url, token, data[: 7 * MiB], 0)
        assert status == 204
        assert await _offset(session, two.url + url, token) == 7 * MiB
        # A writer stalled on replica one is taken over by a request to replica two.
        stalled = asyncio.create_task(
            _patch(
                session,
                one.url + url,
                token,
                _drip(data[7 * MiB :], first=MiB, then_wait=60),
                7 * MiB,
            )
        )
        await asyncio.sleep(1.0)
        headers = await _resume_to_end(session, two.url, url, token, data)
        assert headers["Avidence-Upload-State"] == "done"
        try:
            result = await asyncio.wait_for(stalled, 30)
            assert result[0] >= 400
        except aiohttp.ClientError:
            pass  # the stalled request's connection was closed: it was taken over
        async with session.get(
            f"{one.url}/api/evidence/{headers['Avidence-Evidence-Id']}", headers=_headers(token)
        ) as r:
            assert (await r.json())["blake3"] == blake3.blake3(data).hexdigest()


@pytest.fixture()
async def quick_api(tmp_path: Path) -> AsyncIterator[Api]:
    store = LocalStore(tmp_path / "store")
    await store.open()
    async for api in make_api(tmp_path, store, read_timeout=1):
        yield api
    await store.close()


async def test_stalled_body_ends_after_read_timeout_keeping_bytes(quick_api: Api) -> None:
    api = quick_api
    data = os.urandom(2 * MiB)
    headers = {**api.auth(), "Upload-Length": str(len(data)), "Upload-Metadata": metadata(case="S")}
    response = await api.client.post("/files/", headers=headers)
    url = "/files/" + response.headers["Location"].rsplit("/", 1)[1]
    base = str(api.client.make_url(""))
    async with aiohttp.ClientSession() as session:
        status, _, body = await _patch(
            session, base + url, api.uploader, _drip(data, first=MiB, then_wait=4), 0
        )
        assert status == 400 and b"stalled" in body
        assert await _offset(session, base + url, api.uploader) == MiB
        final = await _resume_to_end(session, base, url, api.uploader, data)
    assert final["Avidence-Upload-State"] == "done"


async def test_concurrent_patches_one_writer_wins_and_bytes_stay_right(quick_api: Api) -> None:
    api = quick_api
    data = os.urandom(4 * MiB)
    headers = {**api.auth(), "Upload-Length": str(len(data)), "Upload-Metadata": metadata(case="K")}
    response = await api.client.post("/files/", headers=headers)
    url = "/files/" + response.headers["Location"].rsplit("/", 1)[1]
    base = str(api.client.make_url(""))
    async with aiohttp.ClientSession() as session:
        first = asyncio.create_task(
            _patch(session, base + url, api.uploader, _drip(data, first=MiB, then_wait=0.5), 0)
        )
        results = await asyncio.gather(
            *(_patch(session, base + url, api.uploader, io.BytesIO(data), 0) for _ in range(3)),
            return_exceptions=True,
        )
        try:
            await first
        except aiohttp.ClientError:
            pass
        for result in results:
            assert isinstance(result, aiohttp.ClientError) or result[0] in (204, 409, 423, 400)
        final = await _resume_to_end(session, base, url, api.uploader, data)
        upload = await (
            await api.client.get(
                f"/api/evidence/{final['Avidence-Evidence-Id']}", headers=api.auth()
            )
        ).json()
    assert upload["blake3"] == blake3.blake3(data).hexdigest()


async def test_s3_outage_mid_upload_is_503_and_the_upload_resumes(
    seaweed_private: SeaweedServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from avidence.storage.s3 import S3Store

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed_private.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed_private.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    store = S3Store(endpoint_url=seaweed_private.endpoint, bucket="outage", part_size=5 * MiB)
    await store.open()
    data = os.urandom(11 * MiB)
    try:
        async for api in make_api(tmp_path, store):
            headers = {
                **api.auth(),
                "Upload-Length": str(len(data)),
                "Upload-Metadata": metadata(case="O"),
            }
            response = await api.client.post("/files/", headers=headers)
            url = "/files/" + response.headers["Location"].rsplit("/", 1)[1]
            base = str(api.client.make_url(""))
            async with aiohttp.ClientSession() as session:
                status, _, _ = await _patch(session, base + url, api.uploader, data[: 6 * MiB], 0)
                assert status == 204
                await asyncio.to_thread(seaweed_private.stop)
                status, _, body = await _patch(
                    session, base + url, api.uploader, data[6 * MiB :], 6 * MiB
                )
                assert status == 503, body
                assert b'"unavailable"' in body
                async with session.head(base + url, headers=_headers(api.uploader)) as r:
                    assert r.status == 503
                await asyncio.to_thread(seaweed_private.restart)
                final = await _resume_to_end(session, base, url, api.uploader, data)
            assert final["Avidence-Upload-State"] == "done"
            record = await (
                await api.client.get(
                    f"/api/evidence/{final['Avidence-Evidence-Id']}", headers=api.auth()
                )
            ).json()
            assert record["blake3"] == blake3.blake3(data).hexdigest()
    finally:
        await store.close()
