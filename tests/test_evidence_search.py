"""Evidence search and lookup by digest (GET /api/evidence): scoped to what the caller may
see, keyset pages newest first that neither skip nor repeat, and a clear 400 for every bad
parameter. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from support.agencies import TwoAgencies, two_agencies
from support.tickets import upload


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str | None:
    """None: the SQLite file in the data dir; else a fresh PostgreSQL database."""
    return None if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


@pytest.fixture()
async def world(database: str | None, tmp_path: Path) -> AsyncIterator[TwoAgencies]:
    async for agencies in two_agencies(tmp_path, database=database):
        yield agencies


async def _search(
    world: TwoAgencies, query: str, role: str = "handler", *, agency: Any = None
) -> Any:
    who = agency or world.police
    response = await world.api.client.get(f"/api/evidence?{query}", headers=who.auth(role))
    body = await response.json()
    assert response.status == 200, body
    return body


async def test_search_filters_and_digest_lookup_stay_inside_the_agency(world: TwoAgencies) -> None:
    api, police, court = world.api, world.police, world.court
    uploader = police.tokens["uploader"]
    first = await upload(api, b"interview one", case="GA-1", filename="room2-a.mp4", token=uploader)
    second = await upload(
        api, b"interview two", case="GA-1", filename="room2-b.mp4", token=uploader
    )
    other = await upload(api, b"cctv", case="GA-2", filename="cctv.mp4", item="7", token=uploader)
    theirs = await upload(api, b"court file", case="GA-1", token=court.tokens["uploader"])

    by_case = await _search(world, "case=GA-1")
    assert [e["id"] for e in by_case["evidence"]] == [second, first]  # newest first
    assert by_case["next"] is None
    case_id = (
        await (await api.client.get("/api/cases?number=GA-1", headers=police.auth())).json()
    )["cases"][0]["id"]
    assert [e["id"] for e in (await _search(world, f"case={case_id}"))["evidence"]] == [
        second,
        first,
    ]
    assert [e["id"] for e in (await _search(world, "filename=cctv.mp4"))["evidence"]] == [other]
    assert [e["id"] for e in (await _search(world, "filename_prefix=room2-"))["evidence"]] == [
        second,
        first,
    ]
    assert [e["id"] for e in (await _search(world, "item=7"))["evidence"]] == [other]

    sha = hashlib.sha256(b"interview two").hexdigest()
    found = (await _search(world, f"sha256={sha.upper()}"))["evidence"]
    assert [e["id"] for e in found] == [second] and found[0]["sha256"] == sha
    # The court holds no copy of it: to the court the digest names nothing.
    assert (await _search(world, f"sha256={sha}", agency=court))["evidence"] == []
    assert [e["id"] for e in (await _search(world, "case=GA-1", agency=court))["evidence"]] == [
        theirs
    ]

    received = found[0]["received_at"]
    since = await _search(world, f"received_after={received}")
    assert {e["id"] for e in since["evidence"]} == {second, other}
    assert (await _search(world, "received_before=2000-01-01T00:00:00Z"))["evidence"] == []


async def test_an_uploader_finds_only_its_own_uploads(world: TwoAgencies) -> None:
    api, police = world.api, world.police
    mine = await upload(api, b"mine", case="GA-3", token=police.tokens["uploader"])
    await upload(api, b"the admin's", case="GA-3", token=police.tokens["admin"])
    listed = await _search(world, "case=GA-3", role="uploader")
    assert [e["id"] for e in listed["evidence"]] == [mine]
    assert len((await _search(world, "case=GA-3"))["evidence"]) == 2


async def test_keyset_pages_neither_skip_nor_repeat(world: TwoAgencies) -> None:
    api, police = world.api, world.police
    made = [
        await upload(api, f"clip {n}".encode(), case="GA-4", token=police.tokens["uploader"])
        for n in range(7)
    ]
    seen: list[str] = []
    query = "case=GA-4&limit=3"
    for page_number in range(5):  # bounded: 7 items in pages of 3
        page = await _search(world, query)
        seen += [e["id"] for e in page["evidence"]]
        if page_number == 0:  # something arrives while the clerk pages through
            late = await upload(api, b"late", case="GA-4", token=police.tokens["uploader"])
        if page["next"] is None:
            break
        query = f"case=GA-4&limit=3&after={page['next']}"
    assert seen == list(reversed(made))
    assert late not in seen


def _cursor(moment: str, last: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([moment, last]).encode()).decode().rstrip("=")


async def test_a_cursor_without_a_zone_is_read_as_utc_not_500(agencies: TwoAgencies) -> None:
    response = await agencies.api.client.get(
        f"/api/evidence?after={_cursor('2026-01-01T00:00:00', 'ev_x')}",
        headers=agencies.police.auth(),
    )
    assert response.status == 200, await response.text()


@pytest.mark.parametrize(
    "query",
    [
        "colour=blue",
        "sha256=abc",
        "blake3=" + "g" * 64,
        "limit=0",
        "limit=501",
        "limit=\u00b2",
        "limit=" + "9" * 5000,
        "after=not-a-cursor",
        "received_after=yesterday",
        "received_after=9999-12-31T23:59:59-14:00",  # no such time in UTC: it answered 500
        "received_before=0001-01-01T00:00:00%2B14:00",
        "after=" + _cursor("9999-12-31T23:59:59-14:00", "ev_x"),
        "state=lost",
        "integrity=perfect",
    ],
)
async def test_bad_search_parameters_answer_400_with_a_code(
    agencies: TwoAgencies, query: str
) -> None:
    response = await agencies.api.client.get(
        f"/api/evidence?{query}", headers=agencies.police.auth()
    )
    body = await response.json()
    assert response.status == 400, body
    assert body["error"]["code"] == "bad_request"
    assert query.split("=")[0] in body["error"]["message"]


async def test_unknown_case_answers_404_and_no_token_401(agencies: TwoAgencies) -> None:
    client = agencies.api.client
    missing = await client.get("/api/evidence?case=NO-SUCH", headers=agencies.police.auth())
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "not_found"
    assert (await client.get("/api/evidence")).status == 401
