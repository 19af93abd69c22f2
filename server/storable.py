"""Text a client sends must be text both catalogs can store: no NUL, no unpaired surrogate.

PostgreSQL text cannot hold U+0000, and neither catalog can store a string with an unpaired
UTF-16 surrogate (JSON's `"\\ud800"` parses to one; it has no UTF-8 form). A NUL in an id in a
path (`/api/evidence/ev_%00`), in a query (`?case=a%00b`) or in a JSON string (a hold's reason)
made PostgreSQL's driver fail, and the error table, which reads a driver error as a lost
connection, answered 503 "the catalog is unreachable; retry later" to a request that can never
succeed, and logged an outage; a lone surrogate did the same there and answered 500 on SQLite.
Both are refused up front with a 400. (Paths and queries cannot carry a surrogate: aiohttp
decodes them as UTF-8, replacing what is not.)
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .errors import BadRequest

NUL = "\x00"
# The JSON escapes that can put either into a parsed string (raw control characters are not
# valid JSON, and raw surrogates cannot be in UTF-8 text).
_ESCAPES = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _unstorable(text: str) -> bool:
    if NUL in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def holds_unstorable(value: Any) -> bool:
    """True when a string anywhere in a parsed JSON value (keys included) holds a NUL or an
    unpaired surrogate."""
    if isinstance(value, str):
        return _unstorable(value)
    if isinstance(value, dict):
        return any(holds_unstorable(k) or holds_unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_unstorable(v) for v in value)
    return False


def json_text_may_hold_unstorable(text: str) -> bool:
    """Cheap test on the raw JSON text: False means no parsed string can be unstorable."""
    return _ESCAPES.search(text) is not None


@web.middleware
async def nul_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """400 for a NUL in the decoded path or in a query name or value, before any handler."""
    if NUL in request.path or any(NUL in k or NUL in v for k, v in request.query.items()):
        raise BadRequest("the request's path or query holds a NUL character")
    return await handler(request)
