"""Every route of the app x every kind of caller x two agencies, against tables of statuses.

The table is the access policy written down: a route added without a row fails
`test_every_route_has_a_row`, and a changed answer fails `test_access_matrix`. Each call aims at
objects of agency A (the site's own): the first uploader's evidence E1, its upload U1, the
ticket T1 it issued for E1, case C1, A's transfer to a third agency, A's webhook. The "other
uploader" and "ticket of other evidence" columns are the IDOR checks within A; the four roles
of agency B are the cross-agency checks. No outsider's 2xx answer may mention A's ids.

`test_agency_b_after_acknowledged_transfer` then sends E1 (not E3 of the same case) to B and
checks what B may do with it: read it and the case within the transfer's limits, never A's
other items, tickets, uploads or webhooks.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from avidence.server import tokens
from avidence.server.agencies import records as agencies_db
from avidence.server.auth import AUTH_PROBES
from avidence.server.catalog.schema_exchange import DEFAULT_AGENCY, webhook_deliveries
from avidence.server.limits import RateLimiter
from avidence.server.retention import holds
from avidence.server.webhooks import records as webhooks_db
from avidence.storage.base import Store

from support.agencies import Agency, make_agency
from support.servers import Api, make_api, metadata
from support.tickets import issue, start_view, token_of, upload

A_CALLERS = ("anonymous", "uploader", "other_uploader", "handler", "auditor", "admin")
LINKS = ("ticket", "other_ticket")
B_CALLERS = ("b_uploader", "b_handler", "b_admin", "b_auditor")  # agency B's tokens
CALLERS = (*A_CALLERS, *LINKS, *B_CALLERS)
# Callers that must never see the ids of agency A's objects in a 2xx answer.
OUTSIDERS = ("anonymous", "other_uploader", "other_ticket", *B_CALLERS)
OCTET = "application/offset+octet-stream"


def row(*statuses: int) -> dict[str, int]:
    assert len(statuses) == len(CALLERS)
    return dict(zip(CALLERS, statuses, strict=True))


ALL_200 = row(*[200] * 12)
#                 anon up   oup  hdl  aud  adm  tkt  otkt bup  bhdl badm baud
AGENCY_READ = row(401, 200, 404, 200, 200, 200, 401, 401, 404, 404, 404, 404)
UPLOAD_READ = row(401, 200, 404, 404, 200, 200, 401, 401, 404, 404, 404, 404)
TICKET_BYTES = row(404, 404, 404, 404, 404, 404, 200, 404, 404, 404, 404, 404)
CASE_LIST = row(401, 403, 403, 200, 200, 200, 401, 401, 403, 200, 200, 200)
CASE_READ = row(401, 403, 403, 200, 200, 200, 401, 401, 403, 404, 404, 404)
SITE_READ = row(401, 403, 403, 403, 200, 200, 401, 401, 403, 403, 403, 403)


def tus_on_upload(ok: int) -> dict[str, int]:
    return row(401, ok, 404, 403, 403, ok, 401, 401, 404, 403, 404, 403)


def site_write(ok: int) -> dict[str, int]:
    """Storage administration: the site operator's admin only; agency B's admin is refused
    before any object is looked up, so the 403 says nothing about A's items."""
    return row(401, 403, 403, 403, 403, ok, 401, 401, 403, 403, 403, 403)


def in_inbox_only(ok: int) -> dict[str, int]:
    """Review, acknowledge, reject of A's outgoing transfer to agency C: only C may act."""
    return row(401, 403, 403, ok, 403, ok, 401, 401, 403, 404, 404, 403)


