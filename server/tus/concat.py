"""The concatenation extension: a final upload made of finished partial uploads.

Stores that can concatenate on their own side (S3 UploadPartCopy, local file copy) do it without
the bytes passing through this process; others get a streamed copy. The final upload is then
verified like any other by reading it back, since digests of parts cannot be combined.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from avidence.storage import errors as store_errors
from avidence.storage.base import Concatenator
from avidence.storage.digests import MultiDigest

from ..catalog import uploads as uploads_db
from ..catalog.uploads import ConcatKind, Upload, UploadState
from ..errors import ConcatInvalid, PartialTaken, PartialUnusable, TooLarge
from ..retention import hooks as retention_hooks
from .context import TusContext
from .finish import await_outcome

log = logging.getLogger("avidence.tus.concat")


async def _hashed(chunks: AsyncIterator[bytes], digest: MultiDigest) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        await digest.update_async(chunk)
        yield chunk


async def check_partials(ctx: TusContext, ids: tuple[str, ...], *, uploader: str) -> list[Upload]:
    """The partial uploads named by a final upload, all finished and the caller's own."""
    if len(ids) > 10_000:
        raise ConcatInvalid("a final upload may join at most 10000 partial uploads")
    partials = []
    for upload_id in ids:
        upload = await uploads_db.get(ctx.engine, upload_id)
        if upload is None or upload.uploader != uploader or upload.concat != ConcatKind.PARTIAL:
            raise PartialUnusable(
                f"Upload-Concat names {upload_id!r}, which is not your partial upload"
            )
        if upload.state == UploadState.CONSUMED:  # another final upload joined it first
            raise PartialTaken(f"partial upload {upload_id} was joined by another final upload")
        if upload.state != UploadState.COMPLETE:
            raise PartialUnusable(f"partial upload {upload_id} is not complete ({upload.state})")
        partials.append(upload)
    total = sum(p.length or 0 for p in partials)
    if total > ctx.settings.max_size:
        raise TooLarge(f"the joined upload of {total} bytes exceeds {ctx.settings.max_size}")
    return partials


async def join(ctx: TusContext, final: Upload, partials: list[Upload]) -> Upload:
    """Build the final object from the partials, then verify it as evidence."""
    keys = [p.storage_key for p in partials]
    store = ctx.store
    # Where the bytes pass through this process, they are hashed on the way: no read-back.
    digest = MultiDigest(ctx.settings.digests)
    if isinstance(store, Concatenator):
        await store.concatenate(final.storage_key, keys, digest=digest)
    else:
        target = await store.create(final.storage_key)
        offset = 0
        for key in keys:
            offset = await store.append(
                target, offset=offset, chunks=_hashed(await store.read(key), digest)
            )
        await store.finish(target, size=offset)
    if digest.length == final.length:
        ctx.digests[final.id] = digest
    await retention_hooks.lock_original(store, ctx.settings, final.storage_key, final.metadata)
    # The partials were claimed (`consumed`, naming this final upload) when it was created.
    await uploads_db.update(ctx.engine, final.id, state=UploadState.VERIFYING, offset=final.length)
    log.info("upload.concatenated id=%s parts=%s size=%s", final.id, len(partials), final.length)
    result = await await_outcome(ctx, final.id)
    for key in dict.fromkeys(keys):  # the joined object holds every byte; parts are not needed
        try:
            await store.delete(key)
        except store_errors.StoreError as exc:
            log.warning("upload.partial_cleanup_failed key=%s error=%s", key, exc)
    return result
