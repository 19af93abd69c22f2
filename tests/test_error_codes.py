"""Errors carry stable codes: every code of the server's table is documented in docs/api.md,
every domain refusal has an HTTP answer, and handlers answer domain refusals by their code
(never by searching the message)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from avidence.server import errors
from avidence.server.failures import Code, DomainError
from avidence.storage.local import LocalStore

from support.retention import retention_api, upload
from support.servers import Api

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_every_error_code_is_documented_with_its_status() -> None:
    text = DOCS.read_text()
    documented = dict(re.findall(r"^\| `([a-z_0-9]+)` \| (\d{3}) \|", text, flags=re.M))
    missing = {
        cls.code: cls.status
        for cls in errors.table()
        if documented.get(cls.code) != str(cls.status)
    }
    assert not missing, f"codes missing from docs/api.md (or with another status): {missing}"


def test_codes_are_unique_per_status() -> None:
    seen: dict[str, int] = {}
    for cls in errors.table():
        assert seen.setdefault(cls.code, cls.status) == cls.status, cls.code


@pytest.mark.parametrize("code", list(Code))
def test_every_domain_code_has_an_http_answer_with_that_code(code: Code) -> None:
    answer = errors.from_domain_error(DomainError("reworded at will", code=code))
    assert answer.code == code.value and answer.message == "reworded at will"


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (web.HTTPNotFound(), "not_found"),
        (web.HTTPMethodNotAllowed("PUT", ["GET"]), "method_not_allowed"),
        (web.HTTPRequestEntityTooLarge(max_size=1, actual_size=2), "body_too_large"),
    ],
)
def test_aiohttp_answers_take_the_tables_codes(exc: web.HTTPException, code: str) -> None:
    error = errors.from_http_exception(exc)
    assert (error.code, error.status) == (code, exc.status)
    assert error.code in {cls.code for cls in errors.table()}


@pytest.fixture()
async def rapi(tmp_path: Path) -> AsyncIterator[Api]:
    store = LocalStore(tmp_path / "data" / "store")
    await store.open()
    try:
        async for api in retention_api(tmp_path, store):
            yield api
    finally:
        await store.close()


async def test_domain_refusals_answer_their_code_and_status(rapi: Api) -> None:
    api = rapi
    admin = {"Authorization": f"Bearer {api.admin}"}
    evidence_id = await upload(api, b"codes", case="E-1")
    url = f"/api/admin/evidence/{evidence_id}/retention"
    cases: list[tuple[str, str, object, int, str]] = [
        ("POST", "/api/cases", {"number": "E-1"}, 409, "case_exists"),
        ("POST", "/api/cases", {"number": " E-2"}, 400, "bad_request"),
        ("PUT", url, {"class": "nope", "reason": "r"}, 400, "bad_request"),
        (
            "PUT",
            "/api/admin/evidence/ev_missing/retention",
            {"class": "long", "reason": "r"},
            404,
            "evidence_unknown",
        ),
        (
            "POST",
            "/api/admin/holds",
            {"scope": "evidence", "target": "ev_none", "reason": "r"},
            404,
            "evidence_unknown",
        ),
        ("POST", "/api/admin/holds/hold_none/release", {"reason": "r"}, 404, "hold_unknown"),
        (
            "POST",
            f"/api/admin/evidence/{evidence_id}/restore",
            {"reason": "r"},
            409,
            "retention_refused",
        ),
    ]
    for method, path, body, status, code in cases:
        response = await api.client.request(method, path, json=body, headers=admin)
        error = (await response.json())["error"]
        assert (response.status, error["code"]) == (status, code), (method, path, body, error)
        assert error["status"] == status
