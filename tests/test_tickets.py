"""Access tickets over HTTP: issuing, the viewer page, scope, expiry, downloads, receipts."""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from aiohttp import web

from avidence.server import config
from avidence.server.catalog.schema import tickets
from avidence.server.state import SETTINGS
from avidence.server.tickets import issue_ticket, records
from avidence.server.tickets.runtime import RUNTIME, frame_ancestors

from support.servers import Api
from support.tickets import (
    audit_entries,
    issue,
    media_url,
    start_view,
    token_of,
    upload,
    wait_for_entries,
)


async def expire(api: Api, ticket_id: str) -> None:
    async with api.catalog.engine.begin() as conn:
        await conn.execute(
            tickets.update()
            .where(tickets.c.id == ticket_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )


async def test_issue_201_returns_link_and_stores_only_the_hash(api: Api) -> None:
    evidence_id = await upload(api, b"x" * 1000)
    result = await issue(api, [evidence_id], expires="2d", note="for the hearing")
    token = token_of(result)
    assert result["url"] == f"http://127.0.0.1:8080/t/{token}"
    assert len(token) >= 32 and records.TOKEN_PATTERN.match(token)
    assert result["access_code"] is None
    ticket = result["ticket"]
    assert ticket["evidence"] == [evidence_id] and ticket["permissions"] == ["view"]
    assert ticket["state"] == "active" and ticket["issuer"].endswith("(admin)")
    async with api.catalog.engine.connect() as conn:
        rows = (await conn.execute(sa.select(tickets))).all()
    assert token not in str([tuple(r) for r in rows])
    assert rows[0].token_hash == hashlib.sha256(token.encode()).hexdigest()
    issued = await audit_entries(api, "ticket.issued")
    assert issued[-1].object == f"ticket:{ticket['id']}"
    assert issued[-1].details["recipient"] == "Li Ming (judge)"
    assert issued[-1].case_id == "C-1"


async def test_issue_ticket_function_is_what_make_run_can_call(api: Api) -> None:
    evidence_id = await upload(api, b"abc")
    ticket, token, pin = await issue_ticket(
        api.catalog.engine,
        evidence_ids=[evidence_id],
        recipient="Demo (judge)",
        expires=timedelta(hours=1),
        access_code=True,
        issuer="make run",
    )
    assert ticket.issuer == "make run" and ticket.has_access_code
    assert pin is not None and len(pin) == 6 and pin.isdigit()
    assert (await records.by_token(api.catalog.engine, token)) == ticket
    with pytest.raises(ValueError, match="unknown evidence"):
        await issue_ticket(
            api.catalog.engine,
            evidence_ids=["ev_nope"],
            recipient="x",
            expires=timedelta(hours=1),
            issuer="t",
        )


async def test_uploader_issues_only_for_its_own_evidence(api: Api) -> None:
    mine = await upload(api, b"mine", case="C-7")
    theirs = await upload(api, b"theirs", case="C-7", token=api.other_uploader)
    result = await issue(api, [mine], token=api.uploader)
    assert result["ticket"]["evidence"] == [mine]
    auth = {"Authorization": f"Bearer {api.uploader}"}
    body = {"evidence": [theirs], "recipient": "X (judge)"}
    response = await api.client.post("/api/tickets", json=body, headers=auth)
    assert response.status == 404
    response = await api.client.post(
        "/api/tickets", json={"case": "C-7", "recipient": "X (judge)"}, headers=auth
    )
    assert response.status == 403
    response = await api.client.post("/api/tickets", json=body)
    assert response.status == 401
    # the other uploader does not see or read the first one's ticket
    other = {"Authorization": f"Bearer {api.other_uploader}"}
    listing = await (await api.client.get("/api/tickets", headers=other)).json()
    assert listing["tickets"] == []
    ticket_id = result["ticket"]["id"]
    assert (await api.client.get(f"/api/tickets/{ticket_id}/views", headers=other)).status == 404
    assert (await api.client.get(f"/api/tickets/{ticket_id}/views", headers=auth)).status == 200


async def test_issue_400_for_bad_fields(api: Api) -> None:
    evidence_id = await upload(api, b"abc")
    auth = {"Authorization": f"Bearer {api.admin}"}
    for body in (
        {"evidence": [evidence_id], "recipient": ""},
        {"evidence": [evidence_id], "recipient": "A (judge)", "expires": "soon"},
        {"evidence": [evidence_id], "recipient": "A (judge)", "expires": "\u0663d"},  # Arabic 3
        {"evidence": [evidence_id], "recipient": "A (judge)", "expires": "999999999w"},  # was 500
        {"evidence": [evidence_id], "recipient": "A (judge)", "expires": "999999999d"},
        {"evidence": [evidence_id], "recipient": "A (judge)", "max_views": 0},
        {"evidence": [evidence_id], "recipient": "A (judge)", "download": "yes"},
        {"evidence": [], "recipient": "A (judge)"},
        {"evidence": [evidence_id], "case": "C-1", "recipient": "A (judge)"},
    ):
        response = await api.client.post("/api/tickets", json=body, headers=auth)
        assert response.status == 400, body


async def test_case_ticket_covers_the_case_as_it_was_at_issue(api: Api) -> None:
    first = await upload(api, b"one", case="C-9", filename="one.mp4")
    second = await upload(api, b"two", case="C-9", filename="two.mp4")
    response = await api.client.post(
        "/api/tickets",
        json={"case": "C-9", "recipient": "Wang (prosecutor)"},
        headers={"Authorization": f"Bearer {api.admin}"},
    )
    assert response.status == 201
    result = await response.json()
    await upload(api, b"three", case="C-9")
    assert result["ticket"]["evidence"] == [first, second]
    assert result["ticket"]["case"] == "C-9"


async def test_viewer_page_200_with_facts_and_security_headers(api: Api) -> None:
    evidence_id = await upload(api, b"v" * 5000, filename="审讯录像.mp4", case="C-5", item="3")
    token = token_of(await issue(api, [evidence_id]))
    response = await api.client.get(f"/t/{token}", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert response.status == 200
    page = await response.text()
    record = await (
        await api.client.get(f"/api/evidence/{evidence_id}", headers=api.auth(api.admin))
    ).json()
    for fact in ("审讯录像.mp4", "C-5", record["blake3"], record["sha256"], "room 1", "Li Ming"):
        assert fact in page
    assert "Evidence viewer" in page and "recorded" in page
    assert f"/t/{token}/receipt/{evidence_id}" in page
    assert "/download/" not in page  # view-only ticket
    assert "<script>" not in page and "style=" not in page
    headers = response.headers
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "media-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"
    opened = await audit_entries(api, "ticket.opened")
    assert opened[-1].client == "127.0.0.1" and opened[-1].case_id is None


async def test_viewer_language_follows_accept_language_and_switch(api: Api) -> None:
    evidence_id = await upload(api, b"abc")
    token = token_of(await issue(api, [evidence_id]))
    zh = await (await api.client.get(f"/t/{token}", headers={"Accept-Language": "zh-CN"})).text()
    assert "证据查看" in zh and 'lang="zh-CN"' in zh
    switched = await api.client.get(f"/t/{token}?lang=en", headers={"Accept-Language": "zh-CN"})
    assert "Evidence viewer" in await switched.text()
    assert switched.cookies["avd_lang"].value == "en"
    again = await api.client.get(f"/t/{token}", headers={"Accept-Language": "zh-CN"})
    assert "Evidence viewer" in await again.text()  # the choice is remembered


async def test_unknown_and_forged_tokens_404_and_nothing_streamed(api: Api) -> None:
    evidence_id = await upload(api, b"secret bytes")
    real = token_of(await issue(api, [evidence_id]))
    forged = secrets.token_urlsafe(24)
    for token in (forged, real[:-1] + ("A" if real[-1] != "A" else "B"), "short", "with.dot"):
        page = await api.client.get(f"/t/{token}", headers={"Accept-Language": "en"})
        assert page.status == 404, token
        text = await page.text()
        assert "Link not found" in text and "Traceback" not in text
        media = await api.client.get(f"/t/{token}/media/{evidence_id}?view=vw_x.1.y")
        assert media.status == 404
        assert b"secret bytes" not in await media.read()


async def test_expired_ticket_410_everywhere(api: Api) -> None:
    evidence_id = await upload(api, b"data" * 100)
    result = await issue(api, [evidence_id])
    token = token_of(result)
    grant = await start_view(api, token, evidence_id)
    await expire(api, result["ticket"]["id"])
    page = await api.client.get(f"/t/{token}", headers={"Accept-Language": "en"})
    assert page.status == 410 and "expired" in await page.text()
    media = await api.client.get(media_url(token, evidence_id, grant))
    assert media.status == 410 and (await media.json())["error"]["code"] == "ticket_expired"
    views = await api.client.post(f"/t/{token}/views", json={"evidence": evidence_id})
    assert views.status == 410


async def test_wrong_scope_evidence_404(api: Api) -> None:
    inside = await upload(api, b"inside")
    outside = await upload(api, b"outside")
    result = await issue(api, [inside], download=True)
    token = token_of(result)
    grant = await start_view(api, token, inside)
    for path in (
        media_url(token, outside, grant),
        f"/t/{token}/download/{outside}",
        f"/t/{token}/receipt/{outside}",
    ):
        response = await api.client.get(path)
        assert response.status == 404, path
        assert b"outside" not in await response.read()
    views = await api.client.post(f"/t/{token}/views", json={"evidence": outside})
    assert views.status == 404


async def test_media_403_without_a_genuine_view_grant(api: Api) -> None:
    first = await upload(api, b"first")
    second = await upload(api, b"second")
    token = token_of(await issue(api, [first, second]))
    grant = await start_view(api, token, first)
    view_id, issued, mac = grant.split(".")
    odd = ("\u00b2", "\u0661" * 10, "9" * 5000)  # isdigit() is True for each; int() fails or parses
    for bad in (
        "",
        "nonsense",
        f"{view_id}.{issued}.{mac[:-2]}xx",
        f"{view_id}.1.{mac}",
        *(f"{view_id}.{digits}.{mac}" for digits in odd),
    ):
        response = await api.client.get(f"/t/{token}/media/{first}?view={bad}")
        assert response.status == 403, bad
    # a grant is bound to its evidence
    response = await api.client.get(media_url(token, second, grant))
    assert response.status == 403
    not_json = await api.client.post(f"/t/{token}/views", data="evidence=" + first)
    assert not_json.status == 415


async def test_download_only_when_allowed_and_audited(api: Api) -> None:
    data = os.urandom(100_000)
    evidence_id = await upload(api, data, filename="录像 1.mp4")
    view_only = token_of(await issue(api, [evidence_id]))
    assert (await api.client.get(f"/t/{view_only}/download/{evidence_id}")).status == 403
    allowed = token_of(await issue(api, [evidence_id], download=True))
    page = await (await api.client.get(f"/t/{allowed}")).text()
    assert f"/t/{allowed}/download/{evidence_id}" in page
    response = await api.client.get(f"/t/{allowed}/download/{evidence_id}")
    assert response.status == 200 and await response.read() == data
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert "%E5%BD%95%E5%83%8F%201.mp4" in response.headers["Content-Disposition"]
    downloaded = await wait_for_entries(api, "ticket.downloaded", 1)
    assert len(downloaded) == 1
    assert downloaded[0].details["bytes"] == len(data) and downloaded[0].details["complete"]
    assert downloaded[0].object == f"evidence:{evidence_id}"


async def test_receipt_link_serves_the_signed_receipt(api: Api) -> None:
    evidence_id = await upload(api, b"receipt me")
    token = token_of(await issue(api, [evidence_id]))
    response = await api.client.get(f"/t/{token}/receipt/{evidence_id}")
    assert response.status == 200
    document = await response.json()
    assert document["receipt"]["evidence_id"] == evidence_id
    assert document["signature"] and document["key_id"]


async def test_rate_limit_429_per_ticket(api: Api) -> None:
    from avidence.server.limits import RateLimiter

    evidence_id = await upload(api, b"abc")
    token = token_of(await issue(api, [evidence_id]))
    api.client.app[RUNTIME].limiter = RateLimiter(rate=0.01, burst=3)
    statuses = [(await api.client.get(f"/t/{token}")).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = await api.client.get(f"/t/{token}/receipt/{evidence_id}")
    assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1


def test_frame_ancestors_setting_is_checked() -> None:
    app = web.Application()
    base = config.load(env={})
    app[SETTINGS] = base
    assert frame_ancestors(app) == "'none'"
    app = web.Application()
    app[SETTINGS] = replace(base, extra={"viewer": {"frame_ancestors": "'self' https://c.example"}})
    assert frame_ancestors(app) == "'self' https://c.example"
    app = web.Application()
    app[SETTINGS] = replace(base, extra={"viewer": {"frame_ancestors": "*; script-src *"}})
    with pytest.raises(ValueError, match="frame_ancestors"):
        frame_ancestors(app)


async def test_error_log_lines_carry_no_link_token(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    evidence_id = await upload(api, b"abc")
    token = token_of(await issue(api, [evidence_id]))
    with caplog.at_level("INFO"):
        response = await api.client.get(f"/t/{token}/media/{evidence_id}?view=bad")
        assert response.status == 403
    assert token not in caplog.text
    assert "route=/t/{token}/media/{evidence_id}" in caplog.text  # the template, not the path
