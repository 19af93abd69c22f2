"""Byte streams between sockets, threads and stores."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


async def read_ahead(source: AsyncIterator[bytes], *, depth: int = 2) -> AsyncIterator[bytes]:
    """`source`, read by a task up to `depth` blocks ahead of the consumer.

    Receiving and processing overlap: a request body keeps being drained from the socket while
    the previous block is hashed and written in threads; a store read fetches the next block
    while the previous one is sent. Memory is `depth` blocks more. Errors of `source` surface
    in order, after the blocks read before them; closing this stream closes `source`."""
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=depth)

    async def pump() -> None:
        try:
            async for item in source:
                await queue.put(item)
        except Exception as exc:
            await queue.put(exc)
            return
        finally:
            close = getattr(source, "aclose", None)
            if close is not None:
                await close()
        await queue.put(None)

    task = asyncio.create_task(pump(), name="body-read-ahead")
    try:
        while True:
            item = await queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
