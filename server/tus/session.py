"""The upload session: the only place that moves bytes from a request to a Store.

It holds the upload's lock for the life of the request, checks the offset against the store's
durable offset (the store, not memory, is the truth after a crash), verifies a per-request
checksum before any byte reaches the store, feeds the running digests only with bytes the store
made durable, and records the new offset in the catalog so any replica can continue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from aiohttp import StreamReader

from avidence.storage import errors as store_errors
from avidence.storage.base import Target, Truncator, VerifyingAppender
from avidence.storage.digests import MultiDigest, new_hasher

from ..catalog import uploads as uploads_db
from ..catalog.uploads import ConcatKind, Upload, UploadState
from ..errors import ChecksumMismatch, Conflict, Gone, NotFound
from ..streams import read_ahead
from . import finish
from .body import Spool, blocks
from .context import TusContext
from .headers import Checksum

log = logging.getLogger("avidence.tus.session")


class UploadSession:
    """One request's exclusive write access to one upload."""

    def __init__(self, ctx: TusContext, upload: Upload) -> None:
        self.ctx = ctx
        self.upload = upload
        self.target = Target(upload.storage_key, upload.store_handle)

    async def durable_offset(self) -> int:
        """The store's durable offset, written back to the catalog when the two differ."""
        try:
            offset = await self.ctx.store.offset(self.target)
        except store_errors.NotFound:
            # The target is gone: published by a process that died before recording it.
            if self.upload.length is not None:
                info = await self.ctx.store.stat(self.upload.storage_key)
                if info.size == self.upload.length:
                    return info.size
            raise Gone("the upload's staged bytes are gone") from None
        if offset != self.upload.offset:
            await uploads_db.update(self.ctx.engine, self.upload.id, offset=offset)
        return offset

    async def write(
        self,
        content: StreamReader,
        *,
        offset: int,
        checksum: Checksum | None,
        expect: int | None = None,
    ) -> int:
        """Append the request body at `offset`; return the new offset. `expect` is the body's
        declared length, a hint that lets the store send parts before they are whole."""
        ctx, upload = self.ctx, self.upload
        durable = await self.durable_offset()
        # "If the offsets do not match, the Server MUST respond with the 409 Conflict status"
        if offset != durable:
            raise Conflict(f"Upload-Offset {offset} does not match the upload's offset {durable}")
        room = (upload.length if upload.length is not None else ctx.settings.max_size) - offset
        digest = self._digest_at(offset)
        source = read_ahead(blocks(content, limit=room, read_timeout=ctx.settings.read_timeout))
        if checksum is not None and isinstance(ctx.store, Truncator | VerifyingAppender):
            # The store can take bytes back (or refuse them at the end): stream them in and
            # drop them on a mismatch, instead of holding the whole request aside first.
            return await self._append(
                source, offset=offset, digest=digest, checksum=checksum, expect=expect
            )
        spool: Spool | None = None
        try:
            if checksum is not None:
                spool = Spool(ctx.spool_dir)
                await spool.fill(source, checksum)
                source, expect = spool.replay(), spool.length
            new_offset = await self._append(source, offset=offset, digest=digest, expect=expect)
        finally:
            if spool is not None:
                spool.close()
        return new_offset

    def _digest_at(self, offset: int) -> MultiDigest | None:
        """The running digest when it covers exactly the bytes before `offset`, else None."""
        if self.upload.concat == ConcatKind.PARTIAL:
            return None  # a partial's digest is useless: the final upload is read back
        digest = self.ctx.digests.get(self.upload.id)
        if digest is None and offset == 0:
            digest = self.ctx.digests[self.upload.id] = MultiDigest(self.ctx.settings.digests)
        if digest is not None and digest.length != offset:
            self.ctx.digests.pop(self.upload.id, None)
            return None
        return digest

    async def _append(
        self,
        source: AsyncIterator[bytes],
        *,
        offset: int,
        digest: MultiDigest | None,
        checksum: Checksum | None = None,
        expect: int | None = None,
    ) -> int:
        """Stream `source` into the store. With `checksum` (a Truncator store only) the bytes
        count only if the whole request matches it; otherwise they are cut back off."""
        ctx, upload = self.ctx, self.upload
        check = new_hasher(checksum.algorithm) if checksum is not None else None
        # What the request carried, for a 460's message: a store that refuses a mismatch keeps
        # nothing, so the new offset says 0 bytes even when a whole chunk arrived.
        received = 0

        def hash_block(chunk: bytes) -> None:
            if check is not None:
                check.update(chunk)
            if digest is not None:
                digest.update(chunk)

        async def fed() -> AsyncIterator[bytes]:
            # A block is hashed in a thread while the store writes it: the two overlap, and
            # the next hash waits for the previous one (block order is the digest). The last
            # hash is awaited before the store sees the end, so a digest checked after
            # `append` returned covers every byte it took.
            nonlocal received
            hashing: asyncio.Future[None] | None = None
            try:
                async for chunk in source:
                    received += len(chunk)
                    if hashing is not None:
                        await hashing
                    hashing = asyncio.ensure_future(asyncio.to_thread(hash_block, chunk))
                    yield chunk
                if hashing is not None:
                    await hashing
                    hashing = None
            finally:
                if hashing is not None:  # the store stopped early: let the thread finish
                    with contextlib.suppress(Exception):
                        await asyncio.shield(hashing)

        ctx.metrics.uploads_active.inc()
        failure: BaseException | None = None
        try:
            store = ctx.store
            if check is not None and checksum is not None and isinstance(store, VerifyingAppender):
                expected = checksum.digest
                new_offset = await store.append_verified(
                    self.target,
                    offset=offset,
                    chunks=fed(),
                    accept=lambda: check.digest() == expected,
                    expect=expect,
                )
            else:
                new_offset = await store.append(
                    self.target, offset=offset, chunks=fed(), expect=expect
                )
            if check is not None and checksum is not None and check.digest() != checksum.digest:
                raise ChecksumMismatch(
                    f"Upload-Checksum {checksum.algorithm} does not match the "
                    f"{received} bytes received; they were discarded"
                )
        except BaseException as exc:
            failure = exc
            try:
                if check is not None and isinstance(ctx.store, Truncator):
                    # Bytes of a request whose checksum did not match, or that never ended,
                    # are unverified: "the Server MUST ... discard the chunk".
                    await ctx.store.truncate(self.target, offset=offset)
                    new_offset = offset
                else:
                    new_offset = await ctx.store.offset(self.target)
            except store_errors.StoreError:
                new_offset = offset  # the store is unreachable: nothing more is known durable
        finally:
            ctx.metrics.uploads_active.dec()
        if digest is not None and digest.length != new_offset:
            ctx.digests.pop(upload.id, None)  # bytes hashed but not kept: rebuild at finish
        if new_offset != offset:
            ctx.metrics.bytes_received.labels(ctx.store.name).inc(new_offset - offset)
            await uploads_db.update(
                ctx.engine,
                upload.id,
                offset=new_offset,
                expiry=timedelta(seconds=ctx.settings.upload_expiry),
            )
        log.info(
            "upload.appended id=%s from=%s to=%s%s",
            upload.id,
            offset,
            new_offset,
            f" interrupted={type(failure).__name__}" if failure else "",
        )
        if failure is not None:
            raise failure
        return new_offset


async def complete_if_full(ctx: TusContext, upload: Upload, offset: int) -> Upload:
    """Publish and verify an upload whose last byte just arrived; otherwise return it as is."""
    if upload.length is None or offset != upload.length:
        return upload
    fresh = await uploads_db.get(ctx.engine, upload.id)
    if fresh is None:
        raise NotFound()
    if fresh.state == UploadState.RECEIVING:
        await finish.publish(ctx, fresh)
    if fresh.concat == ConcatKind.PARTIAL:
        ctx.metrics.uploads_finished.labels("partial").inc()
        result = await uploads_db.get(ctx.engine, upload.id)
        assert result is not None
        return result
    return await finish.await_outcome(ctx, upload.id)
