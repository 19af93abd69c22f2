"""Every route of the app x every kind of caller, against a table of expected statuses.

The table is the access policy written down: a route added without a row fails
`test_every_route_has_a_row`, and a changed answer fails `test_access_matrix`. Each call aims at
objects of the first uploader (its evidence E1, its upload U1, the ticket T1 it issued for E1), so
"other uploader" and "ticket of other evidence" rows are the IDOR checks; their 2xx answers
must not mention E1, U1 or T1 either.

Callers are data (`CALLERS`), so another axis, such as the agency of the caller once agencies
exist, is one more factor in their names and one more column in the rows.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from avidence.server import tokens

from support.servers import Api, metadata
from support.tickets import issue, start_view, token_of, upload

CALLERS = ("anonymous", "uploader", "other_uploader", "auditor", "admin", "ticket", "other_ticket")
OCTET = "application/offset+octet-stream"


def row(*statuses: int) -> dict[str, int]:
    assert len(statuses) == len(CALLERS)
    return dict(zip(CALLERS, statuses, strict=True))


ALL_200 = row(*[200] * 7)
API_READ = row(401, 200, 404, 200, 200, 401, 401)
TICKET_BYTES = row(404, 404, 404, 404, 404, 200, 404)

#              anon up   other aud  admin tkt otkt
EXPECTED: dict[tuple[str, str], dict[str, int]] = {
    ("GET", "/healthz"): ALL_200,
    ("GET", "/metrics"): ALL_200,  # inside the network only: the proxy answers 404 for it
    ("GET", "/api/version"): ALL_200,
    ("GET", "/api/keys"): ALL_200,  # public keys, public by design
    ("OPTIONS", "/files/"): row(*[204] * 7),
    ("OPTIONS", "/files"): row(*[204] * 7),
    ("POST", "/files/"): row(401, 201, 201, 403, 201, 401, 401),
    ("POST", "/files"): row(401, 201, 201, 403, 201, 401, 401),
    ("HEAD", "/files/{upload_id}"): row(401, 200, 404, 403, 200, 401, 401),
    ("PATCH", "/files/{upload_id}"): row(401, 204, 404, 403, 204, 401, 401),
    ("DELETE", "/files/{upload_id}"): row(401, 204, 404, 403, 204, 401, 401),
    ("GET", "/api/uploads/{upload_id}"): API_READ,
    ("GET", "/api/evidence/{evidence_id}"): API_READ,
    ("GET", "/api/evidence/{evidence_id}/receipt"): API_READ,
    ("GET", "/t/{token}"): row(404, 404, 404, 404, 404, 200, 200),  # otkt: its own page
    ("POST", "/t/{token}/code"): row(404, 404, 404, 404, 404, 303, 303),  # no code: to page
    ("POST", "/t/{token}/views"): row(404, 404, 404, 404, 404, 201, 404),
    ("GET", "/t/{token}/media/{evidence_id}"): TICKET_BYTES,
    ("GET", "/t/{token}/download/{evidence_id}"): TICKET_BYTES,
    ("GET", "/t/{token}/receipt/{evidence_id}"): TICKET_BYTES,
    ("GET", "/viewer/{name}"): ALL_200,
    ("POST", "/api/tickets"): row(401, 201, 404, 403, 201, 401, 401),
    ("GET", "/api/tickets"): row(401, 200, 200, 200, 200, 401, 401),
    ("GET", "/api/tickets/{ticket_id}"): API_READ,
    ("GET", "/api/tickets/{ticket_id}/views"): API_READ,
    ("POST", "/api/tickets/{ticket_id}/revoke"): row(401, 200, 404, 403, 200, 401, 401),
}
# What a route registered for every method ("*", the tus endpoint) is checked with.
ANY_METHOD = {
    "/files/": ("OPTIONS", "POST"),
    "/files": ("OPTIONS", "POST"),
    "/files/{upload_id}": ("HEAD", "PATCH", "DELETE"),
}


@dataclass
class World:
    api: Api
    auditor: str
    evidence: str  # E1, the uploader's
    upload: str  # U1, the uploader's, unfinished
    ticket_id: str  # T1, issued by the uploader for E1
    token: str  # T1's link token
    grant: str  # a counted view of E1 through T1
    other_token: str  # a ticket for the other uploader's evidence only
    own_ids: tuple[str, ...] = field(default=())

    def bearer(self, caller: str) -> dict[str, str]:
        secret = {
            "anonymous": None,
            "uploader": self.api.uploader,
            "other_uploader": self.api.other_uploader,
            "auditor": self.auditor,
            "admin": self.api.admin,
            "ticket": self.token,  # a link token is no bearer token
            "other_ticket": self.other_token,
        }[caller]
        return {"Authorization": f"Bearer {secret}"} if secret else {}

    def link(self, caller: str) -> str:
        if caller == "ticket":
            return self.token
        if caller == "other_ticket":
            return self.other_token
        return secrets.token_urlsafe(32)  # a guess


async def _new_upload(api: Api, length: int = 10) -> str:
    response = await api.client.post(
        "/files/",
        headers={**api.auth(), "Upload-Length": str(length), "Upload-Metadata": metadata(case="M")},
    )
    assert response.status == 201
    return str(response.headers["Location"].rsplit("/", 1)[1])


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    data: Any = None


Builder = Callable[[World, str], Awaitable[Call]]


async def build(w: World, caller: str, method: str, canonical: str) -> Call:
    """The request `caller` makes to `canonical`, aimed at the uploader's objects."""
    tus = {**w.bearer(caller), "Tus-Resumable": "1.0.0"}
    path = canonical.replace("{upload_id}", w.upload).replace("{evidence_id}", w.evidence)
    path = path.replace("{ticket_id}", w.ticket_id).replace("{name}", "viewer.js")
    path = path.replace("{token}", w.link(caller))
    if canonical.startswith("/files"):
        if method == "POST":
            extra = {"Upload-Length": "5", "Upload-Metadata": metadata(case="M-2")}
            return Call(method, path, {**tus, **extra})
        if method == "PATCH":
            extra = {"Upload-Offset": "0", "Content-Type": OCTET}
            return Call(method, path, {**tus, **extra}, data=b"")
        if method == "DELETE":  # each try on a fresh upload of the uploader
            fresh = await _new_upload(w.api)
            return Call(method, path.replace(w.upload, fresh), tus)
        return Call(method, path, tus)
    if canonical == "/t/{token}/views":
        return Call(method, path, json={"evidence": w.evidence})
    if canonical == "/t/{token}/media/{evidence_id}":
        return Call(method, f"{path}?view={w.grant}")
    if canonical == "/api/tickets" and method == "POST":
        body = {"evidence": [w.evidence], "recipient": "Li Ming (judge)"}
        return Call(method, path, w.bearer(caller), json=body)
    if canonical == "/api/tickets/{ticket_id}/revoke":  # each try on a fresh ticket for E1
        fresh = (await issue(w.api, [w.evidence], token=w.api.uploader))["ticket"]["id"]
        return Call(method, path.replace(w.ticket_id, fresh), w.bearer(caller))
    return Call(method, path, w.bearer(caller))


