"""`GET /api/me`: who a bearer token is, so a client (the desk) can show what its role may do."""

from __future__ import annotations

from aiohttp import web

from ..auth import require
from ..catalog.schema_exchange import DEFAULT_AGENCY
from ..state import CATALOG
from . import records


async def me(request: web.Request) -> web.Response:
    principal = await require(request)
    agency = await records.by_id(request.app[CATALOG].engine, principal.agency_id)
    return web.json_response(
        {
            "token": principal.token_id,
            "name": principal.name,
            "role": principal.role,
            "agency": {
                "id": principal.agency_id,
                "name": agency.name if agency is not None else principal.agency_id,
            },
            # Storage administration (holds, purges, usage, integrity, audit state) is the
            # site operator's agency's (auth.require_site).
            "site": principal.agency_id == DEFAULT_AGENCY
            and principal.role in ("admin", "auditor"),
        }
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/api/me", me)
