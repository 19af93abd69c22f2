"""Evidence records: the immutable facts about each verified original."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..catalog.schema import evidence
from ..catalog.schema_exchange import DEFAULT_AGENCY


@dataclass(slots=True, frozen=True)
class Evidence:
    id: str
    upload_id: str
    case_id: str
    item: str
    filename: str
    filetype: str
    size: int
    blake3: str
    sha256: str | None
    sm3: str | None
    uploader: str
    store: str
    storage_key: str
    metadata: dict[str, str]
    received_at: datetime
    integrity: str = "unchecked"  # "ok" or "failed" once a scrub has re-read the object
    checked_at: datetime | None = None
    agency_id: str = DEFAULT_AGENCY  # the owner; others hold it through acknowledged transfers

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["received_at"] = self.received_at.isoformat().replace("+00:00", "Z")
        if self.checked_at is not None:
            data["checked_at"] = self.checked_at.isoformat().replace("+00:00", "Z")
        return data


_COLUMNS = [f.name for f in fields(Evidence)]


async def insert(conn: AsyncConnection, record: Evidence) -> None:
    await conn.execute(evidence.insert().values({n: getattr(record, n) for n in _COLUMNS}))


async def get(engine: AsyncEngine, evidence_id: str) -> Evidence | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(evidence).where(evidence.c.id == evidence_id))).first()
    return Evidence(**{n: getattr(row, n) for n in _COLUMNS}) if row is not None else None