#              anon up   oup  hdl  aud  adm  tkt  otkt bup  bhdl badm baud
EXPECTED: dict[tuple[str, str], dict[str, int]] = {
    ("GET", "/healthz"): ALL_200,
    ("GET", "/metrics"): ALL_200,  # inside the network only: the proxy answers 404 for it
    ("GET", "/api/version"): ALL_200,
    ("GET", "/api/keys"): ALL_200,  # public keys, public by design
    ("GET", "/api/kinds"): ALL_200,  # metadata schemas, public like the upload page
    ("GET", "/api/openapi.json"): ALL_200,
    ("OPTIONS", "/files/"): row(*[204] * 12),
    ("OPTIONS", "/files"): row(*[204] * 12),
    ("POST", "/files/"): row(401, 201, 201, 403, 403, 201, 401, 401, 201, 403, 201, 403),
    ("POST", "/files"): row(401, 201, 201, 403, 403, 201, 401, 401, 201, 403, 201, 403),
    ("HEAD", "/files/{upload_id}"): tus_on_upload(200),
    ("PATCH", "/files/{upload_id}"): tus_on_upload(204),
    ("DELETE", "/files/{upload_id}"): tus_on_upload(204),
    # Uploads are never shared: not with the agency's handlers, not through a transfer.
    ("GET", "/api/uploads/{upload_id}"): UPLOAD_READ,
    # A search answers every token, with only what that token may see (OUTSIDERS: nothing of A's).
    ("GET", "/api/evidence"): row(401, 200, 200, 200, 200, 200, 401, 401, 200, 200, 200, 200),
    ("HEAD", "/api/evidence"): row(401, 200, 200, 200, 200, 200, 401, 401, 200, 200, 200, 200),
    ("GET", "/api/evidence/{evidence_id}"): AGENCY_READ,
    ("GET", "/api/evidence/{evidence_id}/receipt"): AGENCY_READ,
    ("GET", "/t/{token}"): row(*[404] * 6, 200, 200, *[404] * 4),  # otkt: its own page
    ("POST", "/t/{token}/code"): row(*[404] * 6, 303, 303, *[404] * 4),  # no code: to page
    ("POST", "/t/{token}/views"): row(*[404] * 6, 201, 404, *[404] * 4),
    ("GET", "/t/{token}/media/{evidence_id}"): TICKET_BYTES,
    ("GET", "/t/{token}/download/{evidence_id}"): TICKET_BYTES,
    ("GET", "/t/{token}/receipt/{evidence_id}"): TICKET_BYTES,
    ("GET", "/viewer/{name}"): ALL_200,
    ("GET", "/upload"): ALL_200,  # the page asks for the token itself
    ("GET", "/upload/{name}"): ALL_200,
    ("GET", "/desk"): ALL_200,  # the desk asks for the token itself, like the upload page
    ("GET", "/desk/{name}"): ALL_200,
    # Who a token is: any valid token, of any agency, about itself only.
    ("GET", "/api/me"): row(401, 200, 200, 200, 200, 200, 401, 401, 200, 200, 200, 200),
    ("POST", "/api/tickets"): row(401, 201, 404, 201, 403, 201, 401, 401, 404, 404, 404, 403),
    ("GET", "/api/tickets"): row(401, 200, 200, 200, 200, 200, 401, 401, 200, 200, 200, 200),
    ("GET", "/api/tickets/{ticket_id}"): AGENCY_READ,
    ("GET", "/api/tickets/{ticket_id}/views"): AGENCY_READ,
    ("POST", "/api/tickets/{ticket_id}/revoke"): row(
        401, 200, 404, 200, 403, 200, 401, 401, 404, 404, 404, 403
    ),
    ("POST", "/api/cases"): row(401, 403, 403, 201, 403, 201, 401, 401, 403, 201, 201, 403),
    ("GET", "/api/cases"): CASE_LIST,
    ("GET", "/api/cases/{case_id}"): CASE_READ,
    ("GET", "/api/cases/{case_id}/custody"): CASE_READ,
    ("POST", "/api/cases/{case_id}/transfers"): row(
        401, 403, 403, 201, 403, 201, 401, 401, 403, 404, 404, 403
    ),
    ("GET", "/api/transfers"): CASE_LIST,
    ("GET", "/api/transfers/{transfer_id}"): CASE_READ,
    ("GET", "/api/transfers/{transfer_id}/list"): CASE_READ,
    ("GET", "/api/cases/{case_id}/list"): CASE_READ,
    ("POST", "/api/transfers/{transfer_id}/review"): in_inbox_only(409),  # visible, not inbox
    ("POST", "/api/transfers/{transfer_id}/ack"): in_inbox_only(404),  # "not in your inbox"
    ("POST", "/api/transfers/{transfer_id}/reject"): in_inbox_only(404),
    ("POST", "/api/webhooks"): row(401, 403, 403, 403, 403, 201, 401, 401, 403, 403, 201, 403),
    ("GET", "/api/webhooks"): row(401, 403, 403, 403, 200, 200, 401, 401, 403, 403, 200, 200),
    ("DELETE", "/api/webhooks/{webhook_id}"): row(
        401, 403, 403, 403, 403, 204, 401, 401, 403, 403, 404, 403
    ),
    ("GET", "/api/webhooks/{webhook_id}/deliveries"): row(
        401, 403, 403, 403, 200, 200, 401, 401, 403, 403, 404, 404
    ),
    ("POST", "/api/webhooks/{webhook_id}/deliveries/{delivery_id}/replay"): row(
        401, 403, 403, 403, 403, 202, 401, 401, 403, 403, 404, 403
    ),
    ("GET", "/api/admin/retention"): SITE_READ,
    ("GET", "/api/admin/evidence/{evidence_id}/retention"): SITE_READ,
    ("PUT", "/api/admin/evidence/{evidence_id}/retention"): site_write(400),
    ("POST", "/api/admin/evidence/{evidence_id}/restore"): site_write(409),  # not deleted
    ("GET", "/api/admin/integrity"): SITE_READ,
    # nothing flagged: 409 integrity_unresolved, after the access decision
    ("POST", "/api/admin/evidence/{evidence_id}/integrity/resolve"): site_write(409),
    ("GET", "/api/admin/holds"): SITE_READ,
    ("POST", "/api/admin/holds"): site_write(201),
    ("POST", "/api/admin/holds/{hold_id}/release"): site_write(200),
    ("GET", "/api/admin/purge"): SITE_READ,
    ("POST", "/api/admin/purge"): site_write(200),
    ("GET", "/api/admin/usage"): SITE_READ,
    ("GET", "/api/admin/quotas"): SITE_READ,
    ("GET", "/api/admin/audit"): SITE_READ,
    ("PUT", "/api/admin/quotas/{scope}"): site_write(200),
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
    secrets: dict[str, str]  # caller -> bearer token (agency A's and agency B's roles)
    ids: dict[str, str]  # E1 (uploader's, case C1), E2 (other uploader's, case C2), E3
    # (uploader's, in C1 but never transferred), U1 (uploader's unfinished upload), T1 (ticket
    # of E1), C1, C2 (case ids), X_AC (A's transfer of E1 to agency C, pending), W1 (A's
    # webhook), D1 (one of its deliveries)
    token: str  # T1's link token
    grant: str  # a counted view of E1 through T1
    other_token: str  # a ticket for the other uploader's evidence only
    agency_b: Agency
    agency_c: str

    def bearer(self, caller: str) -> dict[str, str]:
        secret = {"ticket": self.token, "other_ticket": self.other_token}.get(caller)
        secret = secret or self.secrets.get(caller)  # a link token is no bearer token
        return {"Authorization": f"Bearer {secret}"} if secret else {}

    def link(self, caller: str) -> str:
        if caller == "ticket":
            return self.token
        if caller == "other_ticket":
            return self.other_token
        return secrets.token_urlsafe(32)  # a guess

    def hidden(self, caller: str) -> tuple[str, ...]:
        """Ids whose appearance in a 2xx answer to `caller` would be a leak."""
        mine = ("E1", "E3", "U1", "T1")
        names = mine if caller in ("other_uploader", "other_ticket") else tuple(self.ids)
        return tuple(self.ids[n] for n in names)


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


async def _fresh(w: World, canonical: str) -> str:
    """A new object of agency A for a call that uses one up (delete, revoke, release)."""
    engine = w.api.catalog.engine
    if canonical == "/files/{upload_id}":
        return await _new_upload(w.api)
    if canonical == "/api/tickets/{ticket_id}/revoke":
        return str((await issue(w.api, [w.ids["E1"]], token=w.api.uploader))["ticket"]["id"])
    if canonical == "/api/webhooks/{webhook_id}":
        hook, _ = await webhooks_db.create(engine, agency_id=DEFAULT_AGENCY, url=HOOK, events=None)
        return hook.id
    assert canonical == "/api/admin/holds/{hold_id}/release", canonical
    hold = await holds.add(
        engine, w.api.store, scope="evidence", target=w.ids["E2"], reason="matrix", actor="test"
    )
    return hold.id


# The JSON body each write sends: valid, so that the status is the access decision.
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/cases/{case_id}/transfers"): {"to": "{C}", "items": ["{E1}"]},
    ("POST", "/api/transfers/{transfer_id}/reject"): {"reason": "wrong case"},
    ("POST", "/api/transfers/{transfer_id}/ack"): {},
    ("POST", "/api/webhooks"): {"url": "http://127.0.0.1:9/hook"},
    ("PUT", "/api/admin/evidence/{evidence_id}/retention"): {"class": "no-such", "reason": "x"},
    ("POST", "/api/admin/evidence/{evidence_id}/restore"): {"reason": "matrix"},
    ("POST", "/api/admin/evidence/{evidence_id}/integrity/resolve"): {"reason": "matrix"},
    ("POST", "/api/admin/holds"): {"scope": "evidence", "target": "{E2}", "reason": "matrix"},
    ("POST", "/api/admin/holds/{hold_id}/release"): {"reason": "matrix"},
    ("POST", "/api/admin/purge"): {"reason": "matrix"},
    ("PUT", "/api/admin/quotas/{scope}"): {"max_bytes": None},
}
FRESH = {
    ("DELETE", "/files/{upload_id}"),
    ("POST", "/api/tickets/{ticket_id}/revoke"),
    ("DELETE", "/api/webhooks/{webhook_id}"),
    ("POST", "/api/admin/holds/{hold_id}/release"),
}
HOOK = "http://127.0.0.1:9/hook"  # nothing listens: deliveries fail fast and stay local


