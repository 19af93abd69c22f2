"""A fresh PostgreSQL database per test session, dropped at the end.

PostgreSQL runs on this machine (127.0.0.1:5432, trust auth). Where it is unreachable the tests
that need it are skipped with the reason, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator

import asyncpg
import pytest

ADMIN_DSN = os.environ.get("AVIDENCE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _base(dsn: str) -> str:
    return dsn.rsplit("/", 1)[0]


def create_database() -> str:
    """Create an empty database and return its URL (postgresql://...)."""
    name = "avidence_t_" + secrets.token_hex(4)
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    return f"{_base(ADMIN_DSN)}/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin DSN, once PostgreSQL is known to answer."""
    try:
        asyncio.run(_admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {ADMIN_DSN} is required under CI: {exc}")
        pytest.skip(f"PostgreSQL at {ADMIN_DSN} unreachable: {exc}")
    return ADMIN_DSN


@pytest.fixture()
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A brand-new, empty database for one test."""
    url = create_database()
    yield url
    drop_database(url)
