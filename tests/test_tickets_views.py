"""View sessions: counting, the view limit, one audit entry per session, streams ended by
revocation."""

from __future__ import annotations

import os
import time
from pathlib import Path

import aiohttp
import pytest

from avidence.server.tickets import records
from avidence.server.tickets.runtime import RUNTIME
from avidence.storage.local import LocalStore

from support.agencies import TwoAgencies
from support.servers import Api, make_api
from support.tickets import audit_entries, issue, media_url, start_view, token_of, upload


async def test_revoked_ticket_410_on_the_next_request(api: Api) -> None:
    evidence_id = await upload(api, b"data" * 100)
    result = await issue(api, [evidence_id])
    token, ticket_id = token_of(result), result["ticket"]["id"]
    grant = await start_view(api, token, evidence_id)
    assert (await api.client.get(media_url(token, evidence_id, grant))).status == 200
    response = await api.client.post(
        f"/api/tickets/{ticket_id}/revoke", headers={"Authorization": f"Bearer {api.admin}"}
    )
    assert response.status == 200 and (await response.json())["state"] == "revoked"
    media = await api.client.get(media_url(token, evidence_id, grant))
    assert media.status == 410 and (await media.json())["error"]["code"] == "ticket_revoked"
    page = await api.client.get(f"/t/{token}", headers={"Accept-Language": "en"})
    assert page.status == 410 and "revoked" in await page.text()
    revoked = await audit_entries(api, "ticket.revoked")
    assert revoked[-1].object == f"ticket:{ticket_id}" and "(admin)" in revoked[-1].actor


