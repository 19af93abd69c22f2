"""Agency rows: create, find by id or name, list. The default agency always exists."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..audit.events import AgencyCreated
from ..audit.unit import unit_of_work
from ..catalog.connect import connected
from ..catalog.schema_exchange import DEFAULT_AGENCY, agencies

__all__ = ["DEFAULT_AGENCY", "Agency", "by_id", "by_name", "create", "listing"]


@dataclass(slots=True, frozen=True)
class Agency:
    id: str
    name: str
    created_at: datetime

    def to_json(self) -> dict[str, str]:
        return {
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
        }


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200 or not name.isprintable():
        raise ValueError("agency name must be 1-200 printable characters")
    return name


async def create(engine: AsyncEngine, *, name: str, actor: str = "cli") -> Agency:
    """A new agency (audited); ValueError when the name is taken or malformed."""
    agency = Agency("agc_" + secrets.token_hex(8), _check_name(name), datetime.now(UTC))
    try:
        async with unit_of_work(engine) as unit:
            await unit.conn.execute(
                agencies.insert().values(
                    id=agency.id, name=agency.name, created_at=agency.created_at
                )
            )
            unit.record(
                AgencyCreated(
                    actor=actor,
                    object=f"agency:{agency.id}",
                    name=agency.name,
                    time=agency.created_at,
                )
            )
    except IntegrityError:
        raise ValueError(f"an agency named {agency.name!r} already exists") from None
    return agency


async def _one(
    engine: AsyncEngine | AsyncConnection, where: sa.ColumnElement[bool]
) -> Agency | None:
    query = sa.select(agencies).where(where)
    async with connected(engine) as conn:
        row = (await conn.execute(query)).first()
    return Agency(row.id, row.name, row.created_at) if row is not None else None


async def by_id(engine: AsyncEngine | AsyncConnection, agency_id: str) -> Agency | None:
    return await _one(engine, agencies.c.id == agency_id)


async def by_name(engine: AsyncEngine | AsyncConnection, name: str) -> Agency | None:
    return await _one(engine, agencies.c.name == name.strip())


async def resolve(engine: AsyncEngine | AsyncConnection, name_or_id: str) -> Agency | None:
    """An agency named by its name or its id (what the CLI and the API accept)."""
    return await by_id(engine, name_or_id) or await by_name(engine, name_or_id)


async def listing(engine: AsyncEngine) -> list[Agency]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(agencies).order_by(agencies.c.created_at))).all()
    return [Agency(r.id, r.name, r.created_at) for r in rows]
