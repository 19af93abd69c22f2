"""No NUL (U+0000) in what a client sends: request paths, queries and JSON text.

PostgreSQL text cannot hold U+0000. A NUL in an id in a path (`/api/evidence/ev_%00`), in a
query (`?case=a%00b`) or in a JSON string (a transfer's note, a hold's reason) made the driver
fail, and the error table, which reads a driver error as a lost connection, answered 503 "the
catalog is unreachable; retry later" to a request that can never succeed, and logged an outage.
SQLite stored the NUL. Both catalogs now refuse it up front with a 400.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .errors import BadRequest

NUL = "\x00"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def holds_nul(value: Any) -> bool:
    """True when a string anywhere in a parsed JSON value (keys included) contains NUL."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_nul(v) for v in value)
    return False


@web.middleware
async def nul_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """400 for a NUL in the decoded path or in a query name or value, before any handler."""
    if NUL in request.path or any(NUL in k or NUL in v for k, v in request.query.items()):
        raise BadRequest("the request's path or query holds a NUL character")
    return await handler(request)
