"""S3 plumbing shared by the store: client, threads, error mapping, finished objects, locks.

`S3Bucket` knows one bucket under one key prefix: it opens and checks it, reads, stats and
deletes finished objects, and manages Object Lock retention and legal holds. `S3Store` (s3.py)
adds upload targets and concatenation on top.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, ParamSpec, TypeVar, cast

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from .base import LockSupport, ObjectInfo, Target
from .errors import (
    InvalidRange,
    NotFound,
    ObjectLocked,
    StoreError,
    StoreUnavailable,
)
from .keys import check_key
from .s3body import (
    PART_CHECKSUMS,
    PartChecksum,
    fail_cut_parts_at_once,
    send_with_trailer,
    streams_parts,
)
from .s3parts import (
    DEFAULT_BUDGET,
    DEFAULT_BUFFERS,
    MIN_PART,
    S3API,
    ByteBudget,
    Layout,
    MiB,
    PartBuffers,
    client_error,
    translate,
)

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3.literals import BucketLocationConstraintType
    from mypy_boto3_s3.type_defs import DeleteObjectRequestTypeDef

_log = logging.getLogger("avidence.storage.s3")
_P = ParamSpec("_P")
_T = TypeVar("_T")

_TAIL = ".part"
_READ_CHUNK = MiB
_NO_RETENTION = {"ObjectLockConfigurationNotFoundError", "NoSuchObjectLockConfiguration"}


class S3Bucket:
    """One bucket (under `prefix`) opened with boto3 in a pool of threads."""

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
        buffers: PartBuffers | None = None,
        part_checksum: PartChecksum = "auto",
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
        self._buffers = buffers or DEFAULT_BUFFERS
        if part_checksum not in PART_CHECKSUMS:
            raise ValueError(f"part_checksum must be one of {', '.join(PART_CHECKSUMS)}")
        # Streamed parts go out aws-chunked with a trailing CRC-32 while they arrive (s3body);
        # signed ones go whole, their SHA-256 in the signature.
        self._streaming = streams_parts(part_checksum, endpoint_url)
        # Threads for reads and small calls, and as many again for part uploads: a streamed
        # part holds its thread while its request arrives, and must never make a viewer's read
        # or another upload's ListParts wait. boto3's connection pool covers both.
        self._workers = max(16, 2 * max_inflight_parts)
        self._pool: ThreadPoolExecutor | None = None
        self._part_pool: ThreadPoolExecutor | None = None
        self._client: S3API | None = None
        self._lock = LockSupport(object_lock=False)
        # UploadId -> (when, layout, tail state without its bytes) read by the last `offset`
        # (see S3Store.append; the tail state's type lives there).
        self._seen: dict[str, tuple[float, Layout, object]] = {}

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

    def _threads(self, pool: ThreadPoolExecutor | None) -> ThreadPoolExecutor:
        if pool is None:
            raise StoreUnavailable(f"S3 store for bucket {self._bucket!r} is not open")
        return pool

    async def _run(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run a blocking SDK call in the store's threads; exceptions pass untranslated."""
        call = functools.partial(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._threads(self._pool), call)

    async def _call_part(self, fn: Callable[[], _T]) -> _T:
        """Run a part upload in the part threads; SDK exceptions mapped as by `_call`."""
        pool = self._threads(self._part_pool)
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn)
        except Exception as exc:
            raise self._error(exc, None) from exc

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
        self._part_pool = ThreadPoolExecutor(
            max_workers=self._workers, thread_name_prefix="s3parts"
        )
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
            max_pool_connections=2 * self._workers,
            tcp_keepalive=True,
            # The server hashes every byte itself (BLAKE3, SHA-256) and checks them end to end;
            # an extra CRC32 per part costs CPU the box needs for the upload.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = self._session or boto3.session.Session()
        client = session.client(
            "s3", endpoint_url=self._endpoint_url, region_name=self._region, config=config
        )
        if self._streaming:
            client.meta.events.register("request-created.s3.UploadPart", send_with_trailer)
            client.meta.events.register("needs-retry.s3.UploadPart", fail_cut_parts_at_once)
        return client

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
        pools = [pool for pool in (self._pool, self._part_pool) if pool is not None]
        self._pool = self._part_pool = None
        if client is not None:
            client.close()
        for pool in pools:
            await asyncio.to_thread(pool.shutdown, wait=True)

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
        if length == 0:
            await self._check_start(key, start)
            return empty_stream()
        # One ranged GET, no HEAD first: a seek in the viewer costs one round trip. S3 answers
        # 416 for a start at or past the end; only then is the size looked up.
        request: dict[str, str] = {"Bucket": self._bucket, "Key": self._k(key)}
        if start or length is not None:  # RFC 9110 14.1.1: last-pos is inclusive
            last = "" if length is None else str(start + length - 1)
            request["Range"] = f"bytes={start}-{last}"
        try:
            out = await self._run(self._s3.get_object, **request)  # type: ignore[arg-type]
        except ClientError as exc:
            if client_error(exc)[1] != 416:
                raise self._error(exc, key) from exc
            await self._check_start(key, start)
            return empty_stream()
        except Exception as exc:
            raise self._error(exc, key) from exc
        return self._stream(key, out["Body"], int(out.get("ContentLength", -1)))

    async def _check_start(self, key: str, start: int) -> None:
        """`start` may equal the size (an empty read) but not exceed it."""
        info = await self.stat(key)
        if start > info.size:
            raise InvalidRange(f"start {start} beyond the end ({info.size} bytes)", key=key)

    async def _stream(self, key: str, body: StreamingBody, size: int) -> AsyncIterator[bytes]:
        """Read the body in 1 MiB pieces, each in a worker thread: never the whole object.
        With its `size` known, the end is where that many bytes arrived (a seek's one piece
        costs one trip to a thread, not a second one to read nothing)."""
        left = size  # negative: not known, read until nothing comes
        try:
            while left != 0:
                want = _READ_CHUNK if left < 0 else min(left, _READ_CHUNK)
                try:
                    chunk = await self._run(body.read, want)
                except Exception as exc:
                    raise self._error(exc, key) from exc
                if not chunk:
                    if left > 0:
                        raise StoreUnavailable(f"{key!r} ended {left} bytes early", key=key)
                    return
                if left > 0:
                    left -= len(chunk)
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


async def empty_stream() -> AsyncIterator[bytes]:
    return
    yield  # makes this an async generator that yields nothing
