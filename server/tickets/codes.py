"""Access codes: a 6-digit PIN handed over apart from the link, so a forwarded link alone opens
nothing.

A million codes are few, so two things keep guessing out: online, five wrong codes lock the ticket
for 15 minutes (counted in the catalog, so every replica sees the same count); offline, the code is
stored only as a salted scrypt hash, which makes trying all million costly for whoever copies the
catalog.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from .. import clock
from ..catalog.schema import UTCDateTime, tickets

DIGITS = 6
MAX_TRIES = 5
LOCK_FOR = timedelta(minutes=15)
_N, _R, _P = 2**14, 8, 1  # ~16 MiB and ~50 ms per check


def new_code() -> str:
    return f"{secrets.randbelow(10**DIGITS):0{DIGITS}d}"


def _scrypt(code: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(code.encode(), salt=salt, n=n, r=r, p=p, dklen=32)


def hash_code(code: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(code, salt, _N, _R, _P)
    encode = base64.urlsafe_b64encode
    return f"scrypt${_N}${_R}${_P}${encode(salt).decode()}${encode(digest).decode()}"


def verify_code(stored: str, code: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.urlsafe_b64decode(digest)
        actual = _scrypt(code, base64.urlsafe_b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(expected, actual)


def well_formed(code: str) -> bool:
    return len(code) == DIGITS and code.isascii() and code.isdigit()


@dataclass(slots=True, frozen=True)
class CodeCheck:
    """The outcome of one attempt."""

    ok: bool
    tries_left: int = MAX_TRIES
    locked_until: datetime | None = None


async def check(engine: AsyncEngine, ticket_id: str, code: str) -> CodeCheck:
    """Try `code` against the ticket; count a failure, and lock after MAX_TRIES of them.

    An attempt is reserved before the code is checked, by one conditional UPDATE that counts it
    only while the ticket is unlocked with tries left and sets the lock when it takes the last
    one: read-then-write let a burst of 60 concurrent guesses all pass the check before any was
    counted. A locked ticket refuses even the right code until the lock ends, or guessing could
    go on through the lock; the right code within the tries resets the count."""
    now = clock.now()
    taken = await _reserve(engine, ticket_id, now=now)
    if taken is None:
        return await _refused(engine, ticket_id, now=now)
    failures, stored = taken
    right = well_formed(code) and await asyncio.to_thread(verify_code, stored, code)
    if right:
        async with engine.begin() as conn:
            await conn.execute(
                tickets.update()
                .where(tickets.c.id == ticket_id)
                .values(code_failures=0, code_locked_until=None)
            )
        return CodeCheck(ok=True)
    if failures < MAX_TRIES:
        return CodeCheck(ok=False, tries_left=MAX_TRIES - failures)
    return CodeCheck(ok=False, tries_left=0, locked_until=now + LOCK_FOR)


async def _reserve(engine: AsyncEngine, ticket_id: str, *, now: datetime) -> tuple[int, str] | None:
    """Count one attempt if one is left: (attempts now used, stored hash), or None when refused.

    The database serialises the statement on the row (PostgreSQL re-checks the WHERE on the row
    a concurrent UPDATE left; SQLite runs one writer at a time), so at most MAX_TRIES attempts
    are ever reserved per lock period. SET expressions read the row as it was before the UPDATE.
    """
    t = tickets.c
    expired = sa.and_(t.code_locked_until.is_not(None), t.code_locked_until <= now)
    unlocked = sa.and_(t.code_locked_until.is_(None), t.code_failures < MAX_TRIES)
    used = sa.case((expired, 1), else_=t.code_failures + 1)
    lock = sa.case(
        (used >= MAX_TRIES, sa.literal(now + LOCK_FOR, UTCDateTime())),
        else_=sa.null(),
    )
    has_code = t.access_code_hash.is_not(None)
    statement = (
        tickets.update()
        .where(t.id == ticket_id, has_code, sa.or_(expired, unlocked))
        .values(code_failures=used, code_locked_until=lock)
        .returning(t.code_failures, t.access_code_hash)
    )
    async with engine.begin() as conn:
        row = (await conn.execute(statement)).first()
    return None if row is None else (int(row.code_failures), str(row.access_code_hash))


async def _refused(engine: AsyncEngine, ticket_id: str, *, now: datetime) -> CodeCheck:
    """No attempt was left: say until when the ticket is locked, if it is."""
    async with engine.connect() as conn:
        until = (
            await conn.execute(
                sa.select(tickets.c.code_locked_until).where(tickets.c.id == ticket_id)
            )
        ).scalar()
    locked = until if until is not None and until > now else None
    return CodeCheck(ok=False, tries_left=0, locked_until=locked)
