"""Converting a plain object into a sealed one in place (`avidence-server encrypt-existing`).

The sealed copy is written beside the plain object, opened again and hashed, and only when its
plaintext matches the digests the caller recorded does it take the plain object's place:

1. seal the plain bytes under a fresh data key into `<key>.s<object id>` (a finished object);
2. read that copy back through its data key and compare BLAKE3, SHA-256 (and SM3) with the
   recorded digests: a mismatch stops here, the plain object untouched, the copy deleted;
3. store the key record (with the sealed size): from now on a reader expects sealed bytes, and
   falls back to plain ones while they are still there (`sealswap`);
4. the backend replaces the plain object with the copy in one step (`Replacer`), so a reader
   sees the old bytes or the new ones, never neither.

A run killed at any point leaves the plain object readable: before 3 nothing refers to the copy
(a later run makes a new one; the dead copy holds only ciphertext whose key was never stored);
between 3 and 4 the record names the copy by its object id, and the next run checks the copy
again and finishes the swap. An object kept by retention or a legal hold cannot be replaced and
is reported (`LOCKED`), never half converted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, cast, runtime_checkable

from . import sealkeys, sealread, staging
from .base import Store
from .digests import MultiDigest
from .errors import InvalidRange, NotFound, ObjectLocked, Tampered
from .sealed import SealedStore
from .sealformat import HEADER, Header, Sealer
from .sealkeys import KeyRecord, KeyRing


@runtime_checkable
class Replacer(Protocol):
    """A backend that can swap a finished object for another one (only `encrypt-existing`
    does: every other writer keeps objects write-once)."""

    async def held(self, key: str) -> bool:
        """True when retention or a legal hold keeps the object's current bytes."""

    async def replace(self, key: str, *, source: str) -> None:
        """Make the finished object `source` the object at `key` in one step: readers see the
        old bytes or the new ones. No earlier bytes of `key` remain (older versions too) and
        `source` is gone. `NotFound` when either is absent, `ObjectLocked` when retention or a
        legal hold keeps `key`'s bytes (then nothing changed)."""

    async def drop_older(self, key: str) -> None:
        """Remove what an interrupted `replace` may have left of `key`'s earlier bytes (older
        versions in a versioned bucket); nothing to do elsewhere."""

    async def leftovers(self, key: str, *, keep: str | None) -> list[str]:
        """Remove the copies of `key` that interrupted runs staged (`staging.is_staged_copy`),
        finished or half written, except `keep`; the names removed. A copy that retention
        keeps is logged and left."""


class Outcome(StrEnum):
    """What became of one object."""

    SEALED = "sealed"  # converted now (or in dry run: would be)
    ALREADY = "already"  # sealed before this run
    LOCKED = "locked"  # under retention or legal hold: left plain
    MISMATCH = "mismatch"  # the sealed copy's plaintext differs from the recorded digests
    MISSING = "missing"  # no object under the key
    KEYLESS = "keyless"  # sealed bytes without a data key (shredded): nothing to do


@dataclass(slots=True, frozen=True)
class Converted:
    key: str
    outcome: Outcome
    size: int = 0
    detail: str = ""


def staging_key(key: str, header: Header) -> str:
    """Where the sealed copy of `key` waits: named by its object id, so a later run finds the
    copy its record belongs to."""
    return staging.staging_key(key, header.object_id)


