"""Ranged reads of sealed objects: only the segments a range touches are fetched and opened.

A segment is opened (authenticated) before any of its bytes are yielded, so a range that
touches an altered, moved or cut segment ends with `Tampered` instead of serving it; the first
segment is opened by the await, before the first byte, as `Store.read` promises for errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

from .base import Store
from .errors import InvalidRange, Tampered
from .sealformat import HEADER, OVERHEAD, Sealer, plain_size

# Sealed bytes opened in one go on a worker thread rather than on the loop, from this size.
THREAD_OPENING = 256 * 1024
# Plaintext handed on in blocks of at least this much (the last one may be shorter).
YIELD_BLOCK = 1024 * 1024
# Plaintext pieces from this size go on as they are, not joined with their neighbours.
JOIN_BELOW = 256 * 1024


async def _segments(
    store: Store, sealer: Sealer, *, first: int, last: int, final: int, stored: int,
    name: str, base: int,
) -> AsyncGenerator[tuple[int, bytes | bytearray], None]:  # fmt: skip
    """(index, plaintext) of runs of consecutive segments, together `first`..`last`; `final`
    is the object's last index. A run is as long as the store's chunk allows."""
    step = sealer.step
    begin = HEADER.size + first * step
    end = min(HEADER.size + (last + 1) * step, stored)
    buffer = bytearray()  # a segment split across chunks; whole ones are opened in place
    index = first
    try:
        pieces = await store.read(name, start=base + begin, length=end - begin)
    except InvalidRange:
        raise Tampered("the sealed object is shorter than recorded", key=sealer.key) from None
    async for chunk in pieces:
        view, at = memoryview(chunk), 0
        if buffer:
            at = min(step - len(buffer), len(view))
            buffer += view[:at]
            if len(buffer) == step and index < final:
                yield index, sealer.open_segment(index, bytes(buffer), final=False)
                index += 1
                buffer.clear()
        count = 0 if buffer else min((len(view) - at) // step, final - index)
        if count:
            # A chunk's whole segments are opened in one go, on a worker thread when there are
            # many (the cipher lets go of the GIL), so a long read leaves the loop free.
            blob = view[at : at + count * step]
            if count * step >= THREAD_OPENING:
                opened = await asyncio.to_thread(sealer.open_segments, index, blob)
            else:
                opened = sealer.open_segments(index, blob)
            yield index, opened
            index += count
            at += count * step
        buffer += view[at:]
    if index <= last:  # the final segment (shorter than a full one), or a cut object
        yield index, sealer.open_segment(index, bytes(buffer), final=index == final)


async def read(
    store: Store, sealer: Sealer, *, stored: int, start: int, length: int | None,
    name: str | None = None, base: int = 0,
) -> AsyncIterator[bytes]:  # fmt: skip
    """Plaintext `[start, start + length)` of the sealed object of `stored` bytes; of a run of
    a joined object (`sealjoin`) when the run lies at `base` in the stored object `name`."""
    segment = sealer.header.segment
    size = plain_size(stored, segment=segment)
    if start < 0 or start > size or (length is not None and length < 0):
        raise InvalidRange(f"range {start}+{length} outside 0..{size}", key=sealer.key)
    end = size if length is None else min(size, start + length)
    final = (stored - HEADER.size - OVERHEAD) // sealer.step
    if end <= start:
        return empty()
    first, last = start // segment, (end - 1) // segment
    pieces = _segments(
        store, sealer, first=first, last=last, final=final, stored=stored,
        name=sealer.key if name is None else name, base=base,
    )  # fmt: skip
    index, data = await anext(pieces)  # the first segment is checked before any byte goes

    async def stream() -> AsyncIterator[bytes]:
        nonlocal index, data
        # Single segments (a store handing on small chunks) are joined into blocks of about
        # YIELD_BLOCK: one 64 KiB segment per write would cost the consumer (queue, byte
        # budget, socket write) 16 times over. A run of segments opened together goes on as it
        # is: joining it again would copy it into fresh memory, which cost a seek more than
        # opening its segments did.
        block: list[bytes | bytearray] = []
        held = 0
        try:
            while True:
                base = index * segment
                lo, hi = max(start - base, 0), min(end - base, len(data))
                if lo < hi:
                    piece = data if (lo, hi) == (0, len(data)) else data[lo:hi]
                    if len(piece) >= JOIN_BELOW:
                        if block:
                            yield _joined(block)
                            block.clear()
                            held = 0
                        yield piece  # type: ignore[misc]  # bytes-like: a run's own buffer
                    else:
                        block.append(piece)
                        held += len(piece)
                        if held >= YIELD_BLOCK:
                            yield _joined(block)
                            block.clear()
                            held = 0
                index += max(1, -(-len(data) // segment))  # the segments this run held
                if index > last:
                    break
                index, data = await anext(pieces)
            if block:
                yield _joined(block)
        finally:
            await pieces.aclose()

    return stream()


def _joined(block: list[bytes | bytearray]) -> bytes:
    return bytes(block[0]) if len(block) == 1 else b"".join(block)


async def empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator
