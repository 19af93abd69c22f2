"""Reading whether a view may still send, without leaving the event loop.

A seek is one small ranged GET. Asking the catalog through the async engine costs a round trip
to its worker thread (about a millisecond here, more than sending the MiB itself), and the
answer is needed on every request, since a revocation on any replica must refuse the very next
one. A SQLite catalog is a local file in WAL mode, where a reader never waits for a writer: one
indexed SELECT on a read-only connection of its own takes microseconds, so it is run right
here, in the loop, on every request. A catalog on a server (PostgreSQL) offers no such read:
`open_quick_reads` gives None and the caller asks the catalog as before.

Any error (a busy or locked file, a schema being migrated) answers "unknown", never "live":
the caller then asks the catalog the slow way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

log = logging.getLogger("avidence.tickets.quickreads")

_ASYNC_PREFIX = "sqlite+aiosqlite:///"


class QuickReads:
    """A read-only connection to the catalog's SQLite file, used from the event loop only."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn = engine.connect()

    def all_hold(self, query: sa.Select[tuple[str]], params: Mapping[str, object]) -> bool | None:
        """True when `query` finds a row, False when not, None when it could not be read."""
        try:
            found = self.conn.execute(query, dict(params)).first() is not None
            self.conn.rollback()  # end the read, so the next one sees newer commits
            return found
        except sa.exc.SQLAlchemyError as exc:
            log.warning("tickets.quick_read_failed error=%s", str(exc).splitlines()[0])
            try:
                self.conn.rollback()
            except sa.exc.SQLAlchemyError:
                pass
            return None

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()


def open_quick_reads(database_url: str) -> QuickReads | None:
    """Quick reads for a SQLite catalog in a file; None for any other catalog."""
    if not database_url.startswith(_ASYNC_PREFIX):
        return None
    path = database_url[len(_ASYNC_PREFIX) :]
    if not path or path == ":memory:" or "?" in path:
        return None
    engine = sa.create_engine(
        f"sqlite:///file:{path}?mode=ro&uri=true",
        poolclass=StaticPool,
        connect_args={"timeout": 0, "check_same_thread": False},
    )
    try:
        return QuickReads(engine)
    except sa.exc.SQLAlchemyError as exc:  # serving still works, through the catalog
        log.warning("tickets.quick_reads_unavailable error=%s", str(exc).splitlines()[0])
        engine.dispose()
        return None

