"""What one counted view allows: a byte budget no burst of ranged requests on two replicas can
overspend, and a time window; both end the view once, audited, with a 410 that says which.

Two in-process apps share one catalog (SQLite file or PostgreSQL database), one store and one
signing key, as two replicas behind a load balancer do.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from avidence.server import clock
from avidence.server.catalog.schema import evidence, evidence_retention, ticket_views
from avidence.server.tickets.allowance import SLAB, Allowance, Who
from avidence.server.tickets.runtime import RUNTIME
from avidence.storage.local import LocalStore

from support.servers import Api, make_api
from support.tickets import audit_entries, issue, media_url, start_view, token_of, upload

SIZE = 3 * 1024 * 1024 + 777  # several store chunks and allowance slabs
MULTIPLE = 2
BURST = 12  # whole-file requests at once, split over the two replicas


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'catalog.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture()
async def replicas(tmp_path: Path, database: str) -> AsyncIterator[tuple[Api, Api]]:
    store = LocalStore(tmp_path / "data" / "store")
    await store.open()
    async with AsyncExitStack() as stack:
        apps = []
        for _ in range(2):
            made = asynccontextmanager(make_api)(
                tmp_path, store, database=database, view_bytes_multiple=MULTIPLE, view_window=600
            )
            apps.append(await stack.enter_async_context(made))
        yield apps[0], apps[1]
    await store.close()


async def _received(api: Api, url: str, headers: dict[str, str]) -> tuple[int, int]:
    """(status, body bytes received), counting a body the server cut short."""
    got = 0
    async with aiohttp.ClientSession() as session:
        async with session.get(api.client.make_url(url), headers=headers) as response:
            try:
                async for chunk in response.content.iter_chunked(64 * 1024):
                    got += len(chunk)
            except aiohttp.ClientPayloadError:
                pass  # the budget ran out mid-body: the connection was closed
            return response.status, got


async def _view_row(api: Api, view_id: str) -> Any:
    async with api.catalog.engine.connect() as conn:
        return (
            await conn.execute(sa.select(ticket_views).where(ticket_views.c.id == view_id))
        ).one()


async def test_concurrent_ranges_on_two_replicas_never_overspend_the_view_budget(
    replicas: tuple[Api, Api],
) -> None:
    one, two = replicas
    data = os.urandom(SIZE)
    evidence_id = await upload(one, data, filename="room3.mp4")
    token = token_of(await issue(one, [evidence_id], max_views=1))
    started = await one.client.post(f"/t/{token}/views", json={"evidence": evidence_id})
    assert started.status == 201
    answer = await started.json()
    budget = SIZE * MULTIPLE
    assert answer["byte_budget"] == budget and answer["views_left"] == 0
    url = media_url(token, evidence_id, answer["view"])
    ranges = ["bytes=0-", "bytes=1000-", "bytes=-2000000", "bytes=500000-2500000"]
    results = await asyncio.wait_for(
        asyncio.gather(
            *(
                _received((one, two)[i % 2], url, {"Range": ranges[i % len(ranges)]})
                for i in range(BURST)
            )
        ),
        timeout=120,
    )
    total = sum(got for status, got in results if status in (200, 206))
    # Bytes are taken before they are sent: the burst gets at most the budget, and since each
    # request asks for more than is left, nearly all of it (less than a slab per request lost
    # to the last refusals).
    assert total <= budget, (total, budget, results)
    assert total > SIZE, results
    assert all(status in (200, 206, 410) for status, _ in results), results

    after = await two.client.get(url, headers={"Range": "bytes=0-99"})
    assert after.status == 410
    error = (await after.json())["error"]
    assert error["code"] == "view_spent" and error["status"] == 410
    view_id = answer["view"].split(".")[0]
    row = await _view_row(one, view_id)
    assert row.byte_budget == budget and row.bytes_reserved <= budget
    assert row.end_reason == "bytes" and row.ended_at is not None
    [ended] = await audit_entries(one, "ticket.view_ended")
    assert ended.details["reason"] == "bytes" and ended.details["view"] == view_id
    assert ended.details["byte_budget"] == budget
    assert ended.object == f"evidence:{evidence_id}"
    # The view is gone, and max_views=1 means no new one.
    again = await one.client.post(f"/t/{token}/views", json={"evidence": evidence_id})
    assert again.status == 410 and (await again.json())["error"]["code"] == "ticket_exhausted"
    views = await (
        await one.client.get(
            f"/api/tickets/{ended.details['ticket']}/views",
            headers={"Authorization": f"Bearer {one.admin}"},
        )
    ).json()
    [shown] = views["views"]
    assert (shown["byte_budget"], shown["end_reason"]) == (budget, "bytes")
    assert shown["bytes_taken"] <= budget


async def test_a_view_ends_when_its_window_closes_and_a_new_view_plays(
    replicas: tuple[Api, Api],
) -> None:
    one, two = replicas
    evidence_id = await upload(one, os.urandom(200_000), filename="room3.mp4")
    token = token_of(await issue(one, [evidence_id], max_views=2))
    grant = await start_view(one, token, evidence_id)
    url = media_url(token, evidence_id, grant)
    assert (await one.client.get(url, headers={"Range": "bytes=0-9"})).status == 206
    with clock.shifted(timedelta(seconds=601)):
        late = await two.client.get(url, headers={"Range": "bytes=10-19"})
        assert late.status == 410
        assert (await late.json())["error"]["code"] == "view_expired"
        again = await one.client.get(url, headers={"Range": "bytes=10-19"})
        assert (await again.json())["error"]["code"] == "view_expired"
        [ended] = await audit_entries(one, "ticket.view_ended")
        assert ended.details["reason"] == "time"
        fresh = await start_view(two, token, evidence_id)  # the second view of two
        ok = await one.client.get(
            media_url(token, evidence_id, fresh), headers={"Range": "bytes=0-9"}
        )
        assert ok.status == 206 and len(await ok.read()) == 10


async def test_viewer_page_says_what_a_view_allows_in_both_languages(
    replicas: tuple[Api, Api],
) -> None:
    one, _ = replicas
    evidence_id = await upload(one, os.urandom(1000), filename="room3.mp4")
    token = token_of(await issue(one, [evidence_id]))
    en = await (await one.client.get(f"/t/{token}?lang=en")).text()
    assert "One view lasts up to 10 min" in en
    assert "may fetch up to 2 times the file" in en
    assert 'data-msg-spent="This view has fetched all the data one view allows.' in en
    zh = await (await one.client.get(f"/t/{token}?lang=zh")).text()
    assert "文件大小的 2 倍" in zh and "本次观看已用完可获取的数据量" in zh


async def _media_status(api: Api, url: str, method: str = "GET") -> tuple[int, str]:
    response = await api.client.request(method, url, headers={"Range": "bytes=0-99"})
    body = await response.read()
    code = ""
    if response.status >= 400 and method == "GET":
        code = (await response.json())["error"]["code"]
    assert response.status >= 400 or len(body) == (0 if method == "HEAD" else 100)
    return response.status, code


@pytest.mark.parametrize("how", ["revoked", "deleted", "withheld"])
async def test_a_replica_that_remembers_the_ticket_refuses_the_very_next_request(
    replicas: tuple[Api, Api], how: str
) -> None:
    one, two = replicas
    evidence_id = await upload(one, os.urandom(300_000), filename="room3.mp4")
    result = await issue(one, [evidence_id])
    token, ticket_id = token_of(result), result["ticket"]["id"]
    url = media_url(token, evidence_id, await start_view(one, token, evidence_id))
    for api in (two, two, one):  # both replicas now hold the ticket in memory
        assert await _media_status(api, url) == (206, "")
    if how == "revoked":  # through the other replica's API: only the catalog tells `two`
        answer = await one.client.post(
            f"/api/tickets/{ticket_id}/revoke", headers={"Authorization": f"Bearer {one.admin}"}
        )
        assert answer.status == 200
        expected = (410, "ticket_revoked")
    else:
        async with one.catalog.engine.begin() as conn:
            if how == "deleted":
                await conn.execute(
                    sa.update(evidence_retention)
                    .where(evidence_retention.c.evidence_id == evidence_id)
                    .values(state="deleted")
                )
                expected = (410, "gone")
            else:
                flag = sa.update(evidence).where(evidence.c.id == evidence_id)
                await conn.execute(flag.values(integrity="failed"))
                expected = (409, "integrity_withheld")
    assert await _media_status(two, url) == expected
    assert (await _media_status(two, url, "HEAD"))[0] == expected[0]
    assert await _media_status(one, url) == expected


async def test_a_share_taken_ahead_and_not_sent_is_given_back(replicas: tuple[Api, Api]) -> None:
    one, _ = replicas
    evidence_id = await upload(one, os.urandom(1000), filename="room3.mp4")
    token = token_of(await issue(one, [evidence_id]))
    view_id = (await start_view(one, token, evidence_id)).split(".")[0]
    async with one.catalog.engine.begin() as conn:  # room for a long body
        await conn.execute(
            ticket_views.update().where(ticket_views.c.id == view_id).values(byte_budget=10 * SLAB)
        )
    who = Who("ticket", "Li Ming (judge)", evidence_id, None, "127.0.0.1")
    share = Allowance(one.catalog.engine, view_id, who)
    body = 3 * SLAB
    await share.start(body)
    assert await share.take(SLAB, ahead=body) == SLAB  # the next share is taken meanwhile
    assert (await _view_row(one, view_id)).bytes_reserved in (SLAB, 2 * SLAB)
    await share.finish()  # the client went away: only what went out stays taken
    assert (await _view_row(one, view_id)).bytes_reserved == SLAB


async def test_seeks_take_from_the_share_a_replica_keeps_and_give_back_what_it_did_not_send(
    replicas: tuple[Api, Api], database: str
) -> None:
    one, _ = replicas
    runtime = one.client.app[RUNTIME]
    size = 4 * 1024 * 1024
    evidence_id = await upload(one, os.urandom(size), filename="room3.mp4")
    token = token_of(await issue(one, [evidence_id]))
    grant = await start_view(one, token, evidence_id)
    url, view_id = media_url(token, evidence_id, grant), grant.split(".")[0]
    assert await _media_status(one, url) == (206, "")
    first = (await _view_row(one, view_id)).bytes_reserved
    for _ in range(5):
        assert await _media_status(one, url) == (206, "")
    taken = (await _view_row(one, view_id)).bytes_reserved
    if database.startswith("sqlite"):  # quick reads: the seeks came out of the kept share
        assert first == 100 + size // 4 and taken == first
    else:  # every request takes its own bytes from the catalog
        assert first == 100 and taken == 600
    assert await runtime.tracker.sweep(now=time.monotonic() + 3600) == 1
    row = await _view_row(one, view_id)
    assert (row.bytes_reserved, row.bytes_served, row.requests) == (600, 600, 6)
