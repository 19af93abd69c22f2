"""Access-code lockout under a burst: an attempt is reserved before the code is checked, so
concurrent wrong codes cannot slip past the count (on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from avidence.server import clock
from avidence.server.catalog.db import Catalog
from avidence.server.catalog.schema import tickets
from avidence.server.config import normalize_database_url
from avidence.server.tickets import codes

PIN = "424242"
BURST = 200


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture()
async def catalog(database: str) -> AsyncIterator[Catalog]:
    opened = Catalog(normalize_database_url(database))
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.close()


async def _ticket(catalog: Catalog) -> str:
    now = clock.now()
    async with catalog.engine.begin() as conn:
        await conn.execute(
            tickets.insert().values(
                id="tkt_race",
                token_hash="0" * 64,
                recipient="Li Ming (judge)",
                can_download=False,
                views_used=0,
                access_code_hash=codes.hash_code(PIN),
                code_failures=0,
                issuer="test",
                created_at=now,
                expires_at=now + codes.LOCK_FOR * 10,
            )
        )
    return "tkt_race"


async def test_burst_of_wrong_codes_checks_at_most_five_then_locks(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticket_id = await _ticket(catalog)
    checked: list[str] = []
    verify = codes.verify_code

    def counting(stored: str, code: str) -> bool:
        checked.append(code)
        return verify(stored, code)

    monkeypatch.setattr(codes, "verify_code", counting)
    wrong = [f"{n:06d}" for n in range(BURST)]
    results = await asyncio.wait_for(
        asyncio.gather(*(codes.check(catalog.engine, ticket_id, code) for code in wrong)), 120
    )
    assert not any(result.ok for result in results)
    assert len(checked) <= codes.MAX_TRIES
    assert sum(result.locked_until is not None for result in results) >= BURST - codes.MAX_TRIES
    right = await codes.check(catalog.engine, ticket_id, PIN)
    assert not right.ok and right.locked_until is not None
    assert len(checked) <= codes.MAX_TRIES  # the refused right code was not even checked


async def test_lock_ends_and_the_right_code_resets_the_count(catalog: Catalog) -> None:
    ticket_id = await _ticket(catalog)
    for left in range(codes.MAX_TRIES - 1, 0, -1):
        assert (await codes.check(catalog.engine, ticket_id, "000000")).tries_left == left
    last = await codes.check(catalog.engine, ticket_id, "000000")
    assert last.locked_until is not None and last.tries_left == 0
    with clock.shifted(codes.LOCK_FOR + codes.LOCK_FOR / 100):
        assert (await codes.check(catalog.engine, ticket_id, "000000")).tries_left == 4
        assert (await codes.check(catalog.engine, ticket_id, PIN)).ok
        assert (await codes.check(catalog.engine, ticket_id, "000000")).tries_left == 4
