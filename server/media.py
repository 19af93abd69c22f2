"""Serving a stored object over HTTP with byte ranges (RFC 9110 section 14), from the Store.

Players seek by asking for byte ranges; without 206 answers a `<video>` cannot seek at all. Bytes
go from `Store.read(key, start=, length=)` to the socket chunk by chunk, so memory stays at one
chunk whatever the object's size, and the caller may end a stream between chunks (a ticket
revoked while a judge is watching).

Choices where RFC 9110 leaves room:
- A multi-range request (`bytes=0-9,20-29`) is answered with the whole representation (200), as
  section 14.2 allows ("A server MAY ignore the Range header field"): players never send them, and
  a multipart/byteranges body would only add a second code path. It still gets 416 when none of
  its ranges is satisfiable.
- A syntactically invalid Range is ignored (200), as section 14.2 allows.
- A zero-length object has no byte to point at: a suffix range on it (satisfiable per 14.1.1)
  is answered 200 with the empty body; any other range is 416.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import BinaryIO, Protocol
from urllib.parse import quote

from aiohttp import web

from avidence.storage.base import LocalFiles, Store
from avidence.storage.errors import StoreError

from .errors import RangeNotSatisfiable
from .streams import read_ahead

SENDFILE_PIECE = 16 * 1024 * 1024  # checks (revocation, budget) run between pieces

log = logging.getLogger("avidence.media")

# Digits beyond this are no real offset (2**63 has 19); refusing them keeps parsing cheap.
_MAX_DIGITS = 19
_SPEC = re.compile(r"^([0-9]*)-([0-9]*)$")  # RFC 9110 DIGIT: ASCII only, see digits.py
_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
_MIME = re.compile(rf"^({_TOKEN})/({_TOKEN})$")

# Browsers need a right Content-Type to play; extensions our recorders write that the platform's
# table may lack or name differently.
_BY_EXTENSION = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".ts": "video/mp2t",
    ".m2ts": "video/mp2t",
    ".mpg": "video/mpeg",
    ".avi": "video/x-msvideo",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".flac": "audio/flac",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
}


@dataclass(slots=True, frozen=True)
class Representation:
    """What is served: the object's key, size and validators."""

    key: str
    size: int
    etag: str  # a strong entity-tag, quoted: the object is immutable and content-addressed
    last_modified: datetime
    content_type: str


@dataclass(slots=True, frozen=True)
class ByteRange:
    start: int
    end: int  # exclusive

    @property
    def length(self) -> int:
        return self.end - self.start


def content_type(filename: str, declared: str = "") -> str:
    """The type to serve: audio, video or raster image, else application/octet-stream.

    Served inline from our own origin, an uploader-declared `text/html` or `image/svg+xml` would
    run as a page of ours; only types a browser treats as passive media get through."""
    candidates = [declared.strip().lower()]
    suffix = ("." + filename.rsplit(".", 1)[-1].lower()) if "." in filename else ""
    candidates.append(_BY_EXTENSION.get(suffix, ""))
    candidates.append((mimetypes.guess_type(filename)[0] or "").lower())
    for candidate in candidates:
        match = _MIME.match(candidate)
        if match and match.group(1) in ("audio", "video", "image") and "svg" not in candidate:
            return candidate
    return "application/octet-stream"


def extension(kind: str) -> str:
    """The usual file name suffix of a content type (`.mp4` for video/mp4), or ''."""
    for suffix, known in _BY_EXTENSION.items():
        if known == kind:
            return suffix
    return mimetypes.guess_extension(kind) or ""


def disposition(kind: str, filename: str) -> str:
    """`attachment` or `inline` with an ASCII fallback name and the UTF-8 one (RFC 6266 4.3)."""
    name = filename.replace("/", "_").replace("\\", "_") or "evidence"
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\%' else "_" for c in name)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def parse_ranges(header: str, size: int) -> list[ByteRange] | None:
    """The satisfiable ranges of a `Range: bytes=...` value; None when the header is to be
    ignored (another unit, bad syntax). An empty list means nothing is satisfiable."""
    unit, sep, spec_list = header.partition("=")
    # RFC 9110 14.1: "range units are compared case-insensitively".
    if not sep or unit.strip().lower() != "bytes":
        return None
    ranges: list[ByteRange] = []
    specs = [s.strip() for s in spec_list.split(",")]
    if not any(specs):
        return None
    for spec in specs:
        if not spec:
            continue  # RFC 9110 5.6.1: recipients accept empty list elements
        match = _SPEC.match(spec)
        if match is None:
            return None
        first, last = match.groups()
        if len(first) > _MAX_DIGITS or len(last) > _MAX_DIGITS or not (first or last):
            return None
        if first:
            start = int(first)
            if last and int(last) < start:
                return None  # RFC 9110 14.1.1: invalid if last-pos < first-pos
            # "satisfiable if ... an int-range with a first-pos that is less than the current
            # length of the selected representation"
            if start < size:
                end = size if not last else min(int(last) + 1, size)
                ranges.append(ByteRange(start, end))
        else:
            suffix = int(last)
            # "... or a suffix-range with a non-zero suffix-length"
            if suffix > 0:
                ranges.append(ByteRange(max(0, size - suffix), size))
    return ranges


