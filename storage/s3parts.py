"""What `S3Store` needs besides the store itself: part layout, the S3 calls, the error table.

The part layout is free of any SDK call:

* The part schedule depends only on the part number, so a process that knows nothing but the
  parts already stored can continue an upload whose length is still unknown: parts 1-1000 are
  `base` bytes, 1001-2000 twice that, and so on, capped at S3's 5 GiB part. With the default
  16 MiB base the 10,000 parts S3 allows hold more than its 5 TiB object limit (5 MiB: 4.9 TiB).
* Every part stored before `finish` has exactly its scheduled size. So the short last part of an
  interrupted `finish` never passes for data, and `base` can be read back from part 1.
* `PartCutter` cuts a byte stream into scheduled parts with one copy per byte, into buffers
  `PartBuffers` reuses; `ByteBudget` bounds the bytes of all parts in flight in the process.

`S3API` lists the only client calls the store makes (as tusd's `S3API` does), and `translate` is
the single table from SDK exceptions to `storage.errors`.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Unpack

from botocore.exceptions import (
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from .errors import AlreadyExists, InvalidRange, NotFound, StoreError, StoreFull, StoreUnavailable
from .s3body import PartBody, PartCut

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import (
        AbortMultipartUploadOutputTypeDef,
        AbortMultipartUploadRequestTypeDef,
        CompleteMultipartUploadOutputTypeDef,
        CompleteMultipartUploadRequestTypeDef,
        CopyObjectOutputTypeDef,
        CopyObjectRequestTypeDef,
        CreateBucketOutputTypeDef,
        CreateBucketRequestTypeDef,
        CreateMultipartUploadOutputTypeDef,
        CreateMultipartUploadRequestTypeDef,
        DeleteObjectOutputTypeDef,
        DeleteObjectRequestTypeDef,
        GetObjectLegalHoldOutputTypeDef,
        GetObjectLegalHoldRequestTypeDef,
        GetObjectLockConfigurationOutputTypeDef,
        GetObjectLockConfigurationRequestTypeDef,
        GetObjectOutputTypeDef,
        GetObjectRequestTypeDef,
        GetObjectRetentionOutputTypeDef,
        GetObjectRetentionRequestTypeDef,
        HeadBucketOutputTypeDef,
        HeadBucketRequestTypeDef,
        HeadObjectOutputTypeDef,
        HeadObjectRequestTypeDef,
        ListMultipartUploadsOutputTypeDef,
        ListMultipartUploadsRequestTypeDef,
        ListObjectsV2OutputTypeDef,
        ListObjectsV2RequestTypeDef,
        ListObjectVersionsOutputTypeDef,
        ListObjectVersionsRequestTypeDef,
        ListPartsOutputTypeDef,
        ListPartsRequestTypeDef,
        PutObjectLegalHoldOutputTypeDef,
        PutObjectLegalHoldRequestTypeDef,
        PutObjectOutputTypeDef,
        PutObjectRequestTypeDef,
        PutObjectRetentionOutputTypeDef,
        PutObjectRetentionRequestTypeDef,
        UploadPartCopyOutputTypeDef,
        UploadPartCopyRequestTypeDef,
        UploadPartOutputTypeDef,
        UploadPartRequestTypeDef,
    )

MiB = 1024 * 1024
MIN_PART = 5 * MiB  # S3: every part but the last is at least 5 MiB
MAX_PART = 5 * 1024 * MiB  # S3: no part, copied or uploaded, exceeds 5 GiB
MAX_PARTS = 10_000
_PARTS_PER_STEP = 1000


class TooManyParts(Exception):
    """The upload would need a part number beyond S3's 10,000."""


