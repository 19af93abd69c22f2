"""Background upkeep of uploads: expire abandoned ones, finish verifications a crash cut short."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from avidence.storage import errors as store_errors

from .. import clock
from ..catalog import uploads as uploads_db
from ..catalog.uploads import UploadState
from ..errors import Locked
from .context import TusContext
from .discard import discard
from .finish import start_verification

log = logging.getLogger("avidence.tus.maintenance")


async def expire_abandoned(ctx: TusContext) -> int:
    """Abort every receiving upload past its expiry (multipart aborted, staged bytes deleted)."""
    count = 0
    now = clock.now()
    stale = await uploads_db.in_state(ctx.engine, UploadState.RECEIVING, expired_before=now)
    # Finished partial uploads that no final upload joined are abandoned too.
    stale += await uploads_db.in_state(ctx.engine, UploadState.COMPLETE, expired_before=now)
    for upload in stale:
        try:
            await discard(ctx, upload, state=UploadState.EXPIRED, actor="server", wait=0)
        except Locked:
            continue  # someone is writing to it right now: not abandoned
        except store_errors.StoreError as exc:
            log.warning("upload.expire_failed id=%s error=%s", upload.id, exc)
            continue
        count += 1
    return count


async def resume_verifications(ctx: TusContext) -> int:
    """Restart verification of uploads left `verifying` by a process that stopped."""
    pending = await uploads_db.in_state(ctx.engine, UploadState.VERIFYING)
    for upload in pending:
        start_verification(ctx, upload.id)
    return len(pending)


async def run_forever(ctx: TusContext, *, interval: float = 60.0) -> None:
    await resume_verifications(ctx)
    while True:
        with contextlib.suppress(Exception):
            await expire_abandoned(ctx)
        await asyncio.sleep(interval)
