"""Quick reads of a SQLite catalog from the event loop: a read-only connection that answers
"unknown", never "live", when the file cannot be read, and none at all for PostgreSQL."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from avidence.server.catalog.db import Catalog
from avidence.server.catalog.schema import UTCDateTime, tickets
from avidence.server.tickets.quickreads import open_quick_reads


def test_no_quick_reads_for_a_catalog_on_a_server_in_memory_or_unreadable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert open_quick_reads("postgresql+asyncpg://127.0.0.1/test") is None
    assert open_quick_reads("sqlite+aiosqlite:///:memory:") is None
    assert open_quick_reads(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'catalog.db'}") is None
    assert "tickets.quick_reads_unavailable" in caplog.text


async def test_quick_reads_see_commits_of_other_connections_and_cannot_write(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'catalog.db'}"
    catalog = Catalog(url)
    await catalog.migrate()
    quick = open_quick_reads(url)
    assert quick is not None
    try:
        query = sa.select(tickets.c.id).where(tickets.c.id == sa.bindparam("ticket"))
        assert quick.all_hold(query, {"ticket": "t1"}) is False
        probe = sa.table("probe", sa.column("id"))
        find = sa.select(probe.c.id).where(probe.c.id == sa.bindparam("id"))
        async with catalog.engine.begin() as conn:  # another connection, as another replica
            await conn.execute(sa.text("CREATE TABLE probe (id TEXT PRIMARY KEY)"))
            await conn.execute(sa.text("INSERT INTO probe VALUES ('a')"))
        assert quick.all_hold(find, {"id": "a"}) is True
        async with catalog.engine.begin() as conn:
            await conn.execute(sa.text("DELETE FROM probe"))
        assert quick.all_hold(find, {"id": "a"}) is False  # no stale snapshot kept
        with pytest.raises(sqlite3.OperationalError):  # read-only: it can never change a fact
            quick.conn.execute("INSERT INTO probe VALUES ('b')")
        # What it cannot read (a table that is not there) is "unknown", never "live".
        missing = sa.table("no_such_table", sa.column("id"))
        assert quick.all_hold(sa.select(missing.c.id), {}) is None
    finally:
        quick.close()
        await catalog.close()


async def test_quick_reads_answer_as_the_catalog_does_for_lists_times_and_missing_values(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The statement is compiled once to SQL text for the driver: IN lists of constants,
    timestamps and literals must mean what they mean through SQLAlchemy."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'cat #1?.db'}".replace("?", "_")
    catalog = Catalog(url)
    await catalog.migrate()
    probe = sa.table("probe", sa.column("id"), sa.column("state"), sa.column("at", UTCDateTime()))
    async with catalog.engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE probe (id TEXT, state TEXT, at TIMESTAMP)"))
        await conn.execute(
            probe.insert(),
            [
                {"id": "a", "state": "deleted", "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)},
                {"id": "b", "state": "kept", "at": datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC)},
            ],
        )
    quick = open_quick_reads(url)
    assert quick is not None
    try:
        query = sa.select(probe.c.id).where(
            probe.c.id == sa.bindparam("id", type_=sa.String()),
            probe.c.state.in_(["deleted", "purged"]),
            probe.c.at > sa.bindparam("after", type_=UTCDateTime()),
        )
        cases = [
            {"id": "a", "after": datetime(2026, 1, 2, 3, 4, 4, tzinfo=UTC)},
            {"id": "a", "after": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)},
            {"id": "b", "after": datetime(2026, 1, 1, tzinfo=UTC)},
        ]
        for params in cases:
            async with catalog.engine.connect() as conn:
                expected = (await conn.execute(query, params)).first() is not None
            assert quick.all_hold(query, params) is expected, params
        assert [quick.all_hold(query, p) for p in cases] == [True, False, False]
        # A parameter left out is "unknown", never "live" (nor a silent NULL).
        assert quick.all_hold(query, {"id": "a"}) is None
        assert "no value for the parameter 'after'" in caplog.text
    finally:
        quick.close()
        await catalog.close()
