"""The browser upload page `/upload`, for evidence desks without the `avidence` CLI.

The page is static apart from its words (zh/en, chosen as the viewer chooses them) and the tus
endpoint; the work happens in the browser: `upload.js` drives tus-js-client against the server's
own tus endpoint with the uploader's bearer token, then reads the evidence id and digests from
`GET /api/uploads/{id}`. The token is typed in, kept in `sessionStorage` and sent only as an
`Authorization` header: never in a URL, a cookie or a log line.

Vendored: `tus.min.js` is `dist/tus.min.js` of tus-js-client 4.3.1 from npm, unchanged (sha256
8cbb1b63fccc3bba0ae73ad1deb160ce046c3750851d0c3e94921ae3ef070eb8), with its MIT licence in
`tus-js-client.LICENSE.txt`. No CDN: the page's Content-Security-Policy allows only this origin.
"""

from __future__ import annotations

from aiohttp import web

from ..assets import assets_handler, load_assets, token_page_headers
from . import page

ASSETS = ("upload.css", "upload.js", "tus.min.js", "tus-js-client.LICENSE.txt")


def setup(app: web.Application) -> None:
    app.router.add_get("/upload", page.handle)
    app.router.add_get("/upload/{name}", assets_handler(load_assets(__name__, ASSETS)))
    app.on_response_prepare.append(token_page_headers("/upload"))