def _fill(value: Any, names: dict[str, str]) -> Any:
    """`{NAME}` placeholders in a body, replaced by the world's ids."""
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return names[value[1:-1]]
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    return value


async def build(w: World, caller: str, method: str, canonical: str) -> Call:
    """The request `caller` makes to `canonical`, aimed at agency A's objects."""
    tus = {**w.bearer(caller), "Tus-Resumable": "1.0.0"}
    places = {
        "{upload_id}": w.ids["U1"],
        "{evidence_id}": w.ids["E1"],
        "{ticket_id}": w.ids["T1"],
        "{case_id}": w.ids["C1"],
        "{transfer_id}": w.ids["X_AC"],
        "{webhook_id}": w.ids["W1"],
        "{delivery_id}": w.ids["D1"],
        "{scope}": "site",
        "{name}": canonical.split("/")[1] + ".js",  # upload.js, desk.js, viewer.js
        "{token}": w.link(caller),
    }
    if (method, canonical) in FRESH or canonical.endswith("{hold_id}/release"):
        fresh = await _fresh(w, canonical)
        places = {**places, "{upload_id}": fresh, "{ticket_id}": fresh, "{webhook_id}": fresh}
        places["{hold_id}"] = fresh
    path = canonical
    for place, value in places.items():
        path = path.replace(place, value)
    if canonical.startswith("/files"):
        if method == "POST":
            extra = {"Upload-Length": "5", "Upload-Metadata": metadata(case="M-2")}
            return Call(method, path, {**tus, **extra})
        if method == "PATCH":
            extra = {"Upload-Offset": "0", "Content-Type": OCTET}
            return Call(method, path, {**tus, **extra}, data=b"")
        return Call(method, path, tus)
    if canonical == "/t/{token}/views":
        return Call(method, path, json={"evidence": w.ids["E1"]})
    if canonical == "/t/{token}/media/{evidence_id}":
        return Call(method, f"{path}?view={w.grant}")
    if canonical == "/api/tickets" and method == "POST":
        body = {"evidence": [w.ids["E1"]], "recipient": "Li Ming (judge)"}
        return Call(method, path, w.bearer(caller), json=body)
    if canonical == "/api/cases" and method == "POST":
        return Call(method, path, w.bearer(caller), json={"number": secrets.token_hex(6)})
    body = _fill(BODIES.get((method, canonical)), {**w.ids, "C": w.agency_c})
    return Call(method, path, w.bearer(caller), json=body)


