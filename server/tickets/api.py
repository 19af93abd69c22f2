"""JSON API for tickets: issue, list, show, revoke, and the views of one ticket.

Everything is within the caller's agency: admins and handlers act on every ticket their agency
issued, for evidence it owns or holds (held evidence only within the limits its sender set). An
uploader may issue tickets only for evidence it uploaded, and sees and revokes only the tickets
it issued; an auditor may read its agency's tickets. The answer to an issue is
the only place the link token and the access code ever appear.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..agencies.access import check_ticket_limits, holding
from ..auth import require
from ..cases import records as cases_db
from ..errors import BadRequest, Conflict, Forbidden, NotFound
from ..evidence import records as evidence_db
from ..failures import DomainError
from ..requests import json_body
from ..state import CATALOG, SETTINGS
from ..tokens import Principal, Role
from . import records
from .issue import issue_ticket, link, parse_expiry, revoke_ticket
from .records import Ticket
from .runtime import RUNTIME

ISSUERS: tuple[Role, ...] = ("admin", "handler", "uploader")
READERS: tuple[Role, ...] = ("admin", "handler", "auditor", "uploader")


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    """A body field of the given JSON type (a bool is never taken for a number)."""
    value = body.get(name, default)
    if value is None:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise BadRequest(f"{name}: wrong type")
    return value


async def _evidence_ids(
    request: web.Request, principal: Principal, body: dict[str, Any]
) -> tuple[list[str], str | None]:
    """The items a new ticket covers, and the case number it is issued for (if any)."""
    engine = request.app[CATALOG].engine
    listed = _field(body, "evidence", list, None)
    typed = _field(body, "case", str, None)
    if (listed is None) == (typed is None):
        raise BadRequest('give either "evidence": [ids] or "case": "case id or number"')
    number = None
    if typed is not None:
        try:
            case = await cases_db.resolve(engine, typed, agency_id=principal.agency_id)
        except cases_db.CaseNotFound as exc:
            raise NotFound(str(exc)) from None
        except cases_db.CaseAmbiguous as exc:
            raise Conflict(str(exc)) from None
        number = case.number
        ids = []
        held = await cases_db.evidence_ids(engine, case.id, agency_id=principal.agency_id)
        for evidence_id in held:
            record = await evidence_db.get(engine, evidence_id)
            viewer = _as_agency(principal)
            if record is None or not await evidence_db.can_see(engine, viewer, record):
                continue
            if principal.role == "uploader" and record.uploader != principal.token_id:
                raise Forbidden("this case holds evidence uploaded by others: ask an admin")
            ids.append(evidence_id)
        if not ids:
            raise NotFound(f"case {typed!r} has no evidence")
    else:
        if not listed or not all(isinstance(i, str) for i in listed):
            raise BadRequest("evidence: a non-empty list of evidence ids")
        ids = list(listed)
        for evidence_id in ids:
            record = await evidence_db.get(engine, evidence_id)
            if record is None or not await evidence_db.can_see(engine, principal, record):
                raise NotFound(f"no such evidence {evidence_id}")
    return ids, number


def _as_agency(principal: Principal) -> Principal:
    """The principal with its agency's view (an uploader's own-items rule is checked apart)."""
    return Principal(principal.token_id, principal.name, "auditor", principal.agency_id)


async def _check_limits(
    request: web.Request, principal: Principal, ids: list[str], *, download: bool, expires: Any
) -> None:
    """Evidence held through a transfer: tickets only within what its sender allowed."""
    engine = request.app[CATALOG].engine
    for evidence_id in ids:
        record = await evidence_db.get(engine, evidence_id)
        if record is None or record.agency_id == principal.agency_id:
            continue
        limits = await holding(engine, principal.agency_id, evidence_id)
        try:
            check_ticket_limits(limits or {}, download=download, expires=expires)
        except PermissionError as exc:
            raise Forbidden(f"{evidence_id}: {exc}") from None


async def create(request: web.Request) -> web.Response:
    """POST /api/tickets -> 201 {"ticket", "url", "token", "access_code"}."""
    principal = await require(request, *ISSUERS)
    body = await json_body(request, required=True)
    ids, number = await _evidence_ids(request, principal, body)
    max_views = _field(body, "max_views", int, None)
    download = bool(_field(body, "download", bool, False))
    try:
        expires = parse_expiry(_field(body, "expires", (str, int), "7d"))
        await _check_limits(request, principal, ids, download=download, expires=expires)
        ticket, token, pin = await issue_ticket(
            request.app[CATALOG].engine,
            evidence_ids=ids,
            recipient=_field(body, "recipient", str, ""),
            expires=expires,
            download=download,
            max_views=max_views,
            note=_field(body, "note", str, None),
            access_code=_field(body, "access_code", bool, False),
            issuer=principal,
            case_id=number,
            client=request.remote,
        )
    except DomainError:
        raise  # its own code (integrity_withheld), through the one exit path
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return web.json_response(
        {
            "ticket": ticket.to_json(),
            "url": link(request.app[SETTINGS], token),
            "token": token,
            "access_code": pin,
        },
        status=201,
    )


async def _readable(request: web.Request, *roles: Role) -> tuple[Principal, Ticket]:
    principal = await require(request, *roles)
    ticket = await records.get(request.app[CATALOG].engine, request.match_info["ticket_id"])
    if (
        ticket is None
        or ticket.agency_id != principal.agency_id
        or (principal.role == "uploader" and ticket.issuer_token != principal.token_id)
    ):
        raise NotFound("no such ticket")
    return principal, ticket


async def listing(request: web.Request) -> web.Response:
    principal = await require(request, *READERS)
    mine = principal.token_id if principal.role == "uploader" else None
    found = await records.listing(
        request.app[CATALOG].engine, issuer_token=mine, agency_id=principal.agency_id
    )
    return web.json_response({"tickets": [t.to_json() for t in found]})


async def show(request: web.Request) -> web.Response:
    _, ticket = await _readable(request, *READERS)
    return web.json_response(ticket.to_json())


async def views(request: web.Request) -> web.Response:
    """GET /api/tickets/{id}/views: every view session, with bytes served."""
    _, ticket = await _readable(request, *READERS)
    sessions = await records.views(request.app[CATALOG].engine, ticket.id)
    return web.json_response({"ticket": ticket.id, "views": sessions})


async def revoke(request: web.Request) -> web.Response:
    """POST /api/tickets/{id}/revoke: takes effect on the next request, and ends this
    process's streams of the ticket at their next chunk."""
    principal, ticket = await _readable(request, *ISSUERS)
    await revoke_ticket(
        request.app[CATALOG].engine, ticket.id, actor=principal.label, client=request.remote
    )
    request.app[RUNTIME].revoked.add(ticket.id)
    fresh = await records.get(request.app[CATALOG].engine, ticket.id)
    assert fresh is not None
    return web.json_response(fresh.to_json())
