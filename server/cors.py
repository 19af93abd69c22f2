"""CORS for browser uploaders (tus-js-client, Uppy) and embedding case systems.

Origins are configured (`cors_origins`, `*` for any); every tus header is exposed so browser
clients can read offsets and locations. Preflights are answered here without authentication.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

ALLOW_HEADERS = (
    "Authorization, Content-Type, Tus-Resumable, Upload-Length, Upload-Metadata, "
    "Upload-Offset, Upload-Defer-Length, Upload-Concat, Upload-Checksum, "
    "Avidence-Digests, X-HTTP-Method-Override, X-Requested-With"
)
EXPOSE_HEADERS = (
    "Location, Tus-Resumable, Tus-Version, Tus-Max-Size, Tus-Extension, Tus-Checksum-Algorithm, "
    "Upload-Offset, Upload-Length, Upload-Metadata, Upload-Defer-Length, Upload-Concat, "
    "Upload-Expires, Avidence-Upload-State, Avidence-Evidence-Id, Avidence-Digest-Algorithms"
)
ALLOW_METHODS = "POST, GET, HEAD, PATCH, DELETE, OPTIONS"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def cors_middleware(
    origins: tuple[str, ...],
) -> Middleware:
    allowed = set(origins)

    def origin_allowed(origin: str) -> bool:
        return "*" in allowed or origin in allowed

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        preflight = (
            request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
        )
        if preflight:
            response: web.StreamResponse = web.Response(status=204)
        else:
            response = await handler(request)
        if origin and origin_allowed(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers.add("Vary", "Origin")
            response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
            if preflight:
                response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
                response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
                response.headers["Access-Control-Max-Age"] = "86400"
        return response

    return cors
