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
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, ParamSpec, TypeVar, cast

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from .base import LockSupport, ObjectInfo, Target
from .errors import (
    AlreadyExists,
    InvalidRange,
    NotFound,
    ObjectLocked,
    OffsetMismatch,
    StoreError,
    StoreFull,
    StoreUnavailable,
)
from .keys import check_key
from .s3parts import (
    DEFAULT_BUDGET,
    MAX_PARTS,
    MIN_PART,
    S3API,
    ByteBudget,
    Layout,
    MiB,
    PartCutter,
    PartUploads,
    StoredPart,
    TooManyParts,
    client_error,
    copy_ranges,
    read_layout,
    translate,
)

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3.literals import BucketLocationConstraintType
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, DeleteObjectRequestTypeDef

_log = logging.getLogger("avidence.storage.s3")
_P = ParamSpec("_P")
_T = TypeVar("_T")

_TAIL = ".part"
_META_START = "avidence-start"
_META_UPLOAD = "avidence-upload"
_OCTETS = "application/octet-stream"
_READ_CHUNK = MiB
_LIST_PAGE = 1000  # ListParts page size, S3's maximum
_NO_RETENTION = {"ObjectLockConfigurationNotFoundError", "NoSuchObjectLockConfiguration"}


@dataclass(slots=True, frozen=True)
class _Tail:
    """The tail object as found; `body` only when asked for and when it counts."""

    exists: bool = False
    version: str | None = None
    body: bytes = b""