def if_range_matches(value: str, rep: Representation) -> bool:
    """RFC 9110 13.1.5: the Range applies only while the validator still matches, compared
    strongly; a weak entity-tag never matches."""
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == rep.etag
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):  # a year of 11 digits overflows
        return False
    if when.tzinfo is None:
        return False
    return when == rep.last_modified.replace(microsecond=0)


def select(request: web.BaseRequest, rep: Representation) -> ByteRange | None:
    """The one range to send as 206, or None for the whole representation; raises 416."""
    header = request.headers.get("Range")
    # RFC 9110 14.2: "A server MUST ignore a Range header field received with a request method
    # that is unrecognized or for which range handling is not defined" (only GET defines it).
    if header is None or request.method != "GET":
        return None
    if_range = request.headers.get("If-Range")
    # RFC 9110 13.1.5: "if the validator does not match ... the server MUST ignore the Range".
    if if_range is not None and not if_range_matches(if_range, rep):
        return None
    ranges = parse_ranges(header, rep.size)
    if ranges is None:
        return None
    if not ranges:
        # RFC 9110 15.5.17: a 416 "SHOULD generate a Content-Range header field specifying the
        # current length of the selected representation".
        raise RangeNotSatisfiable(
            f"no satisfiable range in {header[:100]!r} for {rep.size} bytes",
            headers={"Content-Range": f"bytes */{rep.size}", "Accept-Ranges": "bytes"},
        )
    if len(ranges) > 1 or rep.size == 0:
        return None  # see the module docstring
    return ranges[0]


def headers_for(rep: Representation, chosen: ByteRange | None) -> dict[str, str]:
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": rep.etag,
        "Last-Modified": format_datetime(rep.last_modified.astimezone(UTC), usegmt=True),
        "Content-Type": rep.content_type,
        "Cache-Control": "no-store",
    }
    if chosen is not None:
        # RFC 9110 14.4: "Content-Range: bytes 42-1233/1234" (last-pos inclusive).
        headers["Content-Range"] = f"bytes {chosen.start}-{chosen.end - 1}/{rep.size}"
    return headers


Progress = Callable[[int], None]
StopCheck = Callable[[], Awaitable[bool]]


class Budget(Protocol):
    """A limit on the bytes a response may send, shared with other responses (a view's byte
    budget): bytes are taken before they are written, what was not written is given back."""

    async def check(self) -> None:
        """For an answer with no body (HEAD, an empty object, 416): raise an ApiError when
        the budget would allow nothing, as `start` would have."""

    async def start(self, ahead: int) -> None:
        """Before the headers: raise an ApiError when nothing at all may be sent."""

    async def take(self, wanted: int, *, ahead: int) -> int:
        """How many of the next `wanted` bytes may go (`ahead`: what the response still plans)."""

    async def finish(self) -> None:
        """The response ended: give back what was taken and not sent."""


@dataclass(slots=True)
class Outcome:
    """What a stream did, for the audit log."""

    status: int
    start: int
    planned: int
    sent: int = 0
    stopped: bool = False  # ended by `should_stop`
    aborted: bool = False  # the client went away


