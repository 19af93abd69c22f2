"""Opening the catalog database and keeping its schema current.

One `Catalog` per process wraps an async SQLAlchemy engine. SQLite runs in WAL mode with a busy
timeout so the server, a worker and admin commands can share the file; PostgreSQL is what several
replicas share. Migrations are Alembic's, run in-process over the same connection, under an
advisory lock on PostgreSQL so replicas starting together do not race.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..config import ConfigError, redact

log = logging.getLogger("avidence.catalog")

# Arbitrary constant: the PostgreSQL advisory lock key that serialises migrations.
_MIGRATION_LOCK = 0x61766964


class CatalogUnavailable(Exception):
    """The database cannot be reached or opened; the message is one line."""


def _alembic_config(connection: Connection | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    location = resources.files("avidence.server.catalog") / "migrations"
    cfg.set_main_option("script_location", str(location))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def compact_json(value: Any) -> str:
    """How JSON columns are written: keys sorted, no whitespace, UTF-8 kept. For float-free
    values this is exactly `client.canonical.canonical_json`, so `audit verify` can hash an
    entry's stored `details` text as it is (`audit.walk`) instead of re-encoding it."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Catalog:
    """The process's handle on the catalog database."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        # A statement's values stay out of error messages, which reach the log: what clients
        # send is never logged verbatim.
        kwargs: dict[str, Any] = {
            "pool_pre_ping": True,
            "json_serializer": compact_json,
            "hide_parameters": True,
        }
        if self.dialect == "sqlite":
            path = url.split(":///", 1)[1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size * 2)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    async def check(self) -> None:
        """Raise CatalogUnavailable with a one-line reason when the database cannot be used."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (OSError, DBAPIError, OperationalError) as exc:
            reason = str(getattr(exc, "orig", exc) or exc).splitlines()[0]
            raise CatalogUnavailable(
                f"catalog database {redact(self.url)} unreachable: {reason}"
            ) from None

    async def migrate(self) -> str | None:
        """Bring the schema to the newest revision and return it."""
        await self.check()
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            await conn.run_sync(_upgrade)
            revision = await conn.run_sync(_current_revision)
        log.info("catalog.migrated revision=%s database=%s", revision, redact(self.url))
        return revision

    async def revision(self) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.run_sync(_current_revision)

    async def ensure_current(self) -> None:
        """Refuse to work on a schema older or newer than this code knows."""
        current, head = await self.revision(), head_revision()
        if current != head:
            raise ConfigError(
                f"catalog schema is at {current or 'nothing'}, this version needs {head}: "
                "run `avidence-server migrate`"
            )

    async def close(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _upgrade(connection: Connection) -> None:
    command.upgrade(_alembic_config(connection), "head")


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
