"""Reading JSON request bodies the same way in every API: one object, or a 400 saying why.

Nesting is capped before parsing: Python's decoder recurses once per level, so a body nested a
thousand deep (a few kilobytes) raised RecursionError and answered 500. No API body needs more
than a few levels.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import ClientPayloadError, web
from aiohttp.web_request import FileField
from multidict import MultiDictProxy

from .errors import BadRequest, JsonTooDeep
from .storable import holds_unstorable, json_text_may_hold_unstorable

MAX_DEPTH = 32
# A string (skipped whole, escapes included) or one bracket.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def depth(text: str, *, stop: int | None = None) -> int:
    """The deepest nesting of arrays and objects in `text`, brackets inside strings not counted;
    the scan ends as soon as `stop` is passed, so a megabyte of `[` costs microseconds.

    Malformed text gives some number; the parser that runs after this reports what is wrong."""
    level = deepest = 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            level += 1
            if level > deepest:
                deepest = level
                if stop is not None and deepest > stop:
                    break
        elif token in "]}":
            level -= 1
    return deepest


def loads(text: str) -> Any:
    """Parse JSON text whose nesting is within MAX_DEPTH: JsonTooDeep or BadRequest otherwise."""
    if depth(text, stop=MAX_DEPTH) > MAX_DEPTH:
        raise JsonTooDeep(f"the JSON body is nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not JSON") from None


# The client went away mid-body: its doing, not the catalog's (the error table reads a bare
# ConnectionError as the catalog's connection breaking: 503 and an ERROR line).
_CLIENT_GONE = (ConnectionError, ClientPayloadError)
_CUT_OFF = "the request body broke off before its end"


async def form_body(request: web.Request) -> MultiDictProxy[str | bytes | bytearray | FileField]:
    """The request's form fields (a browser's POST); a body cut off is a 400, as in json_body."""
    try:
        return await request.post()
    except _CLIENT_GONE:
        raise BadRequest(_CUT_OFF) from None


async def json_body(request: web.Request, *, required: bool = False) -> dict[str, Any]:
    """The request's JSON object; an empty body is `{}` unless `required`; 400 otherwise."""
    if not request.can_read_body and not required:
        return {}
    try:
        text = await request.text()
    except UnicodeDecodeError:
        raise BadRequest("the body is not JSON") from None
    except _CLIENT_GONE:
        raise BadRequest(_CUT_OFF) from None
    body = loads(text)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    if json_text_may_hold_unstorable(text) and holds_unstorable(body):
        raise BadRequest("text in the body holds a NUL character or an unpaired surrogate")
    return body


def known_fields(body: dict[str, Any], *allowed: str) -> dict[str, Any]:
    """`body` when it names only `allowed` fields; 400 naming the others. For a body that sets
    state where a missing field means "none": a misspelt one must not clear a setting."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise BadRequest(
            f"unknown field(s) {', '.join(unknown)}; known: {', '.join(allowed)}",
            details={"unknown": unknown},
        )
    return body
