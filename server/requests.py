"""Reading JSON request bodies the same way in every API: one object, or a 400 saying why."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .errors import BadRequest


async def json_body(request: web.Request, *, required: bool = False) -> dict[str, Any]:
    """The request's JSON object; an empty body is `{}` unless `required`; 400 otherwise."""
    if not request.can_read_body and not required:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body