class _Renamed:
    """Reads `key` from the object `source` of `inner` (to open a copy with its sealer)."""

    def __init__(self, inner: Store, *, key: str, source: str) -> None:
        self.inner, self.key, self.source = inner, key, source

    async def read(
        self, key: str, *, start: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        assert key == self.key
        return await self.inner.read(self.source, start=start, length=length)


async def _plain_head(inner: Store, key: str) -> bool:
    raw = bytearray()
    async for chunk in await inner.read(key, start=0, length=HEADER.size):
        raw += chunk
    return Header.parse(bytes(raw)) is None


async def _copy_digests(
    inner: Store, sealer: Sealer, *, copy: str, stored: int, algorithms: tuple[str, ...]
) -> tuple[int, dict[str, str]]:
    """Plaintext size and digests of the sealed copy, every segment authenticated."""
    digest = MultiDigest(algorithms)
    source = cast(Store, _Renamed(inner, key=sealer.key, source=copy))
    async for chunk in await sealread.read(source, sealer, stored=stored, start=0, length=None):
        await digest.update_async(chunk)
    return digest.length, digest.hexdigests()


def _differs(expect: Mapping[str, str], size: int | None, got: int, found: dict[str, str]) -> str:
    wrong = [a for a, value in expect.items() if found.get(a, value).lower() != value.lower()]
    if size is not None and size != got:
        wrong.insert(0, f"size {got} != {size}")
    return ", ".join(wrong)


async def inspect(inner: Store, ring: KeyRing, key: str) -> tuple[Outcome | None, KeyRecord | None]:
    """None (to convert) or why not, and the record of a conversion begun before; reads only."""
    try:
        info = await inner.stat(key)
    except NotFound:
        return Outcome.MISSING, None
    record = await ring.get(key)
    plain = info.size < HEADER.size or await _plain_head(inner, key)
    if not plain:
        return (Outcome.ALREADY if record is not None else Outcome.KEYLESS), record
    if isinstance(inner, Replacer) and await inner.held(key):
        return Outcome.LOCKED, record
    return None, record


class Converter:
    """Converts the plain objects of `store`'s backend; `store` is the sealed view of it."""

    def __init__(self, store: SealedStore) -> None:
        if not isinstance(store.inner, Replacer):
            raise TypeError(f"store {store.name!r} cannot replace objects")
        self.store, self.inner = store, store.inner
        self.replacer: Replacer = store.inner

    async def inspect(self, key: str) -> tuple[Outcome | None, KeyRecord | None]:
        return await inspect(self.inner, self.store.ring, key)

    async def convert(
        self, key: str, *, expect: Mapping[str, str], size: int | None = None
    ) -> Converted:
        """Seal the object at `key` if it is plain, checking the copy against `expect`
        (algorithm -> hex; BLAKE3 and SHA-256 at least) and `size`."""
        why, record = await self.inspect(key)
        if why is not Outcome.MISSING:
            # Copies a killed run left (each under a name no run picks again): only the one
            # the key record names may still be needed, to finish its swap.
            keep = staging_key(key, record.header) if record is not None else None
            await self.replacer.leftovers(key, keep=keep)
        if why is Outcome.ALREADY and record is not None:
            # A run stopped inside the swap: the copy or the old plain version may remain.
            await self._drop(staging_key(key, record.header))
            await self.replacer.drop_older(key)
            return Converted(key, why, size or 0)
        if why is not None:
            return Converted(key, why, size or 0)
        algorithms = tuple(expect)
        if record is not None and record.stored is not None:
            resumed = await self._resume(key, record, expect, size, algorithms)
            if resumed is not None:
                return resumed
        record = sealkeys.new_record(
            key, kek=self.store.kek, suite=self.store.suite, segment=self.store.segment
        )
        sealer = sealkeys.sealer(record, self.store.kek)
        copy = staging_key(key, record.header)
        plain = await self.inner.read(key)
        _, stored = await self.store.seal_into(copy, sealer, plain)
        got, found = await _copy_digests(
            self.inner, sealer, copy=copy, stored=stored, algorithms=algorithms
        )
        wrong = _differs(expect, size, got, found)
        if wrong:
            await self._drop(copy)
            return Converted(key, Outcome.MISMATCH, got, f"differs: {wrong}")
        record = dataclasses.replace(record, stored=stored)
        await self.store.ring.put(record)
        return await self._swap(key, copy, got)

    async def _resume(
        self,
        key: str,
        record: KeyRecord,
        expect: Mapping[str, str],
        size: int | None,
        algorithms: tuple[str, ...],
    ) -> Converted | None:
        """Finish a swap an earlier run began (record stored, object still plain); None when
        its copy is gone or spoilt: the record is dropped (the object is plain) and it starts
        over."""
        assert record.stored is not None
        copy = staging_key(key, record.header)
        sealer = sealkeys.sealer(record, self.store.kek)
        try:
            got, found = await _copy_digests(
                self.inner, sealer, copy=copy, stored=record.stored, algorithms=algorithms
            )
        except (NotFound, Tampered, InvalidRange):
            got, found = -1, {}
        if got >= 0 and not _differs(expect, size, got, found):
            return await self._swap(key, copy, got)
        await self.store.ring.destroy(key)
        await self._drop(copy)
        return None

    async def _swap(self, key: str, copy: str, size: int) -> Converted:
        current = await self.store.ring.get(key)
        if current is None or staging_key(key, current.header) != copy:
            # Another run (one at a time, says the manual) stored its own record since: its
            # copy is the one that record opens, so this one must not be swapped in.
            await self._drop(copy)
            return Converted(key, Outcome.MISMATCH, size, "another run is converting it")
        try:
            await self.replacer.replace(key, source=copy)
        except ObjectLocked as exc:
            # Locked since inspect: the record goes, the plain bytes stay as they were.
            await self.store.ring.destroy(key)
            await self._drop(copy)
            return Converted(key, Outcome.LOCKED, size, str(exc))
        return Converted(key, Outcome.SEALED, size)

    async def _drop(self, copy: str) -> None:
        try:
            await self.inner.delete(copy)
        except NotFound:
            pass
