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