@pytest.fixture()
async def world(api: Api) -> World:
    _, auditor = await tokens.create(api.catalog.engine, role="auditor", name="auditor")
    evidence = await upload(api, b"E1 bytes" * 100, filename="e1.mp4", case="C-1")
    other = await upload(api, b"E2 bytes" * 100, case="C-2", token=api.other_uploader)
    issued = await issue(api, [evidence], token=api.uploader, download=True)
    token = token_of(issued)
    other_token = token_of(await issue(api, [other], token=api.other_uploader, download=True))
    grant = await start_view(api, token, evidence)
    unfinished = await _new_upload(api)
    ids = (evidence, unfinished, issued["ticket"]["id"])
    return World(
        api, auditor, evidence, unfinished, issued["ticket"]["id"], token, grant, other_token, ids
    )


def _routes(api: Api) -> list[tuple[str, str]]:
    app = api.client.server.app
    assert app is not None
    found = []
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource else ""
        methods = ANY_METHOD.get(canonical, ("*",)) if route.method == "*" else (route.method,)
        found.extend((method, canonical) for method in methods)
    return found


def _expected(method: str, canonical: str) -> dict[str, int] | None:
    # aiohttp answers HEAD on every GET route: the same rules hold.
    return EXPECTED.get((method, canonical)) or (
        EXPECTED.get(("GET", canonical)) if method == "HEAD" else None
    )


@pytest.mark.parametrize("store", ["local"], indirect=True)
async def test_every_route_has_a_row(api: Api) -> None:
    routes = _routes(api)
    missing = [r for r in routes if _expected(*r) is None]
    assert not missing, f"routes without an access-matrix row: {missing}"
    stale = [key for key in EXPECTED if key not in routes]
    assert not stale, f"rows for routes that no longer exist: {stale}"


@pytest.mark.parametrize("store", ["local"], indirect=True)
async def test_access_matrix(world: World) -> None:
    api = world.api
    wrong: list[str] = []
    for method, canonical in _routes(api):
        expected = _expected(method, canonical)
        assert expected is not None
        for caller in CALLERS:
            call = await build(world, caller, method, canonical)
            response = await api.client.request(
                call.method,
                call.path,
                headers=call.headers,
                json=call.json,
                data=call.data,
                allow_redirects=False,
            )
            body = await response.read()
            if response.status != expected[caller]:
                wrong.append(
                    f"{method} {canonical} as {caller}: {response.status}, "
                    f"expected {expected[caller]}: {body[:120]!r}"
                )
            if caller in ("anonymous", "other_uploader", "other_ticket") and response.ok:
                leaked = [i for i in world.own_ids if i.encode() in body]
                if leaked:
                    wrong.append(f"{method} {canonical} as {caller} shows {leaked}")
    assert not wrong, "\n".join(wrong)
