"""No secret reaches a log line or the audit log during a whole flow; every viewer response,
errors included, carries the security headers."""

from __future__ import annotations

import json
import logging
import re

import pytest
import sqlalchemy as sa

from avidence.server.catalog.schema import audit_log

from support.servers import Api
from support.tickets import issue, start_view, token_of, upload


async def _audit_text(api: Api) -> str:
    async with api.catalog.engine.connect() as conn:
        rows = (await conn.execute(sa.select(audit_log))).mappings().all()
    return json.dumps([dict(row) for row in rows], default=str)


@pytest.mark.parametrize("store", ["local"], indirect=True)
async def test_full_flow_logs_and_audit_hold_no_token_code_or_cookie(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_token = "avd_" + "W" * 43  # a mistyped token is still somebody's near-secret
    evidence_id = await upload(api, b"secret flow " * 1000, case="L-1")
    failed = await api.client.get(
        f"/api/evidence/{evidence_id}", headers={"Authorization": f"Bearer {wrong_token}"}
    )
    assert failed.status == 401
    issued = await issue(api, [evidence_id], access_code=True, download=True)
    token, pin = token_of(issued), issued["access_code"]
    wrong_pin = f"{(int(pin) + 1) % 10**6:06d}"
    assert (await api.client.post(f"/t/{token}/code", data={"code": wrong_pin})).status == 403
    coded = await api.client.post(f"/t/{token}/code", data={"code": pin}, allow_redirects=False)
    assert coded.status == 303
    cookie = coded.headers["Set-Cookie"].split(";", 1)[0].split("=", 1)[1]
    assert (await api.client.get(f"/t/{token}")).status == 200
    grant = await start_view(api, token, evidence_id)
    media = await api.client.get(f"/t/{token}/media/{evidence_id}?view={grant}")
    assert media.status == 200 and len(await media.read()) == 12000
    bad = await api.client.get(f"/t/{token}/media/{evidence_id}?view=forged")
    assert bad.status == 403
    assert (await api.client.get(f"/t/{token}/download/{evidence_id}")).status == 200
    revoked = await api.client.post(
        f"/api/tickets/{issued['ticket']['id']}/revoke",
        headers={"Authorization": f"Bearer {api.admin}"},
    )
    assert revoked.status == 200
    assert (await api.client.get(f"/t/{token}/receipt/{evidence_id}")).status == 410

    logged = caplog.text + "\n".join(
        f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records
    )
    assert "ticket.revoked" in await _audit_text(api)  # the audit log was written
    assert "/t/sha256:" in logged  # paths were logged, with the token hashed
    secrets = {
        "uploader token": api.uploader,
        "admin token": api.admin,
        "mistyped token": wrong_token,
        "link token": token,
        "access cookie": cookie,
    }
    for where, text in (("logs", logged), ("audit log", await _audit_text(api))):
        for name, secret in secrets.items():
            assert secret not in text, f"the {name} is in the {where}"
        # The access code: six digits, found nowhere as a whole word.
        assert not re.search(rf"\b{pin}\b", text), f"the access code is in the {where}"
        assert not re.search(rf"\b{wrong_pin}\b", text), f"a tried code is in the {where}"


REQUIRED = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@pytest.mark.parametrize("store", ["local"], indirect=True)
async def test_every_viewer_response_has_security_headers_and_media_no_store(api: Api) -> None:
    evidence_id = await upload(api, b"\x00\x00\x00\x18ftypmp42" + b"m" * 4000, filename="a.mp4")
    issued = await issue(api, [evidence_id], download=True)
    token = token_of(issued)
    grant = await start_view(api, token, evidence_id)
    cases = [
        ("GET", f"/t/{token}", {}, 200),
        ("GET", f"/t/{token}/media/{evidence_id}?view={grant}", {}, 200),
        ("GET", f"/t/{token}/media/{evidence_id}?view={grant}", {"Range": "bytes=0-99"}, 206),
        ("HEAD", f"/t/{token}/media/{evidence_id}?view={grant}", {}, 200),
        ("GET", f"/t/{token}/media/{evidence_id}?view=nope", {}, 403),
        ("GET", f"/t/{token}/download/{evidence_id}", {}, 200),
        ("GET", f"/t/{token}/receipt/{evidence_id}", {}, 200),
        ("GET", "/t/unknownunknownunknown", {}, 404),
        ("GET", f"/t/{token}/media/ev_missing?view={grant}", {}, 404),
        ("GET", "/viewer/viewer.js", {}, 200),
        ("GET", "/viewer/viewer.css", {}, 200),
        ("GET", "/viewer/nothing.js", {}, 404),
    ]
    for method, path, extra, status in cases:
        response = await api.client.request(method, path, headers=extra)
        await response.read()
        assert response.status == status, (path, response.status)
        headers = response.headers
        for name, value in REQUIRED.items():
            assert headers.get(name) == value, (path, name)
        csp = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp, path
        assert headers["X-Frame-Options"] == "DENY", path
        if path.startswith("/t/"):
            assert headers["Cache-Control"] == "no-store", path
        if "/media/" in path or "/download/" in path:
            # Bytes of evidence run no script, even if a browser sniffed them as a page.
            assert "sandbox" in csp and "default-src 'none'" in csp, path
        if path == f"/t/{token}":
            assert "script-src 'self'" in csp and "object-src 'none'" in csp
