"""The Host header is checked before any handler: upload links are built from it.

RFC 9112 3.2: "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1
request message that ... contains ... a Host header field with an invalid field value." The tus
`Location` is built from the Host the request names (`X-Forwarded-Host` was checked, the Host
itself was not), so `Host: a b` or `user@x/..` made upload links that lead nowhere.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from .errors import BadRequest
from .proxies import valid_host


@web.middleware
async def host_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """400 for a Host header that is no host name or address with an optional port (a request
    without one, HTTP/1.0, passes: aiohttp names the server's own address instead)."""
    host = request.headers.get("Host")
    if host is not None and not valid_host(host):
        raise BadRequest("the Host header is not a host name or address with an optional port")
    return await handler(request)
