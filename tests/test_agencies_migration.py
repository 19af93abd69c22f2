"""Migration 0005 on a catalog with evidence: everything joins the default agency, each case
number becomes a case, and the downgrade removes the agency tables again."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection

from avidence.server.catalog.db import Catalog, _alembic_config
from avidence.server.config import normalize_database_url


def _to(revision: str, *, down: bool = False) -> object:
    def run(connection: Connection) -> None:
        cfg = _alembic_config(connection)
        (command.downgrade if down else command.upgrade)(cfg, revision)

    return run


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return normalize_database_url(f"sqlite:///{tmp_path / 'catalog.db'}")
    return normalize_database_url(request.getfixturevalue("postgres_url"))


async def test_existing_evidence_joins_the_default_agency_and_its_cases(database_url: str) -> None:
    catalog = Catalog(database_url)
    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        async with catalog.engine.begin() as conn:
            await conn.run_sync(_to("0004"))  # type: ignore[arg-type]
            await conn.execute(
                sa.text(
                    "INSERT INTO tokens (id, name, role, secret_hash, created_at) "
                    "VALUES ('tok_1', 'room', 'uploader', 'h', :now)"
                ),
                {"now": now},
            )
            for n, case in enumerate(["GA-1", "GA-1", "GA-2"]):
                await conn.execute(
                    sa.text(
                        'INSERT INTO uploads (id, state, "offset", metadata, concat, store, '
                        "storage_key, store_handle, uploader, created_at, updated_at) VALUES "
                        "(:id, 'done', 1, '{}', '', 'local', :key, '', 'tok_1', :now, :now)"
                    ),
                    {"id": f"up{n}", "key": f"originals/up{n}", "now": now},
                )
                await conn.execute(
                    sa.text(
                        "INSERT INTO evidence (id, upload_id, case_id, item, filename, filetype, "
                        "size, blake3, uploader, store, storage_key, metadata, received_at, "
                        "integrity) VALUES (:id, :up, :case, '', '', '', 1, 'b', 'tok_1', "
                        "'local', :key, '{}', :now, 'unchecked')"
                    ),
                    {"id": f"ev{n}", "up": f"up{n}", "case": case, "key": f"k{n}", "now": now},
                )
        assert await catalog.migrate() is not None
        async with catalog.engine.connect() as conn:
            owners = await conn.execute(sa.text("SELECT DISTINCT agency_id FROM evidence"))
            assert owners.scalars().all() == ["agc_default"]
            token_agency = await conn.execute(sa.text("SELECT agency_id FROM tokens"))
            assert token_agency.scalars().all() == ["agc_default"]
            cases = await conn.execute(
                sa.text(
                    "SELECT c.number, count(*) FROM cases c JOIN case_evidence e "
                    "ON e.case_id = c.id GROUP BY c.number ORDER BY c.number"
                )
            )
            assert [tuple(r) for r in cases.all()] == [("GA-1", 2), ("GA-2", 1)]
        async with catalog.engine.begin() as conn:
            await conn.run_sync(_to("0004", down=True))  # type: ignore[arg-type]
            tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
            assert "agencies" not in tables and "transfers" not in tables
            columns = await conn.run_sync(
                lambda c: [col["name"] for col in sa.inspect(c).get_columns("evidence")]
            )
            assert "agency_id" not in columns
    finally:
        await catalog.close()
