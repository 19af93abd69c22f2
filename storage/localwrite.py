"""Appending to a local staging file: batched, fsynced at checkpoints, cut back on failure."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import AsyncIterable

from .errors import StoreError, StoreFull, StoreUnavailable
from .writeback import WriteBehind

BATCH = 1024 * 1024
# Long appends are fsynced every CHECKPOINT bytes: the durable prefix a write error falls back to.
CHECKPOINT = 64 * 1024 * 1024


def os_error(exc: OSError, key: str | None) -> StoreError:
    """The one mapping of unexpected OS errors: full disk or quota, else unavailable."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFull(f"local store is full: {exc.strerror}", key=key)
    return StoreUnavailable(f"local store I/O failed: {exc}", key=key)


def pwrite_all(fd: int, data: bytes | bytearray | memoryview, pos: int) -> int:
    """Write all of `data` at `pos` (pwrite may write less than asked); return the end."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, pos)
        view, pos = view[n:], pos + n
    return pos


class Appender:
    """One append into an open staging file: chunks coalesced into BATCH writes, their disk
    write queued as they go (`WriteBehind`), fsync every CHECKPOINT bytes and at the end.

    On a write error the file is cut back to the last fsynced position, so a full disk leaves no
    half-written batch and `offset` reports only whole, durable bytes. Thread work is shielded
    from cancellation and the descriptor closed only after it: a cancelled request must never
    leave a thread writing through a descriptor number reused by someone else."""

    def __init__(self, fd: int, *, key: str, pos: int, fsync: bool) -> None:
        self.fd, self.key, self.pos, self.durable, self.fsync = fd, key, pos, pos, fsync
        self._busy: asyncio.Future[int] | None = None
        self._behind = WriteBehind(fd, pos) if fsync else None

    async def append(self, chunks: AsyncIterable[bytes]) -> int:
        buf = bytearray()
        iterator = aiter(chunks)
        while True:
            try:
                chunk = await anext(iterator)
            except StopAsyncIteration:
                break
            except BaseException:
                # The sender went away: keep what arrived, durably, and let the caller see why.
                await self._write(buf)
                raise
            if not buf and len(chunk) >= BATCH:
                await self._write(chunk)
            elif chunk:
                buf += chunk
                if len(buf) >= BATCH:
                    data, buf = buf, bytearray()
                    await self._write(data)
        await self._write(buf, last=True)
        return self.pos

    async def _write(self, data: bytes | bytearray, *, last: bool = False) -> None:
        sync = last or not data or self.pos + len(data) - self.durable >= CHECKPOINT
        loop = asyncio.get_running_loop()
        self._busy = loop.run_in_executor(None, self._write_sync, data, self.pos, sync)
        try:
            self.pos = await asyncio.shield(self._busy)
        except OSError as exc:
            raise os_error(exc, self.key) from exc
        if sync:
            self.durable = self.pos

    def _write_sync(self, data: bytes | bytearray, pos: int, sync: bool) -> int:
        try:
            pos = pwrite_all(self.fd, data, pos)
            if self._behind is not None:  # None: fsync is off
                if sync:
                    os.fsync(self.fd)
                    self._behind.reset(pos)
                else:
                    self._behind.written(pos)
        except OSError:
            try:
                os.ftruncate(self.fd, self.durable)
                if self.fsync:
                    os.fsync(self.fd)
            except OSError:
                pass  # best effort: the write error is the one to report
            if self._behind is not None:
                self._behind.reset(self.durable)
            raise
        return pos

    def close(self) -> None:
        if self._busy is None or self._busy.done():
            os.close(self.fd)
        else:
            self._busy.add_done_callback(self._close_after)

    def _close_after(self, busy: asyncio.Future[int]) -> None:
        if not busy.cancelled():
            busy.exception()  # mark retrieved: the cancelled append had nobody left to tell
        os.close(self.fd)
