"""Sending byte ranges of one file as tus uploads, in parallel, resuming from the server's offset.

Each part is one upload (a partial one under concatenation) brought to its full length by
chunk-size PATCH requests streamed from disk. The Upload-Checksum of a chunk must precede its
body: the whole-file hashing pass computes it on its way through the file (`ChunkDigests`), and
a chunk that pass does not cover is hashed on its own while the previous chunk is on the wire.
Any failure re-reads the server's offset with HEAD, so a cut connection costs at most the chunk
in flight.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import files
from .errors import (
    BODY_INTERRUPTED,
    ClientError,
    FileChanged,
    IntegrityError,
    ProtocolError,
    Transient,
    UploadFailed,
    UploadGone,
)
from .files import FileIdentity
from .hashing import ChunkDigests
from .progress import FileProgress, Reporter
from .state import Part, UploadState
from .tus import Answer, TusClient

MiB = 1024 * 1024
# Partial uploads smaller than this cost more in round trips than they gain in parallelism.
MIN_PART = 4 * MiB

# A checksummed request counts whole or not at all (a cut one is discarded), so a cut costs
# what is in flight: parts sent together share the chunk size, down to this.
MIN_REQUEST = 8 * MiB

Prefetch = tuple[int, int, "asyncio.Task[bytes]"]


def plan_parts(size: int, parallel: int) -> list[Part]:
    """Split `size` bytes into at most `parallel` nearly equal ranges of at least MIN_PART."""
    count = max(1, min(parallel, math.ceil(size / MIN_PART)))
    step = math.ceil(size / count) if size else 0
    parts, start = [], 0
    for index in range(count):
        length = min(step, size - start)
        parts.append(Part(index=index, start=start, length=length))
        start += length
    return parts


def request_size(chunk_size: int, parts: int) -> int:
    """Bytes per PATCH when `parts` uploads run together: `chunk_size` in flight in all, so
    more parts do not make a cut connection or a killed client cost more to send again."""
    return max(min(chunk_size, MIN_REQUEST), chunk_size // max(parts, 1))


def chunk_grid(parts: list[Part], chunk_size: int) -> Iterator[tuple[int, int]]:
    """(file offset, length) of every chunk-size request that brings `parts` from zero to
    their full length: what the hashing pass computes checksums for ahead of the senders."""
    for part in parts:
        for offset in range(0, part.length, chunk_size):
            yield part.start + offset, min(chunk_size, part.length - offset)


@dataclass(slots=True)
class PartSender:
    """Brings every part of one file to its full length."""

    tus: TusClient
    reporter: Reporter
    identity: FileIdentity
    state: UploadState
    progress: FileProgress
    chunk_size: int
    checksum: str | None  # Upload-Checksum algorithm, None without the extension
    chunks: ChunkDigests | None  # the same checksums, computed by the whole-file hashing pass
    create: Callable[[Part], Awaitable[Answer]]  # POSTs the upload for a part
    save: Callable[[bool], None]  # save(force): persist the state (throttled unless forced)
    # The whole file's digests, awaited before the request that completes a plain upload so the
    # server checks them before the bytes become evidence; None when the server cannot.
    declare: Callable[[], Awaitable[dict[str, str]]] | None = None
    inflight: dict[int, int] = field(default_factory=dict)

    def update_progress(self) -> None:
        self.progress.sent = sum(p.offset + self.inflight.get(p.index, 0) for p in self.state.parts)

    async def send_all(self) -> None:
        """Run every part together; the first failure cancels the others and is raised as
        itself (not as an ExceptionGroup), preferring errors a person must act on."""
        try:
            async with asyncio.TaskGroup() as group:
                for part in self.state.parts:
                    group.create_task(self.send(part))
        except BaseExceptionGroup as group_error:
            errors = list(group_error.exceptions)
            for kind in (IntegrityError, FileChanged, ClientError):
                for error in errors:
                    if isinstance(error, kind):
                        raise error from None
            raise errors[0] from None

    async def send(self, part: Part) -> None:
        """Bring one upload to its full length, resuming from the server's offset."""
        state, tus = self.state, self.tus
        failures = 0
        offset: int | None = None
        last: Answer | None = None
        prefetch: Prefetch | None = None
        first_head = True

        def fail(exc: BaseException) -> float:
            nonlocal failures
            failures += 1
            if failures >= tus.retry.attempts:
                raise UploadFailed(f"part {part.index}: gave up after {failures} failures: {exc}")
            delay = tus.retry.delay(failures)
            self.reporter.event(
                "retry", Path(state.path).name, message=f"{exc}; retrying in {delay:.1f} s"
            )
            return delay

        try:
            while True:
                if part.url is None:
                    last = await tus.retrying("creating an upload", lambda: self.create(part))
                    part.url, part.offset, offset = last.url, 0, 0
                    first_head = False  # a new upload holds nothing from before
                    self.save(True)
                if offset is None:
                    try:
                        last = await tus.head(part.url)
                    except UploadGone:
                        part.url = None
                        continue
                    if last.length not in (None, part.length):
                        part.url = None  # not the upload we planned: make a new one
                        continue
                    server_offset = last.offset or 0
                    if first_head:
                        # Bytes confirmed before this run (beyond what the state file kept)
                        # are done, not speed.
                        self.progress.already_there(server_offset - part.offset)
                        first_head = False
                    offset = part.offset = server_offset
                    self.update_progress()
                if offset >= part.length:
                    if last is not None and (
                        last.state == "receiving" or (part.length == 0 and last.state is None)
                    ):
                        # Every byte is there but the server did not finish the upload (it
                        # crashed in between, or the part is empty): an empty PATCH finishes it.
                        await tus.patch(
                            part.url, offset=offset, length=0, body=_empty(), checksum=None
                        )
                    return
                length = min(self.chunk_size, part.length - offset)
                await asyncio.to_thread(files.check_stat, self.identity)
                checksum: tuple[str, bytes] | None = None
                if self.checksum is not None:
                    if prefetch is not None and prefetch[:2] == (offset, length):
                        digest = await prefetch[2]
                    else:
                        digest = await self._digest(part, offset, length)
                    checksum = (self.checksum, digest)
                    prefetch = self._prefetch(part, offset + length, prefetch)
                digests = None
                if self.declare is not None and offset + length == part.length:
                    digests = await self.declare()
                try:
                    last = await tus.patch(
                        part.url,
                        offset=offset,
                        length=length,
                        body=self._counted(part, offset, length),
                        checksum=checksum,
                        digests=digests,
                    )
                except UploadGone:
                    part.url, part.offset = None, 0
                    continue
                except Transient as exc:  # network, 5xx, 423, 409 (OffsetConflict), 460
                    offset = None
                    await asyncio.sleep(fail(exc))
                    continue
                except ProtocolError as exc:
                    # avidence answers `body_interrupted` when a body broke off or stalled: it
                    # kept what arrived, so HEAD and go on. Codes, never messages, decide.
                    if exc.code != BODY_INTERRUPTED:
                        raise
                    offset = None
                    await asyncio.sleep(fail(exc))
                    continue
                finally:
                    self.inflight[part.index] = 0
                if last.evidence_id and state.mode == "single":
                    state.evidence_id = last.evidence_id  # avidence without concatenation
                new_offset = last.offset if last.offset is not None else offset
                if new_offset > offset:
                    failures = 0
                offset = part.offset = new_offset
                self.update_progress()
                self.save(False)
        finally:
            if prefetch is not None and not prefetch[2].done():
                prefetch[2].cancel()
                await asyncio.gather(prefetch[2], return_exceptions=True)

    async def _digest(self, part: Part, offset: int, length: int) -> bytes:
        assert self.checksum is not None
        start = part.start + offset
        if self.chunks is not None and self.chunks.algorithm == self.checksum:
            found = await self.chunks.get(start, length)
            if found is not None:
                return found
        return await files.digest_range(
            self.state.path, start=start, length=length, algorithm=self.checksum
        )

    def _prefetch(self, part: Part, offset: int, old: Prefetch | None) -> Prefetch | None:
        """Checksum the next chunk while this one is on the wire."""
        if old is not None and not old[2].done():
            old[2].cancel()
        if offset >= part.length:
            return None
        length = min(self.chunk_size, part.length - offset)
        return offset, length, asyncio.create_task(self._digest(part, offset, length))

    async def _counted(self, part: Part, offset: int, length: int) -> AsyncIterator[bytes]:
        sent = 0
        async for block in files.read_range(
            self.state.path, start=part.start + offset, length=length
        ):
            sent += len(block)
            self.inflight[part.index] = sent
            self.update_progress()
            yield block


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""
