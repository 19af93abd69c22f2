"""What a catalog error answers. A lost, busy or restarting catalog is a 503 with Retry-After:
the same request succeeds later. A statement the catalog refuses for its content (a value it
cannot hold) never will: that is a 500, logged with its traceback as the defect it is, not an
outage a client is told to wait out. Real errors from real catalogs, not stand-ins."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from avidence.server.catalog.db import Catalog
from avidence.server.errors import error_middleware


async def _answer(run: Callable[[], Awaitable[object]]) -> tuple[int, dict[str, object], str]:
    async def handler(request: web.Request) -> web.Response:
        await run()
        return web.json_response({})

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/probe", handler)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        answer = await client.get("/probe")
        return answer.status, await answer.json(), answer.headers.get("Retry-After", "")


async def _statement(engine: AsyncEngine, *sql: str) -> None:
    async with engine.begin() as conn:
        for one in sql:
            await conn.execute(sa.text(one))


@pytest.fixture()
async def postgres(postgres_url: str) -> AsyncEngine:
    engine = create_async_engine(postgres_url.replace("postgresql://", "postgresql+asyncpg://"))
    yield engine
    await engine.dispose()


async def test_a_value_postgresql_refuses_is_a_500_logged_with_its_traceback(
    postgres: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    status, body, retry = await _answer(lambda: _statement(postgres, "SELECT 'x'::int"))
    assert (status, retry) == (500, ""), body
    assert "catalog.unreachable" not in caplog.text
    assert "http.unhandled" in caplog.text and "22P02" in caplog.text  # sqlstate, for the operator


async def test_a_refused_statement_logs_no_value_the_client_sent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The catalog's engine hides a statement's values from its error messages."""
    catalog = Catalog(f"sqlite+aiosqlite:///{tmp_path / 'catalog.db'}")
    secret = "a value a client sent"

    async def refused() -> None:
        async with catalog.engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO no_such_table VALUES (:v)"), {"v": secret})

    try:
        status, _, _ = await _answer(refused)
    finally:
        await catalog.close()
    assert status == 500
    assert "no_such_table" in caplog.text and secret not in caplog.text


async def test_a_statement_postgresql_cancels_is_a_503_to_retry(postgres: AsyncEngine) -> None:
    """A statement timeout (sqlstate 57014) is load, not a defect: retry later."""
    status, body, retry = await _answer(
        lambda: _statement(postgres, "SET LOCAL statement_timeout = 10", "SELECT pg_sleep(1)")
    )
    assert (status, retry) == (503, "5"), body
    assert body["error"]["code"] == "unavailable"  # type: ignore[index]


async def test_a_postgresql_that_does_not_answer_is_a_503(unused_tcp_port: int) -> None:
    engine = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{unused_tcp_port}/x")
    try:
        status, body, retry = await _answer(lambda: _statement(engine, "SELECT 1"))
    finally:
        await engine.dispose()
    assert (status, retry) == (503, "5"), body


async def test_a_locked_sqlite_catalog_is_a_503_and_a_broken_constraint_a_500(
    tmp_path: Path,
) -> None:
    path = tmp_path / "catalog.db"
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 0})
    try:
        await _statement(
            engine, "CREATE TABLE t (id INTEGER PRIMARY KEY)", "INSERT INTO t VALUES (1)"
        )
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            status, _, retry = await _answer(lambda: _statement(engine, "INSERT INTO t VALUES (2)"))
            assert (status, retry) == (503, "5")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        status, _, retry = await _answer(lambda: _statement(engine, "INSERT INTO t VALUES (1)"))
        assert (status, retry) == (500, "")
    finally:
        await engine.dispose()
