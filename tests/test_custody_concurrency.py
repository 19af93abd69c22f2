"""Many custody actions committing at once: 64 uploads finishing together on PostgreSQL (and
tickets issued between them) keep one unbroken audit chain, each fact with exactly its entry."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from avidence.server.catalog.schema import audit_head, audit_log, evidence

from support.agencies import TwoAgencies, two_agencies
from support.custody import assert_consistent
from support.servers import metadata
from support.tickets import issue

UPLOADERS = 64


@pytest.fixture()
async def on_postgres(postgres_url: str, tmp_path: Path) -> AsyncIterator[TwoAgencies]:
    loopback = "127.0.0.1/32"  # the hook below points there
    async for agencies in two_agencies(tmp_path, database=postgres_url, webhook_allow=loopback):
        hook = await agencies.api.client.post(
            "/api/webhooks",
            json={"url": "http://127.0.0.1:9/hook"},
            headers=agencies.police.auth("admin"),
        )
        assert hook.status == 201, await hook.text()
        yield agencies


async def _upload(agencies: TwoAgencies, n: int) -> str:
    data = f"room {n} recording".encode() * (n + 1)
    response = await agencies.api.client.post(
        "/files/",
        data=io.BytesIO(data),
        headers={
            "Authorization": f"Bearer {agencies.police.tokens['uploader']}",
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(data)),
            "Upload-Metadata": metadata(case=f"GA-{n % 4}", item=str(n), filename=f"{n}.mp4"),
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert response.status == 201, await response.text()
    return str(response.headers["Avidence-Evidence-Id"])


async def test_64_uploads_finishing_at_once_keep_one_unbroken_chain(
    on_postgres: TwoAgencies,
) -> None:
    agencies = on_postgres
    engine = agencies.api.catalog.engine
    ids = await asyncio.wait_for(
        asyncio.gather(*(_upload(agencies, n) for n in range(UPLOADERS))), timeout=240
    )
    assert len(set(ids)) == UPLOADERS
    # Tickets issued while the chain is busy join it too.
    await asyncio.gather(
        *(issue(agencies.api, [ids[n]], token=agencies.police.tokens["handler"]) for n in range(8))
    )
    await assert_consistent(engine)
    async with engine.connect() as conn:
        made = (await conn.execute(sa.select(sa.func.count()).select_from(evidence))).scalar()
        seqs = list((await conn.execute(sa.select(audit_log.c.seq).order_by("seq"))).scalars())
        head = (await conn.execute(sa.select(audit_head.c.seq))).scalar_one()
    assert made == UPLOADERS
    assert seqs == list(range(1, len(seqs) + 1)) and head == seqs[-1]
