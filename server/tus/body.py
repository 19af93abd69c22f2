"""Reading a request body as blocks: bounded, timed, and never more than the upload may hold."""

from __future__ import annotations

import asyncio
import errno
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import ClientPayloadError, StreamReader

from avidence.storage.digests import Hasher, new_hasher

from ..errors import ChecksumMismatch, InsufficientStorage, TooLarge
from .headers import Checksum

BLOCK = 1024 * 1024
# Checksummed bodies up to this size stay in memory while they are verified; larger ones spill.
SPOOL_MEMORY = 8 * 1024 * 1024
# A body must bring at least this much in every `read_timeout` window: a client dripping a byte
# a second never lets a read stall, yet would hold the upload and a connection forever.
MIN_BYTES_PER_WINDOW = 1024


class ClientGone(Exception):
    """The client's connection broke mid-body; unlike a lost catalog or store connection,
    this is the client's to retry."""


class BodyTooLong(TooLarge):  # type: ignore[misc, valid-type]
    """More bytes arrived than the upload has room for."""


def received_before_break(content: StreamReader) -> bytes:
    """The bytes `content` had received when its connection broke.

    aiohttp raises the connection's error ahead of the bytes it buffered before it (its reads
    check the error first), and those can be 100 KiB or more. tus asks the server to keep as
    much as it received, so they are taken from the buffer directly; `_read_nowait` is the one
    read that does not check the error."""
    read = getattr(content, "_read_nowait", None)
    if read is None:  # a reader without aiohttp's buffer: nothing held back to take
        return b""
    data = read(-1)
    return data if isinstance(data, bytes) else b""


async def blocks(
    content: StreamReader, *, limit: int, read_timeout: float, block: int = BLOCK
) -> AsyncIterator[bytes]:
    """Yield the body in blocks of about `block` bytes, at most `limit` bytes in all.

    A broken connection ends the body with ClientGone once every byte received before the
    break was yielded (tus: keep as much as was received). A read that stalls for
    `read_timeout` seconds, or a window of that length bringing fewer than MIN_BYTES_PER_WINDOW
    bytes, ends the body with TimeoutError, so a dead or dripping client cannot hold an upload;
    bytes past `limit` raise BodyTooLong after the allowed ones were yielded."""
    pieces: list[bytes] = []
    held = 0  # bytes in `pieces`
    total = 0  # bytes yielded
    loop = asyncio.get_running_loop()
    window_start, window_bytes = loop.time(), 0
    while True:
        try:
            async with asyncio.timeout(read_timeout):
                chunk = await content.readany()
        except (ConnectionError, ClientPayloadError) as exc:
            rest = received_before_break(content)
            pieces.append(rest[: max(0, limit - total - held)])
            kept = b"".join(pieces)
            if kept:
                yield kept
            if len(rest) > limit - total - held:
                raise BodyTooLong("the body is longer than the upload's remaining length") from exc
            raise ClientGone(type(exc).__name__) from exc
        if not chunk:
            break
        if total + held + len(chunk) > limit:
            pieces.append(chunk[: limit - total - held])
            rest = b"".join(pieces)
            if rest:
                yield rest
            raise BodyTooLong("the body is longer than the upload's remaining length")
        pieces.append(chunk)
        held += len(chunk)
        window_bytes += len(chunk)
        if loop.time() - window_start >= read_timeout:
            if window_bytes < MIN_BYTES_PER_WINDOW:
                if held:
                    yield b"".join(pieces)  # keep what arrived, as for a stall
                raise TimeoutError("the body arrives slower than the minimum rate")
            window_start, window_bytes = loop.time(), 0
        if held >= block:
            # One join per block: each byte is copied once here, not once per chunk received.
            yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
            total += held
            pieces, held = [], 0
    if pieces:
        yield b"".join(pieces)


class Spool:
    """A checksummed PATCH body held aside until its checksum is known to match.

    tus checksum extension: "the Server MUST ... discard the chunk" on a mismatch, so the bytes
    must not reach the store before the whole request was checked."""

    def __init__(self, spool_dir: Path) -> None:
        self._file = tempfile.SpooledTemporaryFile(
            max_size=SPOOL_MEMORY, mode="w+b", dir=str(spool_dir)
        )
        self.length = 0

    async def fill(self, source: AsyncIterator[bytes], checksum: Checksum) -> None:
        hasher = new_hasher(checksum.algorithm)
        async for chunk in source:
            await asyncio.to_thread(self._write_and_hash, hasher, chunk)
        if hasher.digest() != checksum.digest:
            raise ChecksumMismatch(
                f"Upload-Checksum {checksum.algorithm} does not match the {self.length} bytes "
                "received; they were discarded"
            )

    def _write_and_hash(self, hasher: Hasher, chunk: bytes) -> None:
        hasher.update(chunk)
        try:
            self._file.write(chunk)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InsufficientStorage(
                    "no room left in the server's temporary folder; retry later"
                ) from None
            raise
        self.length += len(chunk)

    async def replay(self) -> AsyncIterator[bytes]:
        self._file.seek(0)
        while True:
            chunk = await asyncio.to_thread(self._file.read, BLOCK)
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        self._file.close()
