"""Assembling the OpenAPI 3.1 document from the operation table, and serving it."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from avidence import __version__

from ..config import Settings
from ..state import SETTINGS
from .operations import OPERATIONS, Op
from .schemas import SCHEMAS, ref

_PARAM = re.compile(r"{([^}]+)}")
_STATUS_TEXT = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content"}


def concrete_path(op: Op, settings: Settings) -> str:
    tus = settings.tus_path
    return op.path.replace("{tus_bare}", tus.rstrip("/")).replace("{tus}", tus)


def _error(op: Op) -> dict[str, Any]:
    """Errors are JSON, except where a person in a browser reads them: a page's errors are
    pages too (an expired or unknown link shows a page in the recipient's language)."""
    content: dict[str, Any] = {"application/json": {"schema": ref("Error")}}
    if op.media == "text/html":
        content["text/html"] = {"schema": {"type": "string"}}
    return {"description": "Error", "content": content}


_ERROR_TEXT = {
    400: "Malformed request (JSON body, header or parameter); the error names the field",
    401: "No or unknown bearer token (or: the link needs its access code)",
    403: "The token's role or agency may not do this (or: wrong access code)",
    404: "Unknown, or not visible to the caller's agency (the two are not told apart)",
    405: "Method not allowed",
    409: "Conflict with the current state (offset, lock, transfer or retention state, or "
    "evidence withheld after a failed integrity check)",
    410: "Gone: expired, revoked or exhausted link, a view's time or data used up, expired "
    "upload, purged evidence",
    412: "Unsupported Tus-Resumable version",
    413: "Too large: body, upload or per-upload quota",
    415: "Wrong Content-Type",
    429: "Too many requests; see Retry-After",
    431: "Too many or too long request headers",
    460: "Upload-Checksum does not match; the request's bytes were discarded",
    503: "Shutting down, or the catalog or store is unreachable; see Retry-After",
    507: "Storage full or quota exceeded",
}


def error_statuses(op: Op) -> list[int]:
    """The error answers an operation can give, from its shape: what authenticates it, what
    it names in its path, what it reads, and what any request can meet (431, 503)."""
    codes = {400, 431, 503}
    if op.roles is not None:
        codes |= {401, 403, 429}  # 429: too many unknown bearer tokens from one address
    if _PARAM.search(op.path.replace("{tus}", "").replace("{tus_bare}", "")):
        codes.add(404)
    if op.body or op.method in ("POST", "PUT", "DELETE"):
        codes |= {404, 409, 413, 415}  # 404: an id named in the body
    if op.path.startswith("/t/"):
        codes |= {401, 403, 404, 409, 410, 429}  # 409: integrity_withheld
    if op.path.startswith("{tus"):
        codes |= {404, 409, 410, 412, 413, 415, 429, 460, 507}  # 429: creation limits
    if op.path.startswith("/api/evidence/"):
        codes.add(410)  # purged: the error carries the tombstone
    if op.tag == "transfers":
        codes.add(410)
    return sorted(codes)


def _operation(op: Op) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": _STATUS_TEXT.get(op.status, "OK")}
    if op.status != 204:
        schema = ref(op.answer) if op.answer else {}
        media = (op.media,) if isinstance(op.media, str) else op.media
        answer["content"] = {kind: {"schema": schema} for kind in media}
    slug = re.sub(r"[^a-z0-9]+", "_", op.path.lower()).strip("_")
    operation: dict[str, Any] = {
        "tags": [op.tag],
        "summary": op.summary,
        "operationId": f"{op.method.lower()}_{slug}",
        "responses": {
            str(op.status): answer,
            **{
                str(code): {**_error(op), "description": _ERROR_TEXT[code]}
                for code in error_statuses(op)
            },
        },
    }
    params = _PARAM.findall(op.path.replace("{tus}", "").replace("{tus_bare}", ""))
    parameters = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params
    ] + [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": meaning,
            "schema": {"type": "string"},
        }
        for name, meaning in op.query
    ]
    if parameters:
        operation["parameters"] = parameters
    if op.roles is not None:
        operation["security"] = [{"bearer": []}]
        operation["description"] = "Roles: " + ", ".join(op.roles) + "."
    else:
        operation["security"] = []
    if op.body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(op.body)}},
        }
    return operation


def build(settings: Settings) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(concrete_path(op, settings), {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "avidence",
            "version": __version__,
            "description": "Resumable evidence uploads (tus 1.0), custody, cross-agency "
            "transfers, viewer tickets and webhooks. See docs/api.md.",
        },
        "servers": [{"url": settings.base_url}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


async def handle(request: web.Request) -> web.Response:
    """GET /api/openapi.json. Public, like the routes it lists."""
    return web.json_response(build(request.app[SETTINGS]))


def setup(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", handle)
