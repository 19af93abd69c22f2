"""HTTP API of transfers: create (`POST /api/cases/{id}/transfers`), list (`?inbox=1`), show,
review ticket, acknowledge, reject. Other agencies' transfers answer 404."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web

from ..auth import require
from ..cases import records as cases_db
from ..errors import BadRequest, Conflict, NotFound, TransferBlocked
from ..requests import json_body
from ..state import CATALOG, PINNED_KEYS, SETTINGS, SIGNER
from ..tickets import issue_ticket, link
from ..tokens import Principal, Role
from . import flow, paper, records

HANDLERS: tuple[Role, ...] = ("handler", "admin")
READERS: tuple[Role, ...] = ("handler", "admin", "auditor")
REVIEW_TICKET = timedelta(hours=4)


def actor(request: web.Request, principal: Principal) -> flow.Actor:
    return flow.Actor(
        label=principal.label,
        agency_id=principal.agency_id,
        token_id=principal.token_id,
        client=request.remote,
    )


async def _run(coro: Any) -> records.Transfer:
    """The one place flow errors become HTTP answers."""
    try:
        result: records.Transfer = await coro
    except LookupError as exc:
        raise NotFound(str(exc).strip("'\"")) from None
    except flow.TransferBlocked as exc:
        raise TransferBlocked(
            "acknowledgement refused: " + str(exc), details={"problems": exc.problems}
        ) from None
    except flow.TransferConflict as exc:
        raise Conflict(str(exc)) from None
    except flow.TransferError as exc:
        raise BadRequest(str(exc)) from None
    return result


async def create(request: web.Request) -> web.Response:
    """POST /api/cases/{case_id}/transfers {"to", "items"?, "note"?, "limits"?} -> 201."""
    principal = await require(request, *HANDLERS)
    body = await json_body(request)
    to = body.get("to")
    if not isinstance(to, str) or not to.strip():
        raise BadRequest("to: the receiving agency's name or id")
    transfer = await _run(
        flow.create(
            request.app[CATALOG].engine,
            request.app[SIGNER],
            case_id=request.match_info["case_id"],
            to=to.strip(),
            actor=actor(request, principal),
            items=body.get("items"),
            note=body.get("note"),
            limits=body.get("limits"),
        )
    )
    return web.json_response(transfer.to_json(), status=201)


async def listing(request: web.Request) -> web.Response:
    """GET /api/transfers[?inbox=1][&state=pending]: newest first."""
    principal = await require(request, *READERS)
    inbox = request.query.get("inbox", "0")
    if inbox not in ("0", "1"):
        raise BadRequest("inbox: 0 or 1")
    state = request.query.get("state")
    if state is not None and state not in records.STATES:
        raise BadRequest(f"state: one of {', '.join(records.STATES)}")
    found = await records.listing(
        request.app[CATALOG].engine, agency_id=principal.agency_id, inbox=inbox == "1", state=state
    )
    return web.json_response({"transfers": [t.to_json() for t in found]})


async def _visible(request: web.Request) -> tuple[Principal, records.Transfer]:
    principal = await require(request, *READERS)
    transfer = await records.get(
        request.app[CATALOG].engine,
        request.match_info["transfer_id"],
        agency_id=principal.agency_id,
    )
    if transfer is None:
        raise NotFound("no such transfer")
    return principal, transfer


async def show(request: web.Request) -> web.Response:
    _, transfer = await _visible(request)
    return web.json_response(transfer.to_json())


async def transfer_list(request: web.Request) -> web.Response:
    """GET /api/transfers/{id}/list: the printable transfer list (随案移送清单) of one transfer."""
    _, transfer = await _visible(request)
    document = await paper.for_transfer(transfer, base_url=request.app[SETTINGS].base_url)
    return web.json_response(document)


async def case_list(request: web.Request) -> web.Response:
    """GET /api/cases/{case_id}/list: the printable list of every item the agency holds in a
    case, with the transfers that moved each one."""
    principal = await require(request, *READERS)
    engine = request.app[CATALOG].engine
    case = await cases_db.get(engine, request.match_info["case_id"], agency_id=principal.agency_id)
    if case is None:
        raise NotFound("no such case")
    document = await paper.for_case(
        engine, case, agency_id=principal.agency_id, base_url=request.app[SETTINGS].base_url
    )
    return web.json_response(document)


async def review(request: web.Request) -> web.Response:
    """POST /api/transfers/{id}/review: a short view-only ticket for the receiver to play the
    items before it acknowledges them; the answer is the only place its link appears."""
    principal = await require(request, *HANDLERS)
    _, transfer = await _visible(request)
    if transfer.to_agency != principal.agency_id or transfer.state != "pending":
        raise Conflict("only a pending transfer in your inbox can be reviewed")
    ticket, token, _ = await issue_ticket(
        request.app[CATALOG].engine,
        evidence_ids=transfer.evidence_ids,
        recipient=f"{principal.name} (review of {transfer.id})"[:200],
        expires=REVIEW_TICKET,
        issuer=principal,
        note=f"review of transfer {transfer.id}",
        client=request.remote,
    )
    url = link(request.app[SETTINGS], token)
    return web.json_response({"ticket": ticket.to_json(), "url": url}, status=201)


async def acknowledge(request: web.Request) -> web.Response:
    """POST /api/transfers/{id}/ack {"checked": {evidence_id: {"sha256": ...}}?} -> 200."""
    principal = await require(request, *HANDLERS)
    body = await json_body(request)
    checked = body.get("checked", {})
    if not isinstance(checked, dict):
        raise BadRequest("checked: an object of evidence id -> digests")
    transfer = await _run(
        flow.acknowledge(
            request.app[CATALOG].engine,
            request.app[SIGNER],
            transfer_id=request.match_info["transfer_id"],
            actor=actor(request, principal),
            checked=checked,
            pinned=request.app.get(PINNED_KEYS),
        )
    )
    return web.json_response(transfer.to_json())


async def reject(request: web.Request) -> web.Response:
    """POST /api/transfers/{id}/reject {"reason": "..."} -> 200."""
    principal = await require(request, *HANDLERS)
    body = await json_body(request)
    transfer = await _run(
        flow.reject(
            request.app[CATALOG].engine,
            transfer_id=request.match_info["transfer_id"],
            actor=actor(request, principal),
            reason=body.get("reason"),
        )
    )
    return web.json_response(transfer.to_json())


def setup(app: web.Application) -> None:
    app.router.add_post("/api/cases/{case_id}/transfers", create)
    app.router.add_get("/api/transfers", listing)
    app.router.add_get("/api/transfers/{transfer_id}", show)
    app.router.add_get("/api/transfers/{transfer_id}/list", transfer_list)
    app.router.add_get("/api/cases/{case_id}/list", case_list)
    app.router.add_post("/api/transfers/{transfer_id}/review", review)
    app.router.add_post("/api/transfers/{transfer_id}/ack", acknowledge)
    app.router.add_post("/api/transfers/{transfer_id}/reject", reject)
