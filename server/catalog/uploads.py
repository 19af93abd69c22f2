"""Upload records: the durable state of every tus upload, so any process can resume any upload.

States: `receiving` (bytes still arriving), `verifying` (all bytes stored as an object, digests
being computed and compared), `done` (became evidence), `complete` (a finished partial upload,
waiting to be concatenated), `consumed` (a partial used by a final upload), `quarantined`
(declared digests did not match: kept, never evidence), `terminated`, `expired`, `failed`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .. import clock
from .connect import connected
from .schema import uploads
from .schema_exchange import DEFAULT_AGENCY

__all__ = ["FINAL_STATES", "OPEN_STATES", "ConcatKind", "Upload", "UploadState", "uploads"]


class UploadState(StrEnum):
    RECEIVING = "receiving"
    VERIFYING = "verifying"
    DONE = "done"
    COMPLETE = "complete"
    CONSUMED = "consumed"
    QUARANTINED = "quarantined"
    TERMINATED = "terminated"
    EXPIRED = "expired"
    FAILED = "failed"


class ConcatKind(StrEnum):
    """The tus concatenation role of an upload ("" for a plain one)."""

    NONE = ""
    PARTIAL = "partial"
    FINAL = "final"


OPEN_STATES = (UploadState.RECEIVING,)
FINAL_STATES = (
    UploadState.DONE,
    UploadState.QUARANTINED,
    UploadState.TERMINATED,
    UploadState.EXPIRED,
    UploadState.FAILED,
    UploadState.CONSUMED,
)


@dataclass(slots=True, frozen=True)
class Upload:
    id: str
    state: UploadState
    length: int | None
    offset: int
    metadata: dict[str, str]
    concat: ConcatKind
    parts: list[str] | None
    store: str
    storage_key: str
    store_handle: str
    digests: dict[str, str] | None
    uploader: str
    evidence_id: str | None
    error: str | None
    lock_owner: str | None
    lock_until: datetime | None
    lock_wanted: str | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    agency_id: str = DEFAULT_AGENCY

    @property
    def deferred(self) -> bool:
        return self.length is None


_COLUMNS = [f.name for f in fields(Upload)]


def _row(row: Any) -> Upload:
    values = {name: getattr(row, name) for name in _COLUMNS}
    values["state"] = UploadState(values["state"])
    values["concat"] = ConcatKind(values["concat"])
    return Upload(**values)


async def insert(conn: AsyncConnection, upload: Upload) -> None:
    await conn.execute(uploads.insert().values({n: getattr(upload, n) for n in _COLUMNS}))


async def get(engine: AsyncEngine | AsyncConnection, upload_id: str) -> Upload | None:
    query = sa.select(uploads).where(uploads.c.id == upload_id)
    async with connected(engine) as conn:
        row = (await conn.execute(query)).first()
    return _row(row) if row is not None else None


async def update(
    engine: AsyncEngine, upload_id: str, *, expiry: timedelta | None = None, **values: Any
) -> None:
    """Set columns and touch `updated_at` (and push `expires_at` out when `expiry` is given)."""
    now = clock.now()
    values["updated_at"] = now
    if expiry is not None:
        values["expires_at"] = now + expiry
    async with engine.begin() as conn:
        await conn.execute(uploads.update().where(uploads.c.id == upload_id).values(**values))


async def finish(
    conn: AsyncConnection,
    upload_id: str,
    *,
    digests: dict[str, str],
    evidence_id: str,
    now: datetime,
) -> bool:
    """Move a verifying upload to `done` inside the caller's transaction; False when it is no
    longer verifying (another process accepted it first)."""
    result = await conn.execute(
        uploads.update()
        .where(uploads.c.id == upload_id, uploads.c.state == UploadState.VERIFYING)
        .values(state=UploadState.DONE, digests=digests, evidence_id=evidence_id, updated_at=now)
    )
    return result.rowcount == 1


async def claim_partials(
    conn: AsyncConnection, ids: list[str], *, final_id: str, now: datetime
) -> bool:
    """Mark the partials `consumed` by `final_id` inside the caller's transaction (one
    conditional UPDATE); False when one is no longer `complete`: another final upload took it,
    and the caller's transaction must not go on."""
    distinct = list(dict.fromkeys(ids))
    result = await conn.execute(
        uploads.update()
        .where(uploads.c.id.in_(distinct), uploads.c.state == UploadState.COMPLETE)
        .values(state=UploadState.CONSUMED, parts=[final_id], updated_at=now)
    )
    return result.rowcount == len(distinct)


async def release_partials(engine: AsyncEngine, final: Upload, *, error: str) -> None:
    """A join that failed gives its partials back (`complete` again, for the client's next
    final upload) and is marked failed."""
    now = clock.now()
    async with engine.begin() as conn:
        await conn.execute(
            uploads.update()
            .where(
                uploads.c.id.in_(list(dict.fromkeys(final.parts or []))),
                uploads.c.state == UploadState.CONSUMED,
            )
            .values(state=UploadState.COMPLETE, parts=None, updated_at=now)
        )
        await conn.execute(
            uploads.update()
            .where(uploads.c.id == final.id)
            .values(state=UploadState.FAILED, error=error[:500], updated_at=now)
        )


async def in_state(
    engine: AsyncEngine, state: str, *, expired_before: datetime | None = None, limit: int = 100
) -> list[Upload]:
    query = sa.select(uploads).where(uploads.c.state == state)
    if expired_before is not None:
        query = query.where(uploads.c.expires_at < expired_before)
    async with engine.connect() as conn:
        rows = (await conn.execute(query.order_by(uploads.c.updated_at).limit(limit))).all()
    return [_row(r) for r in rows]


async def count_by_state(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(uploads.c.state, sa.func.count()).group_by(uploads.c.state)
        )
        return {state: count for state, count in rows.all()}
