"""The case desk `/desk`: case handlers and storage admins work in a browser.

The desk is a client of the JSON API and nothing else: every action (acknowledge, reject,
issue or revoke a link, read holds or usage) is a call the case systems and the CLI make too,
authorised, checked and audited by the same handlers. The server sends one static page in the
visitor's language (zh/en, chosen as the viewer chooses) and its scripts; the scripts ask
`GET /api/me` what the token may do and show that.

The token is typed in once per tab and kept in `sessionStorage`, sent only as an
`Authorization` header, never in a URL or a cookie (docs/desk.md says why not an HttpOnly
session cookie). Scripts are ES modules from this origin only; no inline script or style runs,
the page is never framed, and `connect-src 'self'` keeps the token from going anywhere else.
"""

from __future__ import annotations

from aiohttp import web

from ..assets import assets_handler, load_assets, token_page_headers
from . import page

ASSETS = (
    "desk.css",
    "desk.js",
    "api.js",
    "dom.js",
    "inbox.js",
    "cases.js",
    "links.js",
    "paper.js",
    "admin.js",
)


def setup(app: web.Application) -> None:
    app.router.add_get("/desk", page.handle)
    app.router.add_get("/desk/{name}", assets_handler(load_assets(__name__, ASSETS)))
    app.on_response_prepare.append(token_page_headers("/desk"))
