"""Webhooks: signed deliveries to a receiver on 127.0.0.1, retries with backoff while it is
down, deliveries listed and replayed, hostile registrations refused."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from avidence.server.audit import unit
from avidence.server.audit.events import TicketViewed
from avidence.server.webhooks import signature

from support.agencies import Agency, TwoAgencies, two_agencies
from support.servers import free_port
from support.tickets import issue, upload


@dataclass
class Receiver:
    """A case system's webhook endpoint: records every request, fails the first `fail` ones."""

    fail: int = 0
    got: list[tuple[float, dict[str, str], bytes]] = field(default_factory=list)
    server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((time.monotonic(), dict(request.headers), await request.read()))
        if len(self.got) <= self.fail:
            return web.Response(status=503)
        return web.Response(status=204)

    async def start(self, port: int | None = None) -> str:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.server = TestServer(app, host="127.0.0.1", port=port or free_port())
        await self.server.start_server()
        return str(self.server.make_url("/hook"))

    def events(self) -> list[str]:
        return [json.loads(body)["event"] for _, _, body in self.got]


def independent_check(secret: str, body: bytes, header: str) -> bool:
    """The receiver's side, written from the docs, not with the server's code."""
    parts = dict(p.split("=", 1) for p in header.split(","))
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256)
    return (
        hmac.compare_digest(expected.hexdigest(), parts["v1"])
        and abs(time.time() - int(parts["t"])) < 300
    )


@pytest.fixture()
async def receivers() -> AsyncIterator[list[Receiver]]:
    """Receivers a test starts (append them); all are closed at its end."""
    started: list[Receiver] = []
    yield started
    for rx in started:
        if rx.server is not None:
            await rx.server.close()


# The receivers listen on loopback, which webhooks may reach only when the operator allows it
# (test_webhook_targets.py shows it refused without).
LOOPBACK = "127.0.0.1/32"


@pytest.fixture()
async def fast(tmp_path: Path) -> AsyncIterator[TwoAgencies]:
    async for value in two_agencies(
        tmp_path, webhook_backoff=1, webhook_attempts=3, webhook_allow=LOOPBACK
    ):
        yield value


@pytest.fixture()
async def agencies(tmp_path: Path) -> AsyncIterator[TwoAgencies]:
    async for value in two_agencies(tmp_path, webhook_allow=LOOPBACK):
        yield value


async def register(agencies: TwoAgencies, who: Agency, url: str, **body: Any) -> dict[str, Any]:
    response = await agencies.api.client.post(
        "/api/webhooks", json={"url": url, **body}, headers=who.auth("admin")
    )
    assert response.status == 201, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def wait_for(predicate: Any, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_signed_deliveries_reach_each_agency_for_its_events(
    fast: TwoAgencies, receivers: list[Receiver]
) -> None:
    api, police, court = fast.api, fast.police, fast.court
    police_rx, court_rx = Receiver(), Receiver()
    receivers += [police_rx, court_rx]
    police_hook = await register(fast, police, await police_rx.start())
    court_hook = await register(
        fast, court, await court_rx.start(), events=["transfer.created", "transfer.acknowledged"]
    )
    evidence_id = await upload(api, b"clip", case="GA-1", token=police.tokens["uploader"])
    await wait_for(lambda: police_rx.events() == ["evidence.finished"])
    cases = await (await api.client.get("/api/cases", headers=police.auth())).json()
    sent = await api.client.post(
        f"/api/cases/{cases['cases'][0]['id']}/transfers",
        json={"to": court.name},
        headers=police.auth(),
    )
    transfer_id = (await sent.json())["id"]
    ack = await api.client.post(f"/api/transfers/{transfer_id}/ack", headers=court.auth())
    assert ack.status == 200
    expected = ["transfer.created", "transfer.acknowledged"]
    await wait_for(lambda: court_rx.events() == expected and len(police_rx.got) == 3)
    assert police_rx.events() == ["evidence.finished", *expected]

    for rx, hook in ((police_rx, police_hook), (court_rx, court_hook)):
        for _, headers, body in rx.got:
            header = headers[signature.HEADER]
            assert independent_check(hook["secret"], body, header)
            assert signature.verify(hook["secret"], body, header)
            assert not signature.verify(hook["secret"], body + b" ", header)
            assert not signature.verify("whsec_other", body, header)
            assert headers["Avidence-Event"] == json.loads(body)["event"]
    finished = json.loads(police_rx.got[0][2])
    assert finished["data"]["evidence_id"] == evidence_id and finished["agency"] == police.id
    assert json.loads(court_rx.got[0][2])["data"]["transfer_id"] == transfer_id

    listed = await api.client.get(
        f"/api/webhooks/{police_hook['webhook']['id']}/deliveries", headers=police.auth("admin")
    )
    states = {d["event"]: d["state"] for d in (await listed.json())["deliveries"]}
    assert states == dict.fromkeys(["evidence.finished", *expected], "delivered")


async def test_a_receiver_that_fails_gets_retries_with_backoff(
    fast: TwoAgencies, receivers: list[Receiver]
) -> None:
    rx = Receiver(fail=2)
    receivers.append(rx)
    await register(fast, fast.police, await rx.start(), events=["evidence.finished"])
    await upload(fast.api, b"clip", token=fast.police.tokens["uploader"])
    await wait_for(lambda: len(rx.got) == 3)
    first, second, third = (t for t, _, _ in rx.got)
    assert second - first >= 0.9 and third - second >= 1.9  # backoff 1 s, then 2 s
    ids = {h["Avidence-Delivery"] for _, h, _ in rx.got}
    assert len(ids) == 1  # the same delivery each time, re-signed
    assert len({json.loads(b)["id"] for _, _, b in rx.got}) == 1


async def test_a_receiver_that_is_down_fails_then_replay_delivers(
    fast: TwoAgencies, receivers: list[Receiver]
) -> None:
    api, police = fast.api, fast.police
    port = free_port()
    hook = await register(fast, police, f"http://127.0.0.1:{port}/hook")
    await upload(api, b"clip", token=police.tokens["uploader"])
    url = f"/api/webhooks/{hook['webhook']['id']}/deliveries"

    async def deliveries() -> list[dict[str, Any]]:
        response = await api.client.get(url, headers=police.auth("admin"))
        found: list[dict[str, Any]] = (await response.json())["deliveries"]
        return found

    deadline = time.monotonic() + 20
    while (found := await deliveries())[0]["state"] != "failed":
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.2)
    assert found[0]["attempts"] == 3
    assert found[0]["last_error"] == "connection failed"  # no socket detail for the caller

    rx = Receiver()
    receivers.append(rx)
    await rx.start(port)
    replayed = await api.client.post(f"{url}/{found[0]['id']}/replay", headers=police.auth("admin"))
    assert replayed.status == 202
    await wait_for(lambda: len(rx.got) == 1)
    assert independent_check(hook["secret"], rx.got[0][2], rx.got[0][1][signature.HEADER])
    unknown = await api.client.post(f"{url}/dlv_nope/replay", headers=police.auth("admin"))
    assert unknown.status == 404


