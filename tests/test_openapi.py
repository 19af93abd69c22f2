"""The OpenAPI document validates and describes exactly the routes the app serves."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from openapi_spec_validator import validate

from avidence.server import config
from avidence.server.app import create_app
from avidence.server.openapi.document import build

from support.agencies import TwoAgencies

METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}


def served(app: web.Application) -> tuple[set[tuple[str, str]], set[str]]:
    """(method, path) of every explicit route, and the paths of catch-all (`*`) routes."""
    explicit, catch_all = set(), set()
    for route in app.router.routes():
        resource = route.resource
        assert resource is not None
        path = resource.canonical
        if route.method == "*":
            catch_all.add(path)
        else:
            explicit.add((route.method.lower(), path))
    # aiohttp adds HEAD beside each GET; only an explicit one needs describing
    explicit -= {("head", p) for m, p in set(explicit) if m == "get"}
    return explicit, catch_all


def described(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m, p) for p, item in document["paths"].items() for m in item if m in METHODS}


def check_drift(app: web.Application, document: dict[str, Any]) -> list[str]:
    explicit, catch_all = served(app)
    doc = described(document)
    problems = [f"undocumented route {m.upper()} {p}" for m, p in sorted(explicit - doc)]
    problems += [f"undocumented catch-all route {p}" for p in sorted(catch_all)
                 if not any(dp == p for _, dp in doc)]  # fmt: skip
    problems += [
        f"documented but not served: {m.upper()} {p}"
        for m, p in sorted(doc - explicit)
        if p not in catch_all
    ]
    return problems


async def test_openapi_document_validates_and_covers_every_route(agencies: TwoAgencies) -> None:
    response = await agencies.api.client.get("/api/openapi.json")
    assert response.status == 200
    document = await response.json()
    validate(document)
    assert check_drift(agencies.api.client.app, document) == []
    assert "/api/cases/{case_id}/transfers" in document["paths"]


def test_drift_is_detected_both_ways() -> None:
    settings = config.load(env={}, tus_path="/uploads/")
    app = create_app(settings)
    document = build(settings)
    assert check_drift(app, document) == []  # the tus path follows the setting

    async def extra(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/api/new-thing", extra)
    del document["paths"]["/api/keys"]
    problems = check_drift(app, document)
    assert "undocumented route GET /api/new-thing" in problems
    assert "undocumented route GET /api/keys" in problems
    document["paths"]["/api/ghost"] = {"get": {"responses": {}}}
    assert "documented but not served: GET /api/ghost" in check_drift(app, document)
