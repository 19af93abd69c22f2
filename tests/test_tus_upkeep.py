"""Upkeep and surroundings of the upload endpoint: expiry, CORS, metrics, real media."""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from avidence.server.catalog import uploads as uploads_db
from avidence.server.catalog.schema import evidence
from avidence.server.catalog.uploads import Upload, UploadState
from avidence.server.tus import finish
from avidence.server.tus.context import Completed
from avidence.server.tus.maintenance import expire_abandoned
from avidence.server.tus.routes import TUS
from avidence.storage import errors as store_errors
from avidence.storage.base import Store, Target

from support.servers import Api, make_api, metadata

OCTET = "application/offset+octet-stream"


@pytest.fixture()
async def cors_api(tmp_path: Path, store: Store) -> AsyncIterator[Api]:
    async for api in make_api(tmp_path, store, cors_origins="https://court.example"):
        yield api


async def _create(api: Api, length: int, **extra: str) -> str:
    headers = {**api.auth(), "Upload-Length": str(length), "Upload-Metadata": metadata(case="U")}
    response = await api.client.post("/files/", headers={**headers, **extra})
    assert response.status == 201
    return "/files/" + response.headers["Location"].rsplit("/", 1)[1]


async def test_abandoned_uploads_expire_and_their_bytes_are_deleted(api: Api) -> None:
    url = await _create(api, 10)
    partial = await _create(api, 2, **{"Upload-Concat": "partial"})
    for target, body in ((url, b"abc"), (partial, b"ok")):
        headers = {**api.auth(), "Upload-Offset": "0", "Content-Type": OCTET}
        assert (await api.client.patch(target, data=body, headers=headers)).status == 204
    ctx = api.client.app[TUS]  # type: ignore[union-attr]
    past = datetime.now(UTC) - timedelta(seconds=1)
    for upload_id in (url.rsplit("/", 1)[1], partial.rsplit("/", 1)[1]):
        await uploads_db.update(api.catalog.engine, upload_id, expires_at=past)
    assert await expire_abandoned(ctx) == 2
    upload = await uploads_db.get(api.catalog.engine, url.rsplit("/", 1)[1])
    assert upload is not None and upload.state == "expired"
    with pytest.raises(store_errors.NotFound):
        await api.store.offset(Target(upload.storage_key, upload.store_handle))
    gone = await uploads_db.get(api.catalog.engine, partial.rsplit("/", 1)[1])
    assert gone is not None
    with pytest.raises(store_errors.NotFound):
        await api.store.stat(gone.storage_key)
    assert (await api.client.head(url, headers=api.auth())).status == 410
    headers = {**api.auth(), "Upload-Offset": "3", "Content-Type": OCTET}
    assert (await api.client.patch(url, data=b"d", headers=headers)).status == 410


async def test_cors_for_configured_origins_only(cors_api: Api) -> None:
    api = cors_api
    allowed = {
        "Origin": "https://court.example",
        "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "Upload-Offset, Tus-Resumable",
    }
    response = await api.client.options("/files/abc", headers=allowed)
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://court.example"
    assert "PATCH" in response.headers["Access-Control-Allow-Methods"]
    assert "Upload-Offset" in response.headers["Access-Control-Allow-Headers"]
    evil = {**allowed, "Origin": "https://evil.example"}
    refused = await api.client.options("/files/", headers=evil)
    assert "Access-Control-Allow-Origin" not in refused.headers
    response = await api.client.post(
        "/files/",
        headers={
            **api.auth(),
            "Origin": "https://court.example",
            "Upload-Length": "1",
            "Upload-Metadata": metadata(case="U"),
        },
    )
    exposed = response.headers["Access-Control-Expose-Headers"]
    assert "Location" in exposed and "Upload-Offset" in exposed and "Upload-Expires" in exposed
    unauthorized = await api.client.post(
        "/files/", headers={"Origin": "https://court.example", "Tus-Resumable": "1.0.0"}
    )
    assert unauthorized.status == 401
    assert unauthorized.headers["Access-Control-Allow-Origin"] == "https://court.example"
    assert unauthorized.headers["Tus-Resumable"] == "1.0.0"


