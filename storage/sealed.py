"""A store that seals every object it keeps in another store: envelope encryption at rest.

`SealedStore` wraps any `Store` (local folder, S3) and keeps the contract, so tus, viewing,
jobs and purges work unchanged above it; only ciphertext reaches the backend. Each object gets a
fresh data key (`sealkeys`), its bytes are cut into segments sealed with AES-256-GCM or SM4-GCM
(`sealformat`), and a ranged read opens only the segments it touches (`sealread`); a joined
upload adopts its parts' sealed bytes as runs under their own keys (`sealjoin`). Digests stay
the caller's business and so stay over the plaintext.

Uploads: a target receives whole sealed segments only, so its length says how far it got; the
plaintext that does not fill a segment yet is kept sealed beside it (`sealtail`). The backend
must be able to make an append all or nothing (`VerifyingAppender`, S3) or cut a target back
(`Truncator`, the local folder), so that a crash never leaves half a segment that counts.
Appends into an all-or-nothing backend go in batches, so a crash loses at most one batch.

Sealed and plain objects live side by side (a store that was plain before): a sealed upload's
handle starts with `HANDLE_PREFIX`, a sealed object with the format's magic, and a sealed object
whose key record is gone was shredded and reads as `NotFound`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, cast

from . import sealjoin, sealkeys, sealswap, sealtail
from .base import (
    Concatenator,
    LockSupport,
    ObjectInfo,
    Retainer,
    Store,
    Target,
    Truncator,
    VerifyingAppender,
)
from .digests import MultiDigest
from .errors import (
    AlreadyExists,
    KeysUnavailable,
    NotFound,
    ObjectLocked,
    OffsetMismatch,
    StoreError,
    Tampered,
)
from .sealformat import HEADER, MAGIC, OVERHEAD, SEGMENT, Header, Sealer, Suite
from .sealkeys import KeyRecord, KeyRing, KeyWrapping
from .sealtail import Tail

_log = logging.getLogger("avidence.storage.sealed")

HANDLE_PREFIX = "sealed1:"
# A finished object's key record is read from the catalog at most once per RECORD_TTL seconds
# per process (up to RECORD_CACHE objects), so seeks do not wait on it. `delete` here forgets
# it at once; a purge in another process is seen within RECORD_TTL (and the server refuses a
# purged item before it reads any byte).
RECORD_TTL = 2.0
RECORD_CACHE = 4096
# Sealed bytes per all-or-nothing append: what a crash may lose of one request. Each batch
# ends inside a backend part (S3 keeps that as its tail and sends it again), so small batches
# cost upload speed: 16 MiB ran at 0.4x on SeaweedFS, 256 MiB near one per request.
BATCH = 256 * 1024 * 1024
# Plaintext sealed in one go on a worker thread rather than on the loop, from this size.
THREAD_SEALING = 256 * 1024
# Plaintext hashed per thread hop when a join computes the digests of its parts.
DIGEST_BLOCK = 4 * 1024 * 1024


@dataclass(slots=True)
class _State:
    """Where a sealed target stands: stored length, whole segments, junk after them, tail."""

    stored: int
    segments: int
    junk: int
    tail: Tail

    def plain(self, segment: int) -> int:
        return self.segments * segment + len(self.tail.data)


@dataclass(slots=True)
class _Progress:
    """What the sealing stream did: whole segments sent, plaintext left over, source error."""

    segments: int
    leftover: bytearray = field(default_factory=bytearray)
    error: BaseException | None = None


def _inner_handle(target: Target) -> Target | None:
    """The backend's target for a sealed one, None for a plain (pre-encryption) target."""
    if not target.handle.startswith(HANDLE_PREFIX):
        return None
    return Target(target.key, target.handle[len(HANDLE_PREFIX) :])


