"""Liveness and version endpoints for load balancers and operators."""

from __future__ import annotations

from aiohttp import web

from avidence import __version__

from .catalog.db import CatalogUnavailable
from .errors import ServiceUnavailable
from .state import CATALOG, STORE


async def healthz(request: web.Request) -> web.Response:
    """200 when the catalog answers; the store is checked at start-up and on every request that
    touches it, so a slow S3 never makes a balancer take healthy replicas out."""
    try:
        await request.app[CATALOG].check()
    except CatalogUnavailable as exc:
        raise ServiceUnavailable(str(exc)) from None
    return web.json_response(
        {"status": "ok", "version": __version__, "store": request.app[STORE].name}
    )


async def version(request: web.Request) -> web.Response:
    return web.json_response({"name": "avidence", "version": __version__})