async def _case_id(api: Api, number: str, token: str) -> str:
    response = await api.client.get(
        f"/api/cases?number={number}", headers={"Authorization": f"Bearer {token}"}
    )
    found = (await response.json())["cases"]
    assert len(found) == 1, found
    return str(found[0]["id"])


async def _delivery(api: Api, hook_id: str) -> str:
    """A delivery of A's webhook, already failed, so the dispatcher leaves it alone until a
    replay (a pending one could be "sending" at the moment the matrix replays it)."""
    async with api.catalog.engine.begin() as conn:
        await webhooks_db.insert_deliveries(
            conn, [hook_id], event="transfer.created", payload={"test": True}
        )
        await conn.execute(
            webhook_deliveries.update()
            .where(webhook_deliveries.c.webhook_id == hook_id)
            .values(state="failed")
        )
        found = await conn.execute(
            sa.select(webhook_deliveries.c.id).where(webhook_deliveries.c.webhook_id == hook_id)
        )
        return str(found.scalar_one())


@pytest.fixture()
async def api(tmp_path: Path, store: Store) -> AsyncIterator[Api]:
    """The usual app, letting webhooks reach loopback: HOOK listens there."""
    async for value in make_api(
        tmp_path, store, max_size=64 * 1024 * 1024, webhook_allow="127.0.0.1/32"
    ):
        yield value