def part_size(number: int, base: int) -> int:
    """Scheduled size of part `number` (1-based) for an upload whose first part is `base`."""
    if not 1 <= number <= MAX_PARTS:
        raise TooManyParts(f"part {number} is outside S3's 1..{MAX_PARTS}")
    return min(base << ((number - 1) // _PARTS_PER_STEP), MAX_PART)


@dataclass(slots=True, frozen=True)
class StoredPart:
    number: int
    size: int
    etag: str
    modified: float = 0.0  # seconds since the epoch, as ListParts reports it


@dataclass(slots=True, frozen=True)
class Layout:
    """An upload as found in S3: the usable parts and the tail object's claim."""

    base: int
    parts: tuple[StoredPart, ...]  # contiguous from part 1, each of its scheduled size
    loose: bool  # other parts are stored too (left by an append that failed part-way)
    tail_size: int  # 0 unless the tail object starts exactly where the parts end

    @property
    def parts_end(self) -> int:
        return sum(part.size for part in self.parts)

    @property
    def next_part(self) -> int:
        return len(self.parts) + 1

    @property
    def offset(self) -> int:
        return self.parts_end + self.tail_size


def read_layout(
    parts: Mapping[int, Sequence[StoredPart]],
    *,
    default_base: int,
    tail_start: int | None,
    tail_size: int,
) -> Layout:
    """Work out the durable layout from ListParts and the tail object (`tail_start` None: no
    tail of this upload).

    A tail counts only when it begins where the contiguous parts end: once an append has moved
    its bytes into a part, the old tail is ignored, so the offset never covers a byte twice.
    A part left beyond a gap by a failed append counts once the gap is filled: it holds the
    bytes sent for exactly those offsets, which are the same bytes in every attempt (tus).
    Some servers (SeaweedFS) list every upload of a part number instead of the latest; the
    newest entry of the scheduled size is the one that counts.
    """
    first = [p for p in parts.get(1, ()) if MIN_PART <= p.size <= MAX_PART]
    base = max(first, key=lambda p: p.modified).size if first else default_base
    usable: list[StoredPart] = []
    number = 1
    while number <= MAX_PARTS:
        fitting = [p for p in parts.get(number, ()) if p.size == part_size(number, base)]
        if not fitting:
            break
        usable.append(max(fitting, key=lambda p: p.modified))
        number += 1
    end = sum(part.size for part in usable)
    counted = tail_size if tail_start == end else 0
    loose = any(n >= number for n in parts)
    return Layout(base=base, parts=tuple(usable), loose=loose, tail_size=counted)


class PartBuffers:
    """Part bodies kept for reuse, at most `keep` bytes of them idle.

    A fresh 16 MiB buffer is fresh memory: the kernel faults in and zeroes every page on first
    touch, and the allocator hands it back when the part is freed, so each part paid that again
    (on some VMs about as much CPU as hashing it). Reused buffers pay it once. Thread-safe:
    a worker thread gives a body back the moment S3 has it."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._idle: dict[int, list[bytearray]] = {}
        self._idle_bytes = 0
        self._lock = threading.Lock()

    @property
    def idle_bytes(self) -> int:
        return self._idle_bytes

    def take(self, size: int) -> bytearray:
        with self._lock:
            idle = self._idle.get(size)
            if idle:
                self._idle_bytes -= size
                return idle.pop()
        return bytearray(size)

    def give(self, buffer: bytearray) -> None:
        """Keep `buffer` for a later `take`; the caller must not touch it again."""
        size = len(buffer)
        with self._lock:
            if self._idle_bytes + size <= self.keep:
                self._idle.setdefault(size, []).append(buffer)
                self._idle_bytes += size


@dataclass(slots=True)
class PartCutter:
    """Cuts appended bytes into scheduled parts, starting at part `number`.

    Each byte is copied once, into a part buffer taken from `buffers`; memory holds at most one
    unfinished part. A part is handed out as `(number, body)` when it is full, or, when it ends
    within the `stream_through` bytes the caller expects in all and is numbered `stream_from`
    or later, as soon as its first byte arrives, to be sent while it fills (`PartBody`).

    Whoever is handed a body releases it once (the uploader, when S3 has the bytes); a body
    that is never released is left to the garbage collector instead of being reused."""

    number: int
    base: int
    buffers: PartBuffers
    stream_through: int = 0
    stream_from: int = 1
    _part: PartBody | None = None
    _streamed: bool = False
    cut_bytes: int = 0  # bytes handed out as full parts so far

    def feed(self, data: bytes | bytearray | memoryview) -> Iterator[tuple[int, PartBody]]:
        """Take `data`; yield `(part number, body)` for every part it starts or completes."""
        view = memoryview(data)
        while view:
            if self._part is None:
                size = part_size(self.number, self.base)
                self._part = PartBody(self.buffers.take(size), self.buffers)
                self._streamed = (
                    self.number >= self.stream_from and self.cut_bytes + size <= self.stream_through
                )
                if self._streamed:
                    self._part.hold()  # the uploader's, beside the cutter's own while it fills
                    yield self.number, self._part
            view = view[self._part.put(view) :]
            if self._part.full:
                part, self._part = self._part, None
                self.cut_bytes += len(part)
                self.number += 1
                if self._streamed:
                    part.release()
                else:
                    yield self.number - 1, part  # the cutter's hold passes to the caller

    def stop(self) -> None:
        """No more bytes will come: a streamed part that is not full fails instead of waiting."""
        if self._part is not None and self._streamed:
            self._part.cut()

    def remainder(self) -> bytes:
        """The bytes that do not fill a part (they become the tail object); ends the cutter."""
        self.stop()
        part, self._part = self._part, None
        if part is None:
            return b""
        rest = bytes(memoryview(part.buffer)[: part.filled])
        part.release()
        return rest


def copy_ranges(size: int) -> list[tuple[int, int]]:
    """Inclusive byte ranges splitting an object of `size` > 0 bytes into copyable parts.

    Even splits keep every range well above 5 MiB; a source over 5 GiB needs several."""
    count = -(-size // MAX_PART)
    step = -(-size // count)
    return [(start, min(start + step, size) - 1) for start in range(0, size, step)]


class ByteBudget:
    """Bytes of part bodies in flight, bounded across every upload in the process.

    Thread-safe: a worker thread gives its grant back as soon as `upload_part` returns, so the
    budget is restored even when the event loop that waited for it has gone. Waiters are served
    first come, first served; a request larger than the whole budget waits for all of it.
    """

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("budget must be positive")
        self.limit = limit
        self._free = limit
        self._lock = threading.Lock()
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def free(self) -> int:
        return self._free

    async def acquire(self, size: int) -> Grant:
        """Wait until `size` bytes (capped at the limit) are free."""
        want = min(size, self.limit)
        with self._lock:
            if not self._waiters and self._free >= want:
                self._free -= want
                return Grant(self, want)
            waiter = (want, asyncio.get_running_loop().create_future())
            self._waiters.append(waiter)
        try:
            await waiter[1]
        except asyncio.CancelledError:
            with self._lock:
                queued = waiter in self._waiters
                if queued:
                    self._waiters.remove(waiter)
            if not queued and waiter[1].done() and not waiter[1].cancelled():
                self._give(want)
            # A grant still on its way is given back by _hand_over, which finds the future done.
            raise
        return Grant(self, want)

    def _give(self, size: int) -> None:
        with self._lock:
            self._free += size
            grants: list[tuple[int, asyncio.Future[None]]] = []
            while self._waiters and self._waiters[0][0] <= self._free:
                want, future = self._waiters.popleft()
                self._free -= want
                grants.append((want, future))
        for want, future in grants:
            try:
                future.get_loop().call_soon_threadsafe(self._hand_over, want, future)
            except RuntimeError:  # that waiter's loop is closed
                self._give(want)

    def _hand_over(self, want: int, future: asyncio.Future[None]) -> None:
        if future.done():  # cancelled while the grant was on its way
            self._give(want)
        else:
            future.set_result(None)


class Grant:
    """Bytes held from a `ByteBudget`; `release` is idempotent and callable from any thread."""

    __slots__ = ("_budget", "_size")

    def __init__(self, budget: ByteBudget, size: int) -> None:
        self._budget = budget
        self._size = size

    def release(self) -> None:
        with self._budget._lock:
            size, self._size = self._size, 0
        if size:
            self._budget._give(size)


class PartUploads:
    """The part uploads of one append: at most `limit` at once, their bodies within `budget`.

    `upload(number, body)` is the blocking SDK call; `run` runs a blocking callable in the
    store's threads and translates its errors. The grant is released in the worker thread the
    moment the call returns, and once more (harmlessly) when the call never started."""

    def __init__(
        self,
        *,
        limit: int,
        budget: ByteBudget,
        upload: Callable[[int, PartBody], object],
        run: Callable[[Callable[[], object]], Awaitable[object]],
    ) -> None:
        self._limit = limit
        self._budget = budget
        self._upload = upload
        self._run = run
        self._tasks: list[asyncio.Task[object]] = []

    @property
    def failure(self) -> BaseException | None:
        """The first error of a started upload; a part cut short by its request is none."""
        for task in self._tasks:
            if task.done() and not task.cancelled():
                error = task.exception()
                if error is not None and not isinstance(error, PartCut):
                    return error
        return None

    async def start(self, number: int, body: PartBody) -> bool:
        """Start uploading part `number` when a slot and budget are free. False, starting
        nothing, once an earlier part has failed: the caller stops reading."""
        running = {task for task in self._tasks if not task.done()}
        while len(running) >= self._limit:
            _, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        if self.failure is not None:
            return False
        grant = await self._budget.acquire(len(body))

        def blocking() -> object:
            try:
                return self._upload(number, body)
            finally:
                grant.release()

        async def started() -> object:
            try:
                return await self._run(blocking)
            finally:
                grant.release()

        task = asyncio.create_task(started(), name=f"s3-part-{number}")
        task.add_done_callback(_observed)  # a cancelled append never awaits its parts
        self._tasks.append(task)
        return True

    async def wait(self) -> BaseException | None:
        """Wait for every started upload; return the first failure, if any."""
        if self._tasks:
            await asyncio.wait(self._tasks)
        return self.failure


def _observed(task: asyncio.Task[object]) -> None:
    if not task.cancelled():
        task.exception()


#: Part bodies in flight across all stores of the process: 16 parts of the default size.
DEFAULT_BUDGET = ByteBudget(16 * 16 * MiB)
#: Idle part bodies kept across all stores: what one upload cycles through (4 parts in flight,
#: one filling, one held back by a checksummed request) at the default part size.
DEFAULT_BUFFERS = PartBuffers(6 * 16 * MiB)


class S3API(Protocol):
    """The S3 client calls `S3Store` makes; boto3's client satisfies it structurally."""

    def head_bucket(self, **kw: Unpack[HeadBucketRequestTypeDef]) -> HeadBucketOutputTypeDef: ...
    def create_bucket(
        self, **kw: Unpack[CreateBucketRequestTypeDef]
    ) -> CreateBucketOutputTypeDef: ...
    def get_object_lock_configuration(
        self, **kw: Unpack[GetObjectLockConfigurationRequestTypeDef]
    ) -> GetObjectLockConfigurationOutputTypeDef: ...
    def head_object(self, **kw: Unpack[HeadObjectRequestTypeDef]) -> HeadObjectOutputTypeDef: ...
    def get_object(self, **kw: Unpack[GetObjectRequestTypeDef]) -> GetObjectOutputTypeDef: ...
    def put_object(self, **kw: Unpack[PutObjectRequestTypeDef]) -> PutObjectOutputTypeDef: ...
    def delete_object(
        self, **kw: Unpack[DeleteObjectRequestTypeDef]
    ) -> DeleteObjectOutputTypeDef: ...
    def create_multipart_upload(
        self, **kw: Unpack[CreateMultipartUploadRequestTypeDef]
    ) -> CreateMultipartUploadOutputTypeDef: ...
    def list_parts(self, **kw: Unpack[ListPartsRequestTypeDef]) -> ListPartsOutputTypeDef: ...
    def upload_part(self, **kw: Unpack[UploadPartRequestTypeDef]) -> UploadPartOutputTypeDef: ...
    def upload_part_copy(
        self, **kw: Unpack[UploadPartCopyRequestTypeDef]
    ) -> UploadPartCopyOutputTypeDef: ...
    def complete_multipart_upload(
        self, **kw: Unpack[CompleteMultipartUploadRequestTypeDef]
    ) -> CompleteMultipartUploadOutputTypeDef: ...
    def abort_multipart_upload(
        self, **kw: Unpack[AbortMultipartUploadRequestTypeDef]
    ) -> AbortMultipartUploadOutputTypeDef: ...
    def get_object_retention(
        self, **kw: Unpack[GetObjectRetentionRequestTypeDef]
    ) -> GetObjectRetentionOutputTypeDef: ...
    def put_object_retention(
        self, **kw: Unpack[PutObjectRetentionRequestTypeDef]
    ) -> PutObjectRetentionOutputTypeDef: ...
    def put_object_legal_hold(
        self, **kw: Unpack[PutObjectLegalHoldRequestTypeDef]
    ) -> PutObjectLegalHoldOutputTypeDef: ...
    # encrypt-existing only (`s3replace`): the one place an object is written over
    def copy_object(self, **kw: Unpack[CopyObjectRequestTypeDef]) -> CopyObjectOutputTypeDef: ...
    def list_object_versions(
        self, **kw: Unpack[ListObjectVersionsRequestTypeDef]
    ) -> ListObjectVersionsOutputTypeDef: ...
    def get_object_legal_hold(
        self, **kw: Unpack[GetObjectLegalHoldRequestTypeDef]
    ) -> GetObjectLegalHoldOutputTypeDef: ...
    def list_objects_v2(
        self, **kw: Unpack[ListObjectsV2RequestTypeDef]
    ) -> ListObjectsV2OutputTypeDef: ...
    def list_multipart_uploads(
        self, **kw: Unpack[ListMultipartUploadsRequestTypeDef]
    ) -> ListMultipartUploadsOutputTypeDef: ...
    def generate_presigned_url(
        self, ClientMethod: str, Params: Mapping[str, Any] = ..., ExpiresIn: int = 3600
    ) -> str: ...
    def close(self) -> None: ...


_NOT_FOUND = {"NoSuchKey", "NotFound", "NoSuchUpload", "NoSuchVersion"}
_REJECTED = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "ExpiredToken",
    "InvalidToken",
    "InvalidSecurity",
    "AuthorizationHeaderMalformed",
}
_BUSY = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling"}
_FULL = {
    "StorageFull",
    "XMinioStorageFull",
    "QuotaExceeded",
    "XMinioAdminBucketQuotaExceeded",
    "InsufficientStorage",
}
_FULL_WORDS = ("no space left", "disk full", "no free volume", "no writable volume", "quota")


def client_error(exc: ClientError) -> tuple[str, int]:
    """The error code and HTTP status of a refused request (HEAD errors carry only the status)."""
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    return code, status


def translate(exc: Exception, *, endpoint: str, bucket: str, key: str | None) -> StoreError:
    """Map an SDK exception to the store error the server understands; one line, no secrets."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StoreUnavailable(f"no S3 credentials found for {endpoint}", key=key)
    if isinstance(exc, (BotoConnectionError, HTTPClientError, IncompleteReadError, OSError)):
        return StoreUnavailable(
            f"S3 endpoint {endpoint} unreachable ({type(exc).__name__})", key=key
        )
    if isinstance(exc, ClientError):
        code, status = client_error(exc)
        message = str(exc.response.get("Error", {}).get("Message", ""))
        if code in _FULL or status == 507 or any(w in message.lower() for w in _FULL_WORDS):
            return StoreFull(f"S3 bucket {bucket!r} has no room: {code} {message}", key=key)
        if code == "NoSuchBucket":
            return StoreUnavailable(f"S3 bucket {bucket!r} does not exist", key=key)
        if code in _NOT_FOUND or status == 404:
            return NotFound(f"no S3 object or upload target for {key!r}", key=key)
        if code in _REJECTED or status in (401, 403):
            return StoreUnavailable(f"S3 credentials rejected by {endpoint} ({code})", key=key)
        if code == "PreconditionFailed" or status == 412:
            return AlreadyExists(f"object {key!r} already exists", key=key)
        if code == "InvalidRange" or status == 416:
            return InvalidRange(f"range outside object {key!r}", key=key)
        if code in _BUSY or status >= 500:
            return StoreUnavailable(f"S3 endpoint {endpoint} failed: {code} {message}", key=key)
        return StoreError(f"S3 refused the request: {code} {message}", key=key)
    return StoreError(f"S3 call failed: {type(exc).__name__}: {exc}", key=key)  # a bug of ours
