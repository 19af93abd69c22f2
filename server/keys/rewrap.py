"""Re-wrapping data keys under the active key-encryption key, without touching the objects.

After `key rotate-kek` new objects get keys wrapped under the new KEK; `key rewrap` moves the
old records over, a batch per transaction with its audit entry, so an interrupted run resumes
where it stopped. Once no record names an old KEK (`remaining`), its file may be retired.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.storage.sealkeys import KeyRecord, KeyWrapping, context

from ..audit.events import DataKeysRewrapped
from ..audit.unit import unit_of_work
from ..catalog.schema import data_keys
from . import datakeys


def _rewrapped(record: KeyRecord, keks: KeyWrapping) -> KeyRecord:
    ctx = context(record.key, record.header)
    data_key = keks.unwrap(record.wrapped, kek_id=record.kek_id, context=ctx)
    wrapped = keks.wrap(data_key, context=ctx)
    return KeyRecord(key=record.key, header=record.header, kek_id=keks.kek_id, wrapped=wrapped)


async def rewrap_all(engine: AsyncEngine, keks: KeyWrapping, *, actor: str) -> int:
    """Re-wrap every record not under the active KEK; how many were re-wrapped."""
    ring = datakeys.CatalogKeyRing(engine)
    total = 0
    async for batch in ring.under(not_kek=keks.kek_id):
        moved = [_rewrapped(record, keks) for record in batch]
        async with unit_of_work(engine) as unit:
            count = sum([await datakeys.rewrap(unit.conn, record) for record in moved])
            unit.record(
                DataKeysRewrapped(
                    actor=actor,
                    object=f"kek:{keks.kek_id}",
                    count=count,
                    previous=sorted({record.kek_id for record in batch}),
                )
            )
        total += count
    return total


async def remaining(engine: AsyncEngine) -> dict[str, int]:
    """How many data keys each KEK wraps."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(data_keys.c.kek_id, func.count()).group_by(data_keys.c.kek_id)
        )
        return {str(kek_id): int(n) for kek_id, n in rows}