class S3Store:
    """`Store`, `Concatenator`, `Retainer` and `Presigner` on one S3 bucket.

    Credentials come from the standard AWS chain (environment, config files) or `session`.
    `budget` bounds the part bodies in flight; by default one budget is shared process-wide.
    """

    name = "s3"

    def __init__(
        self,
        *,
        endpoint_url: str | None,
        bucket: str,
        region: str | None = None,
        prefix: str = "",
        part_size: int = 16 * MiB,
        max_inflight_parts: int = 4,
        create_bucket: bool = True,
        session: boto3.session.Session | None = None,
        budget: ByteBudget | None = None,
    ) -> None:
        if part_size < MIN_PART:
            raise ValueError("part_size must be at least 5 MiB, S3's smallest part")
        if max_inflight_parts < 1:
            raise ValueError("max_inflight_parts must be at least 1")
        self._endpoint_url = endpoint_url
        self._where = endpoint_url or "AWS S3"
        self._bucket = bucket
        self._region = region
        self._prefix = prefix
        self._part_size = part_size
        self._max_inflight = max_inflight_parts
        self._create_bucket = create_bucket
        self._session = session
        self._budget = budget or DEFAULT_BUDGET
        # Threads for several appends' parts plus reads; boto3's pool matches so none waits.
        self._workers = max(16, 2 * max_inflight_parts)
        self._pool: ThreadPoolExecutor | None = None
        self._client: S3API | None = None
        self._lock = LockSupport(object_lock=False)

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def _s3(self) -> S3API:
        if self._client is None:
            raise StoreUnavailable(f"S3 store for bucket {self._bucket!r} is not open")
        return self._client

    def _k(self, key: str) -> str:
        return self._prefix + key

    def _tail_key(self, target: Target) -> str:
        return self._k(target.key) + _TAIL

    def _error(self, exc: Exception, key: str | None) -> StoreError:
        return translate(exc, endpoint=self._where, bucket=self._bucket, key=key)

    async def _run(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run a blocking SDK call in the store's threads; exceptions pass untranslated."""
        if self._pool is None:
            raise StoreUnavailable(f"S3 store for bucket {self._bucket!r} is not open")
        call = functools.partial(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def _call(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """`_run`, with SDK exceptions mapped to `storage.errors` (naming the `Key` argument)."""
        try:
            return await self._run(fn, *args, **kwargs)
        except Exception as exc:
            s3_key = kwargs.get("Key")
            key = s3_key[len(self._prefix) :] if isinstance(s3_key, str) else None
            raise self._error(exc, key) from exc

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        if self._client is not None:
            return
        self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="s3store")
        try:
            self._client = await self._run(self._make_client)  # reads config files: a thread
            await self._ensure_bucket()
            self._lock = await self._detect_lock()
        except BaseException:
            await self.close()
            raise

    def _make_client(self) -> S3API:
        config = Config(
            s3={"addressing_style": "path"},
            connect_timeout=3,  # an outage must surface in seconds, not minutes
            read_timeout=60,
            retries={"total_max_attempts": 3, "mode": "standard"},
            max_pool_connections=self._workers,
            tcp_keepalive=True,
        )
        session = self._session or boto3.session.Session()
        return session.client(
            "s3", endpoint_url=self._endpoint_url, region_name=self._region, config=config
        )

    async def _ensure_bucket(self) -> None:
        try:
            await self._run(self._s3.head_bucket, Bucket=self._bucket)
            return
        except ClientError as exc:
            if client_error(exc)[1] != 404:
                raise self._error(exc, None) from exc
        except Exception as exc:
            raise self._error(exc, None) from exc
        if not self._create_bucket:
            raise StoreUnavailable(f"S3 bucket {self._bucket!r} does not exist")
        try:
            if self._region and self._region != "us-east-1":
                where = cast("BucketLocationConstraintType", self._region)
                await self._run(
                    self._s3.create_bucket,
                    Bucket=self._bucket,
                    CreateBucketConfiguration={"LocationConstraint": where},
                )
            else:
                await self._run(self._s3.create_bucket, Bucket=self._bucket)
        except ClientError as exc:
            if client_error(exc)[0] != "BucketAlreadyOwnedByYou":  # lost a race to ourselves
                raise self._error(exc, None) from exc
        except Exception as exc:
            raise self._error(exc, None) from exc
        _log.info("s3.bucket_created bucket=%s endpoint=%s", self._bucket, self._where)

    async def _detect_lock(self) -> LockSupport:
        try:
            out = await self._run(self._s3.get_object_lock_configuration, Bucket=self._bucket)
        except ClientError as exc:
            code, status = client_error(exc)
            # Not configured, not implemented by this S3, or not ours to see: nothing to rely on.
            if code == "AccessDenied" or status in (404, 405, 501):
                return LockSupport(object_lock=False)
            raise self._error(exc, None) from exc
        except Exception as exc:
            raise self._error(exc, None) from exc
        config = out.get("ObjectLockConfiguration", {})
        if config.get("ObjectLockEnabled") != "Enabled":
            return LockSupport(object_lock=False)
        default = config.get("Rule", {}).get("DefaultRetention", {})
        days = default.get("Days") or (365 * default["Years"] if "Years" in default else None)
        return LockSupport(object_lock=True, default_mode=default.get("Mode"), default_days=days)

    async def close(self) -> None:
        client, self._client = self._client, None
        pool, self._pool = self._pool, None
        if client is not None:
            client.close()
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True)

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
        layout, _ = await self._layout(target, with_body=False)
        return layout.offset

    async def append(self, target: Target, *, offset: int, chunks: AsyncIterable[bytes]) -> int:
        layout, tail = await self._layout(target, with_body=True)
        if offset != layout.offset:
            raise OffsetMismatch(
                f"append at {offset} but the durable offset is {layout.offset}",
                key=target.key,
                expected=layout.offset,
                got=offset,
            )
        cutter = PartCutter(number=layout.next_part, base=layout.base)
        uploads = PartUploads(
            limit=self._max_inflight,
            budget=self._budget,
            upload=functools.partial(self._upload_part, target),
            run=self._call,
        )
        # The old tail leads the next part; keep only its size so its bytes can go with the part.
        head, head_size = tail.body, len(tail.body)
        tail = _Tail(exists=tail.exists, version=tail.version)
        broken: Exception | None = None
        try:
            for number, body in cutter.feed(head):
                await uploads.start(number, body)
            del head
            async for chunk in chunks:
                for number, body in cutter.feed(chunk if type(chunk) is bytes else bytes(chunk)):
                    if not await uploads.start(number, body):
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
        failure = await uploads.wait()
        if failure is not None:
            # The parts that landed are durable; the old tail stays valid until one covers it.
            raise broken or failure
        start = layout.parts_end + cutter.cut_bytes
        rest = cutter.remainder()
        if rest and (cutter.cut_bytes or len(rest) != head_size):
            await self._write_tail(target, start=start, body=rest, old=tail)
        elif not rest and cutter.cut_bytes and tail.exists:
            await self._drop_tail(target, tail)
        if broken is not None:
            raise broken
        # Parts a failed append left beyond a gap may just have joined the prefix.
        return await self.offset(target) if layout.loose else start + len(rest)

    def _upload_part(self, target: Target, number: int, body: bytes) -> str:
        out = self._s3.upload_part(
            Bucket=self._bucket,
            Key=self._k(target.key),
            UploadId=target.handle,
            PartNumber=number,
            Body=body,
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
        if meta.get(_META_UPLOAD) == target.handle and meta.get(_META_START, "").isdigit():
            start = int(meta[_META_START])
        layout = read_layout(parts, default_base=self._part_size, tail_start=start, tail_size=size)
        return layout, _Tail(exists=True, version=version, body=body if layout.tail_size else b"")

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

    async def _write_tail(self, target: Target, *, start: int, body: bytes, old: _Tail) -> None:
        out = await self._call(
            self._s3.put_object,
            Bucket=self._bucket,
            Key=self._tail_key(target),
            Body=body,
            ContentType=_OCTETS,
            Metadata={_META_START: str(start), _META_UPLOAD: target.handle},
        )
        if old.version and old.version != out.get("VersionId"):
            await self._drop_tail(target, old)  # versioned bucket: the put kept the old version

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

    # -- finished objects -------------------------------------------------------------------

    async def _exists(self, key: str) -> bool:
        try:
            await self.stat(key)
        except NotFound:
            return False
        return True

    async def stat(self, key: str) -> ObjectInfo:
        check_key(key)
        out = await self._call(self._s3.head_object, Bucket=self._bucket, Key=self._k(key))
        return ObjectInfo(
            key=key,
            size=out["ContentLength"],
            etag=out.get("ETag", "").strip('"') or None,
            modified=out.get("LastModified"),
        )

    async def read(
        self, key: str, *, start: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        check_key(key)
        if start < 0 or (length is not None and length < 0):
            raise InvalidRange(f"negative range start={start} length={length}", key=key)
        info = await self.stat(key)
        if start > info.size:
            raise InvalidRange(f"start {start} beyond the end ({info.size} bytes)", key=key)
        end = info.size if length is None else min(info.size, start + length)
        if end <= start:
            return _nothing()
        if start == 0 and end == info.size:
            out = await self._call(self._s3.get_object, Bucket=self._bucket, Key=self._k(key))
        else:  # RFC 9110 14.1.1: last-pos is inclusive
            out = await self._call(
                self._s3.get_object,
                Bucket=self._bucket,
                Key=self._k(key),
                Range=f"bytes={start}-{end - 1}",
            )
        return self._stream(key, out["Body"])

    async def _stream(self, key: str, body: StreamingBody) -> AsyncIterator[bytes]:
        """Read the body in 1 MiB pieces, each in a worker thread: never the whole object."""
        try:
            while True:
                try:
                    chunk = await self._run(body.read, _READ_CHUNK)
                except Exception as exc:
                    raise self._error(exc, key) from exc
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    async def delete(self, key: str) -> None:
        check_key(key)
        head = await self._call(self._s3.head_object, Bucket=self._bucket, Key=self._k(key))
        request: DeleteObjectRequestTypeDef = {"Bucket": self._bucket, "Key": self._k(key)}
        if head.get("VersionId", "null") != "null":
            # Without the version, a versioned bucket only stacks a delete marker on top and
            # Object Lock never gets a say.
            request["VersionId"] = head["VersionId"]
        try:
            await self._run(self._s3.delete_object, **request)
        except ClientError as exc:
            if self._lock.object_lock and client_error(exc)[0] == "AccessDenied":
                raise ObjectLocked(
                    f"object {key!r} is under retention or legal hold", key=key
                ) from exc
            raise self._error(exc, key) from exc
        except Exception as exc:
            raise self._error(exc, key) from exc

    # -- capabilities -----------------------------------------------------------------------

    async def concatenate(self, key: str, sources: Sequence[str]) -> ObjectInfo:
        check_key(key)
        infos = [await self.stat(source) for source in sources]
        if await self._exists(key):
            raise AlreadyExists(f"object {key!r} already exists", key=key)
        filled = [info for info in infos if info.size]
        ranges = [(info.key, span) for info in filled for span in copy_ranges(info.size)]
        # UploadPartCopy keeps the bytes inside S3, but only when every part but the last is
        # at least 5 MiB; otherwise the bytes take a detour through this process.
        if not filled or len(ranges) > MAX_PARTS or any(i.size < MIN_PART for i in filled[:-1]):
            return await self._concatenate_streaming(key, infos)
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

    async def _concatenate_streaming(self, key: str, infos: list[ObjectInfo]) -> ObjectInfo:
        async def stream() -> AsyncIterator[bytes]:
            for info in infos:
                async for chunk in await self.read(info.key):
                    yield chunk

        target = await self.create(key)
        try:
            size = await self.append(target, offset=0, chunks=stream())
            return await self.finish(target, size=size)
        except BaseException:
            await asyncio.shield(self.abort(target))
            raise

    async def lock_support(self) -> LockSupport:
        self._s3  # noqa: B018 - detected at open: a closed store has nothing to report
        return self._lock

    async def set_retention(
        self, key: str, *, until: datetime, mode: Literal["GOVERNANCE", "COMPLIANCE"]
    ) -> None:
        version = await self._locked_version(key)
        until = until if until.tzinfo else until.replace(tzinfo=UTC)
        try:
            out = await self._run(
                self._s3.get_object_retention,
                Bucket=self._bucket,
                Key=self._k(key),
                VersionId=version,
            )
            current = out.get("Retention", {})
        except ClientError as exc:
            if client_error(exc)[0] not in _NO_RETENTION:
                raise self._error(exc, key) from exc
            current = {}
        except Exception as exc:
            raise self._error(exc, key) from exc
        held = current.get("RetainUntilDate")
        if held is not None and held >= until:
            return  # never shorten: a later date already protects the object
        if current.get("Mode") == "COMPLIANCE":
            mode = "COMPLIANCE"  # S3 refuses to weaken COMPLIANCE to GOVERNANCE
        await self._call(
            self._s3.put_object_retention,
            Bucket=self._bucket,
            Key=self._k(key),
            VersionId=version,
            Retention={"Mode": mode, "RetainUntilDate": until},
        )

    async def set_legal_hold(self, key: str, *, on: bool) -> None:
        version = await self._locked_version(key)
        await self._call(
            self._s3.put_object_legal_hold,
            Bucket=self._bucket,
            Key=self._k(key),
            VersionId=version,
            LegalHold={"Status": "ON" if on else "OFF"},
        )

    async def _locked_version(self, key: str) -> str:
        """The current version of an object in a lock bucket: the lock applies per version."""
        check_key(key)
        if not self._lock.object_lock:
            raise StoreError(f"S3 bucket {self._bucket!r} has no Object Lock", key=key)
        # HEAD first: SeaweedFS answers a hold on a missing key with 500, not 404.
        out = await self._call(self._s3.head_object, Bucket=self._bucket, Key=self._k(key))
        return out.get("VersionId", "")

    async def presign_get(self, key: str, *, expires_in: int) -> str:
        check_key(key)
        return await self._call(
            self._s3.generate_presigned_url,
            "get_object",
            Params={"Bucket": self._bucket, "Key": self._k(key)},
            ExpiresIn=expires_in,
        )


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield  # makes this an async generator that yields nothing
