"""Quick reads of a SQLite catalog from the event loop: a read-only connection that answers
"unknown", never "live", when the file cannot be read, and none at all for PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from avidence.server.catalog.db import Catalog
from avidence.server.catalog.schema import tickets
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
        with pytest.raises(sa.exc.OperationalError):  # read-only: it can never change a fact
            quick.conn.execute(sa.text("INSERT INTO probe VALUES ('b')"))
        quick.conn.rollback()
        # What it cannot read (a table that is not there) is "unknown", never "live".
        missing = sa.table("no_such_table", sa.column("id"))
        assert quick.all_hold(sa.select(missing.c.id), {}) is None
    finally:
        quick.close()
        await catalog.close()
