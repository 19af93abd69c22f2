"""Letting go of an unfinished upload's bytes, for termination and for expiry alike."""

from __future__ import annotations

import logging

from avidence.storage.base import Target

from ..audit import log as audit
from ..audit.events import Event
from ..catalog import uploads as uploads_db
from ..catalog.uploads import Upload
from .context import TusContext

log = logging.getLogger("avidence.tus")

DISCARDABLE = ("receiving", "complete")


async def discard(
    ctx: TusContext, upload: Upload, *, state: str, actor: str, wait: float | None = None
) -> None:
    """Delete the staged bytes (or a finished partial's object) under the upload's lock and mark
    the upload `state`. Raises `Locked` when a writer holds it beyond `wait` seconds."""
    lease = await ctx.locks.acquire(upload.id, on_takeover=lambda: None, wait=wait)
    try:
        if upload.state == "complete":
            await ctx.store.delete(upload.storage_key)
        elif upload.concat != "final":
            await ctx.store.abort(Target(upload.storage_key, upload.store_handle))
        await uploads_db.update(ctx.engine, upload.id, state=state)
    finally:
        await lease.release()
    ctx.digests.pop(upload.id, None)
    await audit.append(
        ctx.engine,
        Event(
            action=f"upload.{state}",
            actor=actor,
            object=f"upload:{upload.id}",
            case_id=upload.metadata.get("case"),
            details={"offset": upload.offset, "length": upload.length},
        ),
    )
    log.info("upload.%s id=%s offset=%s", state, upload.id, upload.offset)
