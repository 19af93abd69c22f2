"""Whether a catalog error is worth a retry: the catalog lost, busy or restarting, as opposed
to a statement it refuses for its content, which fails the same way every time.

The first is a 503 with Retry-After; the second is a defect (a value that should have been
refused with a 400 before it reached the catalog, a conflict the code should have handled), a
500 logged with its traceback, not an outage a client is told to wait out.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

# PostgreSQL sqlstate classes (and single states) that pass: connection exceptions (08), a
# read-only transaction during a failover (25006), serialization failures and deadlocks (40),
# insufficient resources (53), object in use, such as a lock not available (55), operator
# intervention, such as a statement timeout or a shutdown (57), system errors (58).
_PG_RETRY = ("08", "25006", "40", "53", "55", "57", "58")
# SQLite result codes that pass: the file busy or locked by another connection, an I/O error,
# a full disk, a file that cannot be opened (a mount gone), a locking protocol hiccup.
_SQLITE_RETRY = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_CANTOPEN",
                 "SQLITE_PROTOCOL")  # fmt: skip


def code(exc: sa_exc.DBAPIError) -> str:
    """The driver's own name for the error: PostgreSQL's sqlstate, SQLite's result code."""
    for attribute in ("sqlstate", "sqlite_errorname"):
        found = getattr(exc.orig, attribute, None)
        if isinstance(found, str) and found:
            return found
    return ""


def retryable(exc: sa_exc.DBAPIError) -> bool:
    """True unless the driver says the statement itself was refused."""
    if exc.connection_invalidated or isinstance(exc, sa_exc.InterfaceError):
        return True
    found = code(exc)
    if found.startswith("SQLITE_"):
        return found.startswith(_SQLITE_RETRY)
    if found:
        return found.startswith(_PG_RETRY)
    return True  # a driver that does not say: assume the catalog, as before
