"""Floods and parser limits: made-up bearer tokens, upload creation, deeply nested JSON, and the
strength of link tokens. Each is answered with a JSON error and a code, never a 5xx."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from avidence.server.auth import AUTH_PROBES
from avidence.server.limits import RateLimiter
from avidence.server.requests import MAX_DEPTH, depth
from avidence.server.tickets import records
from avidence.storage.local import LocalStore

from support.integrity import assert_chain_valid
from support.servers import Api, make_api, metadata
from support.tickets import audit_entries, issue, token_of, upload


@pytest.fixture()
async def limited(tmp_path: Path) -> AsyncIterator[Api]:
    """An app allowing 5 upload creations a minute and 3 open uploads per token."""
    server = make_api(
        tmp_path,
        LocalStore(tmp_path / "store"),
        upload_create_per_minute=5,
        max_open_uploads=3,
    )
    api = await anext(server)
    try:
        yield api
    finally:
        await server.aclose()


async def _create(api: Api, token: str | None = None) -> Any:
    headers = {**api.auth(token), "Upload-Length": "10", "Upload-Metadata": metadata(case="C-1")}
    return await api.client.post("/files/", headers=headers)


@pytest.mark.parametrize("store", ["local"], indirect=True)
async def test_made_up_bearer_tokens_429_past_the_limit_and_summarised_in_the_audit_log(
    api: Api,
) -> None:
    guard = api.client.app[AUTH_PROBES]
    guard.limiter, guard.every = RateLimiter(rate=0.01, burst=10), 600.0
    statuses: list[int] = []
    for _ in range(200):
        response = await api.client.get(
            "/api/tickets", headers={"Authorization": f"Bearer avd_{secrets.token_hex(16)}"}
        )
        statuses.append(response.status)
        if response.status == 429:
            assert int(response.headers["Retry-After"]) >= 1
            assert (await response.json())["error"]["code"] == "too_many_requests"
    assert statuses == [401] * 10 + [429] * 190
    entries = await audit_entries(api, "auth.failed")
    assert len(entries) == 1  # not one per guess
    assert entries[0].details["failures_since_last_entry"] == 1
    assert entries[0].client == "127.0.0.1"
    # A real token from the same address still works.
    real = await api.client.get("/api/tickets", headers={"Authorization": f"Bearer {api.admin}"})
    assert real.status == 200
    guard.every = 0.0  # the period ends: the next failure writes the count held back
    await api.client.get("/api/tickets", headers={"Authorization": "Bearer avd_made_up"})
    entries = await audit_entries(api, "auth.failed")
    assert len(entries) == 2 and entries[1].details["failures_since_last_entry"] == 200
    assert entries[1].details["limited"] is True
    await assert_chain_valid(api.catalog.engine)


async def test_upload_creation_429_uploads_too_fast_with_retry_after(tmp_path: Path) -> None:
    server = make_api(tmp_path, LocalStore(tmp_path / "store"), upload_create_per_minute=5)
    api = await anext(server)
    try:
        statuses = [(await _create(api)).status for _ in range(5)]
        assert statuses == [201] * 5
        fast = await _create(api)
        assert fast.status == 429 and 1 <= int(fast.headers["Retry-After"]) <= 60
        assert (await fast.json())["error"]["code"] == "uploads_too_fast"
        # per token: another uploader is not slowed down
        assert (await _create(api, api.other_uploader)).status == 201
    finally:
        await server.aclose()


async def test_open_uploads_capped_per_token_429_until_one_ends(limited: Api) -> None:
    locations = []
    for _ in range(3):
        response = await _create(limited)
        assert response.status == 201
        locations.append("/files/" + response.headers["Location"].rsplit("/", 1)[1])
    refused = await _create(limited)
    assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
    body = await refused.json()
    assert body["error"]["code"] == "too_many_open_uploads"
    deleted = await limited.client.delete(locations[0], headers=limited.auth())
    assert deleted.status == 204
    assert (await _create(limited)).status == 201
    # what was stored is intact: the two others still answer HEAD
    for location in locations[1:]:
        head = await limited.client.head(location, headers=limited.auth())
        assert head.status == 200 and head.headers["Upload-Offset"] == "0"


@pytest.mark.parametrize("store", ["local"], indirect=True)
@pytest.mark.parametrize(
    "body",
    ["[" * 1000 + "]" * 1000, '{"a":' * 1000 + "1" + "}" * 1000, "[" * 100_000],
    ids=["arrays", "objects", "unclosed"],
)
async def test_json_nested_deep_400_json_too_deep(api: Api, body: str) -> None:
    headers = {"Authorization": f"Bearer {api.admin}", "Content-Type": "application/json"}
    for path in ("/api/tickets", "/api/webhooks", "/api/cases"):
        response = await api.client.post(path, data=body, headers=headers)
        assert response.status == 400, path
        assert (await response.json())["error"]["code"] == "json_too_deep"


def test_json_depth_ignores_brackets_inside_strings() -> None:
    assert depth('{"a": "[[[[{{{{", "b": [1, [2]]}') == 3
    assert depth('"\\"[[[["') == 0
    assert depth("[" * (MAX_DEPTH + 1)) == MAX_DEPTH + 1


@pytest.mark.parametrize("store", ["local"], indirect=True)
async def test_link_tokens_carry_256_bits_and_older_links_still_open(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    evidence_id = await upload(api, b"abc")
    token = token_of(await issue(api, [evidence_id]))
    assert len(token) == 43 and records.TOKEN_PATTERN.match(token)  # 32 bytes, base64url
    monkeypatch.setattr(records, "TOKEN_BYTES", 24)  # a link issued before the change
    older = token_of(await issue(api, [evidence_id]))
    assert len(older) == 32
    for link in (token, older):
        assert (await api.client.get(f"/t/{link}")).status == 200
