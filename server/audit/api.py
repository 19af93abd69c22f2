"""Admin API of the audit log: its state (head, newest checkpoint, witnesses) for the desk."""

from __future__ import annotations

from aiohttp import web

from ..auth import require_site
from ..state import CATALOG, SETTINGS
from . import state


async def get_state(request: web.Request) -> web.Response:
    """GET /api/admin/audit: the head, the newest signed checkpoint and what the witnesses hold."""
    await require_site(request, "admin", "auditor")
    return web.json_response(await state.state(request.app[CATALOG].engine, request.app[SETTINGS]))


def setup(app: web.Application) -> None:
    app.router.add_get("/api/admin/audit", get_state)
