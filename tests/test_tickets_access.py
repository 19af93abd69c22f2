"""Access codes: nothing shown before the code, wrong codes counted, audited and locked out."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from avidence.server.catalog.schema import tickets
from avidence.server.tickets import codes, seals
from avidence.server.tickets.runtime import RUNTIME
from avidence.storage.local import LocalStore

from support.servers import Api, make_api
from support.tickets import audit_entries, issue, upload


async def coded(api: Api) -> tuple[str, str, str, str]:
    """An uploaded clip and a code-protected ticket: (evidence id, token, pin, ticket id)."""
    evidence_id = await upload(api, b"protected bytes" * 100, filename="secret-name.mp4")
    result = await issue(api, [evidence_id], access_code=True, download=True)
    pin = result["access_code"]
    assert isinstance(pin, str) and len(pin) == 6 and pin.isdigit()
    return evidence_id, result["url"].rsplit("/", 1)[1], pin, result["ticket"]["id"]


def wrong(pin: str) -> str:
    return f"{(int(pin) + 1) % 10**6:06d}"


async def test_code_page_401_shows_nothing_of_the_evidence(api: Api) -> None:
    evidence_id, token, _, _ = await coded(api)
    page = await api.client.get(f"/t/{token}", headers={"Accept-Language": "en"})
    assert page.status == 401
    assert page.headers["WWW-Authenticate"].startswith("AccessCode")
    assert page.headers["Cache-Control"] == "no-store"
    text = await page.text()
    assert "Access code" in text and 'name="code"' in text
    assert "secret-name" not in text and evidence_id not in text
    for path in (f"/t/{token}/receipt/{evidence_id}", f"/t/{token}/download/{evidence_id}"):
        response = await api.client.get(path)
        assert response.status == 401, path
        assert b"protected" not in await response.read()
    views = await api.client.post(f"/t/{token}/views", json={"evidence": evidence_id})
    assert views.status == 401


async def test_right_code_sets_a_scoped_cookie_and_opens_everything(api: Api) -> None:
    evidence_id, token, pin, ticket_id = await coded(api)
    response = await api.client.post(f"/t/{token}/code", data={"code": pin}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == f"/t/{token}"
    cookie = response.headers["Set-Cookie"]
    assert f"avd_{ticket_id}=" in cookie and "HttpOnly" in cookie
    assert f"Path=/t/{token}" in cookie and "SameSite=Lax" in cookie
    page = await api.client.get(f"/t/{token}")
    assert page.status == 200 and "secret-name.mp4" in await page.text()
    views = await api.client.post(f"/t/{token}/views", json={"evidence": evidence_id})
    assert views.status == 201
    grant = (await views.json())["view"]
    media = await api.client.get(f"/t/{token}/media/{evidence_id}?view={grant}")
    assert media.status == 200 and await media.read() == b"protected bytes" * 100
    # without the cookie the same grant opens nothing
    api.client.session.cookie_jar.clear()
    media = await api.client.get(f"/t/{token}/media/{evidence_id}?view={grant}")
    assert media.status == 401


async def test_forged_cookie_401(api: Api) -> None:
    evidence_id, token, _, ticket_id = await coded(api)
    far = int(datetime.now(UTC).timestamp()) + 3600
    api.client.session.cookie_jar.update_cookies({f"avd_{ticket_id}": f"{far}.forgedmac"})
    assert (await api.client.get(f"/t/{token}/receipt/{evidence_id}")).status == 401


@pytest.mark.parametrize("expires", ["\u00b2", "9" * 5000])
async def test_cookie_with_an_expiry_int_cannot_read_401_not_500(api: Api, expires: str) -> None:
    # "²".isdigit() is True and int("²") raises; so does int() of more than 4300 digits.
    evidence_id, token, _, ticket_id = await coded(api)
    api.client.session.cookie_jar.update_cookies({f"avd_{ticket_id}": f"{expires}.forgedmac"})
    assert (await api.client.get(f"/t/{token}/receipt/{evidence_id}")).status == 401


async def test_wrong_codes_403_audited_then_locked_for_15_minutes(api: Api) -> None:
    _, token, pin, ticket_id = await coded(api)
    for tries_left in (4, 3, 2, 1):
        response = await api.client.post(
            f"/t/{token}/code", data={"code": wrong(pin)}, headers={"Accept-Language": "en"}
        )
        assert response.status == 403
        assert f"Tries left before a 15-minute lock: {tries_left}" in await response.text()
    fifth = await api.client.post(
        f"/t/{token}/code", data={"code": wrong(pin)}, headers={"Accept-Language": "en"}
    )
    assert fifth.status == 403 and "Too many wrong codes" in await fifth.text()
    # locked: even the right code is refused, and the page says so
    right = await api.client.post(f"/t/{token}/code", data={"code": pin}, allow_redirects=False)
    assert right.status == 403
    page = await api.client.get(f"/t/{token}", headers={"Accept-Language": "en"})
    assert page.status == 401 and "Too many wrong codes" in await page.text()
    failures = await audit_entries(api, "ticket.code_failed")
    assert len(failures) == 6
    assert failures[0].details["tries_left"] == 4 and failures[0].client == "127.0.0.1"
    assert failures[4].details["locked_until"] is not None
    async with api.catalog.engine.connect() as conn:
        until = (
            await conn.execute(
                sa.select(tickets.c.code_locked_until).where(tickets.c.id == ticket_id)
            )
        ).scalar_one()
    assert timedelta(minutes=14) < until - datetime.now(UTC) <= codes.LOCK_FOR
    # the lock ends by itself
    async with api.catalog.engine.begin() as conn:
        await conn.execute(
            tickets.update()
            .where(tickets.c.id == ticket_id)
            .values(code_locked_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    right = await api.client.post(f"/t/{token}/code", data={"code": pin}, allow_redirects=False)
    assert right.status == 303


async def test_malformed_codes_count_as_wrong(api: Api) -> None:
    _, token, pin, _ = await coded(api)
    for code in ("", "12345", "1234567", "abcdef", pin + " x"):
        response = await api.client.post(f"/t/{token}/code", data={"code": code})
        assert response.status == 403, code


def test_code_hash_is_salted_and_verifies() -> None:
    first, second = codes.hash_code("123456"), codes.hash_code("123456")
    assert first != second and "123456" not in first
    assert codes.verify_code(first, "123456") and not codes.verify_code(first, "123457")
    assert not codes.verify_code("garbage", "123456")


@pytest.mark.parametrize("proxied", [False, True])
async def test_access_cookie_is_renewed_past_half_its_life(tmp_path: Path, proxied: bool) -> None:
    """Also behind a trusted proxy, where handlers see a clone of the request."""
    extra = {"trusted_proxies": "127.0.0.1"} if proxied else {}
    server = make_api(tmp_path, LocalStore(tmp_path / "store"), **extra)
    api = await anext(server)
    try:
        evidence_id, token, _, ticket_id = await coded(api)
        secret = api.client.app[RUNTIME].secret
        old = seals.make_cookie(secret, ticket_id, now=time.time() - seals.COOKIE_TTL + 100)
        api.client.session.cookie_jar.update_cookies({f"avd_{ticket_id}": old})
        headers = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
        for path in (f"/t/{token}", f"/t/{token}/receipt/{evidence_id}"):
            response = await api.client.get(path, headers=headers if proxied else {})
            assert response.status == 200, path
            renewed = response.cookies[f"avd_{ticket_id}"]
            assert renewed.value != old and renewed["path"] == f"/t/{token}"
            assert bool(renewed["secure"]) == proxied  # https as the proxy reports it
            api.client.session.cookie_jar.clear()
            api.client.session.cookie_jar.update_cookies({f"avd_{ticket_id}": old})
        if proxied:
            opened = await audit_entries(api, "ticket.opened")
            assert opened[-1].client == "203.0.113.9"
    finally:
        await server.aclose()
