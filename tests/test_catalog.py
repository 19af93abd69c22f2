"""The catalog migrates on SQLite and PostgreSQL and matches the schema module exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from avidence.server import tokens
from avidence.server.catalog.db import Catalog, CatalogUnavailable, head_revision
from avidence.server.catalog.schema import metadata
from avidence.server.config import ConfigError, normalize_database_url

# PostgreSQL reads an index column ordered NULLS FIRST back as an expression that alembic cannot
# compare with the schema's; such an index is checked by its definition instead.
NULLS_FIRST = {"ix_evidence_scrub_due"}


def _drift(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": False})
    found = list(compare_metadata(context, metadata))
    if connection.dialect.name != "postgresql":
        return found
    for name in NULLS_FIRST:
        definition = connection.exec_driver_sql(
            f"SELECT indexdef FROM pg_indexes WHERE indexname = '{name}'"
        ).scalar()
        assert definition is not None and "NULLS FIRST" in definition, (name, definition)
    return [
        d
        for d in found
        if not (
            isinstance(d, tuple)
            and d[0] in ("add_index", "remove_index")
            and getattr(d[1], "name", None) in NULLS_FIRST
        )
    ]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return normalize_database_url(f"sqlite:///{tmp_path / 'catalog.db'}")
    return normalize_database_url(request.getfixturevalue("postgres_url"))


async def test_migrate_is_idempotent_and_matches_schema(database_url: str) -> None:
    catalog = Catalog(database_url)
    try:
        assert await catalog.migrate() == head_revision()
        assert await catalog.migrate() == head_revision()
        await catalog.ensure_current()
        async with catalog.engine.connect() as conn:
            assert await conn.run_sync(_drift) == []
    finally:
        await catalog.close()


async def test_tokens_store_only_hashes_and_revocation_is_immediate(database_url: str) -> None:
    catalog = Catalog(database_url)
    try:
        await catalog.migrate()
        principal, secret = await tokens.create(catalog.engine, role="uploader", name="room 3")
        assert secret.startswith("avd_") and len(secret) > 40
        rows = await tokens.listing(catalog.engine)
        assert all(secret not in str(tuple(row)) for row in rows)
        assert (await tokens.authenticate(catalog.engine, secret)) == principal
        assert await tokens.authenticate(catalog.engine, secret + "x") is None
        assert await tokens.revoke(catalog.engine, principal.token_id)
        assert await tokens.authenticate(catalog.engine, secret) is None
        with pytest.raises(ValueError, match="unknown role"):
            await tokens.create(catalog.engine, role="root", name="x")
    finally:
        await catalog.close()


async def test_unmigrated_catalog_is_refused_with_a_hint(tmp_path: Path) -> None:
    catalog = Catalog(normalize_database_url(f"sqlite:///{tmp_path / 'empty.db'}"))
    try:
        with pytest.raises(ConfigError, match="avidence-server migrate"):
            await catalog.ensure_current()
    finally:
        await catalog.close()


async def test_unreachable_postgres_is_one_line() -> None:
    catalog = Catalog("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    try:
        with pytest.raises(CatalogUnavailable) as info:
            await catalog.check()
        assert "\n" not in str(info.value)
        assert "unreachable" in str(info.value)
    finally:
        await catalog.close()
