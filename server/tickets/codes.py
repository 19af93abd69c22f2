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
from ..catalog.schema import tickets

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

    A locked ticket refuses even the right code until the lock ends, or guessing could go on
    through the lock."""
    now = clock.now()
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(tickets.c.access_code_hash, tickets.c.code_locked_until).where(
                    tickets.c.id == ticket_id
                )
            )
        ).first()
    if row is None or row.access_code_hash is None:
        return CodeCheck(ok=False, tries_left=0)
    if row.code_locked_until is not None and row.code_locked_until > now:
        return CodeCheck(ok=False, tries_left=0, locked_until=row.code_locked_until)
    right = well_formed(code) and await asyncio.to_thread(verify_code, row.access_code_hash, code)
    async with engine.begin() as conn:
        if right:
            await conn.execute(
                tickets.update()
                .where(tickets.c.id == ticket_id)
                .values(code_failures=0, code_locked_until=None)
            )
            return CodeCheck(ok=True)
        await conn.execute(
            tickets.update()
            .where(tickets.c.id == ticket_id)
            .values(code_failures=tickets.c.code_failures + 1)
        )
        failures = int(
            (
                await conn.execute(
                    sa.select(tickets.c.code_failures).where(tickets.c.id == ticket_id)
                )
            ).scalar_one()
        )
        if failures < MAX_TRIES:
            return CodeCheck(ok=False, tries_left=MAX_TRIES - failures)
        until = now + LOCK_FOR
        await conn.execute(
            tickets.update()
            .where(tickets.c.id == ticket_id)
            .values(code_failures=0, code_locked_until=until)
        )
        return CodeCheck(ok=False, tries_left=0, locked_until=until)
