"""The catalog's `data_keys` table as the key ring of the sealed store.

Kept in the catalog rather than beside the objects: replicas share it, a purge deletes a row
(crypto-shredding) whatever retention keeps the bucket's bytes, and `keys rewrap` rewrites rows
without touching objects. A catalog backup holds wrapped keys too: they open only with the KEK,
and backups must expire for a shredded object to be gone from them as well.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from avidence.storage.errors import KeysUnavailable
from avidence.storage.sealformat import Header, Suite
from avidence.storage.sealkeys import KeyRecord

from ..catalog.schema import data_keys


def _record(row: object) -> KeyRecord:
    header = Header(
        Suite.named(row.suite),  # type: ignore[attr-defined]
        row.segment_size,  # type: ignore[attr-defined]
        bytes.fromhex(row.object_id),  # type: ignore[attr-defined]
    )
    return KeyRecord(
        key=row.storage_key,  # type: ignore[attr-defined]
        header=header,
        kek_id=row.kek_id,  # type: ignore[attr-defined]
        wrapped=base64.b64decode(row.wrapped),  # type: ignore[attr-defined]
        stored=row.stored_size,  # type: ignore[attr-defined]
        runs=None if row.runs is None else base64.b64decode(row.runs),  # type: ignore[attr-defined]
    )


def _values(record: KeyRecord) -> dict[str, object]:
    return {
        "storage_key": record.key,
        "suite": record.header.suite.label,
        "segment_size": record.header.segment,
        "object_id": record.header.object_id.hex(),
        "kek_id": record.kek_id,
        "wrapped": base64.b64encode(record.wrapped).decode(),
        "stored_size": record.stored,
        "runs": None if record.runs is None else base64.b64encode(record.runs).decode(),
    }


class CatalogKeyRing:
    """`storage.sealkeys.KeyRing` on the catalog; an unreachable catalog is `KeysUnavailable`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def put(self, record: KeyRecord) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.execute(delete(data_keys).where(data_keys.c.storage_key == record.key))
                await conn.execute(
                    insert(data_keys).values(**_values(record), created_at=datetime.now(UTC))
                )
        except (sa_exc.DBAPIError, OSError) as exc:
            raise KeysUnavailable(f"the catalog holding data keys: {type(exc).__name__}") from None

    async def get(self, key: str) -> KeyRecord | None:
        try:
            async with self.engine.connect() as conn:
                row = (
                    await conn.execute(select(data_keys).where(data_keys.c.storage_key == key))
                ).first()
        except (sa_exc.DBAPIError, OSError) as exc:
            raise KeysUnavailable(f"the catalog holding data keys: {type(exc).__name__}") from None
        return None if row is None else _record(row)

    async def destroy(self, key: str) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.execute(delete(data_keys).where(data_keys.c.storage_key == key))
        except (sa_exc.DBAPIError, OSError) as exc:
            raise KeysUnavailable(f"the catalog holding data keys: {type(exc).__name__}") from None

    async def under(self, *, not_kek: str, batch: int = 500) -> AsyncIterator[list[KeyRecord]]:
        """Records wrapped under any KEK but `not_kek`, a batch at a time (for rewrap)."""
        last = ""
        while True:
            async with self.engine.connect() as conn:
                rows = (
                    await conn.execute(
                        select(data_keys)
                        .where(data_keys.c.kek_id != not_kek, data_keys.c.storage_key > last)
                        .order_by(data_keys.c.storage_key)
                        .limit(batch)
                    )
                ).all()
            if not rows:
                return
            yield [_record(row) for row in rows]
            last = rows[-1].storage_key


async def rewrap(conn: AsyncConnection, record: KeyRecord) -> bool:
    """Store `record`'s new wrapping and KEK id; a row destroyed meanwhile stays destroyed."""
    result = await conn.execute(
        data_keys.update()
        .where(data_keys.c.storage_key == record.key)
        .values(kek_id=record.kek_id, wrapped=base64.b64encode(record.wrapped).decode())
    )
    return bool(result.rowcount)
