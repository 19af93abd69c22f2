"""Case rows: a case is one agency's case number with a global id, the agencies holding it and
the evidence in it. Evidence joins the case its upload names (`case` metadata) when it is
created, so an uploader never has to create a case first."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..agencies.access import held_by
from ..audit.events import CaseCreated
from ..audit.unit import unit_of_work
from ..catalog.schema import evidence
from ..catalog.schema_exchange import agencies, case_agencies, case_evidence, cases
from ..failures import Code, DomainError

STATUSES = ("open", "closed")
_RETRIES = 5


class CaseError(DomainError):
    """A case that cannot be made: a malformed number or title, or a number already taken."""


@dataclass(slots=True, frozen=True)
class Case:
    id: str
    agency_id: str
    number: str
    title: str
    status: str
    created_at: datetime
    agencies: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "number": self.number,
            "title": self.title,
            "status": self.status,
            "owner": self.agency_id,
            "agencies": list(self.agencies),
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
        }


def check_number(number: str) -> str:
    if not number or len(number) > 128 or number != number.strip() or not number.isprintable():
        raise CaseError("case number: 1-128 printable characters, trimmed")
    return number


async def ensure(
    engine: AsyncEngine,
    *,
    agency_id: str,
    number: str,
    title: str = "",
    actor: str = "server",
    client: str | None = None,
) -> str:
    """The id of the agency's case with this number, created when missing. Two uploads racing
    to create it both end with the same id: the loser of the unique (agency, number) re-reads."""
    number = check_number(number)
    for _ in range(_RETRIES):
        async with engine.connect() as conn:
            found = await _id_by_number(conn, agency_id, number)
        if found is not None:
            return found
        case_id = "case_" + secrets.token_hex(12)
        now = datetime.now(UTC)
        try:
            async with unit_of_work(engine) as unit:
                conn = unit.conn
                await conn.execute(
                    cases.insert().values(
                        id=case_id,
                        agency_id=agency_id,
                        number=number,
                        title=title[:300],
                        status="open",
                        created_at=now,
                    )
                )
                await conn.execute(
                    case_agencies.insert().values(case_id=case_id, agency_id=agency_id, since=now)
                )
                unit.record(
                    CaseCreated(
                        actor=actor,
                        object=f"case:{case_id}",
                        case_id=number,
                        number=number,
                        title=title[:300],
                        agency=agency_id,
                        client=client,
                        time=now,
                    )
                )
        except IntegrityError:
            continue
        return case_id
    raise RuntimeError(f"could not create case {number!r}: too much contention")


async def _id_by_number(conn: AsyncConnection, agency_id: str, number: str) -> str | None:
    found = await conn.execute(
        sa.select(cases.c.id).where(cases.c.agency_id == agency_id, cases.c.number == number)
    )
    value = found.scalar()
    return str(value) if value is not None else None


async def _link(conn: AsyncConnection, table: sa.Table, keys: dict[str, str], when: str) -> None:
    """Insert the (case, other) link row unless present, stamped `when` = now."""
    present = await conn.execute(
        sa.select(table.c.case_id).where(*(table.c[name] == value for name, value in keys.items()))
    )
    if present.first() is None:
        await conn.execute(table.insert().values(**keys, **{when: datetime.now(UTC)}))


async def attach(conn: AsyncConnection, *, case_id: str, evidence_id: str) -> None:
    """Put an item in a case (inside the caller's transaction); repeating it is harmless."""
    await _link(conn, case_evidence, {"case_id": case_id, "evidence_id": evidence_id}, "added_at")


async def add_holder(conn: AsyncConnection, *, case_id: str, agency_id: str) -> None:
    """Make an agency a holder of the case (inside the caller's transaction)."""
    await _link(conn, case_agencies, {"case_id": case_id, "agency_id": agency_id}, "since")


async def _load(conn: AsyncConnection, row: Any) -> Case:
    holders = await conn.execute(
        sa.select(agencies.c.name)
        .select_from(case_agencies.join(agencies, agencies.c.id == case_agencies.c.agency_id))
        .where(case_agencies.c.case_id == row.id)
        .order_by(case_agencies.c.since)
    )
    return Case(
        id=row.id,
        agency_id=row.agency_id,
        number=row.number,
        title=row.title,
        status=row.status,
        created_at=row.created_at,
        agencies=tuple(holders.scalars()),
    )


def _holds(agency_id: str) -> sa.ColumnElement[bool]:
    return cases.c.id.in_(
        sa.select(case_agencies.c.case_id).where(case_agencies.c.agency_id == agency_id)
    )


async def get(engine: AsyncEngine, case_id: str, *, agency_id: str | None = None) -> Case | None:
    """A case; with `agency_id`, only when that agency holds it (else None, as if missing)."""
    query = sa.select(cases).where(cases.c.id == case_id)
    if agency_id is not None:
        query = query.where(_holds(agency_id))
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
        return await _load(conn, row) if row is not None else None


async def listing(engine: AsyncEngine, *, agency_id: str, number: str | None = None) -> list[Case]:
    query = sa.select(cases).where(_holds(agency_id)).order_by(cases.c.created_at)
    if number is not None:
        query = query.where(cases.c.number == number)
    async with engine.connect() as conn:
        return [await _load(conn, row) for row in (await conn.execute(query)).all()]


class CaseNotFound(LookupError):
    """No case by that id or number for the asker (404, as for a case it cannot see)."""


class CaseAmbiguous(ValueError):
    """A bare number that names cases of several agencies, where no agency was given."""


async def resolve(engine: AsyncEngine, typed: str, *, agency_id: str | None) -> Case:
    """A case as a person types it: its global id (`case_...`) or its number.

    A number belongs to an agency: with `agency_id` it names that agency's case (or one it
    holds); without (a site admin's command) it must name exactly one agency's case, else
    CaseAmbiguous lists the agencies so the admin can say which. The same number in two
    agencies is two cases."""
    typed = typed.strip()
    if typed.startswith("case_"):
        found = await get(engine, typed, agency_id=agency_id)
        if found is None:
            raise CaseNotFound(f"no case {typed}")
        return found
    if agency_id is not None:
        held = await listing(engine, agency_id=agency_id, number=typed)
        own = [c for c in held if c.agency_id == agency_id]
        if own or len(held) == 1:
            return (own or held)[0]
        if not held:
            raise CaseNotFound(f"no case {typed!r}")
        raise CaseAmbiguous(
            f"case number {typed!r} names cases of {len(held)} agencies: give the case id"
        )
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(cases).where(cases.c.number == typed))).all()
        if len(rows) == 1:
            return await _load(conn, rows[0])
    if not rows:
        raise CaseNotFound(f"no case {typed!r}")
    owners = ", ".join(sorted(r.agency_id for r in rows))
    raise CaseAmbiguous(
        f"case number {typed!r} exists in several agencies ({owners}): give --agency or the case id"
    )


