"""Data keys of sealed objects: one fresh key per object, kept wrapped outside the object.

The wrapped key lives in a `KeyRing` (the server keeps it in the catalog), not in the object:
an object under S3 Object Lock can never be rewritten, yet its key must be destroyable
(crypto-shredding on purge) and re-wrappable under a new key-encryption key (KEK) without
touching the data. The KEK is held by a `KeyWrapping` (key files or an HSM, the same provider
as the signing keys); the record names the KEK that wrapped it, so old records stay readable
after a rotation as long as the old KEK is kept.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Protocol

from .sealformat import Header, Sealer, Suite


@dataclass(slots=True, frozen=True)
class KeyRecord:
    """The wrapped data key of the object (or upload target) at `key`, and its header."""

    key: str
    header: Header
    kek_id: str
    wrapped: bytes
    stored: int | None = None  # the sealed object's length once finished: reads skip a stat
    runs: bytes | None = None  # a joined object's sealed run table (`sealjoin`); None: one run


class KeyWrapping(Protocol):
    """The key-encryption key. `wrap` seals a data key under the active KEK; `unwrap` opens
    one sealed under the KEK named `kek_id`. Both bind `context` (the object's identity), and
    raise `errors.KeysUnavailable` when the KEK cannot be used (missing, HSM unreachable)."""

    @property
    def kek_id(self) -> str: ...

    def wrap(self, data_key: bytes, *, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, *, kek_id: str, context: bytes) -> bytes: ...


class KeyRing(Protocol):
    """Where key records live. `get` answers None for a key without a record (a plain object,
    or one whose key was destroyed); `destroy` is idempotent and, once it returns, no later
    `get` anywhere finds the record. Unreachable: `errors.KeysUnavailable`."""

    async def put(self, record: KeyRecord) -> None: ...

    async def get(self, key: str) -> KeyRecord | None: ...

    async def destroy(self, key: str) -> None: ...


def context(key: str, header: Header) -> bytes:
    """What a wrapped data key is bound to: the object's header and storage key."""
    name = key.encode()
    return b"avidence/dek" + header.pack() + struct.pack(">H", len(name)) + name


def new_record(key: str, *, kek: KeyWrapping, suite: Suite, segment: int) -> KeyRecord:
    """A fresh data key for `key`, wrapped under the active KEK."""
    header = Header(suite, segment, os.urandom(16))
    data_key = os.urandom(suite.key_length)
    wrapped = kek.wrap(data_key, context=context(key, header))
    return KeyRecord(key=key, header=header, kek_id=kek.kek_id, wrapped=wrapped)


def sealer(record: KeyRecord, kek: KeyWrapping) -> Sealer:
    """The sealer of the record's object: its data key unwrapped."""
    ctx = context(record.key, record.header)
    data_key = kek.unwrap(record.wrapped, kek_id=record.kek_id, context=ctx)
    return Sealer(record.header, record.key, data_key)
