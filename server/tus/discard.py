"""Letting go of an unfinished upload's bytes, for termination and for expiry alike."""

from __future__ import annotations

import logging
from typing import Literal

from avidence.storage.base import Target

from .. import clock
from ..audit.events import UploadExpired, UploadTerminated
from ..audit.unit import unit_of_work
from ..catalog import uploads as uploads_db
from ..catalog.uploads import ConcatKind, Upload, UploadState
from .context import TusContext

log = logging.getLogger("avidence.tus")

DISCARDABLE = (UploadState.RECEIVING, UploadState.COMPLETE)


async def discard(
    ctx: TusContext,
    upload: Upload,
    *,
    state: Literal[UploadState.TERMINATED, UploadState.EXPIRED],
    actor: str,
    wait: float | None = None,
) -> None:
    """Delete the staged bytes (or a finished partial's object) under the upload's lock, then
    mark the upload `state` with its audit entry in one transaction. Raises `Locked` when a
    writer holds it beyond `wait` seconds."""
    lease = await ctx.locks.acquire(upload.id, on_takeover=lambda: None, wait=wait)
    try:
        if upload.state == UploadState.COMPLETE:
            await ctx.store.delete(upload.storage_key)
        elif upload.concat != ConcatKind.FINAL:
            await ctx.store.abort(Target(upload.storage_key, upload.store_handle))
        event = UploadTerminated if state == UploadState.TERMINATED else UploadExpired
        async with unit_of_work(ctx.engine) as unit:
            await unit.conn.execute(
                uploads_db.uploads.update()
                .where(uploads_db.uploads.c.id == upload.id)
                .values(state=state, updated_at=clock.now())
            )
            unit.record(
                event(
                    actor=actor,
                    object=f"upload:{upload.id}",
                    case_id=upload.metadata.get("case"),
                    offset=upload.offset,
                    length=upload.length,
                )
            )
    finally:
        await lease.release()
    ctx.digests.pop(upload.id, None)
    log.info("upload.%s id=%s offset=%s", state, upload.id, upload.offset)
