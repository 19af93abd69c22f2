"""The Store contract: the spec every storage backend implements.

A store holds two kinds of things under validated keys (see `keys.check_key`):

* **upload targets**: bytes being received, appended at the durable offset only, never readable
  as evidence;
* **objects**: finished, immutable originals and derivatives. A finished object is never
  overwritten: `finish` and `concatenate` raise `AlreadyExists` when the key is taken.

The core is `Store`. Optional abilities are separate protocols (`Concatenator`, `Retainer`,
`Presigner`), discovered with `isinstance` on the runtime-checkable protocols, in the way tusd
composes its data store from optional interfaces: callers ask what a store can do, they never
ask which backend it is.

Every method raises only `storage.errors` exceptions. Anything the backend cannot reach is
`StoreUnavailable`; a full disk or quota is `StoreFull`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Literal, Protocol, runtime_checkable

from .digests import MultiDigest


@dataclass(slots=True, frozen=True)
class Target:
    """An upload target: the key it will finish into and the backend's own handle for it.

    The caller persists both (the catalog does) so that any process can resume the target; for
    S3 the handle is the multipart upload id, for the local folder it is empty.
    """

    key: str
    handle: str = ""


@dataclass(slots=True, frozen=True)
class ObjectInfo:
    """What a store knows about a finished object."""

    key: str
    size: int
    etag: str | None = None
    modified: datetime | None = None


@dataclass(slots=True, frozen=True)
class LockSupport:
    """What write-once protection the backend offers, detected at `open`."""

    object_lock: bool
    default_mode: Literal["GOVERNANCE", "COMPLIANCE"] | None = None
    default_days: int | None = None


@runtime_checkable
class Store(Protocol):
    """Core storage contract: upload targets, immutable objects, ranged reads."""

    #: Short backend name for logs and metrics ("local", "s3").
    name: str

    async def open(self) -> None:
        """Check the backend is usable (reachable, credentials accepted, bucket present or
        created when allowed). Raises `StoreUnavailable` with a one-line reason otherwise."""

    async def close(self) -> None:
        """Release connections and threads. Safe to call twice."""

    async def create(self, key: str) -> Target:
        """Start an empty upload target that will finish into `key`.

        Raises `InvalidKey` for an unsafe key and `AlreadyExists` when a finished object
        already holds it."""

    async def offset(self, target: Target) -> int:
        """The durable offset: how many bytes of the target survive a crash right now.

        Raises `NotFound` when the target is unknown (aborted, finished or never created)."""

    async def append(
        self,
        target: Target,
        *,
        offset: int,
        chunks: AsyncIterable[bytes],
        expect: int | None = None,
    ) -> int:
        """Append the bytes of `chunks` at `offset` and return the new durable offset.

        `expect` is how many bytes the caller expects `chunks` to bring (a request's declared
        length), when it knows: a hint a store may use to send bytes on before a part of them
        is whole. It is never trusted: `chunks` may end early, or bring more.

        Returns only when every byte is durable. Raises `OffsetMismatch` when `offset` is not
        the durable offset. If `chunks` raises (a dropped connection), the bytes it yielded
        before are kept as far as they became durable and the exception propagates; the caller
        asks `offset` for the result. Memory use is bounded by the backend's part size, never
        by the length of `chunks`."""

    async def finish(self, target: Target, *, size: int) -> ObjectInfo:
        """Turn a target holding exactly `size` bytes into the immutable object at its key.

        Atomic: the object appears whole or not at all. Raises `OffsetMismatch` when the target
        does not hold `size` bytes and `AlreadyExists` when the key is taken."""

    async def abort(self, target: Target) -> None:
        """Discard a target and every byte staged for it. Idempotent."""

    async def read(
        self, key: str, *, start: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Stream bytes `[start, start + length)` of a finished object (to its end when
        `length` is None).

        Errors are raised by the await, before any byte is produced: `NotFound` for an unknown
        key, `InvalidRange` when `start` lies beyond the end or `length` is negative."""

    async def stat(self, key: str) -> ObjectInfo:
        """Size and identity of a finished object; `NotFound` when absent."""

    async def delete(self, key: str) -> None:
        """Remove a finished object. `NotFound` when absent, `ObjectLocked` when retention or a
        legal hold forbids it. Only retention purges call this for originals."""


@runtime_checkable
class Concatenator(Protocol):
    """A store that can build one object from finished objects without routing bytes through
    the caller (tus concatenation)."""

    async def concatenate(
        self, key: str, sources: Sequence[str], *, digest: MultiDigest | None = None
    ) -> ObjectInfo:
        """Create the finished object `key` holding `sources` one after another.

        When the bytes pass through this process anyway (a local copy, a streamed fallback) the
        store feeds them to `digest` on the way, so the caller need not read the result back;
        a store that copies remotely leaves `digest` untouched (`digest.length` tells which).
        Raises `NotFound` for a missing source and `AlreadyExists` when `key` is taken."""


@runtime_checkable
class Truncator(Protocol):
    """A store that can cut an upload target back, so a request's bytes can be streamed in
    before its checksum is known and taken back if it does not match."""

    async def truncate(self, target: Target, *, offset: int) -> None:
        """Discard every byte of `target` after `offset`; `offset` must not exceed the durable
        offset (`OffsetMismatch` otherwise)."""


@runtime_checkable
class VerifyingAppender(Protocol):
    """A store that can take a request's bytes while they arrive and still drop them all if
    the request's checksum fails at the end (S3: everything but the first new part is sent at
    once; refused, what was sent is voided), so no request has to be held aside first."""

    async def append_verified(
        self,
        target: Target,
        *,
        offset: int,
        chunks: AsyncIterable[bytes],
        accept: Callable[[], bool],
        expect: int | None = None,
    ) -> int:
        """Like `Store.append`, but once `chunks` is exhausted `accept()` decides: True, the
        bytes become durable and the new offset is returned; False, none of them ever count
        and `offset` is returned. A broken `chunks` or store error keeps none of them either."""


@runtime_checkable
class Retainer(Protocol):
    """A store that can make objects write-once (S3 Object Lock)."""

    async def lock_support(self) -> LockSupport:
        """What the backend supports, as detected by `open`."""

    async def set_retention(
        self, key: str, *, until: datetime, mode: Literal["GOVERNANCE", "COMPLIANCE"]
    ) -> None:
        """Keep the object undeletable until `until`. Never shortens an existing retention."""

    async def set_legal_hold(self, key: str, *, on: bool) -> None:
        """Place or lift a legal hold on the object."""


@runtime_checkable
class Presigner(Protocol):
    """A store that can hand out time-limited direct download URLs."""

    async def presign_get(self, key: str, *, expires_in: int) -> str:
        """A URL that serves the object for `expires_in` seconds without credentials."""


@runtime_checkable
class LocalFiles(Protocol):
    """A store whose objects are files on this machine, which tools may read in place."""

    async def file_of(self, key: str) -> Path:
        """The finished object's path (NotFound when absent); read it, never write it."""

    async def open_file(self, key: str) -> BinaryIO:
        """The finished object opened for reading (NotFound when absent), for sending it with
        `sendfile`; the caller closes it."""