@pytest.fixture()
async def world(api: Api) -> World:
    engine = api.catalog.engine
    # Ticket holders send their links as bearer tokens to every route from one address: lift
    # the guessing limit on unknown tokens (tested in test_floods.py) so the table sees 401s.
    api.client.app[AUTH_PROBES].limiter = RateLimiter(rate=1000.0, burst=100_000)
    _, auditor = await tokens.create(engine, role="auditor", name="auditor")
    _, handler = await tokens.create(engine, role="handler", name="handler")
    court = await make_agency(api, "City court")
    third = await agencies_db.create(engine, name="City procuratorate")
    e1 = await upload(api, b"E1 bytes" * 100, filename="e1.mp4", case="C-1")
    e3 = await upload(api, b"E3 bytes" * 100, filename="e3.mp4", case="C-1", item="3")
    e2 = await upload(api, b"E2 bytes" * 100, case="C-2", token=api.other_uploader)
    issued = await issue(api, [e1], token=api.uploader, download=True)
    token = token_of(issued)
    other_token = token_of(await issue(api, [e2], token=api.other_uploader, download=True))
    grant = await start_view(api, token, e1)
    c1 = await _case_id(api, "C-1", handler)
    sent = await api.client.post(
        f"/api/cases/{c1}/transfers",
        json={"to": third.id, "items": [e1]},
        headers={"Authorization": f"Bearer {handler}"},
    )
    assert sent.status == 201, await sent.text()
    hook, _ = await webhooks_db.create(engine, agency_id=DEFAULT_AGENCY, url=HOOK, events=None)
    ids = {
        "E1": e1,
        "E2": e2,
        "E3": e3,
        "U1": await _new_upload(api),
        "T1": issued["ticket"]["id"],
        "C1": c1,
        "C2": await _case_id(api, "C-2", handler),
        "X_AC": (await sent.json())["id"],
        "W1": hook.id,
        "D1": await _delivery(api, hook.id),
    }
    callers = {
        "uploader": api.uploader,
        "other_uploader": api.other_uploader,
        "handler": handler,
        "auditor": auditor,
        "admin": api.admin,
        **{f"b_{role}": secret for role, secret in court.tokens.items()},
    }
    return World(api, callers, ids, token, grant, other_token, court, third.id)


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
            if caller in OUTSIDERS and response.ok:
                leaked = [i for i in world.hidden(caller) if i.encode() in body]
                if leaked:
                    wrong.append(f"{method} {canonical} as {caller} shows {leaked}")
    assert not wrong, "\n".join(wrong)


def b_row(uploader: int, handler: int, admin: int, auditor: int) -> dict[str, int]:
    return dict(zip(B_CALLERS, (uploader, handler, admin, auditor), strict=True))


B_NONE = b_row(404, 404, 404, 404)
B_READ = b_row(404, 200, 200, 200)  # an uploader sees only what it uploaded
B_CASE = b_row(403, 200, 200, 200)
B_CASE_HIDDEN = b_row(403, 404, 404, 404)
B_BEYOND_LIMITS = b_row(404, 403, 403, 403)


def ticket_for(**fields: Any) -> dict[str, Any]:
    return {"recipient": "Wang Fang (defence lawyer)", **fields}


