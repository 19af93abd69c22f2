"""A crash between any two steps of a custody action: finishing an upload, issuing and revoking a
ticket, acknowledging a transfer, deleting and purging evidence. The crash is injected before
each SQL statement of the action in turn (`StatementFault`); after each one the catalog holds
every fact with exactly its audit entries and webhook deliveries and no entry without its fact
(`assert_consistent`), and the retry after the 'restart' completes the action exactly once.
On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from avidence.server.catalog.schema import evidence, evidence_retention, tickets
from avidence.server.catalog.schema_exchange import transfers
from avidence.server.retention import purge
from avidence.server.retention.classes import load_policy
from avidence.server.state import SIGNER
from avidence.server.tickets.issue import issue_ticket, revoke_ticket
from avidence.server.transfers import flow
from avidence.server.tus.maintenance import resume_verifications
from avidence.server.tus.routes import TUS

from support.agencies import TwoAgencies, two_agencies
from support.custody import InjectedCrash, StatementFault, assert_consistent
from support.retention import Clock, clock, policy_file
from support.servers import metadata

OCTET = "application/offset+octet-stream"
MAX_STEPS = 80  # an action of more statements than this has grown past what this test expects
T = TypeVar("T")


@dataclass
class World:
    agencies: TwoAgencies
    fault: StatementFault

    @property
    def engine(self) -> Any:
        return self.agencies.api.catalog.engine


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str | None:
    """None: the SQLite file in the data dir; else a fresh PostgreSQL database."""
    return None if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


@pytest.fixture()
async def world(database: str | None, tmp_path: Path) -> AsyncIterator[World]:
    async for agencies in two_agencies(
        tmp_path,
        database=database,
        config_file=policy_file(tmp_path),
        webhook_allow="127.0.0.1/32",  # the hook below points at loopback
    ):
        fault = StatementFault(agencies.api.catalog.engine)
        # The police hear of everything: deliveries are part of what must commit together.
        hook = await agencies.api.client.post(
            "/api/webhooks",
            json={"url": "http://127.0.0.1:9/hook"},
            headers=agencies.police.auth("admin"),
        )
        assert hook.status == 201, await hook.text()
        yield World(agencies, fault)


async def _upload(world: World, data: bytes) -> int:
    """A whole upload in one request (creation-with-upload); the answer's status."""
    headers = {
        "Authorization": f"Bearer {world.agencies.police.tokens['uploader']}",
        "Tus-Resumable": "1.0.0",
        "Upload-Length": str(len(data)),
        "Upload-Metadata": metadata(case="GA-9", item=str(len(data)), filename="clip.mp4"),
        "Content-Type": OCTET,
    }
    api = world.agencies.api
    response = await api.client.post("/files/", data=io.BytesIO(data), headers=headers)
    return response.status


async def _crash_every_step(
    world: World, action: Callable[[], Awaitable[T]], *, recover: Callable[[], Awaitable[None]]
) -> tuple[int, T]:
    """Run `action` with a crash before its 1st, 2nd, ... statement until it runs through;
    check the catalog after each crash and after each recovery. The steps it took, its result."""
    me = asyncio.current_task()
    for step in itertools.count(1):
        assert step < MAX_STEPS
        world.fault.arm(step, lambda task: task is me or task.get_name().startswith("verify-"))
        try:
            result = await action()
        except InjectedCrash:
            result = None
        finally:
            crashed = world.fault.fired
            world.fault.disarm()
        await assert_consistent(world.engine)
        if not crashed:
            assert result is not None
            return step, result
        await recover()
        await assert_consistent(world.engine)
    raise AssertionError("unreachable")


async def _count(world: World, table: sa.Table, *where: Any) -> int:
    async with world.engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(table).where(*where)
        return int((await conn.execute(query)).scalar() or 0)


