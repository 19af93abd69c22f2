"""A connection for a read that may run inside the caller's transaction or on its own."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


@contextlib.asynccontextmanager
async def connected(db: AsyncEngine | AsyncConnection) -> AsyncIterator[AsyncConnection]:
    """`db` itself when it is a connection (the read sees the caller's uncommitted writes and
    holds its locks), else a fresh connection from the engine, closed afterwards."""
    if isinstance(db, AsyncConnection):
        yield db
    else:
        async with db.connect() as conn:
            yield conn


@contextlib.asynccontextmanager
async def transaction(db: AsyncEngine | AsyncConnection) -> AsyncIterator[AsyncConnection]:
    """A write inside the caller's transaction when `db` is a connection (a unit of work that
    commits it with its audit entry), else in a transaction of its own, committed on exit."""
    if isinstance(db, AsyncConnection):
        yield db
    else:
        async with db.begin() as conn:
            yield conn
