"""Reading an object that `encrypt-existing` may be converting from plain to sealed right now.

The converter (`sealconvert`) makes an object's key record first and only then swaps the plain
bytes for the sealed ones in one step, so a reader can meet a record over plain bytes, or plain
bytes that are sealed a moment later. A plain stream is therefore opened first (its first chunk
fetched: the file or version it reads is then fixed) and only afterwards confirmed to have been
plain when it opened; a reader never serves ciphertext as plaintext, nor refuses an object
because it was being converted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from .base import Store


async def _chained(first: bytes | None, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        if first is not None:
            yield first
        async for chunk in rest:
            yield chunk
    finally:
        await _close(rest)


async def _close(stream: AsyncIterator[bytes]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def plain_read(
    inner: Store,
    key: str,
    *,
    start: int,
    length: int | None,
    still_plain: Callable[[], Awaitable[bool]],
) -> AsyncIterator[bytes] | None:
    """The plain bytes `[start, start + length)` of `key`, or None when `still_plain`, asked
    after the stream opened, says the object was sealed meanwhile (read it sealed then)."""
    stream = await inner.read(key, start=start, length=length)
    try:
        first: bytes | None = await anext(stream)
    except StopAsyncIteration:
        first = None
    except BaseException:
        await _close(stream)
        raise
    if not await still_plain():
        await _close(stream)
        return None
    return _chained(first, stream)