async def test_a_crash_at_any_step_of_finishing_an_upload_leaves_no_half_custody(
    world: World,
) -> None:
    tus = world.agencies.api.client.server.app[TUS]
    sent = 0

    async def finish() -> int:
        nonlocal sent
        sent += 1
        status = await _upload(world, f"recording {sent}".encode())
        return status if not world.fault.fired else 0

    async def restart() -> None:
        # What a restarted server does first: resume every upload left `verifying`.
        await resume_verifications(tus)
        await asyncio.gather(*list(tus.tasks.values()), return_exceptions=True)

    steps, status = await _crash_every_step(world, finish, recover=restart)
    assert status == 201 and steps > 5
    assert await _count(world, evidence) == sent  # every crashed upload became evidence once


async def test_a_crash_at_any_step_of_tickets_and_transfers_leaves_no_half_custody(
    world: World,
) -> None:
    api, police, court = world.agencies.api, world.agencies.police, world.agencies.court
    assert await _upload(world, b"interview 1") == 201
    async with world.engine.connect() as conn:
        evidence_id = (await conn.execute(sa.select(evidence.c.id))).scalar_one()

    async def nothing() -> None:
        return None

    async def issue() -> str:
        ticket, _, _ = await issue_ticket(
            world.engine,
            evidence_ids=[evidence_id],
            recipient="Li Ming (judge)",
            expires=timedelta(days=1),
            issuer="cli",
        )
        return ticket.id

    _, ticket_id = await _crash_every_step(world, issue, recover=nothing)

    async def revoke() -> bool:
        # A crash just after the commit leaves it revoked: the retry then finds nothing to do.
        await revoke_ticket(world.engine, ticket_id, actor="cli")
        return await _count(world, tickets, tickets.c.revoked_at.is_not(None)) == 1

    _, revoked = await _crash_every_step(world, revoke, recover=nothing)
    assert revoked and await _count(world, tickets, tickets.c.revoked_at.is_not(None)) == 1

    cases = await api.client.get("/api/cases?number=GA-9", headers=police.auth())
    case_id = (await cases.json())["cases"][0]["id"]
    created = await api.client.post(
        f"/api/cases/{case_id}/transfers", json={"to": court.name}, headers=police.auth()
    )
    assert created.status == 201, await created.text()
    transfer_id = (await created.json())["id"]
    signer = api.client.server.app[SIGNER]

    async def acknowledge() -> str:
        actor = flow.Actor(label="court clerk", agency_id=court.id)
        try:
            done = await flow.acknowledge(
                world.engine, signer, transfer_id=transfer_id, actor=actor
            )
        except flow.TransferConflict:  # a crash just after the commit: it is acknowledged
            async with world.engine.connect() as conn:
                return str(
                    (
                        await conn.execute(
                            sa.select(transfers.c.state).where(transfers.c.id == transfer_id)
                        )
                    ).scalar_one()
                )
        return done.state

    _, state = await _crash_every_step(world, acknowledge, recover=nothing)
    assert state == "acknowledged"


async def test_a_crash_at_any_step_of_a_purge_leaves_no_half_custody(world: World) -> None:
    api = world.agencies.api
    assert await _upload(world, b"kept one day") == 201
    policy = load_policy(api.settings)
    later = Clock(clock().now + timedelta(days=3))  # past retention and grace: soft delete

    async def delete() -> list[purge.Outcome]:
        return await purge.apply(
            world.engine, api.store, policy, actor="cli", reason="retention ended", clock=later
        )

    async def nothing() -> None:
        return None

    _, outcomes = await _crash_every_step(world, delete, recover=nothing)
    assert [o.result for o in outcomes] == ["deleted"]
    later.now += timedelta(days=5)  # past the recovery period: the bytes go
    _, outcomes = await _crash_every_step(world, delete, recover=nothing)
    assert [o.result for o in outcomes] == ["purged"]
    purged = evidence_retention.c.state == "purged"
    assert await _count(world, evidence_retention, purged) == 1
