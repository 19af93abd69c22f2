"""Turning a fully received upload into evidence, or refusing to.

Steps, each safe to repeat after a crash: the store publishes the immutable object (state
`verifying`); digests come from the running hashers when they saw every byte, else from reading
the object back; they are compared with the digests the uploader declared; a match becomes an
evidence record in the same transaction that marks the upload `done`, a mismatch leaves the
bytes `quarantined`, never presented as evidence.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterable

from avidence.storage import errors as store_errors
from avidence.storage.base import Target
from avidence.storage.digests import MultiDigest, matches

from .. import clock, receipts, tokens
from ..audit import log as audit
from ..audit.events import Event
from ..cases import records as cases_db
from ..catalog import evidence as evidence_db
from ..catalog import uploads as uploads_db
from ..catalog.uploads import Upload
from ..errors import ApiError, Internal
from ..jobs import queue as jobs_queue
from ..retention import hooks as retention_hooks
from .context import TusContext
from .headers import DIGEST_KEYS

log = logging.getLogger("avidence.tus.finish")

# How long a request waits for finishing work before answering that it goes on in the background.
WAIT_SECONDS = 25.0


class DigestMismatch(ApiError):
    status = 460
    code = "declared_digest_mismatch"
    default_message = "the file's digests differ from the declared ones; it is quarantined"


def new_evidence_id() -> str:
    return "ev_" + secrets.token_hex(12)


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
    if upload.concat != "partial":
        await retention_hooks.lock_original(
            ctx.store, ctx.settings, upload.storage_key, upload.metadata
        )
    next_state = "complete" if upload.concat == "partial" else "verifying"
    await uploads_db.update(ctx.engine, upload.id, state=next_state, offset=upload.length)


async def verify(ctx: TusContext, upload_id: str) -> Upload:
    """Compute or take the digests, compare, and record the outcome. Idempotent."""
    upload = await uploads_db.get(ctx.engine, upload_id)
    if upload is None or upload.state != "verifying":
        assert upload is not None
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
    now = clock.now()
    if bad:
        ctx.metrics.integrity_failures.labels("declared_digest").inc()
        ctx.metrics.uploads_finished.labels("quarantined").inc()
        message = f"declared {', '.join(bad)} differ from the received bytes"
        log.warning("upload.quarantined id=%s mismatched=%s", upload.id, ",".join(bad))
        await uploads_db.update(
            ctx.engine, upload.id, state="quarantined", digests=computed, error=message
        )
        await audit.append(
            ctx.engine,
            Event(
                action="integrity.failed",
                actor="server",
                object=f"upload:{upload.id}",
                case_id=upload.metadata.get("case"),
                details={"reason": message, "declared": declared, "computed": computed},
            ),
        )
    else:
        record = evidence_db.Evidence(
            id=new_evidence_id(),
            upload_id=upload.id,
            case_id=upload.metadata.get("case", ""),
            item=upload.metadata.get("item", ""),
            filename=upload.metadata.get("filename", ""),
            filetype=upload.metadata.get("filetype", ""),
            size=upload.length or 0,
            blake3=computed["blake3"],
            sha256=computed.get("sha256"),
            sm3=computed.get("sm3"),
            uploader=upload.uploader,
            store=ctx.store.name,
            storage_key=upload.storage_key,
            metadata=upload.metadata,
            received_at=now,
            agency_id=upload.agency_id,
        )
        # The case row first, in its own transaction: creating it may race with another upload.
        case = await cases_db.ensure(ctx.engine, agency_id=record.agency_id, number=record.case_id)
        async with ctx.engine.begin() as conn:
            uploader_name = await tokens.name_of(conn, upload.uploader)
            await evidence_db.insert(conn, record)
            await retention_hooks.classify_new(
                conn,
                ctx.settings,
                evidence_id=record.id,
                metadata=record.metadata,
                received_at=now,
            )
            await receipts.issue(conn, ctx.signer, record, uploader_name=uploader_name)
            await conn.execute(
                uploads_db.uploads.update()
                .where(uploads_db.uploads.c.id == upload.id)
                .values(state="done", digests=computed, evidence_id=record.id, updated_at=now)
            )
            await jobs_queue.enqueue(conn, record.id, kind="analyse")  # probe, continuity, copies
            await cases_db.attach(conn, case_id=case, evidence_id=record.id)
        ctx.metrics.uploads_finished.labels("evidence").inc()
        await retention_hooks.evidence_created(ctx.engine, ctx.store, record.id)
        await audit.append(
            ctx.engine,
            Event(
                action="evidence.created",
                actor=f"{upload.uploader} ({uploader_name})",
                object=f"evidence:{record.id}",
                case_id=record.case_id,
                details={
                    "upload": upload.id,
                    "size": record.size,
                    "filename": record.filename,
                    "item": record.item,
                    **computed,
                },
            ),
        )
        log.info(
            "evidence.created id=%s upload=%s case=%s size=%s blake3=%s",
            record.id,
            upload.id,
            record.case_id,
            record.size,
            record.blake3,
        )
    result = await uploads_db.get(ctx.engine, upload.id)
    assert result is not None
    return result


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
        if isinstance(exc, store_errors.StoreError | ApiError):
            raise
        raise Internal() from exc
    upload = await uploads_db.get(ctx.engine, upload_id)
    assert upload is not None
    if upload.state == "quarantined":
        raise DigestMismatch(upload.error)
    return upload
