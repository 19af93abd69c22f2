"""Periodic rounds across replicas: of many processes on one catalog, exactly one runs each
period's round (the integrity scrub), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from avidence.server import clock, schedules
from avidence.server.catalog.db import Catalog
from avidence.server.config import normalize_database_url

HOUR = timedelta(hours=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture()
async def catalogs(database: str) -> AsyncIterator[list[Catalog]]:
    """Four catalog connections to one database, as four replicas have."""
    opened = [Catalog(normalize_database_url(database)) for _ in range(4)]
    await opened[0].migrate()
    try:
        yield opened
    finally:
        for catalog in opened:
            await catalog.close()


async def _round(catalogs: list[Catalog]) -> list[bool]:
    return list(
        await asyncio.gather(*(schedules.claim(c.engine, "scrub", every=HOUR) for c in catalogs))
    )


async def test_one_replica_runs_each_period(catalogs: list[Catalog]) -> None:
    first = await _round(catalogs)  # the row does not exist yet: all race to create it
    assert first.count(True) == 1
    assert (await _round(catalogs)).count(True) == 0  # same period: everyone skips
    with clock.shifted(HOUR - timedelta(seconds=5)):
        assert (await _round(catalogs)).count(True) == 0
    with clock.shifted(HOUR + timedelta(seconds=1)):
        assert (await _round(catalogs)).count(True) == 1
        assert (await _round(catalogs)).count(True) == 0


async def test_other_schedules_are_independent(catalogs: list[Catalog]) -> None:
    engine = catalogs[0].engine
    assert await schedules.claim(engine, "scrub", every=HOUR)
    assert await schedules.claim(engine, "other", every=HOUR)
    assert not await schedules.claim(engine, "scrub", every=HOUR)