class SealedStore:
    """`Store` + `Concatenator` + `VerifyingAppender` that seals everything it keeps in `inner`."""

    def __init__(
        self,
        inner: Store,
        *,
        ring: KeyRing,
        kek: KeyWrapping,
        suite: Suite = Suite.INTERNATIONAL,
        segment: int = SEGMENT,
        batch: int = BATCH,
    ) -> None:
        if not isinstance(inner, Truncator | VerifyingAppender) or not isinstance(
            inner, Concatenator
        ):
            raise TypeError(
                f"store {inner.name!r} cannot be sealed: it cannot cut back, verify "
                "appends or concatenate"
            )
        self.inner, self.ring, self.kek = inner, ring, kek
        self.suite, self.segment, self.batch = suite, segment, batch
        self.name = inner.name
        self._finished: OrderedDict[str, tuple[float, KeyRecord]] = OrderedDict()

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    # -- keys ------------------------------------------------------------------------------

    async def _record(self, target: Target) -> KeyRecord:
        found = await self.ring.get(target.key)
        if found is None:
            inner = _inner_handle(target)
            assert inner is not None
            await self.inner.offset(inner)  # NotFound: the target is gone (aborted) too
            raise KeysUnavailable("the data key of this sealed upload is missing", key=target.key)
        return found

    async def _target_sealer(self, target: Target) -> Sealer:
        return sealkeys.sealer(await self._record(target), self.kek)

    # -- upload targets --------------------------------------------------------------------

    async def create(self, key: str) -> Target:
        inner = await self.inner.create(key)
        record = sealkeys.new_record(key, kek=self.kek, suite=self.suite, segment=self.segment)
        try:
            await self.ring.put(record)
        except BaseException:
            await self.inner.abort(inner)
            raise
        return Target(key, HANDLE_PREFIX + inner.handle)

    async def _state(self, inner: Target, sealer: Sealer) -> _State:
        stored = await self.inner.offset(inner)
        if stored < HEADER.size:
            segments, junk = 0, stored
        else:
            segments, junk = divmod(stored - HEADER.size, sealer.step)
        tail = await sealtail.load(self.inner, sealer, segment=segments)
        return _State(stored, segments, junk, tail)

    async def offset(self, target: Target) -> int:
        inner = _inner_handle(target)
        if inner is None:
            return await self.inner.offset(target)
        sealer = await self._target_sealer(target)
        return (await self._state(inner, sealer)).plain(self.segment)

    async def _start(self, target: Target, inner: Target, offset: int) -> tuple[Sealer, _State]:
        """Sealer and state of a target about to grow: offset checked, junk cut off."""
        sealer = await self._target_sealer(target)
        state = await self._state(inner, sealer)
        if offset != state.plain(sealer.header.segment):
            raise OffsetMismatch(
                "append at the wrong offset",
                key=target.key,
                expected=state.plain(sealer.header.segment),
                got=offset,
            )
        if state.junk:
            if not isinstance(self.inner, Truncator):
                raise StoreError("the sealed upload ends in a final segment", key=target.key)
            await self.inner.truncate(inner, offset=state.stored - state.junk)
            state.stored -= state.junk
            state.junk = 0
        return sealer, state

    async def _sealing(
        self, sealer: Sealer, state: _State, chunks: AsyncIterable[bytes], progress: _Progress,
        *, keep_on_error: bool,
    ) -> AsyncIterator[bytes]:  # fmt: skip
        """The sealed bytes of tail + `chunks`: whole segments only; the rest stays in
        `progress.leftover`. With `keep_on_error` a broken source ends the stream cleanly (what
        arrived is kept) and its exception waits in `progress.error`.

        A chunk's whole segments are sealed into one buffer, on a worker thread when there are
        many (the cipher lets go of the GIL), while the buffer before it is being stored: on a
        loop that also receives the request, sealing then costs little of its time."""
        if state.stored == 0:
            yield sealer.header.pack()
        size = sealer.header.segment
        buffer = progress.leftover
        buffer += state.tail.data
        ahead: deque[tuple[int, asyncio.Future[bytearray]]] = deque()  # (segments, sealing)
        scheduled = progress.segments
        try:
            try:
                async for chunk in chunks:
                    view, at, pieces = memoryview(chunk), 0, list[bytes | memoryview]()
                    if buffer:
                        at = min(size - len(buffer), len(view))
                        buffer += view[:at]
                        if len(buffer) == size:
                            pieces.append(bytes(buffer))
                            buffer.clear()
                    while not buffer and len(view) - at >= size:
                        pieces.append(view[at : at + size])
                        at += size
                    buffer += view[at:]
                    if pieces:
                        ahead.append((len(pieces), self._seal_pieces(sealer, scheduled, pieces)))
                        scheduled += len(pieces)
                    if len(ahead) > 1:
                        yield await self._landed(ahead, progress)
            except Exception as exc:
                if not keep_on_error:
                    raise
                progress.error = exc
            while ahead:
                yield await self._landed(ahead, progress)
        finally:
            for _, sealing in ahead:
                sealing.cancel()  # the store stopped taking bytes: nobody waits for these

    @staticmethod
    def _seal_pieces(
        sealer: Sealer, first: int, pieces: list[bytes | memoryview]
    ) -> asyncio.Future[bytearray]:
        if len(pieces) * sealer.header.segment >= THREAD_SEALING:
            return asyncio.ensure_future(asyncio.to_thread(sealer.seal_segments, first, pieces))
        done = asyncio.get_running_loop().create_future()
        done.set_result(sealer.seal_segments(first, pieces))
        return done

    @staticmethod
    async def _landed(
        ahead: deque[tuple[int, asyncio.Future[bytearray]]], progress: _Progress
    ) -> bytes:
        count, sealing = ahead[0]
        sealed = await sealing
        ahead.popleft()
        progress.segments += count
        return cast(bytes, sealed)  # a bytearray: every store takes it as bytes, uncopied

    async def _settle(self, sealer: Sealer, state: _State, progress: _Progress) -> int:
        """After the segments landed: keep the leftover as the new tail, drop stale tails."""
        if progress.leftover:
            await sealtail.save(
                self.inner, sealer, previous=state.tail,
                segment=progress.segments, data=bytes(progress.leftover),
            )  # fmt: skip
        if progress.segments != state.segments:
            await sealtail.drop(self.inner, sealer.key, state.tail)
        return progress.segments * sealer.header.segment + len(progress.leftover)

    async def append(
        self,
        target: Target,
        *,
        offset: int,
        chunks: AsyncIterable[bytes],
        expect: int | None = None,
    ) -> int:
        inner = _inner_handle(target)
        if inner is None:
            return await self.inner.append(target, offset=offset, chunks=chunks, expect=expect)
        sealer, state = await self._start(target, inner, offset)
        progress = _Progress(state.segments)
        sealed = self._sealing(sealer, state, chunks, progress, keep_on_error=True)
        if isinstance(self.inner, Truncator):
            hint = None if expect is None else self._sealed_length(state, expect)
            await self.inner.append(inner, offset=state.stored, chunks=sealed, expect=hint)
        else:
            hint = None if expect is None else self._sealed_length(state, expect)
            await self._append_batches(inner, state.stored, sealed, hint)
        new_offset = await self._settle(sealer, state, progress)
        if progress.error is not None:
            raise progress.error
        return new_offset

    def _sealed_length(self, state: _State, expect: int) -> int:
        whole = (len(state.tail.data) + expect) // self.segment
        return whole * (self.segment + OVERHEAD) + (HEADER.size if state.stored == 0 else 0)

    async def _append_batches(
        self, inner: Target, stored: int, sealed: AsyncIterator[bytes], expect: int | None
    ) -> None:
        """Feed `sealed` to an all-or-nothing backend `batch` bytes at a time."""
        assert isinstance(self.inner, VerifyingAppender)
        pending: list[bytes] = []
        done = False

        async def batch() -> AsyncIterator[bytes]:
            nonlocal done
            sent = 0
            while pending or not done:
                if pending:
                    blob = pending.pop()
                else:
                    try:
                        blob = await anext(sealed)
                    except StopAsyncIteration:
                        done = True
                        return
                if sent and sent + len(blob) > self.batch:
                    pending.append(blob)  # it opens the next batch
                    return
                sent += len(blob)
                yield blob

        while not done or pending:
            began = stored
            hint = min(expect, self.batch) if expect is not None and expect > 0 else None
            stored = await self.inner.append_verified(
                inner, offset=stored, chunks=batch(), accept=lambda: True, expect=hint
            )
            if expect is not None:
                expect -= stored - began

    async def append_verified(
        self,
        target: Target,
        *,
        offset: int,
        chunks: AsyncIterable[bytes],
        accept: Callable[[], bool],
        expect: int | None = None,
    ) -> int:
        inner = _inner_handle(target)
        if inner is None:
            return await self._plain_verified(target, offset, chunks, accept, expect)
        sealer, state = await self._start(target, inner, offset)
        progress = _Progress(state.segments)
        sealed = self._sealing(sealer, state, chunks, progress, keep_on_error=False)
        hint = None if expect is None else self._sealed_length(state, expect)
        if isinstance(self.inner, VerifyingAppender):
            await self.inner.append_verified(
                inner, offset=state.stored, chunks=sealed, accept=accept, expect=hint
            )
        else:
            assert isinstance(self.inner, Truncator)
            try:
                await self.inner.append(inner, offset=state.stored, chunks=sealed, expect=hint)
                kept = accept()
            except BaseException:
                await self.inner.truncate(inner, offset=state.stored)
                raise
            if not kept:
                await self.inner.truncate(inner, offset=state.stored)
                return offset
        if not accept():
            return offset  # refused: none of it counts, the old tail stands
        return await self._settle(sealer, state, progress)

    async def _plain_verified(
        self,
        target: Target,
        offset: int,
        chunks: AsyncIterable[bytes],
        accept: Callable[[], bool],
        expect: int | None,
    ) -> int:
        """A target begun before encryption was on: the backend's own way to refuse bytes."""
        if isinstance(self.inner, VerifyingAppender):
            return await self.inner.append_verified(
                target, offset=offset, chunks=chunks, accept=accept, expect=expect
            )
        assert isinstance(self.inner, Truncator)
        try:
            new_offset = await self.inner.append(
                target, offset=offset, chunks=chunks, expect=expect
            )
        except BaseException:
            await self.inner.truncate(target, offset=offset)
            raise
        if accept():
            return new_offset
        await self.inner.truncate(target, offset=offset)
        return offset

    async def finish(self, target: Target, *, size: int) -> ObjectInfo:
        inner = _inner_handle(target)
        if inner is None:
            return await self.inner.finish(target, size=size)
        await self._untaken(target.key)
        record = await self._record(target)
        sealer = sealkeys.sealer(record, self.kek)
        state = await self._state(inner, sealer)
        if state.plain(sealer.header.segment) != size:
            raise OffsetMismatch(
                "finish at the wrong size",
                key=target.key,
                expected=state.plain(sealer.header.segment),
                got=size,
            )
        final = sealer.seal_segment(state.segments, state.tail.data, final=True)
        head = sealer.header.pack() if state.stored == 0 else b""
        if state.junk and isinstance(self.inner, Truncator):
            state.stored -= state.junk
            await self.inner.truncate(inner, offset=state.stored)
        elif state.junk and state.junk != len(final):
            raise StoreError("the sealed upload ends in a foreign final segment", key=target.key)
        if state.junk:
            stored = state.stored  # an earlier finish stored the final segment, then stopped
        else:
            stored = await self._append_once(inner, state.stored, head + final)
        info = await self.inner.finish(inner, size=stored)
        await self.ring.put(dataclasses.replace(record, stored=stored))
        await sealtail.drop(self.inner, sealer.key, state.tail)
        return ObjectInfo(target.key, size, info.etag, info.modified)

    async def _append_once(self, inner: Target, stored: int, data: bytes) -> int:
        async def one() -> AsyncIterator[bytes]:
            yield data

        if isinstance(self.inner, VerifyingAppender):
            return await self.inner.append_verified(
                inner, offset=stored, chunks=one(), accept=lambda: True
            )
        return await self.inner.append(inner, offset=stored, chunks=one())

    async def abort(self, target: Target) -> None:
        inner = _inner_handle(target)
        if inner is None:
            await self.inner.abort(target)
            return
        record = await self.ring.get(target.key)
        if record is not None:
            sealer = sealkeys.sealer(record, self.kek)
            try:
                state = await self._state(inner, sealer)
                await sealtail.drop(self.inner, sealer.key, state.tail)
            except NotFound:
                pass  # the target is gone already; its tails were dropped with it
        await self.inner.abort(inner)
        try:
            await self.inner.stat(target.key)
        except NotFound:
            await self.ring.destroy(target.key)
        # else a finished object holds the key (published by a process that died before the
        # catalog knew): the record is that object's key now, and stays.

    # -- finished objects ------------------------------------------------------------------

    async def _head(self, key: str) -> Header | None:
        raw = bytearray()
        async for chunk in await self.inner.read(key, start=0, length=HEADER.size):
            raw += chunk
        return Header.parse(bytes(raw))

    async def _finished_record(self, key: str) -> KeyRecord | None:
        """The key record of `key`, a finished object's kept in memory for `RECORD_TTL`: a
        seek then costs no catalog read. Only wrapped keys are kept, never data keys."""
        now = time.monotonic()
        hit = self._finished.get(key)
        if hit is not None and now - hit[0] < RECORD_TTL:
            return hit[1]
        record = await self.ring.get(key)
        if record is None or record.stored is None:
            self._finished.pop(key, None)
            return record
        self._finished[key] = (now, record)
        self._finished.move_to_end(key)
        while len(self._finished) > RECORD_CACHE:
            self._finished.popitem(last=False)
        return record

    async def _object(
        self, key: str, *, info: bool
    ) -> tuple[int, list[sealjoin.Run] | None, ObjectInfo | None]:
        """Stored length, runs (None: a plain object) and, when asked or needed, the backend's
        facts; NotFound when the object is absent or was shredded."""
        record = await self._finished_record(key)
        facts = None
        if info or record is None or record.stored is None:
            facts = await self.inner.stat(key)
        if record is None:
            assert facts is not None
            if facts.size < len(MAGIC) or await self._head(key) is None:
                return facts.size, None, facts
            # Sealed: by `encrypt-existing` since the first look (its record came first), or
            # shredded.
            record = await self.ring.get(key)
            if record is None:
                raise NotFound("the object's data key was destroyed", key=key)
        stored = record.stored if record.stored is not None else facts.size if facts else 0
        # The stored header is not read: segments are opened with the record's header in
        # their associated data, so an altered header cannot change what is served.
        return stored, sealjoin.runs_of(record, self.kek, stored=stored), facts

    async def read(
        self, key: str, *, start: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        _, runs, _ = await self._object(key, info=False)
        if runs is None:
            plain = await sealswap.plain_read(
                self.inner, key, start=start, length=length, still_plain=self._plain_now(key)
            )
            if plain is not None:
                return plain
            _, runs, _ = await self._object(key, info=False)
            assert runs is not None
        try:
            return await sealjoin.read(self.inner, key, runs, start=start, length=length)
        except Tampered:
            self._finished.pop(key, None)
            # A record over still plain bytes: `encrypt-existing` is about to swap them (or
            # has swapped them since: then they read sealed now).
            plain = await sealswap.plain_read(
                self.inner, key, start=start, length=length, still_plain=self._plain_head(key)
            )
            if plain is not None:
                return plain
        return await sealjoin.read(self.inner, key, runs, start=start, length=length)

    def _plain_now(self, key: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return await self.ring.get(key) is None or await self._head(key) is None

        return check

    def _plain_head(self, key: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return await self._head(key) is None

        return check

    async def stat(self, key: str) -> ObjectInfo:
        stored, runs, facts = await self._object(key, info=True)
        assert facts is not None
        if runs is None:
            return facts
        if facts.size != stored and await self._head(key) is None:
            return facts  # plain bytes under a record: `encrypt-existing` is converting them
        return ObjectInfo(key, sum(run.plain for run in runs), facts.etag, facts.modified)

    async def delete(self, key: str) -> None:
        """Destroy the data key first (crypto-shredding), then the ciphertext. When retention
        keeps the ciphertext (S3 Object Lock) it stays, unreadable for good."""
        self._finished.pop(key, None)
        record = await self.ring.get(key)
        if record is None:
            try:
                await self.inner.delete(key)
            except ObjectLocked:
                if await self._head(key) is None:
                    raise  # a plain object: the lock protects readable bytes
                _log.info("sealed.kept_locked key=%s reason=key_already_destroyed", key)
            return
        await self.ring.destroy(key)
        try:
            await self.inner.delete(key)
        except NotFound:
            pass
        except ObjectLocked:
            _log.info("sealed.shredded_locked key=%s", key)
        else:
            _log.info("sealed.shredded key=%s", key)

    async def concatenate(
        self, key: str, sources: Sequence[str], *, digest: MultiDigest | None = None
    ) -> ObjectInfo:
        """The joined object adopts its sources' sealed bytes as runs under their own data
        keys (`sealjoin`): the backend concatenates the stored bytes with its own means, so
        `key` appears whole or not at all, and nothing is sealed again. The plaintext passes
        through `digest` from the sources, opened while the backend copies. A plain source
        (stored before encryption was on) makes the join seal everything afresh instead."""
        assert isinstance(self.inner, Concatenator)
        runs: list[sealjoin.Run] = []
        for source in sources:
            _, found, _ = await self._object(source, info=False)  # NotFound before anything
            if found is None:
                return await self._concatenate_sealing(key, sources, digest)
            runs += found
        await self._untaken(key)
        record = sealkeys.new_record(key, kek=self.kek, suite=self.suite, segment=self.segment)
        stored = sum(run.stored for run in runs)
        table = sealjoin.seal_table(record, self.kek, runs)
        await self.ring.put(dataclasses.replace(record, stored=stored, runs=table))
        jobs: list[Awaitable[object]] = [self.inner.concatenate(key, list(sources))]
        if digest is not None:
            jobs.append(self._digest(sources, digest))
        try:
            # Both run to their end even when one fails: a copy stopped halfway could still
            # publish the object after its key record was forgotten.
            outcomes = await asyncio.gather(*jobs, return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
        except BaseException:
            await asyncio.shield(self._forget_unless_made(key))
            raise
        _log.info("sealed.joined key=%s runs=%s stored=%s", key, len(runs), stored)
        return ObjectInfo(key, sum(run.plain for run in runs))

    async def _untaken(self, key: str) -> None:
        try:
            await self.inner.stat(key)
            raise AlreadyExists("a finished object holds this key", key=key)
        except NotFound:
            pass

    async def _forget_unless_made(self, key: str) -> None:
        """After a join failed: its key record goes unless the object appeared after all."""
        try:
            await self.inner.stat(key)
        except NotFound:
            await self.ring.destroy(key)

    async def _digest(self, sources: Sequence[str], digest: MultiDigest) -> None:
        """Feed the sources' plaintext to `digest`: a block is hashed in a thread while the
        next one is opened (in order: the next hash waits for the one before)."""
        hashing: asyncio.Future[None] | None = None
        block = bytearray()
        try:
            for source in sources:
                async for chunk in await self.read(source):
                    block += chunk
                    if len(block) >= DIGEST_BLOCK:
                        if hashing is not None:
                            await hashing
                        hashing = asyncio.ensure_future(asyncio.to_thread(digest.update, block))
                        block = bytearray()
            if hashing is not None:
                await hashing
                hashing = None
            digest.update(block)
        finally:
            if hashing is not None:  # stopped early: let the thread finish with its block
                with contextlib.suppress(Exception):
                    await asyncio.shield(hashing)

    async def _concatenate_sealing(
        self, key: str, sources: Sequence[str], digest: MultiDigest | None
    ) -> ObjectInfo:
        """Each source is opened and sealed again under a new data key (passing through
        `digest`) into a staging object, which the backend then copies to `key`."""
        assert isinstance(self.inner, Concatenator)
        await self._untaken(key)
        record = sealkeys.new_record(key, kek=self.kek, suite=self.suite, segment=self.segment)
        sealer = sealkeys.sealer(record, self.kek)
        staging = f"{key}.j{secrets.token_hex(6)}"
        size, stored = await self._seal_whole(staging, sealer, self._joined(sources, digest))
        await self.ring.put(dataclasses.replace(record, stored=stored))
        try:
            await self.inner.concatenate(key, [staging])
        finally:
            await self.inner.delete(staging)
        return ObjectInfo(key, size)

    async def _joined(
        self, sources: Sequence[str], digest: MultiDigest | None
    ) -> AsyncIterator[bytes]:
        for source in sources:
            async for chunk in await self.read(source):
                if digest is not None:
                    digest.update(chunk)
                yield chunk

    async def seal_into(
        self, name: str, sealer: Sealer, chunks: AsyncIterator[bytes]
    ) -> tuple[int, int]:
        """Seal `chunks` as the object `sealer` belongs to, into the finished backend object
        `name` beside it (`encrypt-existing`); the plaintext and the sealed size."""
        return await self._seal_whole(name, sealer, chunks)

    async def _seal_whole(
        self, name: str, sealer: Sealer, chunks: AsyncIterator[bytes]
    ) -> tuple[int, int]:
        """Seal all of `chunks` into the finished backend object `name` in one pass; returns
        the plaintext and the sealed size."""
        state = _State(0, 0, 0, Tail(0))
        progress = _Progress(0)
        size = 0

        async def counted() -> AsyncIterator[bytes]:
            nonlocal size
            async for chunk in chunks:
                size += len(chunk)
                yield chunk

        async def whole() -> AsyncIterator[bytes]:
            sealed = self._sealing(sealer, state, counted(), progress, keep_on_error=False)
            async for blob in sealed:
                yield blob
            yield sealer.seal_segment(progress.segments, bytes(progress.leftover), final=True)

        target = await self.inner.create(name)
        try:
            if isinstance(self.inner, VerifyingAppender):
                stored = await self.inner.append_verified(
                    target, offset=0, chunks=whole(), accept=lambda: True
                )
            else:
                stored = await self.inner.append(target, offset=0, chunks=whole())
            await self.inner.finish(target, size=stored)
        except BaseException:
            await self.inner.abort(target)
            raise
        return size, stored


class SealedRetainingStore(SealedStore):
    """A sealed store over a backend with write-once objects: retention passes through."""

    async def lock_support(self) -> LockSupport:
        assert isinstance(self.inner, Retainer)
        return await self.inner.lock_support()

    async def set_retention(
        self, key: str, *, until: datetime, mode: Literal["GOVERNANCE", "COMPLIANCE"]
    ) -> None:
        assert isinstance(self.inner, Retainer)
        await self.inner.set_retention(key, until=until, mode=mode)

    async def set_legal_hold(self, key: str, *, on: bool) -> None:
        assert isinstance(self.inner, Retainer)
        await self.inner.set_legal_hold(key, on=on)


def seal(
    inner: Store,
    *,
    ring: KeyRing,
    kek: KeyWrapping,
    suite: Suite = Suite.INTERNATIONAL,
    segment: int = SEGMENT,
    batch: int = BATCH,
) -> SealedStore:
    """`inner` sealed, keeping the abilities the server asks for (retention)."""
    kind = SealedRetainingStore if isinstance(inner, Retainer) else SealedStore
    return kind(inner, ring=ring, kek=kek, suite=suite, segment=segment, batch=batch)