async def test_metrics_count_requests_and_bytes(api: Api) -> None:
    url = await _create(api, 4)
    headers = {**api.auth(), "Upload-Offset": "0", "Content-Type": OCTET}
    assert (await api.client.patch(url, data=b"abcd", headers=headers)).status == 204
    text = await (await api.client.get("/metrics")).text()
    assert f'avidence_upload_bytes_total{{store="{api.store.name}"}} 4.0' in text
    assert 'avidence_uploads_finished_total{outcome="evidence"} 1.0' in text
    assert 'status="201"' in text


async def test_recorder_clip_uploads_in_parallel_parts_as_evidence(api: Api, ts_clip: Path) -> None:
    data = await asyncio.to_thread(ts_clip.read_bytes)
    cut = [0, len(data) // 3, 2 * len(data) // 3, len(data)]

    async def part(start: int, end: int) -> str:
        url = await _create(api, end - start, **{"Upload-Concat": "partial"})
        headers = {**api.auth(), "Upload-Offset": "0", "Content-Type": OCTET}
        response = await api.client.patch(url, data=io.BytesIO(data[start:end]), headers=headers)
        assert response.status == 204
        return url

    urls = await asyncio.gather(*(part(a, b) for a, b in itertools.pairwise(cut)))
    sha = hashlib.sha256(data).hexdigest()
    headers = {
        **api.auth(),
        "Upload-Concat": "final;" + " ".join(urls),
        "Upload-Metadata": metadata(
            case="2026-刑-0042", filename=ts_clip.name, sha256=sha, filetype="video/mp2t"
        ),
    }
    response = await api.client.post("/files/", headers=headers)
    assert response.status == 201
    record = await (
        await api.client.get(
            f"/api/evidence/{response.headers['Avidence-Evidence-Id']}", headers=api.auth()
        )
    ).json()
    assert record["sha256"] == sha and record["size"] == len(data)
    assert record["filetype"] == "video/mp2t"


async def test_an_upload_accepted_twice_is_one_evidence_counted_once(api: Api) -> None:
    """Two verifiers of one upload (a restarted process, another replica) both reach the
    completion hook: the second makes nothing, answers the first one's evidence id, and this
    process's finished-uploads metric does not count evidence another process made."""
    ctx = api.client.app[TUS]
    real = ctx.complete

    async def crash(upload: Upload, digests: dict[str, str]) -> Completed:
        raise RuntimeError("injected: the process died before accepting")

    ctx.complete = crash
    url = await _create(api, 4)
    headers = {**api.auth(), "Upload-Offset": "0", "Content-Type": OCTET}
    await api.client.patch(url, data=b"abcd", headers=headers)
    upload_id = url.rsplit("/", 1)[1]
    stale = await uploads_db.get(api.catalog.engine, upload_id)
    assert stale is not None and stale.state == UploadState.VERIFYING

    answers: list[Completed] = []

    async def replica_first(upload: Upload, digests: dict[str, str]) -> Completed:
        answers.append(await real(upload, digests))  # another replica accepts first
        answers.append(await real(upload, digests))
        return answers[-1]

    ctx.complete = replica_first
    await finish.verify(ctx, upload_id)
    first, second = answers
    assert first.created and not second.created
    assert second.evidence_id == first.evidence_id
    async with api.catalog.engine.connect() as conn:
        count = sa.select(sa.func.count()).select_from(evidence)
        made = await conn.execute(count.where(evidence.c.upload_id == upload_id))
        assert made.scalar() == 1
    text = await (await api.client.get("/metrics")).text()
    assert 'avidence_uploads_finished_total{outcome="evidence"} 1.0' not in text