@pytest.mark.parametrize("how", ["api", "other process"])
async def test_revoke_ends_a_stream_in_flight(
    api: Api, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from avidence.server.tickets import views

    monkeypatch.setattr(views, "CHECK_SECONDS", 0.2)
    size = 40 * 1024 * 1024
    evidence_id = await upload(api, os.urandom(size))
    result = await issue(api, [evidence_id])
    token, ticket_id = token_of(result), result["ticket"]["id"]
    grant = await start_view(api, token, evidence_id)
    received = 0
    async with api.client.get(media_url(token, evidence_id, grant)) as response:
        assert response.status == 200
        received += len(await response.content.readexactly(1024 * 1024))
        if how == "api":
            revoke = await api.client.post(
                f"/api/tickets/{ticket_id}/revoke",
                headers={"Authorization": f"Bearer {api.admin}"},
            )
            assert revoke.status == 200
        else:  # the CLI on another box: only the catalog knows
            assert await records.revoke(api.catalog.engine, ticket_id, by="cli")
        with pytest.raises(aiohttp.ClientPayloadError):
            for _ in range(10_000):  # bounded: 40 MiB in 64 KiB reads is 640
                chunk = await response.content.read(64 * 1024)
                if not chunk:
                    break
                received += len(chunk)
    assert received < size


async def test_view_limit_counts_views_and_410_when_exhausted(api: Api) -> None:
    evidence_id = await upload(api, b"z" * 4096)
    result = await issue(api, [evidence_id], max_views=1)
    token = token_of(result)
    response = await api.client.post(f"/t/{token}/views", json={"evidence": evidence_id})
    assert response.status == 201
    body = await response.json()
    assert body["views_left"] == 0
    again = await api.client.post(f"/t/{token}/views", json={"evidence": evidence_id})
    assert again.status == 410 and (await again.json())["error"]["code"] == "ticket_exhausted"
    page = await api.client.get(f"/t/{token}", headers={"Accept-Language": "en"})
    assert page.status == 410 and "No views left" in await page.text()
    bare = await api.client.get(f"/t/{token}/media/{evidence_id}")
    assert bare.status == 410 and len(await bare.read()) < 200
    # the view that was counted goes on: seeking inside it still works
    inside = await api.client.get(
        media_url(token, evidence_id, body["view"]), headers={"Range": "bytes=10-19"}
    )
    assert inside.status == 206 and await inside.read() == b"z" * 10


async def test_view_session_is_one_audit_entry_with_bytes(api: Api) -> None:
    data = os.urandom(200_000)
    evidence_id = await upload(api, data)
    result = await issue(api, [evidence_id])
    token, ticket_id = token_of(result), result["ticket"]["id"]
    grant = await start_view(api, token, evidence_id, **{"User-Agent": "JudgeBrowser/1.0"})
    url = media_url(token, evidence_id, grant)
    for header in ("bytes=0-999", "bytes=1000-", "bytes=-100"):
        response = await api.client.get(url, headers={"Range": header, "User-Agent": "JB/1"})
        assert response.status == 206
        await response.read()
    tracker = api.client.app[RUNTIME].tracker
    assert await audit_entries(api, "ticket.viewed") == []  # not idle yet

    assert await tracker.sweep(now=time.monotonic() + 61) == 1
    entries = await audit_entries(api, "ticket.viewed")
    assert len(entries) == 1
    entry = entries[0]
    assert entry.object == f"evidence:{evidence_id}" and entry.client == "127.0.0.1"
    details = entry.details
    assert details["ticket"] == ticket_id and details["recipient"] == "Li Ming (judge)"
    assert details["bytes"] == 1000 + (len(data) - 1000) + 100
    assert details["requests"] == 3 and details["user_agent"] == "JudgeBrowser/1.0"
    assert details["first_byte_at"] and details["last_byte_at"]
    views = await (
        await api.client.get(
            f"/api/tickets/{ticket_id}/views", headers={"Authorization": f"Bearer {api.admin}"}
        )
    ).json()
    assert len(views["views"]) == 1
    assert views["views"][0]["bytes_served"] == details["bytes"]
    assert views["views"][0]["requests"] == 3


async def test_open_view_sessions_are_written_at_shutdown(tmp_path: Path) -> None:
    server = make_api(tmp_path, LocalStore(tmp_path / "store"))
    api = await anext(server)
    try:
        evidence_id = await upload(api, b"k" * 10_000)
        result = await issue(api, [evidence_id])
        token = token_of(result)
        grant = await start_view(api, token, evidence_id)
        response = await api.client.get(media_url(token, evidence_id, grant))
        assert len(await response.read()) == 10_000
        engine_entries = await audit_entries(api, "ticket.viewed")
        assert engine_entries == []
        await api.client.close()  # app cleanup: sessions are flushed before the catalog closes
        entries = await audit_entries(api, "ticket.viewed")
        assert len(entries) == 1 and entries[0].details["bytes"] == 10_000
    finally:
        await server.aclose()


async def test_a_view_stands_in_the_timeline_when_it_began_not_when_it_was_written(
    agencies: TwoAgencies,
) -> None:
    """A view flushed after the transfer that followed it still comes first in the custody
    timeline: its entry is stamped when the view began."""
    api, police, court = agencies.api, agencies.police, agencies.court
    token = police.tokens["uploader"]
    evidence_id = await upload(api, b"v" * 5000, case="GA-3", token=token)
    result = await issue(api, [evidence_id], token=police.tokens["handler"])
    link = token_of(result)
    grant = await start_view(api, link, evidence_id)
    assert (await api.client.get(media_url(link, evidence_id, grant))).status == 200
    cases = await api.client.get("/api/cases?number=GA-3", headers=police.auth())
    case_id = (await cases.json())["cases"][0]["id"]
    sent = await api.client.post(
        f"/api/cases/{case_id}/transfers", json={"to": court.name}, headers=police.auth()
    )
    transfer_id = (await sent.json())["id"]
    ack = await api.client.post(f"/api/transfers/{transfer_id}/ack", headers=court.auth())
    assert ack.status == 200, await ack.text()
    tracker = api.client.app[RUNTIME].tracker
    assert await tracker.sweep(now=time.monotonic() + 61) == 1  # written after the hand-over
    timeline = await api.client.get(f"/api/cases/{case_id}/custody", headers=police.auth())
    steps = [s["step"] for s in (await timeline.json())["timeline"]]
    assert steps.index("viewed") < steps.index("transferred") < steps.index("acknowledged")
    viewed = (await audit_entries(api, "ticket.viewed"))[0]
    assert viewed.time < (await audit_entries(api, "transfer.created"))[0].time
    assert viewed.details["started_at"] and viewed.details["last_byte_at"]
