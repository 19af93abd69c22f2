"""A store offering only the core `Store` contract, over a real local store.

avidence asks stores what they can do (`Truncator`, `VerifyingAppender`, `Concatenator`, ...)
and falls back to generic code when they cannot: a checksummed PATCH is held in the temporary
folder until its checksum matched, concatenation streams through the server. Both built-in
stores can do more, so the fallbacks are tested through this wrapper, which forwards the core
methods and nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

from avidence.storage.base import ObjectInfo, Store, Target


class CoreOnly:
    """The core methods of `inner`, and none of its optional capabilities."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.name = inner.name

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def create(self, key: str) -> Target:
        return await self.inner.create(key)

    async def offset(self, target: Target) -> int:
        return await self.inner.offset(target)

    async def append(
        self,
        target: Target,
        *,
        offset: int,
        chunks: AsyncIterable[bytes],
        expect: int | None = None,
    ) -> int:
        return await self.inner.append(target, offset=offset, chunks=chunks, expect=expect)

    async def finish(self, target: Target, *, size: int) -> ObjectInfo:
        return await self.inner.finish(target, size=size)

    async def abort(self, target: Target) -> None:
        await self.inner.abort(target)

    async def read(
        self, key: str, *, start: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        return await self.inner.read(key, start=start, length=length)

    async def stat(self, key: str) -> ObjectInfo:
        return await self.inner.stat(key)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)
