"""Reading JSON request bodies the same way in every API: one object, or a 400 saying why.

Nesting is capped before parsing: Python's decoder recurses once per level, so a body nested a
thousand deep (a few kilobytes) raised RecursionError and answered 500. No API body needs more
than a few levels.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from aiohttp import web

from .errors import BadRequest, JsonTooDeep

MAX_DEPTH = 32
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def depth(text: str) -> int:
    """The deepest nesting of arrays and objects in `text`, brackets inside strings not counted.

    Malformed text gives some number; the parser that runs after this reports what is wrong."""
    steps = (1 if m.group() in "[{" else -1 for m in _BRACKET.finditer(_STRING.sub("", text)))
    return max(accumulate(steps, initial=0))


def loads(text: str) -> Any:
    """Parse JSON text whose nesting is within MAX_DEPTH: JsonTooDeep or BadRequest otherwise."""
    if depth(text) > MAX_DEPTH:
        raise JsonTooDeep(f"the JSON body is nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not JSON") from None


async def json_body(request: web.Request, *, required: bool = False) -> dict[str, Any]:
    """The request's JSON object; an empty body is `{}` unless `required`; 400 otherwise."""
    if not request.can_read_body and not required:
        return {}
    try:
        text = await request.text()
    except UnicodeDecodeError:
        raise BadRequest("the body is not JSON") from None
    body = loads(text)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body
