"""Webhooks cannot reach the server's own network: internal targets refused at registration
(400 `webhook_target_refused`) and again at delivery, where the resolver yields only checked
addresses; redirects are not followed; failures are shown without socket detail. Every
connection made here is to 127.0.0.1."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import ResolveResult
from aiohttp.test_utils import TestServer

from avidence.server.webhooks import dispatch, records, targets

from support.agencies import TwoAgencies, two_agencies
from support.servers import free_port

LOOPBACK = targets.Allow(networks=(ipaddress.ip_network("127.0.0.0/8"),))


@pytest.fixture()
async def plain(tmp_path: Path) -> AsyncIterator[TwoAgencies]:
    """No `webhook_allow`: the defaults an operator starts with."""
    async for value in two_agencies(tmp_path):
        yield value


@pytest.fixture()
async def receiver() -> AsyncIterator[tuple[int, list[str]]]:
    """A loopback receiver: /hook answers 204, /fail 500, /moved redirects to /hook."""
    hits: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        hits.append(request.path)
        if request.path == "/fail":
            return web.Response(status=500)
        if request.path == "/moved":
            return web.Response(status=302, headers={"Location": "/hook"})
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{name}", handle)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    try:
        yield server.port or 0, hits
    finally:
        await server.close()


async def _send(url: str, allow: targets.Allow) -> tuple[int | None, str | None]:
    connector = aiohttp.TCPConnector(resolver=targets.CheckedResolver(allow))
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=5)
    ) as session:
        due = records.Due("dlv_t", url, "whsec_t", "evidence.finished", {"event": "x"}, 0)
        return await dispatch.send(session, due, allow=allow)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://0.0.0.0/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.1/hook",
        "http://100.64.0.1/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fe80::1]/hook",
        "http://224.0.0.1/hook",
        "http://8.8.8.8:22/hook",
        "https://1.1.1.1:6379/hook",
        "http://1.1.1.1:0/hook",  # checked as port 80, stored, and never deliverable
        "http://1.1.1.1:99999/hook",
    ],
)
async def test_internal_targets_refused_400_without_an_allow_list(
    plain: TwoAgencies, url: str
) -> None:
    response = await plain.api.client.post(
        "/api/webhooks", json={"url": url}, headers=plain.police.auth("admin")
    )
    assert response.status == 400, url
    assert (await response.json())["error"]["code"] == "webhook_target_refused"
    listed = await plain.api.client.get("/api/webhooks", headers=plain.police.auth("admin"))
    assert (await listed.json())["webhooks"] == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://127.0.0.1/x", "ftp://a.b/x"])
async def test_non_http_schemes_400(plain: TwoAgencies, url: str) -> None:
    response = await plain.api.client.post(
        "/api/webhooks", json={"url": url}, headers=plain.police.auth("admin")
    )
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "bad_request"


async def test_allow_list_admits_loopback_by_network_or_name(tmp_path: Path) -> None:
    async for world in two_agencies(tmp_path, webhook_allow="127.0.0.1/32,localhost"):
        for url in ("http://127.0.0.1:9/hook", "http://localhost:9/hook"):
            response = await world.api.client.post(
                "/api/webhooks", json={"url": url}, headers=world.police.auth("admin")
            )
            assert response.status == 201, await response.text()
        other = await world.api.client.post(
            "/api/webhooks",
            json={"url": "http://127.0.0.2:9/hook"},
            headers=world.police.auth("admin"),
        )
        assert other.status == 400


async def test_delivery_refuses_loopback_by_literal_and_by_name_without_connecting(
    receiver: tuple[int, list[str]],
) -> None:
    port, hits = receiver
    for url in (f"http://127.0.0.1:{port}/hook", f"http://localhost:{port}/hook"):
        assert await _send(url, targets.Allow()) == (None, "target not allowed")
    assert hits == []
    assert await _send(f"http://localhost:{port}/hook", LOOPBACK) == (204, None)
    assert hits == ["/hook"]


async def test_resolver_yields_nothing_when_any_address_is_internal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A name answering a public and an internal address (or rebinding to an internal one after
    registration) is refused whole; the connector never sees the addresses."""

    async def rebound(
        host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            _result(host, "93.184.215.14", port),
            _result(host, "127.0.0.1", port),
        ]

    resolver = targets.CheckedResolver(targets.Allow())
    monkeypatch.setattr(resolver._inner, "resolve", rebound)
    with pytest.raises(targets.TargetRefused):
        await resolver.resolve("cases.example", 443)
    await resolver.close()


def _result(host: str, address: str, port: int) -> ResolveResult:
    return ResolveResult(
        hostname=host, host=address, port=port, family=socket.AF_INET, proto=0, flags=0
    )


async def test_failures_are_generic_and_redirects_are_not_followed(
    receiver: tuple[int, list[str]],
) -> None:
    port, hits = receiver
    assert await _send(f"http://127.0.0.1:{port}/fail", LOOPBACK) == (500, "answered 500")
    assert await _send(f"http://127.0.0.1:{port}/moved", LOOPBACK) == (302, "answered 302")
    assert hits == ["/fail", "/moved"]  # the redirect's target was not asked
    closed = free_port()
    assert await _send(f"http://127.0.0.1:{closed}/hook", LOOPBACK) == (None, "connection failed")


def test_allow_list_entries_are_validated() -> None:
    allow = targets.parse_allow(("10.2.0.0/16", "192.0.2.7", "Cases.Internal."))
    assert allow.holds(ipaddress.ip_address("10.2.3.4")) and allow.names("cases.internal")
    for bad in ("10.2.0.0/33", "http://x", "a b"):
        with pytest.raises(ValueError, match="webhook_allow"):
            targets.parse_allow((bad,))


def test_errors_stored_before_are_shown_generic() -> None:
    detailed = "ClientConnectorError: Cannot connect to host 10.0.0.5:22 ssl:default [refused]"
    assert records.public_reason(detailed) == "connection failed"
    for kept in (None, "answered 500", "timed out", "target not allowed", "connection failed"):
        assert records.public_reason(kept) == kept
