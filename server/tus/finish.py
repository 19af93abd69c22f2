"""Turning a fully received upload into evidence, or refusing to.

Steps, each safe to repeat after a crash: the store publishes the immutable object (state
`verifying`); digests come from the running hashers when they saw every byte, else from reading
the object back; they are compared with the digests the uploader declared. A match goes to the
completion hook on the context (the custody core makes the evidence and marks the upload `done`
in one transaction); a mismatch leaves the bytes `quarantined`, never presented as evidence, with
its audit entry in the same transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from avidence.storage import errors as store_errors
from avidence.storage.base import Target
from avidence.storage.digests import MultiDigest, matches

from .. import clock
from ..audit.events import UploadQuarantined
from ..audit.unit import unit_of_work
from ..catalog import uploads as uploads_db
from ..catalog.uploads import ConcatKind, Upload, UploadState
from ..errors import ApiError, DigestMismatch, Internal
from ..keys.base import KeyUnavailable
from ..retention import hooks as retention_hooks
from .context import TusContext
from .headers import DIGEST_KEYS

log = logging.getLogger("avidence.tus.finish")

# How long a request waits for finishing work before answering that it goes on in the background.
WAIT_SECONDS = 25.0


async def rehash(
    ctx: TusContext, key: str, *, algorithms: Iterable[str] | None = None
) -> dict[str, str]:
    """Digests of a finished object, read back from the store (the configured ones by
    default)."""
    digest = MultiDigest(ctx.settings.digests if algorithms is None else algorithms)
    async for chunk in await ctx.store.read(key):
        await digest.update_async(chunk)
    return digest.hexdigests()


async def publish(ctx: TusContext, upload: Upload) -> None:
    """Make the received bytes an immutable object; tolerate a publish that already happened."""
    assert upload.length is not None
    try:
        await ctx.store.finish(Target(upload.storage_key, upload.store_handle), size=upload.length)
    except (store_errors.NotFound, store_errors.AlreadyExists):
        info = await ctx.store.stat(upload.storage_key)  # published by a process that then died
        if info.size != upload.length:
            raise
    if upload.concat != ConcatKind.PARTIAL:
        await retention_hooks.lock_original(
            ctx.store, ctx.settings, upload.storage_key, upload.metadata
        )
    partial = upload.concat == ConcatKind.PARTIAL
    next_state = UploadState.COMPLETE if partial else UploadState.VERIFYING
    await uploads_db.update(ctx.engine, upload.id, state=next_state, offset=upload.length)


async def verify(ctx: TusContext, upload_id: str) -> Upload:
    """Compute or take the digests, compare, and hand a match to the custody core. Idempotent."""
    upload = await uploads_db.get(ctx.engine, upload_id)
    assert upload is not None
    if upload.state != UploadState.VERIFYING:
        return upload
    running = ctx.digests.pop(upload.id, None)
    if running is not None and running.length == upload.length:
        computed = running.hexdigests()
    else:
        log.info("upload.rehash id=%s reason=no-continuous-digest", upload.id)
        computed = await rehash(ctx, upload.storage_key)
    declared = {k: upload.metadata[k] for k in DIGEST_KEYS if k in upload.metadata}
    unchecked = sorted(set(declared) - set(computed))
    if unchecked:  # declared before such declarations were refused: never store one unchecked
        log.info("upload.rehash id=%s reason=declared-%s", upload.id, ",".join(unchecked))
        computed = {**computed, **await rehash(ctx, upload.storage_key, algorithms=unchecked)}
    bad = matches(declared, computed)
    if bad:
        await quarantine(ctx, upload, declared=declared, computed=computed, mismatched=bad)
    else:
        if (await ctx.complete(upload, computed)).created:
            ctx.metrics.uploads_finished.labels("evidence").inc()
    result = await uploads_db.get(ctx.engine, upload.id)
    assert result is not None
    return result


async def quarantine(
    ctx: TusContext,
    upload: Upload,
    *,
    declared: dict[str, str],
    computed: dict[str, str],
    mismatched: list[str],
) -> None:
    """Keep bytes that differ from their declaration out of evidence, with the entry that says
    why, in one transaction."""
    message = f"declared {', '.join(mismatched)} differ from the received bytes"
    async with unit_of_work(ctx.engine) as unit:
        moved = await unit.conn.execute(
            uploads_db.uploads.update()
            .where(
                uploads_db.uploads.c.id == upload.id,
                uploads_db.uploads.c.state == UploadState.VERIFYING,
            )
            .values(
                state=UploadState.QUARANTINED,
                digests=computed,
                error=message,
                updated_at=clock.now(),
            )
        )
        if moved.rowcount == 1:
            unit.record(
                UploadQuarantined(
                    actor="server",
                    object=f"upload:{upload.id}",
                    case_id=upload.metadata.get("case"),
                    reason=message,
                    declared=declared,
                    computed=computed,
                )
            )
    if moved.rowcount == 1:
        ctx.metrics.integrity_failures.labels("declared_digest").inc()
        ctx.metrics.uploads_finished.labels("quarantined").inc()
        log.warning("upload.quarantined id=%s mismatched=%s", upload.id, ",".join(mismatched))


def start_verification(ctx: TusContext, upload_id: str) -> asyncio.Task[object]:
    """Run `verify` once per upload, beyond the life of the request that asked for it."""
    task = ctx.tasks.get(upload_id)
    if task is None or task.done():
        task = asyncio.create_task(verify(ctx, upload_id), name=f"verify-{upload_id}")
        ctx.tasks[upload_id] = task
        task.add_done_callback(lambda t: _forget(ctx, upload_id, t))
    return task


def _forget(ctx: TusContext, upload_id: str, task: asyncio.Task[object]) -> None:
    if ctx.tasks.get(upload_id) is task:
        del ctx.tasks[upload_id]
    if not task.cancelled() and task.exception() is not None:
        log.error("upload.verify_failed id=%s error=%r", upload_id, task.exception())


async def await_outcome(ctx: TusContext, upload_id: str) -> Upload:
    """Wait a bounded time for verification; raise DigestMismatch for a quarantined upload."""
    task = start_verification(ctx, upload_id)
    try:
        await asyncio.wait_for(asyncio.shield(task), WAIT_SECONDS)
    except TimeoutError:
        pass
    except Exception as exc:
        if isinstance(exc, store_errors.StoreError | ApiError | KeyUnavailable):
            raise
        raise Internal() from exc
    upload = await uploads_db.get(ctx.engine, upload_id)
    assert upload is not None
    if upload.state == UploadState.QUARANTINED:
        raise DigestMismatch(upload.error)
    return upload
