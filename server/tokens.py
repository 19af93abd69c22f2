"""Bearer tokens for uploaders, case handlers, admins and auditors, each acting for one agency.

A token is `avd_` followed by 32 random bytes in base64url. Only its SHA-256 is stored, so a copy of
the catalog gives nobody a usable token; the lookup is by that hash, which leaks nothing through
timing about the secret itself. The token is shown once, when it is created.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, get_args

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import clock
from .audit.events import TokenCreated, TokenRevoked
from .audit.unit import unit_of_work
from .catalog.schema import tokens
from .catalog.schema_exchange import DEFAULT_AGENCY

# A handler moves a case between agencies (transfers, acknowledgements) and issues tickets;
# an admin may also manage its agency's webhooks. Every role sees only its agency's holdings.
Role = Literal["uploader", "handler", "admin", "auditor"]
ROLES: tuple[Role, ...] = get_args(Role)


def as_role(value: str) -> Role:
    """A role name checked against ROLES (ValueError otherwise), typed for mypy."""
    for role in ROLES:
        if value == role:
            return role
    raise ValueError(f"unknown role {value!r}; choose one of {', '.join(ROLES)}")


PREFIX = "avd_"
# Recording every use would turn each PATCH into a catalog write; a minute is precise enough.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(slots=True, frozen=True)
class Principal:
    """Who is calling: the token's id, name, role and the agency it acts for."""

    token_id: str
    name: str
    role: Role
    agency_id: str = DEFAULT_AGENCY

    @property
    def label(self) -> str:
        """How the audit log names this caller."""
        return f"{self.token_id} ({self.name})"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create(
    engine: AsyncEngine,
    *,
    role: str,
    name: str,
    agency_id: str = DEFAULT_AGENCY,
    actor: str = "cli",
) -> tuple[Principal, str]:
    """Create a token (audited) and return it with its secret, which is not kept anywhere."""
    checked = as_role(role)
    name = name.strip()
    if not name or len(name) > 200 or not name.isprintable():
        raise ValueError("token name must be 1-200 printable characters")
    secret = PREFIX + secrets.token_urlsafe(32)
    token_id = "tok_" + secrets.token_hex(8)
    async with unit_of_work(engine) as unit:
        await unit.conn.execute(
            tokens.insert().values(
                id=token_id,
                name=name,
                role=role,
                secret_hash=hash_secret(secret),
                created_at=clock.now(),
                agency_id=agency_id,
            )
        )
        unit.record(
            TokenCreated(
                actor=actor, object=f"token:{token_id}", role=role, name=name, agency=agency_id
            )
        )
    return Principal(token_id=token_id, name=name, role=checked, agency_id=agency_id), secret


async def authenticate(engine: AsyncEngine, secret: str) -> Principal | None:
    """The principal for a presented secret, or None when unknown, revoked or expired."""
    if not secret.startswith(PREFIX) or len(secret) > 128:
        return None
    now = clock.now()
    async with engine.begin() as conn:
        row = (
            await conn.execute(sa.select(tokens).where(tokens.c.secret_hash == hash_secret(secret)))
        ).first()
        if row is None or row.revoked_at is not None:
            return None
        if row.expires_at is not None and row.expires_at <= now:
            return None
        if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
            await conn.execute(
                tokens.update().where(tokens.c.id == row.id).values(last_used_at=now)
            )
    return Principal(
        token_id=row.id, name=row.name, role=as_role(row.role), agency_id=row.agency_id
    )


async def revoke(engine: AsyncEngine, token_id: str, *, actor: str = "cli") -> bool:
    """Revoke an active token (audited); False when there is none by that id."""
    async with unit_of_work(engine) as unit:
        result = await unit.conn.execute(
            tokens.update()
            .where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
            .values(revoked_at=clock.now())
        )
        if result.rowcount > 0:
            unit.record(TokenRevoked(actor=actor, object=f"token:{token_id}"))
    return result.rowcount > 0


async def listing(engine: AsyncEngine) -> list[sa.Row[tuple[object, ...]]]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.select(tokens).order_by(tokens.c.created_at))).all())


async def name_of(conn: AsyncConnection, token_id: str) -> str:
    """The name a token was given, for receipts and audit entries ("" when unknown)."""
    name = (await conn.execute(sa.select(tokens.c.name).where(tokens.c.id == token_id))).scalar()
    return str(name) if name is not None else ""
