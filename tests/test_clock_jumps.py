"""Clock jumps around expiry (an NTP step, a wrong hardware clock), injected with
`clock.shifted`: uploads expire cleanly and only forward, tickets expire at their time, finished
evidence is untouched, and the audit chain stays valid even with entries out of time order."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from avidence.server import clock
from avidence.server.tus.maintenance import expire_abandoned
from avidence.server.tus.routes import TUS
from avidence.storage.local import LocalStore

from support.integrity import assert_chain_valid, assert_evidence_intact
from support.servers import Api, make_api, metadata
from support.tickets import issue, token_of, upload

MiB = 1024 * 1024
OCTET = "application/offset+octet-stream"
HOUR = timedelta(hours=1)


@pytest.fixture()
async def api1h(tmp_path: Path) -> AsyncIterator[Api]:
    """Uploads expire an hour after their last byte."""
    store = LocalStore(tmp_path / "store")
    await store.open()
    try:
        async for api in make_api(tmp_path, store, upload_expiry=3600):
            yield api
    finally:
        await store.close()


async def _half_upload(api: Api, data: bytes) -> str:
    created = await api.client.post(
        "/files/",
        headers={
            **api.auth(),
            "Upload-Length": str(len(data)),
            "Upload-Metadata": metadata(case="K-1"),
        },
    )
    assert created.status == 201
    url = "/files/" + created.headers["Location"].rsplit("/", 1)[1]
    half = len(data) // 2
    patched = await api.client.patch(
        url,
        data=io.BytesIO(data[:half]),
        headers={**api.auth(), "Upload-Offset": "0", "Content-Type": OCTET},
    )
    assert patched.status == 204
    return url


async def test_clock_forward_past_expiry_expires_upload_cleanly_evidence_intact(
    api1h: Api,
) -> None:
    api = api1h
    finished = b"finished evidence " * 5000
    evidence_id = await upload(api, finished)
    data = bytes(range(256)) * (2 * MiB // 256)
    url = await _half_upload(api, data)
    with clock.shifted(59 * timedelta(minutes=1)):  # just before: still resumable
        head = await api.client.head(url, headers=api.auth())
        assert head.status == 200 and int(head.headers["Upload-Offset"]) == MiB
        assert await expire_abandoned(api.client.app[TUS]) == 0
    with clock.shifted(2 * HOUR):  # NTP stepped forward past the expiry
        head = await api.client.head(url, headers=api.auth())
        assert head.status == 410
        assert await expire_abandoned(api.client.app[TUS]) == 1
        patched = await api.client.patch(
            url,
            data=data[MiB:],
            headers={**api.auth(), "Upload-Offset": str(MiB), "Content-Type": OCTET},
        )
        assert patched.status == 410
    # Back to the right time, the expired upload stays expired: no resurrection.
    head = await api.client.head(url, headers=api.auth())
    assert head.status == 410
    state = await (
        await api.client.get("/api/uploads/" + url.rsplit("/", 1)[1], headers=api.auth())
    ).json()
    assert state["state"] == "expired"
    await assert_evidence_intact(api, evidence_id, finished)
    await assert_chain_valid(api.catalog.engine)


async def test_clock_backward_mid_upload_finishes_and_chain_stays_valid(api1h: Api) -> None:
    api = api1h
    data = bytes(range(256)) * (2 * MiB // 256)
    url = await _half_upload(api, data)
    with clock.shifted(-24 * HOUR):  # the clock falls back a day: entries now predate others
        patched = await api.client.patch(
            url,
            data=io.BytesIO(data[MiB:]),
            headers={**api.auth(), "Upload-Offset": str(MiB), "Content-Type": OCTET},
        )
        assert patched.status == 204, await patched.text()
        evidence_id = patched.headers["Avidence-Evidence-Id"]
        assert await expire_abandoned(api.client.app[TUS]) == 0
    await assert_evidence_intact(api, evidence_id, data)
    receipt = await api.client.get(
        f"/api/evidence/{evidence_id}/receipt", headers=api.auth(api.admin)
    )
    assert receipt.status == 200
    assert await assert_chain_valid(api.catalog.engine) >= 2


async def test_ticket_expiry_follows_the_clock_both_ways(api1h: Api) -> None:
    api = api1h
    evidence_id = await upload(api, b"watch me")
    token = token_of(await issue(api, [evidence_id], expires="1h"))
    with clock.shifted(59 * timedelta(minutes=1)):
        assert (await api.client.get(f"/t/{token}/receipt/{evidence_id}")).status == 200
    with clock.shifted(61 * timedelta(minutes=1)):
        assert (await api.client.get(f"/t/{token}/receipt/{evidence_id}")).status == 410
    with clock.shifted(-HOUR):  # a clock that falls behind gives a live ticket no spurious 410
        assert (await api.client.get(f"/t/{token}/receipt/{evidence_id}")).status == 200
    await assert_chain_valid(api.catalog.engine)
