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
        "responses": {str(op.status): answer, "default": _error(op)},
    }
    params = _PARAM.findall(op.path.replace("{tus}", "").replace("{tus_bare}", ""))
    if params:
        operation["parameters"] = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in params
        ]
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
