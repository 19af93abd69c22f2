"""Reading whether a view may still send, without leaving the event loop.

A seek is one small ranged GET. Asking the catalog through the async engine costs a round trip
to its worker thread (about a millisecond here, more than sending the MiB itself), and the
answer is needed on every request, since a revocation on any replica must refuse the very next
one. A SQLite catalog is a local file in WAL mode, where a reader never waits for a writer: one
indexed SELECT on a read-only connection of its own takes microseconds, so it is run right
here, in the loop, on every request. A catalog on a server (PostgreSQL) offers no such read:
`open_quick_reads` gives None and the caller asks the catalog as before.

Each statement is compiled once to SQL text and run on the driver's own connection: going
through SQLAlchemy's execution on every request cost several times the read itself.

Any error (a busy or locked file, a schema being migrated) answers "unknown", never "live":
the caller then asks the catalog the slow way.
"""

from __future__ import annotations

import logging
import sqlite3
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

log = logging.getLogger("avidence.tickets.quickreads")

_ASYNC_PREFIX = "sqlite+aiosqlite:///"
_DIALECT = sqlite.dialect()
_REQUIRED = object()
_PREPARED_MAX = 64  # statements are built once per set of conditions: a handful


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A statement as the driver takes it: its text, and per positional parameter its name,
    the value it has when none is given (`_REQUIRED`: none may be missing), and how a value is
    turned into what SQLite stores."""

    sql: str
    binds: tuple[tuple[str, object, Callable[[Any], Any] | None], ...]

    def parameters(self, params: Mapping[str, object]) -> list[object]:
        values = []
        for name, default, process in self.binds:
            value = params.get(name, default)
            if value is _REQUIRED:
                raise KeyError(f"no value for the parameter {name!r}")
            values.append(process(value) if process is not None else value)
        return values


def _prepare(query: sa.Select[Any]) -> _Prepared:
    """Compile once. An IN list of constants (compiled as a placeholder to expand at run time)
    is written out as one `?` per value, as the driver takes it."""
    compiled = query.compile(dialect=_DIALECT)
    sql = compiled.string
    binds: list[tuple[str, object, Callable[[Any], Any] | None]] = []
    for name in compiled.positiontup or ():
        bind = compiled.binds[name]
        process = bind.type.dialect_impl(_DIALECT).bind_processor(_DIALECT)
        if not bind.expanding:
            binds.append((name, _REQUIRED if bind.required else bind.value, process))
            continue
        if bind.callable is not None or not isinstance(bind.value, list | tuple):
            raise ValueError(f"quick reads take IN lists of constants only, not {name!r}")
        marks = ", ".join("?" * len(bind.value))
        sql = sql.replace(f"__[POSTCOMPILE_{name}]", marks, 1)
        binds.extend((f"{name}_{i}", value, process) for i, value in enumerate(bind.value))
    return _Prepared(sql, tuple(binds))


class QuickReads:
    """A read-only connection to the catalog's SQLite file, used from the event loop only."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._prepared: dict[sa.Select[Any], _Prepared] = {}

    def all_hold(self, query: sa.Select[tuple[str]], params: Mapping[str, object]) -> bool | None:
        """True when `query` finds a row, False when not, None when it could not be read."""
        prepared = self._prepared.get(query)
        try:
            if prepared is None:
                if len(self._prepared) >= _PREPARED_MAX:
                    self._prepared.clear()
                prepared = self._prepared[query] = _prepare(query)
            # Autocommit: the SELECT is its own read, so the next one sees newer commits.
            return (
                self.conn.execute(prepared.sql, prepared.parameters(params)).fetchone() is not None
            )
        except (sqlite3.Error, sa.exc.SQLAlchemyError, KeyError, ValueError) as exc:
            log.warning("tickets.quick_read_failed error=%s", str(exc).splitlines()[0])
            return None

    def close(self) -> None:
        self.conn.close()


def open_quick_reads(database_url: str) -> QuickReads | None:
    """Quick reads for a SQLite catalog in a file; None for any other catalog."""
    if not database_url.startswith(_ASYNC_PREFIX):
        return None
    path = database_url[len(_ASYNC_PREFIX) :]
    if not path or path == ":memory:" or "?" in path:
        return None
    try:
        conn = sqlite3.connect(
            f"file:{urllib.parse.quote(path)}?mode=ro",
            uri=True,
            timeout=0,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:  # serving still works, through the catalog
        log.warning("tickets.quick_reads_unavailable error=%s", str(exc).splitlines()[0])
        return None
    return QuickReads(conn)
