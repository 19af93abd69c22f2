"""Access tickets: links that let a named recipient watch (and maybe download) chosen evidence.

A ticket replaces the DVD: a clerk issues it (`avidence-server ticket create`, `POST
/api/tickets`, or `issue_ticket` from code), the recipient opens `/t/<token>` in a browser and
watches with seeking; the link expires, can be revoked at once, can be limited to N views and
protected by an access code, and every use is on the audit log.

Modules: `records` (catalog rows), `issue` (issue and revoke, audited), `codes` (access codes),
`seals` (signed cookie and view grants), `limits` (rate limits), `views` (view sessions and
stream re-checks), `allowance` (a view's time window and byte budget), `recent` and
`quickreads` (what the media path keeps in memory, and how it re-checks it), `runtime` (shared
state, ticket resolution, security headers), `viewer` (the page), `serving` (media, downloads,
receipts), `pages` and `i18n` (HTML, zh/en), `api`
(JSON API), `cli` (`avidence-server ticket ...`).
"""

from __future__ import annotations

from aiohttp import web

from ..assets import assets_handler, load_assets
from . import api, runtime, serving, viewer
from .issue import issue_ticket, link, parse_expiry, revoke_ticket

__all__ = ["issue_ticket", "link", "parse_expiry", "revoke_ticket", "setup"]


def setup(app: web.Application) -> None:
    """Routes, the per-process runtime (started after the catalog) and the security headers."""
    runtime.install_log_redaction()
    app.cleanup_ctx.append(runtime.lifecycle)
    app.on_response_prepare.append(runtime.security_headers)
    token = "/t/{token}"
    app.router.add_get(token, viewer.page)
    app.router.add_post(token + "/code", viewer.enter_code)
    app.router.add_post(token + "/views", viewer.start_view)
    app.router.add_get(token + "/media/{evidence_id}", serving.media)
    app.router.add_get(token + "/poster/{evidence_id}", serving.poster)
    app.router.add_get(token + "/download/{evidence_id}", serving.download)
    app.router.add_get(token + "/receipt/{evidence_id}", serving.receipt)
    viewer_assets = load_assets(
        "avidence.server.viewer", ("viewer.css", "viewer.js", "localtime.js")
    )
    app.router.add_get("/viewer/{name}", assets_handler(viewer_assets))
    app.router.add_post("/api/tickets", api.create)
    app.router.add_get("/api/tickets", api.listing)
    app.router.add_get("/api/tickets/{ticket_id}", api.show)
    app.router.add_get("/api/tickets/{ticket_id}/views", api.views)
    app.router.add_post("/api/tickets/{ticket_id}/revoke", api.revoke)
