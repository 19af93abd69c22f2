"""HTTP API of cases: create, list, show (with the agency's items), custody timeline.
A case another agency holds alone answers 404."""

from __future__ import annotations

from aiohttp import web

from ..auth import require
from ..errors import BadRequest, NotFound
from ..evidence import records as evidence_db
from ..requests import json_body
from ..state import CATALOG
from ..tokens import Principal, Role
from . import custody, records
from .records import Case

READERS: tuple[Role, ...] = ("handler", "admin", "auditor")
WRITERS: tuple[Role, ...] = ("handler", "admin")


async def create(request: web.Request) -> web.Response:
    """POST /api/cases {"number", "title"?} -> 201; 409 when the number is taken."""
    principal = await require(request, *WRITERS)
    body = await json_body(request)
    number, title = body.get("number"), body.get("title", "")
    if not isinstance(number, str) or not isinstance(title, str):
        raise BadRequest("number (and title) must be text")
    engine = request.app[CATALOG].engine
    # A CaseError (bad number or title, or `case_exists`) answers through the error table.
    case = await records.create(
        engine,
        agency_id=principal.agency_id,
        number=number,
        title=title,
        actor=principal.label,
        client=request.remote,
    )
    return web.json_response(case.to_json(), status=201)


async def listing(request: web.Request) -> web.Response:
    """GET /api/cases[?number=N]: the cases the caller's agency holds."""
    principal = await require(request, *READERS)
    found = await records.listing(
        request.app[CATALOG].engine,
        agency_id=principal.agency_id,
        number=request.query.get("number"),
    )
    return web.json_response({"cases": [c.to_json() for c in found]})


async def _held(request: web.Request) -> tuple[Principal, Case, list[str]]:
    principal = await require(request, *READERS)
    engine = request.app[CATALOG].engine
    case = await records.get(engine, request.match_info["case_id"], agency_id=principal.agency_id)
    if case is None:
        raise NotFound("no such case")
    ids = await records.evidence_ids(engine, case.id, agency_id=principal.agency_id)
    return principal, case, ids


async def show(request: web.Request) -> web.Response:
    _, case, ids = await _held(request)
    engine = request.app[CATALOG].engine
    items = []
    for evidence_id in ids:
        record = await evidence_db.get(engine, evidence_id)
        if record is not None:
            items.append(record.to_json())
    return web.json_response({**case.to_json(), "evidence": items})


async def custody_timeline(request: web.Request) -> web.Response:
    """GET /api/cases/{case_id}/custody: uploaded, hashed, transferred, acknowledged, viewed,
    exported, in order."""
    principal, case, ids = await _held(request)
    steps = await custody.timeline(
        request.app[CATALOG].engine, case, agency_id=principal.agency_id, evidence_ids=ids
    )
    return web.json_response({"case": case.to_json(), "evidence": ids, "timeline": steps})


def setup(app: web.Application) -> None:
    app.router.add_post("/api/cases", create)
    app.router.add_get("/api/cases", listing)
    app.router.add_get("/api/cases/{case_id}", show)
    app.router.add_get("/api/cases/{case_id}/custody", custody_timeline)