async def test_ticket_views_are_told_to_the_issuing_agency(
    fast: TwoAgencies, receivers: list[Receiver]
) -> None:
    rx = Receiver()
    receivers.append(rx)
    await register(fast, fast.police, await rx.start(), events=["ticket.viewed"])
    evidence_id = await upload(fast.api, b"clip", token=fast.police.tokens["uploader"])
    issued = await issue(fast.api, [evidence_id], token=fast.police.tokens["handler"])
    await unit.record(
        fast.api.catalog.engine,
        TicketViewed(
            actor="ticket",
            object=f"evidence:{evidence_id}",
            ticket=issued["ticket"]["id"],
            view="vw_1",
            recipient="judge",
            user_agent="test",
            started_at="2026-12-06T00:00:00Z",
            first_byte_at=None,
            last_byte_at=None,
            bytes=10,
            requests=1,
        ),
    )
    await wait_for(lambda: rx.events() == ["ticket.viewed"])
    assert json.loads(rx.got[0][2])["data"]["ticket"] == issued["ticket"]["id"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"url": "ftp://127.0.0.1/x"}, "http(s) URL"),
        ({"url": "http:///nohost"}, "with a host"),
        ({"url": "http://user:pw@127.0.0.1/x"}, "no credentials"),
        ({"url": 5}, "url"),
        ({"url": "http://127.0.0.1/x", "events": ["evidence.deleted"]}, "unknown evidence.deleted"),
        ({"url": "http://127.0.0.1/x", "events": []}, "non-empty"),
    ],
)
async def test_bad_webhook_registrations_are_400(
    agencies: TwoAgencies, body: dict[str, Any], fragment: str
) -> None:
    response = await agencies.api.client.post(
        "/api/webhooks", json=body, headers=agencies.police.auth("admin")
    )
    assert response.status == 400
    assert fragment in (await response.json())["error"]["message"]


async def test_webhooks_are_the_agency_admins_own(agencies: TwoAgencies) -> None:
    api, police, court = agencies.api, agencies.police, agencies.court
    handler = await api.client.post(
        "/api/webhooks", json={"url": "http://127.0.0.1:9/x"}, headers=police.auth("handler")
    )
    assert handler.status == 403
    hook = await register(agencies, police, "http://127.0.0.1:9/x")
    hook_id = hook["webhook"]["id"]
    for method, path in (
        ("GET", f"/api/webhooks/{hook_id}/deliveries"),
        ("DELETE", f"/api/webhooks/{hook_id}"),
        ("POST", f"/api/webhooks/{hook_id}/deliveries/dlv_x/replay"),
    ):
        response = await api.client.request(method, path, headers=court.auth("admin"))
        assert response.status == 404, path
    listed = await api.client.get("/api/webhooks", headers=court.auth("admin"))
    assert (await listed.json())["webhooks"] == []
    assert "secret" not in json.dumps(
        await (await api.client.get("/api/webhooks", headers=police.auth("admin"))).json()
    )
    gone = await api.client.delete(f"/api/webhooks/{hook_id}", headers=police.auth("admin"))
    assert gone.status == 204


def test_signature_refuses_old_and_malformed_headers() -> None:
    body = b'{"event":"x"}'
    old = signature.sign("s", body, timestamp=int(time.time()) - 3600)
    assert not signature.verify("s", body, old)
    assert not signature.verify("s", body, "t=abc,v1=00")
    assert not signature.verify("s", body, "garbage")
    assert signature.verify("s", body, signature.sign("s", body))