async def stream(
    request: web.Request,
    store: Store,
    rep: Representation,
    *,
    extra_headers: dict[str, str] | None = None,
    on_bytes: Progress | None = None,
    should_stop: StopCheck | None = None,
    budget: Budget | None = None,
) -> tuple[web.StreamResponse, Outcome]:
    """Answer a GET or HEAD for `rep`: 200, 206 or 416, with the body streamed from `store`.

    `on_bytes` is told of every chunk written; `should_stop` is awaited between chunks and ends
    the response early (the connection is closed, so the client sees a short body, never a
    complete-looking one). With a `budget`, no byte is written before it was taken from it; a
    budget that runs out ends the response early the same way."""
    try:
        chosen = select(request, rep)
    except RangeNotSatisfiable:
        if budget is not None:
            await budget.check()
        raise
    start, length = (chosen.start, chosen.length) if chosen else (0, rep.size)
    outcome = Outcome(status=206 if chosen else 200, start=start, planned=length)
    response = web.StreamResponse(status=outcome.status, headers=headers_for(rep, chosen))
    response.headers.update(extra_headers or {})
    response.content_length = length
    if request.method == "HEAD" or length == 0:
        if budget is not None:
            await budget.check()
        await response.prepare(request)
        return response, outcome
    if budget is not None:
        await budget.start(length)
    try:
        # Opened before the headers go out, so a missing object is still a clean error answer.
        pieces = await _pieces(request, response, store, rep.key, start=start, length=length)
    except BaseException:
        if budget is not None:
            await budget.finish()
        raise
    try:
        await response.prepare(request)
        async for piece in pieces:
            size, cut = piece.size, False
            if budget is not None:
                allowed = await budget.take(size, ahead=length - outcome.sent)
                if allowed < size:
                    size, cut = allowed, True
            try:
                if size:
                    await piece.send(size)
            except ConnectionError:
                outcome.aborted = True
                break
            outcome.sent += size
            if on_bytes is not None and size:
                on_bytes(size)
            if cut or (should_stop is not None and outcome.sent < length and await should_stop()):
                outcome.stopped = True
                response.force_close()
                break
    except StoreError as exc:
        if not response.prepared:
            raise
        # The headers are out: the only honest signal left is a short body on a closed connection.
        log.warning("media.read_failed key=%s sent=%s error=%s", rep.key, outcome.sent, exc)
        outcome.aborted = True
        response.force_close()
    finally:
        await pieces.aclose()
        if budget is not None:
            await asyncio.shield(budget.finish())
    return response, outcome


@dataclass(slots=True, frozen=True)
class Piece:
    """The next part of a body: its size, and how to send its first `n` bytes."""

    size: int
    send: Callable[[int], Awaitable[None]]


@dataclass(slots=True)
class Pieces:
    """A body's pieces and what they were opened from: `aclose` releases both, also when the
    pieces were never iterated (the client left before the headers went out)."""

    pieces: AsyncGenerator[Piece, None]
    release: Callable[[], Awaitable[object]]

    def __aiter__(self) -> AsyncGenerator[Piece, None]:
        return self.pieces

    async def aclose(self) -> None:
        await self.pieces.aclose()
        await self.release()


async def _pieces(
    request: web.Request,
    response: web.StreamResponse,
    store: Store,
    key: str,
    *,
    start: int,
    length: int,
) -> Pieces:
    """The body as pieces: zero-copy `sendfile` from a local store's file when the connection
    allows it (plain TCP), else chunks read from the store. Opened before it is iterated."""
    transport = request.transport
    if isinstance(store, LocalFiles) and transport is not None and not _is_tls(transport):
        file = await store.open_file(key)
        pieces = _file_pieces(transport, file, start=start, length=length)
        return Pieces(pieces, lambda: _closed(file))
    chunks = read_ahead(await store.read(key, start=start, length=length))
    return Pieces(_chunk_pieces(response, chunks), lambda: _close(chunks))


async def _closed(file: BinaryIO) -> None:
    file.close()  # a read-only regular file: closing it never waits on the disk


async def _close(chunks: AsyncIterator[bytes]) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()


def _is_tls(transport: asyncio.BaseTransport) -> bool:
    return transport.get_extra_info("sslcontext") is not None


async def _file_pieces(
    transport: asyncio.BaseTransport, file: BinaryIO, *, start: int, length: int
) -> AsyncGenerator[Piece, None]:
    loop = asyncio.get_running_loop()
    offset, end = start, start + length
    while offset < end:
        here = offset

        async def send(n: int, at: int = here) -> None:
            assert isinstance(transport, asyncio.WriteTransport)
            if transport.is_closing():
                raise ConnectionResetError("the client went away")
            await loop.sendfile(transport, file, at, n)

        size = min(SENDFILE_PIECE, end - offset)
        yield Piece(size, send)
        offset += size


async def _chunk_pieces(
    response: web.StreamResponse, chunks: AsyncIterator[bytes]
) -> AsyncGenerator[Piece, None]:
    async for chunk in chunks:

        async def send(n: int, data: bytes = chunk) -> None:
            await response.write(data[:n])

        yield Piece(len(chunk), send)
