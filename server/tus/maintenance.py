"""Background upkeep of uploads: expire abandoned ones, finish verifications a crash cut short."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from avidence.storage import errors as store_errors
from avidence.storage.base import Target

from ..catalog import uploads as uploads_db
from .context import TusContext
from .finish import start_verification

log = logging.getLogger("avidence.tus.maintenance")


async def expire_abandoned(ctx: TusContext) -> int:
    """Abort every receiving upload past its expiry (multipart aborted, staged bytes deleted)."""
    count = 0
    now = datetime.now(UTC)
    stale = await uploads_db.in_state(ctx.engine, "receiving", expired_before=now)
    # Finished partial uploads that no final upload joined are abandoned too.
    stale += await uploads_db.in_state(ctx.engine, "complete", expired_before=now)
    for upload in stale:
        try:
            lease = await ctx.locks.acquire(upload.id, on_takeover=lambda: None, wait=0)
        except Exception:
            continue  # someone is writing to it right now: not abandoned
        try:
            if upload.state == "complete":
                await ctx.store.delete(upload.storage_key)
            elif upload.concat != "final":
                await ctx.store.abort(Target(upload.storage_key, upload.store_handle))
            await uploads_db.update(ctx.engine, upload.id, state="expired")
        except store_errors.StoreError as exc:
            log.warning("upload.expire_failed id=%s error=%s", upload.id, exc)
            continue
        finally:
            await lease.release()
        ctx.digests.pop(upload.id, None)
        count += 1
        log.info("upload.expired id=%s offset=%s", upload.id, upload.offset)
    return count


async def resume_verifications(ctx: TusContext) -> int:
    """Restart verification of uploads left `verifying` by a process that stopped."""
    pending = await uploads_db.in_state(ctx.engine, "verifying")
    for upload in pending:
        start_verification(ctx, upload.id)
    return len(pending)


async def run_forever(ctx: TusContext, *, interval: float = 60.0) -> None:
    await resume_verifications(ctx)
    while True:
        with contextlib.suppress(Exception):
            await expire_abandoned(ctx)
        await asyncio.sleep(interval)
