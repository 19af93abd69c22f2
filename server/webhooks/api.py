"""HTTP API of webhooks, for an agency's admin: register (the secret is shown once), list,
remove, list deliveries, replay a delivery. Another agency's webhooks answer 404."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..audit.events import WebhookCreated, WebhookDeleted, WebhookReplayed
from ..audit.unit import unit_of_work
from ..auth import require
from ..errors import BadRequest, Conflict, NotFound, WebhookTargetRefused
from ..requests import json_body
from ..state import CATALOG, SETTINGS
from ..tokens import Principal, Role
from . import dispatch, records, targets
from .records import Webhook


async def create(request: web.Request) -> web.Response:
    """POST /api/webhooks {"url", "events"?} -> 201 {"webhook", "secret"}."""
    principal = await require(request, "admin")
    body = await json_body(request)
    try:
        url, _ = records.check(body.get("url"), body.get("events"))
        await targets.check_new(url, targets.parse_allow(request.app[SETTINGS].webhook_allow))
    except targets.TargetRefused as exc:
        raise WebhookTargetRefused(f"url: {exc}") from None
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    try:
        async with unit_of_work(request.app[CATALOG].engine) as unit:
            hook, secret = await records.create(
                unit.conn,
                agency_id=principal.agency_id,
                url=body.get("url"),
                events=body.get("events"),
            )
            unit.record(WebhookCreated(**_where(request, principal, hook)))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return web.json_response({"webhook": hook.to_json(), "secret": secret}, status=201)


async def listing(request: web.Request) -> web.Response:
    principal = await require(request, "admin", "auditor")
    hooks = await records.listing(request.app[CATALOG].engine, agency_id=principal.agency_id)
    return web.json_response({"webhooks": [h.to_json() for h in hooks]})


async def _own(request: web.Request, *roles: Role) -> tuple[Principal, Webhook]:
    principal = await require(request, *roles)
    hook = await records.get(
        request.app[CATALOG].engine, request.match_info["webhook_id"], agency_id=principal.agency_id
    )
    if hook is None:
        raise NotFound("no such webhook")
    return principal, hook


async def delete(request: web.Request) -> web.Response:
    """DELETE /api/webhooks/{id}: no further deliveries; the history stays listable."""
    principal, hook = await _own(request, "admin")
    async with unit_of_work(request.app[CATALOG].engine) as unit:
        await records.disable(unit.conn, hook.id)
        unit.record(WebhookDeleted(**_where(request, principal, hook)))
    return web.Response(status=204)


async def deliveries(request: web.Request) -> web.Response:
    """GET /api/webhooks/{id}/deliveries: the newest 100, with state, attempts, last error."""
    _, hook = await _own(request, "admin", "auditor")
    found = await records.deliveries(request.app[CATALOG].engine, hook.id)
    return web.json_response({"webhook": hook.id, "deliveries": found})


async def replay(request: web.Request) -> web.Response:
    """POST /api/webhooks/{id}/deliveries/{delivery_id}/replay -> 202: sent again soon."""
    principal, hook = await _own(request, "admin")
    if not hook.to_json()["active"]:
        raise Conflict("the webhook was removed")
    delivery_id = request.match_info["delivery_id"]
    async with unit_of_work(request.app[CATALOG].engine) as unit:
        if not await records.replay(unit.conn, hook.id, delivery_id):
            raise NotFound("no such delivery, or it is being sent right now")
        unit.record(WebhookReplayed(**_where(request, principal, hook), delivery=delivery_id))
    return web.json_response({"delivery": delivery_id, "state": "pending"}, status=202)


def _where(request: web.Request, principal: Principal, hook: Webhook) -> dict[str, Any]:
    """The fields every webhook entry shares."""
    return {
        "actor": principal.label,
        "object": f"webhook:{hook.id}",
        "url": hook.url,
        "events": hook.events,
        "client": request.remote,
    }


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(dispatch.lifecycle)
    app.router.add_post("/api/webhooks", create)
    app.router.add_get("/api/webhooks", listing)
    app.router.add_delete("/api/webhooks/{webhook_id}", delete)
    app.router.add_get("/api/webhooks/{webhook_id}/deliveries", deliveries)
    app.router.add_post("/api/webhooks/{webhook_id}/deliveries/{delivery_id}/replay", replay)