async def evidence_ids(engine: AsyncEngine, case_id: str, *, agency_id: str) -> list[str]:
    """The case's items the agency owns or holds, oldest first."""
    query = (
        sa.select(evidence.c.id)
        .select_from(evidence.join(case_evidence, case_evidence.c.evidence_id == evidence.c.id))
        .where(case_evidence.c.case_id == case_id, held_by(agency_id))
        .order_by(evidence.c.received_at, evidence.c.id)
    )
    async with engine.connect() as conn:
        return list((await conn.execute(query)).scalars())


async def create(
    engine: AsyncEngine,
    *,
    agency_id: str,
    number: str,
    title: str,
    actor: str = "server",
    client: str | None = None,
) -> Case:
    """A new case; CaseError `case_exists` when the agency already has one with this number."""
    number = check_number(number)
    if len(title) > 300 or not title.isprintable():
        raise CaseError("title: at most 300 printable characters")
    async with engine.connect() as conn:
        if await _id_by_number(conn, agency_id, number) is not None:
            raise CaseError(f"case {number!r} already exists", code=Code.CASE_EXISTS)
    case_id = await ensure(
        engine, agency_id=agency_id, number=number, title=title.strip(), actor=actor, client=client
    )
    found = await get(engine, case_id)
    assert found is not None
    return found