# After A's handler sends E1 of case C1 to B (default limits: view-only tickets of at most 30
# days) and B's handler acknowledges it. (method, path with {ID}s, body, B's statuses).
AFTER: list[tuple[str, str, Any, dict[str, int]]] = [
    ("GET", "/api/evidence/{E1}", None, B_READ),
    ("GET", "/api/evidence/{E1}/receipt", None, B_READ),
    ("GET", "/api/evidence/{E3}", None, B_NONE),  # same case, not transferred
    ("GET", "/api/evidence/{E3}/receipt", None, B_NONE),
    ("GET", "/api/evidence/{E2}", None, B_NONE),
    ("GET", "/api/uploads/{U1}", None, B_NONE),
    ("HEAD", "/files/{U1}", None, b_row(404, 403, 404, 403)),
    ("GET", "/api/cases", None, B_CASE),
    ("GET", "/api/cases/{C1}", None, B_CASE),
    ("GET", "/api/cases/{C1}/custody", None, B_CASE),
    ("GET", "/api/cases/{C2}", None, B_CASE_HIDDEN),
    ("GET", "/api/transfers", None, B_CASE),
    ("GET", "/api/transfers/{X_AB}", None, B_CASE),
    ("GET", "/api/transfers/{X_AC}", None, B_CASE_HIDDEN),  # A's other transfer
    ("POST", "/api/transfers/{X_AB}/ack", {}, b_row(403, 409, 409, 403)),  # decided already
    ("POST", "/api/transfers/{X_AB}/review", None, b_row(403, 409, 409, 403)),
    ("POST", "/api/transfers/{X_AC}/ack", {}, b_row(403, 404, 404, 403)),
    ("POST", "/api/tickets", ticket_for(evidence=["{E1}"]), b_row(404, 201, 201, 403)),
    ("POST", "/api/tickets", ticket_for(case="C-1"), b_row(403, 201, 201, 403)),  # E1 only
    ("POST", "/api/tickets", ticket_for(evidence=["{E1}"], download=True), B_BEYOND_LIMITS),
    ("POST", "/api/tickets", ticket_for(evidence=["{E1}"], expires="90d"), B_BEYOND_LIMITS),
    ("POST", "/api/tickets", ticket_for(evidence=["{E1}", "{E3}"]), b_row(404, 404, 404, 403)),
    ("GET", "/api/tickets", None, b_row(200, 200, 200, 200)),
    ("GET", "/api/tickets/{T1}", None, B_NONE),
    ("GET", "/api/tickets/{T1}/views", None, B_NONE),
    ("POST", "/api/tickets/{T1}/revoke", None, b_row(404, 404, 404, 403)),
    ("GET", "/api/webhooks", None, b_row(403, 403, 200, 200)),
    ("GET", "/api/webhooks/{W1}/deliveries", None, b_row(403, 403, 404, 404)),
    ("POST", "/api/webhooks/{W1}/deliveries/{D1}/replay", None, b_row(403, 403, 404, 403)),
    ("DELETE", "/api/webhooks/{W1}", None, b_row(403, 403, 404, 403)),
    ("GET", "/api/admin/evidence/{E1}/retention", None, b_row(403, 403, 403, 403)),
    ("POST", "/api/admin/holds", {"scope": "evidence", "target": "{E1}", "reason": "x"},
     b_row(403, 403, 403, 403)),
]  # fmt: skip


@pytest.mark.parametrize("store", ["local"], indirect=True)
async def test_agency_b_after_acknowledged_transfer(world: World) -> None:
    api, court = world.api, world.agency_b
    sent = await api.client.post(
        f"/api/cases/{world.ids['C1']}/transfers",
        json={"to": court.name, "items": [world.ids["E1"]]},
        headers=world.bearer("handler"),
    )
    assert sent.status == 201, await sent.text()
    transfer = (await sent.json())["id"]
    acked = await api.client.post(
        f"/api/transfers/{transfer}/ack", json={}, headers=court.auth("handler")
    )
    assert acked.status == 200, await acked.text()
    names = {**world.ids, "X_AB": transfer}
    never = [world.ids[n] for n in ("E2", "E3", "U1", "T1", "C2", "X_AC", "W1", "D1")]
    wrong: list[str] = []
    for method, template, body, expected in AFTER:
        path = template.format_map(names)
        tus = {"Tus-Resumable": "1.0.0"} if path.startswith("/files") else {}
        for caller, status in expected.items():
            response = await api.client.request(
                method, path, headers={**world.bearer(caller), **tus}, json=_fill(body, names)
            )
            answer = await response.read()
            if response.status != status:
                wrong.append(
                    f"{method} {template} {body} as {caller}: {response.status}, expected "
                    f"{status}: {answer[:160]!r}"
                )
            leaked = [i for i in never if i.encode() in answer] if response.ok else []
            if leaked:
                wrong.append(f"{method} {template} as {caller} shows {leaked}")
            if response.ok and template.startswith("/api/cases/{C1}"):
                if world.ids["E1"].encode() not in answer:
                    wrong.append(f"{method} {template} as {caller} lacks the transferred E1")
    assert not wrong, "\n".join(wrong)
