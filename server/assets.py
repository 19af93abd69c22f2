"""Static files of the server's own pages (the ticket viewer, the upload page), from the package.

Read once at start-up and served with an ETag: no CDN and no file system path at run time, so
the pages' Content-Security-Policy can allow scripts from this origin only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from .errors import NotFound

# A page that holds a bearer token (the upload page, the desk): scripts and styles from this
# origin only, no inline code, never framed (clickjacking a form that holds a token), and
# `connect-src 'self'` keeps the token from being sent anywhere else.
TOKEN_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_TYPES = {".css": "text/css", ".js": "text/javascript", ".txt": "text/plain"}


@dataclass(slots=True, frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets(package: str, names: Iterable[str]) -> dict[str, Asset]:
    """The named files of `package`, by name; the type comes from the suffix."""
    folder = resources.files(package)
    assets = {}
    for name in names:
        body = folder.joinpath(name).read_bytes()
        kind = _TYPES[name[name.rindex(".") :]]
        assets[name] = Asset(body, kind, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
    return assets


def assets_handler(assets: dict[str, Asset]) -> Callable[[web.Request], Awaitable[web.Response]]:
    """GET <prefix>/{name}: 404 for a name not in `assets`, 304 for a current ETag."""

    async def handle(request: web.Request) -> web.Response:
        asset = assets.get(request.match_info["name"])
        if asset is None:
            raise NotFound()
        headers = {"ETag": asset.etag, "Cache-Control": "no-cache"}
        if request.headers.get("If-None-Match") == asset.etag:
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=asset.body, content_type=asset.content_type, charset="utf-8", headers=headers
        )

    return handle


def token_page_headers(
    page: str,
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """An `on_response_prepare` hook giving `page` and `page/...` the token page's headers."""

    async def add(request: web.Request, response: web.StreamResponse) -> None:
        if request.path != page and not request.path.startswith(page + "/"):
            return
        headers = response.headers
        headers["Content-Security-Policy"] = TOKEN_PAGE_CSP
        headers["X-Frame-Options"] = "DENY"
        headers["Referrer-Policy"] = "no-referrer"
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Cross-Origin-Resource-Policy"] = "same-origin"
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
        if request.path == page:
            headers["Cache-Control"] = "no-store"

    return add
