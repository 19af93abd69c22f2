"""The last, not yet full segment of a sealed upload, kept aside sealed until it fills.

An upload target only ever receives whole sealed segments, so its length alone says how many
segments it holds (`n`). The plaintext that does not fill segment `n` yet is never written in
the clear: it is sealed and stored as the finished object `<key>.t<n>-<c>`, where `c` counts the
versions of that tail (each append that ends inside the segment writes the next version, whole
or not at all, so a crash keeps the previous one). A tail whose `n` no longer matches the
target's segment count is stale: its bytes are in the target now. Stale tails are deleted when
their segment is written, when the upload finishes and when it is aborted; one left by a crash
holds nothing but sealed bytes under a key that dies with the object's record.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from .base import Store
from .errors import NotFound
from .sealformat import Sealer

MAX_VERSIONS = 100_000  # a bound on the probe; a segment is written long before


def tail_key(key: str, segment: int, version: int) -> str:
    return f"{key}.t{segment}-{version}"


@dataclass(slots=True, frozen=True)
class Tail:
    """The current tail of segment `segment`: its plaintext and version (-1: none yet)."""

    segment: int
    version: int = -1
    data: bytes = b""


async def _read(store: Store, key: str) -> bytes:
    out = bytearray()
    async for chunk in await store.read(key):
        out += chunk
    return bytes(out)


async def load(store: Store, sealer: Sealer, *, segment: int) -> Tail:
    """The newest tail of `segment` (versions are probed upwards from 0)."""
    version = -1
    for candidate in range(MAX_VERSIONS):
        try:
            await store.stat(tail_key(sealer.key, segment, candidate))
        except NotFound:
            break
        version = candidate
    if version < 0:
        return Tail(segment)
    blob = await _read(store, tail_key(sealer.key, segment, version))
    return Tail(segment, version, sealer.open_tail(segment, blob))


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def save(store: Store, sealer: Sealer, *, previous: Tail, segment: int, data: bytes) -> Tail:
    """Store `data` as the next tail of `segment`. Older versions stay until the segment is
    written (`drop`): the probe in `load` walks up from version 0."""
    version = previous.version + 1 if previous.segment == segment else 0
    blob = sealer.seal_tail(segment, data)
    name = tail_key(sealer.key, segment, version)
    target = await store.create(name)
    try:
        await store.append(target, offset=0, chunks=_chunks(blob))
        await store.finish(target, size=len(blob))
    except BaseException:
        await store.abort(target)
        raise
    return Tail(segment, version, data)


async def drop(store: Store, key: str, tail: Tail) -> None:
    """Delete every version of `tail`'s segment (idempotent)."""
    for version in range(tail.version, -1, -1):
        try:
            await store.delete(tail_key(key, tail.segment, version))
        except NotFound:
            continue
