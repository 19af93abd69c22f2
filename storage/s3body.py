"""The body of one S3 part: a reused buffer that a worker thread may send while it still fills.

A PATCH's parts used to go to S3 only once all of their bytes had arrived, so each request ended
waiting for its last part while S3 sat idle at the start of the next one. A streamed part is
handed to its uploader as soon as its first byte arrives; the uploader's reads wait for the
event loop to fill the buffer. A request that ends early `cut`s the part: the upload fails
before S3 has the whole part, and S3 never stores a part shorter than its Content-Length.

Integrity in transit comes from a trailing CRC-32 (`x-amz-checksum-crc32` after an
aws-chunked body, what AWS's own SDKs send) that S3 checks before it stores the part. It is
computed while the bytes go out, and costs half of the SHA-256 a signed payload needs (and
S3 a fraction of checking one). It catches damage, not tampering: the payload is unsigned, so
against an active attacker on the link it relies on TLS, which is why "auto" streams parts
only to https endpoints. Either way the whole-file digests are checked end to end.
"""

from __future__ import annotations

import base64
import threading
import zlib
from typing import TYPE_CHECKING, Any, Literal

from .errors import StoreError

if TYPE_CHECKING:
    from .s3parts import PartBuffers

#: How a part is checked in transit: "trailer" streams it with a trailing CRC-32 (below);
#: "signed" sends it whole with its SHA-256 in the signature, which also stops tampering on a
#: plain-http link; "auto" is "trailer" for https endpoints and "signed" for http ones.
PartChecksum = Literal["auto", "trailer", "signed"]
PART_CHECKSUMS: tuple[PartChecksum, ...] = ("auto", "trailer", "signed")


def streams_parts(choice: PartChecksum, endpoint_url: str | None) -> bool:
    """Whether parts go out while they arrive (an endpoint of None is AWS itself: https)."""
    if choice == "auto":
        return endpoint_url is None or endpoint_url.lower().startswith("https://")
    return choice == "trailer"


# A streamed part whose bytes stop coming for this long fails, so no worker thread and S3
# connection wait forever on a request that the event loop has lost track of. (A request's own
# body ends long before, after `read_timeout`, and cuts its part.)
STALL = 300.0


class PartCut(StoreError):
    """The part's request ended before the part was full, so the part was not stored. Its
    bytes become the tail like any unfinished part's: this is no failure of the store."""


class PartBody:
    """`len` bytes to be read from the start, as S3 clients read a file; thread-safe.

    Filled by `put` on the event loop, read by one uploader thread. The buffer goes back to
    `buffers` when the last of its holders lets go: the cutter while it fills it, the uploader
    while S3 reads it. A body nobody releases is left to the garbage collector."""

    def __init__(self, buffer: bytearray, buffers: PartBuffers) -> None:
        self.buffer = buffer
        self.filled = 0
        self._buffers = buffers
        self._pos = 0
        self._cut = False
        self._holders = 1
        self._changed = threading.Condition()

    def __len__(self) -> int:
        return len(self.buffer)

    @property
    def full(self) -> bool:
        return self.filled == len(self.buffer)

    @property
    def was_cut(self) -> bool:
        return self._cut

    def put(self, data: memoryview) -> int:
        """Copy as much of `data` as fits; return how much that was."""
        with self._changed:
            take = min(len(data), len(self.buffer) - self.filled)
            self.buffer[self.filled : self.filled + take] = data[:take]
            self.filled += take
            self._changed.notify_all()
        return take

    def cut(self) -> None:
        """No more bytes will come: a reader waiting for them fails with PartCut."""
        with self._changed:
            self._cut = True
            self._changed.notify_all()

    def hold(self) -> None:
        """One more holder (an uploader) must `release` before the buffer is reused."""
        with self._changed:
            self._holders += 1

    def release(self) -> None:
        with self._changed:
            self._holders -= 1
            last = self._holders == 0
        if last:
            self._buffers.give(self.buffer)

    # -- the file interface S3 clients read --------------------------------------------------

    def read(self, size: int = -1) -> memoryview:
        """Up to `size` bytes from the read position (all that remain when negative), waiting
        for the first of them to be filled. A view, not a copy: the buffer outlives the call."""
        with self._changed:
            end = len(self.buffer) if size is None or size < 0 else self._pos + size
            end = min(end, len(self.buffer))
            while self.filled <= self._pos < end:
                if self._cut:
                    raise PartCut(f"the request ended {self.filled} bytes into the part")
                if not self._changed.wait(STALL):  # a failure, unlike a cut
                    raise TimeoutError(f"no bytes for the part in {STALL:.0f} s")
            end = min(end, self.filled)
            start, self._pos = self._pos, end
        return memoryview(self.buffer)[start:end]

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence != 0 or not 0 <= offset <= len(self.buffer):
            raise ValueError("a part body seeks only to absolute positions inside it")
        self._pos = offset
        return offset

    def tell(self) -> int:
        return self._pos


class Crc32:
    """zlib's CRC-32, as S3's `crc32` checksum, behind hashlib's interface."""

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: Any) -> None:
        self._value = zlib.crc32(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


ALGORITHM = "crc32"
TRAILER = f"x-amz-checksum-{ALGORITHM}"
new_checksum: Any = Crc32  # tests swap it to play a transfer damaged on the way
FRAME = 1024 * 1024  # bytes of part data per aws-chunked frame
_DIGEST_B64 = 8  # base64 of a 4-byte CRC-32


def _frame_head(size: int) -> bytes:
    return b"%x\r\n" % size


class ChunkedBody:
    """A `PartBody` as an aws-chunked stream with a trailing checksum (S3's
    STREAMING-UNSIGNED-PAYLOAD-TRAILER): frames of part data, then `0`, then the trailer.

    Reads return views of the part's buffer between small frame headers, so no byte is copied
    on its way to the socket (the SDK's own wrapper copies every byte several times). A read
    of frame data returns all of the frame that has arrived, whatever `size` asked for: the
    HTTP client sends what `read` returns, and asks for 16 KiB at a time, which would cost a
    system call and a trip through this class per 16 KiB. The length is known up front, so
    the request carries a plain Content-Length."""

    def __init__(self, part: PartBody) -> None:
        self._part = part
        sizes = [min(FRAME, len(part) - at) for at in range(0, len(part), FRAME)]
        self._length = sum(len(_frame_head(n)) + n + 2 for n in sizes) + len(
            b"0\r\n%s:%s\r\n\r\n" % (TRAILER.encode(), b"=" * _DIGEST_B64)
        )
        self.seek(0)

    def __len__(self) -> int:
        return self._length

    def seek(self, offset: int, whence: int = 0) -> int:
        if offset != 0 or whence != 0:
            raise ValueError("an aws-chunked body restarts only from its beginning")
        self._part.seek(0)
        self._hash = new_checksum()
        self._pending = b""  # frame framing still to hand out before more data
        self._left = 0  # data bytes left in the current frame
        self._done = False
        self._at = 0
        return 0

    def tell(self) -> int:
        return self._at

    def read(self, size: int = -1) -> bytes | memoryview:
        out = self._next(size)
        self._at += len(out)
        return out

    def _next(self, size: int) -> bytes | memoryview:
        if self._pending:
            out, self._pending = self._pending, b""
            return out
        if self._left:
            view = self._part.read(self._left)  # all of the frame that has arrived: see above
            self._hash.update(view)
            self._left -= len(view)
            if not self._left:
                self._pending = b"\r\n"
            return view
        if self._done:
            return b""
        at = self._part.tell()
        if at < len(self._part):
            self._left = min(FRAME, len(self._part) - at)
            return _frame_head(self._left)
        self._done = True
        digest = base64.b64encode(self._hash.digest())
        return b"0\r\n%s:%s\r\n\r\n" % (TRAILER.encode(), digest)


def send_with_trailer(request: Any, **_: Any) -> None:
    """botocore's `request-created.s3.UploadPart` hook, which runs before the signer: a
    `PartBody` goes out aws-chunked with its CRC-32 in a trailer. botocore then signs the
    request as STREAMING-UNSIGNED-PAYLOAD-TRAILER instead of hashing the body first. Any other
    body (a finish's short last part) keeps the signed payload."""
    part = request.data  # AWSRequest keeps the body it was given as `data`
    if not isinstance(part, PartBody):
        return
    body = ChunkedBody(part)  # from the part's first byte: a retry builds the request again
    request.data = body
    for name, value in (
        ("Content-Encoding", "aws-chunked"),
        ("X-Amz-Trailer", TRAILER),
        ("X-Amz-Decoded-Content-Length", str(len(part))),
        ("Content-Length", str(len(body))),
    ):
        del request.headers[name]  # HTTPHeaders adds a second value on assignment
        request.headers[name] = value
    checksum = request.context.setdefault("checksum", {})
    checksum["request_algorithm"] = {"in": "trailer", "algorithm": ALGORITHM, "name": TRAILER}


def fail_cut_parts_at_once(request_dict: Any = None, **_: Any) -> None:
    """botocore's `needs-retry.s3.UploadPart` hook: a part whose request ended is not retried,
    since its bytes will never come (the SDK would back off and try twice more first)."""
    body = (request_dict or {}).get("body")
    if isinstance(body, PartBody) and body.was_cut:
        raise PartCut("the request ended before the part was full")
