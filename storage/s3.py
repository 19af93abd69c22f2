"""S3 backend: evidence in one bucket, uploads as resumable multipart uploads (boto3 in threads).

Object layout, every name under `prefix`:

* `<key>` is a finished object. It is written once, by CompleteMultipartUpload or PutObject with
  `If-None-Match: *`, so an existing original is never replaced.
* An upload target is a multipart upload on `<key>`; `Target.handle` is its UploadId. Parts follow
  the schedule in `s3parts` (16 MiB by default, doubling every 1000 parts) and each stored part
  has exactly its scheduled size until `finish` adds the last one.
* `<key>.part` is the tail: an ordinary object with the appended bytes that do not fill a part yet,
  and user metadata `avidence-start` (offset of its first byte) and `avidence-upload` (owning
  UploadId). A key has at most one live upload target (the catalog sees to it).

The durable offset is the size of the contiguous scheduled parts from part 1, plus the tail when
the tail starts exactly there. An append uploads its full parts first and replaces the tail only
after they all landed, so a crash at any instant leaves an offset covering a prefix of the bytes
appended: the old parts and old tail, or the new parts (the old tail no longer starts at their end).

A checksummed request (`append_verified`) may not add a byte before its checksum is verified. When
parts are streamed, its tail object first gets the metadata `avidence-pending` (the number of the
first part the request will send): while it is there no part from that number on counts, so every
part, the first one included, goes out while the request arrives, and a crash before the checksum
is known leaves them out of the offset. Accepted, the tail is rewritten without the marker; refused
(or found by a later append after a crash), those parts are voided by ETag (`avidence-void`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from . import s3replace
from .base import ObjectInfo, Target
from .digests import MultiDigest
from .errors import (
    AlreadyExists,
    NotFound,
    ObjectLocked,
    OffsetMismatch,
    StoreError,
    StoreFull,
)
from .keys import check_key
from .s3body import PartBody, PartCut
from .s3bucket import S3Bucket
from .s3parts import (
    MAX_PARTS,
    MIN_PART,
    Layout,
    PartCutter,
    PartUploads,
    StoredPart,
    TooManyParts,
    copy_ranges,
    read_layout,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, DeleteObjectRequestTypeDef

_log = logging.getLogger("avidence.storage.s3")

_META_START = "avidence-start"
_META_UPLOAD = "avidence-upload"
_META_VOID = "avidence-void"  # ETags (unquoted, space-separated) of parts that never count
_META_PENDING = "avidence-pending"  # first part of a checksummed request not yet accepted
# Void ETags kept (S3 user metadata holds 2 KB). Older ones matter only if a part number was
# never sent again, and then the whole-file digest check at finish still stops bad bytes.
_VOID_KEPT = 48


def _etag(value: str) -> str:
    return value.strip().strip('"')


_OCTETS = "application/octet-stream"
_LIST_PAGE = 1000  # ListParts page size, S3's maximum
_SEEN_FOR = 2.0  # seconds a layout read by `offset` may stand for the append that follows it


@dataclass(slots=True, frozen=True)
class _Tail:
    """The tail object as found; `body` only when asked for and when it counts."""

    exists: bool = False
    version: str | None = None
    body: bytes = b""
    void: tuple[str, ...] = ()  # unquoted ETags of parts refused appends sent, oldest first
    pending: int | None = None  # parts from this number on await a checksum (or never got one)


class S3Store(S3Bucket):
    """`Store`, `Concatenator`, `Retainer` and `Presigner` on one S3 bucket.

    Credentials come from the standard AWS chain (environment, config files) or `session`.
    `budget` bounds the part bodies in flight; by default one budget is shared process-wide.
    """

    name = "s3"

    # -- upload targets ---------------------------------------------------------------------

    async def create(self, key: str) -> Target:
        check_key(key)
        if await self._exists(key):
            raise AlreadyExists(f"object {key!r} already exists", key=key)
        out = await self._call(
            self._s3.create_multipart_upload,
            Bucket=self._bucket,
            Key=self._k(key),
            ContentType=_OCTETS,
        )
        return Target(key=key, handle=out["UploadId"])

    async def offset(self, target: Target) -> int:
        layout, tail = await self._layout(target, with_body=False)
        now = time.monotonic()
        if len(self._seen) > 1000:  # HEADs that no append followed
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] <= _SEEN_FOR}
        self._seen[target.handle] = (now, layout, tail)
        return layout.offset

    async def _layout_for_append(self, target: Target) -> tuple[Layout, _Tail]:
        """The layout an append starts from. A PATCH reads the offset and appends right after
        (holding the upload's lock): the layout `offset` just read is reused then, and the tail
        is fetched only when its bytes count, instead of listing parts a second time."""
        seen = self._seen.pop(target.handle, None)
        if seen is None or time.monotonic() - seen[0] > _SEEN_FOR:
            return await self._layout(target, with_body=True)
        _, layout, tail = seen
        if layout.tail_size or not isinstance(tail, _Tail):
            return await self._layout(target, with_body=True)
        return layout, tail

    async def append(
        self,
        target: Target,
        *,
        offset: int,
        chunks: AsyncIterable[bytes],
        expect: int | None = None,
    ) -> int:
        return await self._append(target, offset=offset, chunks=chunks, expect=expect, accept=None)

    async def append_verified(
        self,
        target: Target,
        *,
        offset: int,
        chunks: AsyncIterable[bytes],
        accept: Callable[[], bool],
        expect: int | None = None,
    ) -> int:
        """Parts stream to S3 while the request arrives. When parts are streamed the tail first
        gets the pending marker (see the module docstring), so the first part goes out too;
        otherwise the first part is held back until `accept()`, since without it the others
        cannot join the upload's prefix. Accepted, the tail is written without the marker;
        refused, the parts sent are voided (listed in the tail object's metadata, so no later
        layout counts them) and the offset stays."""
        return await self._append(
            target, offset=offset, chunks=chunks, expect=expect, accept=accept
        )

    async def _append(
        self,
        target: Target,
        *,
        offset: int,
        chunks: AsyncIterable[bytes],
        expect: int | None,
        accept: Callable[[], bool] | None,
    ) -> int:
        layout, tail = await self._layout_for_append(target)
        if offset != layout.offset:
            raise OffsetMismatch(
                f"append at {offset} but the durable offset is {layout.offset}",
                key=target.key,
                expected=layout.offset,
                got=offset,
            )
        # The old tail leads the next part; keep only its size so its bytes can go with the part
        # (a verified append keeps the bytes too: refused, it writes the old tail back).
        head, head_size = tail.body, len(tail.body)
        old = tail
        # A marker left by a request that never ended (a crash) is cleared by this append's
        # last tail write, which also keeps the parts it kept out voided.
        rewrite = tail.pending is not None
        marked = accept is not None and self._streaming
        if marked:
            old = await self._write_tail(
                target,
                start=layout.parts_end,
                body=head,
                old=old,
                void=tail.void,
                pending=layout.next_part,
            )
            rewrite = True
        cutter = PartCutter(
            number=layout.next_part,
            base=layout.base,
            buffers=self._buffers,
            # Parts this request will fill go out while they arrive (never a held first part).
            stream_through=head_size + expect if self._streaming and expect else 0,
            stream_from=layout.next_part + (accept is not None and not marked),
        )
        sent: dict[int, str] = {}  # part number -> ETag, of the parts this append stored

        def upload(number: int, body: PartBody) -> str:
            # Runs in a worker thread, which is done with the body once the call returns.
            try:
                etag = self._upload_part(target, number, body if self._streaming else body.buffer)
            except Exception:
                if body.was_cut:  # the request ended first: S3 stored nothing of this part
                    raise PartCut(f"part {number} was cut short", key=target.key) from None
                raise
            finally:
                body.release()
            sent[number] = _etag(etag)
            return etag

        uploads = PartUploads(
            limit=self._max_inflight, budget=self._budget, upload=upload, run=self._call_part
        )
        kept_head = head if accept is not None else b""
        held: tuple[int, PartBody] | None = None
        broken: Exception | None = None

        async def start(number: int, body: PartBody) -> bool:
            nonlocal held
            if accept is not None and not marked and number == layout.next_part:
                held = (number, body)
                return True
            return await uploads.start(number, body)

        try:
            for number, body in cutter.feed(head):
                await start(number, body)
            del head
            async for chunk in chunks:
                for number, body in cutter.feed(chunk):
                    if not await start(number, body):
                        break
                    del body  # the upload task holds the only reference until S3 has it
                if uploads.failure is not None:
                    break
        except TooManyParts:
            broken = StoreFull(
                f"upload {target.key!r} outgrows S3's largest object", key=target.key
            )
        except Exception as exc:  # the caller's stream broke
            broken = exc
        finally:
            cutter.stop()  # a part still filling will get no more bytes: its upload ends
        failure = await uploads.wait()
        refused = accept is not None and (failure is not None or broken is not None or not accept())
        if refused:
            # Unverified bytes never count: void what was sent, keep the old tail as it was.
            if sent or marked:
                await self._write_tail(
                    target,
                    start=layout.parts_end,
                    body=kept_head,
                    old=old,
                    void=(*old.void, *(e for e in sent.values() if e not in old.void)),
                )
            error = broken or failure
            if error is not None:
                raise error
            return offset
        if failure is not None:
            # The parts that landed are durable; the old tail stays valid until one covers it.
            raise broken or failure
        if held is not None:
            await uploads.start(*held)
            held = None
            failure = await uploads.wait()
            if failure is not None:
                raise failure
        resent = set(sent.values())  # the same bytes sent again and accepted count again
        void = tuple(e for e in old.void if e not in resent)
        start_at = layout.parts_end + cutter.cut_bytes
        rest = cutter.remainder()
        if rest and (cutter.cut_bytes or len(rest) != head_size or void != old.void or rewrite):
            await self._write_tail(target, start=start_at, body=rest, old=old, void=void)
        elif not rest and (cutter.cut_bytes or void != old.void or rewrite) and old.exists:
            if void:  # the void list lives on the tail object: keep an empty one
                await self._write_tail(target, start=start_at, body=b"", old=old, void=void)
            else:
                await self._drop_tail(target, old)
        if broken is not None:
            raise broken
        # Parts a failed append left beyond a gap may just have joined the prefix.
        return await self.offset(target) if layout.loose else start_at + len(rest)

    def _upload_part(self, target: Target, number: int, body: bytes | bytearray | PartBody) -> str:
        out = self._s3.upload_part(
            Bucket=self._bucket,
            Key=self._k(target.key),
            UploadId=target.handle,
            PartNumber=number,
            # botocore takes any bytes-like body or file-like object (a PartBody goes out
            # aws-chunked, see s3body); the stubs list only `bytes` and IO.
            Body=cast("bytes", body),
        )
        return out["ETag"]

    async def finish(self, target: Target, *, size: int) -> ObjectInfo:
        if await self._exists(target.key):
            raise AlreadyExists(f"object {target.key!r} already exists", key=target.key)
        layout, tail = await self._layout(target, with_body=True)
        if layout.offset != size:
            raise OffsetMismatch(
                f"upload holds {layout.offset} bytes, not {size}",
                key=target.key,
                expected=layout.offset,
                got=size,
            )
        parts: list[CompletedPartTypeDef] = [
            {"PartNumber": part.number, "ETag": part.etag} for part in layout.parts
        ]
        if tail.body:  # the tail becomes the last part, the only one allowed under 5 MiB
            upload = functools.partial(self._upload_part, target, layout.next_part, tail.body)
            parts.append({"PartNumber": layout.next_part, "ETag": await self._call(upload)})
        key = self._k(target.key)
        if parts:
            await self._call(
                self._s3.complete_multipart_upload,
                Bucket=self._bucket,
                Key=key,
                UploadId=target.handle,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        else:  # S3 cannot complete an upload without parts: write the empty object directly
            await self._call(
                self._s3.put_object,
                Bucket=self._bucket,
                Key=key,
                Body=b"",
                ContentType=_OCTETS,
                IfNoneMatch="*",
            )
            await self._abort_upload(target)
        if tail.exists:
            await self._drop_tail(target, tail)
        return await self.stat(target.key)

    async def abort(self, target: Target) -> None:
        check_key(target.key)
        await self._abort_upload(target)
        try:
            out = await self._call(
                self._s3.head_object, Bucket=self._bucket, Key=self._tail_key(target)
            )
        except NotFound:
            return
        if out.get("Metadata", {}).get(_META_UPLOAD) == target.handle:
            await self._drop_tail(target, _Tail(exists=True, version=out.get("VersionId")))

    async def _abort_upload(self, target: Target) -> None:
        if not target.handle:
            return
        try:
            await self._call(
                self._s3.abort_multipart_upload,
                Bucket=self._bucket,
                Key=self._k(target.key),
                UploadId=target.handle,
            )
        except NotFound:
            pass

    # -- layout and tail --------------------------------------------------------------------

    async def _layout(self, target: Target, *, with_body: bool) -> tuple[Layout, _Tail]:
        """Read the upload's parts, then its tail; `NotFound` when the multipart upload is gone.

        Parts are listed before the tail is read: an append landing in between can only make
        the tail look stale, which understates the offset, never overstates it."""
        check_key(target.key)
        if not target.handle:
            raise NotFound(f"no upload target for {target.key!r}", key=target.key)
        parts = await self._list_parts(target)
        try:
            meta, version, size, body = await self._call(
                self._fetch, Key=self._tail_key(target), with_body=with_body
            )
        except NotFound:
            layout = read_layout(parts, default_base=self._part_size, tail_start=None, tail_size=0)
            return layout, _Tail()
        start: int | None = None
        void: tuple[str, ...] = ()
        pending: int | None = None
        if meta.get(_META_UPLOAD) == target.handle and meta.get(_META_START, "").isdigit():
            start = int(meta[_META_START])
            void = tuple(meta.get(_META_VOID, "").split())
            if meta.get(_META_PENDING, "").isdigit():
                pending = int(meta[_META_PENDING])
        if pending is not None:  # parts of a checksummed request not (yet) accepted
            unverified = (_etag(p.etag) for n, ps in parts.items() if n >= pending for p in ps)
            void = (*void, *(e for e in dict.fromkeys(unverified) if e not in void))
        if void:  # parts a refused append sent: they never count
            parts = {n: [p for p in ps if _etag(p.etag) not in void] for n, ps in parts.items()}
        layout = read_layout(parts, default_base=self._part_size, tail_start=start, tail_size=size)
        body = body if layout.tail_size else b""
        return layout, _Tail(exists=True, version=version, body=body, void=void, pending=pending)

    def _fetch(self, *, Key: str, with_body: bool) -> tuple[dict[str, str], str | None, int, bytes]:
        """Metadata, version, size and (GET) bytes of a small object in one worker hop."""
        if not with_body:
            head = self._s3.head_object(Bucket=self._bucket, Key=Key)
            return head.get("Metadata", {}), head.get("VersionId"), head["ContentLength"], b""
        out = self._s3.get_object(Bucket=self._bucket, Key=Key)
        with out["Body"] as stream:
            data = stream.read()
        return out.get("Metadata", {}), out.get("VersionId"), len(data), data

    async def _list_parts(self, target: Target) -> dict[int, list[StoredPart]]:
        parts: dict[int, list[StoredPart]] = {}
        marker = 0
        while True:
            out = await self._call(
                self._s3.list_parts,
                Bucket=self._bucket,
                Key=self._k(target.key),
                UploadId=target.handle,
                MaxParts=_LIST_PAGE,
                PartNumberMarker=marker,
            )
            for part in out.get("Parts", []):
                stamp = part.get("LastModified")
                found = StoredPart(
                    number=part.get("PartNumber", 0),
                    size=part.get("Size", -1),
                    etag=part.get("ETag", ""),
                    modified=stamp.timestamp() if stamp else 0.0,
                )
                parts.setdefault(found.number, []).append(found)
            following = out.get("NextPartNumberMarker", 0)
            if not out.get("IsTruncated") or following <= marker:  # never loop on a bad marker
                return parts
            marker = following

    async def _write_tail(
        self,
        target: Target,
        *,
        start: int,
        body: bytes,
        old: _Tail,
        void: tuple[str, ...] = (),
        pending: int | None = None,
    ) -> _Tail:
        """Replace the tail object; returns what it now is (its body is not kept)."""
        metadata = {_META_START: str(start), _META_UPLOAD: target.handle}
        if void:
            metadata[_META_VOID] = " ".join(void[-_VOID_KEPT:])
        if pending is not None:
            metadata[_META_PENDING] = str(pending)
        out = await self._call(
            self._s3.put_object,
            Bucket=self._bucket,
            Key=self._tail_key(target),
            Body=body,
            ContentType=_OCTETS,
            Metadata=metadata,
        )
        version = out.get("VersionId")
        if old.version and old.version != version:
            await self._drop_tail(target, old)  # versioned bucket: the put kept the old version
        return _Tail(exists=True, version=version, void=void, pending=pending)

    async def _drop_tail(self, target: Target, tail: _Tail) -> None:
        """Delete a tail (by version in a versioned bucket, else it only gains a delete marker).
        Staging litter is not worth failing an upload for, so errors are only logged."""
        request: DeleteObjectRequestTypeDef = {
            "Bucket": self._bucket,
            "Key": self._tail_key(target),
        }
        if tail.version:
            request["VersionId"] = tail.version
        try:
            await self._call(self._s3.delete_object, **request)
        except StoreError as exc:
            _log.warning("s3.tail_not_deleted key=%s error=%s", target.key, exc)

    # -- capabilities -----------------------------------------------------------------------

    async def held(self, key: str) -> bool:
        """`sealconvert.Replacer`: retention or a legal hold on the current version."""
        return await s3replace.held(self, key)

    async def replace(self, key: str, *, source: str) -> None:
        """`sealconvert.Replacer`, for encrypt-existing only (see `s3replace`)."""
        await s3replace.replace(self, key, source=source)

    async def drop_older(self, key: str) -> None:
        """`sealconvert.Replacer`: delete the noncurrent versions of `key`."""
        await s3replace.drop_older(self, key)

    async def leftovers(self, key: str, *, keep: str | None) -> list[str]:
        """`sealconvert.Replacer`: staged copies of `key`, finished (objects) or half written
        (multipart uploads, with their tails), except `keep`."""
        check_key(key)
        removed = []
        for name, upload in await s3replace.staged(self, key):
            if name == keep:
                continue
            try:
                if upload is None:
                    await self.delete(name)
                else:
                    await self.abort(Target(key=name, handle=upload))
            except NotFound:
                continue
            except ObjectLocked:
                _log.warning("s3.staged_copy_kept_locked key=%s", name)
                continue
            removed.append(name)
        return removed

    async def concatenate(
        self, key: str, sources: Sequence[str], *, digest: MultiDigest | None = None
    ) -> ObjectInfo:
        check_key(key)
        infos = [await self.stat(source) for source in sources]
        if await self._exists(key):
            raise AlreadyExists(f"object {key!r} already exists", key=key)
        filled = [info for info in infos if info.size]
        ranges = [(info.key, span) for info in filled for span in copy_ranges(info.size)]
        # UploadPartCopy keeps the bytes inside S3, but only when every part but the last is
        # at least 5 MiB; otherwise the bytes take a detour through this process.
        if not filled or len(ranges) > MAX_PARTS or any(i.size < MIN_PART for i in filled[:-1]):
            return await self._concatenate_streaming(key, infos, digest)
        target = await self.create(key)
        slots = asyncio.Semaphore(self._max_inflight)

        async def copy(number: int, source: str, first: int, last: int) -> CompletedPartTypeDef:
            async with slots:
                out = await self._call(
                    self._s3.upload_part_copy,
                    Bucket=self._bucket,
                    Key=self._k(key),
                    UploadId=target.handle,
                    PartNumber=number,
                    CopySource={"Bucket": self._bucket, "Key": self._k(source)},
                    CopySourceRange=f"bytes={first}-{last}",
                )
            return {"PartNumber": number, "ETag": out["CopyPartResult"].get("ETag", "")}

        try:
            parts = await asyncio.gather(
                *(copy(n, src, a, b) for n, (src, (a, b)) in enumerate(ranges, start=1))
            )
            await self._call(
                self._s3.complete_multipart_upload,
                Bucket=self._bucket,
                Key=self._k(key),
                UploadId=target.handle,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        except BaseException:
            await asyncio.shield(self.abort(target))
            raise
        return await self.stat(key)

    async def _concatenate_streaming(
        self, key: str, infos: list[ObjectInfo], digest: MultiDigest | None
    ) -> ObjectInfo:
        async def stream() -> AsyncIterator[bytes]:
            for info in infos:
                async for chunk in await self.read(info.key):
                    if digest is not None:
                        await digest.update_async(chunk)
                    yield chunk

        target = await self.create(key)
        try:
            whole = sum(info.size for info in infos)
            size = await self.append(target, offset=0, chunks=stream(), expect=whole)
            return await self.finish(target, size=size)
        except BaseException:
            await asyncio.shield(self.abort(target))
            raise
