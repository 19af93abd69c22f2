"""The sealed object format: a fixed header, then AEAD segments, the last one marked final.

    header   = magic "AVSEAL01" (format version 1) | suite (1 byte) | segment size (u32) |
               object id (16 random bytes)                                        29 bytes
    segment  = nonce (12 random bytes) | ciphertext | tag (16)    plaintext = segment size
    final    = the same, 0 .. segment size - 1 plaintext bytes, sealed with the final flag

Every segment's associated data binds the header, the storage key, the segment's index and the
final flag, so a segment moved to another place, another object or another key, a dropped or
reordered segment, and an object cut at a segment boundary (its last segment then lacks the
flag) all fail authentication. Nonces are random rather than counters: a segment may be sealed
twice (a request refused by its checksum, then sent again), and a counter would then repeat a
nonce under the same key, which GCM does not survive. The data key itself is not in the object
(see `sealkeys`): an object under S3 Object Lock cannot be rewritten, but its key can be
destroyed or rewrapped. A joined upload is several such objects one after another, each under
its own key, described by a run table kept with the joined object's key record (`sealjoin`).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import Tampered

MAGIC = b"AVSEAL01"
HEADER = struct.Struct(">8sBI16s")
NONCE = 12
TAG = 16
OVERHEAD = NONCE + TAG
SEGMENT = 64 * 1024


class Suite(IntEnum):
    """The algorithm suite of a deployment (DESIGN.md): AES-256-GCM or SM4-GCM data keys."""

    INTERNATIONAL = 1
    GM = 2

    @classmethod
    def named(cls, name: str) -> Suite:
        return {"international": cls.INTERNATIONAL, "gm": cls.GM}[name]

    @property
    def label(self) -> str:
        return "international" if self is Suite.INTERNATIONAL else "gm"

    @property
    def key_length(self) -> int:
        return 32 if self is Suite.INTERNATIONAL else 16  # AES-256; SM4 has 128-bit keys


def seal(
    suite: Suite, key: bytes, data: bytes | bytearray | memoryview, aad: bytes,
    *, aead: AESGCM | None = None,
) -> bytes:  # fmt: skip
    """nonce | ciphertext | tag of `data` under `key`, authenticating `aad` too (`aead`: the
    key's AES-GCM cipher made before, when there is one)."""
    nonce = os.urandom(NONCE)
    if suite is Suite.INTERNATIONAL:
        return nonce + (aead or AESGCM(key)).encrypt(nonce, data, aad)
    encryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    body = encryptor.update(data) + encryptor.finalize()
    return nonce + body + encryptor.tag


def unseal(
    suite: Suite, key: bytes, blob: bytes | memoryview, aad: bytes,
    *, what: str, aead: AESGCM | None = None,
) -> bytes:  # fmt: skip
    """The plaintext of `blob`; `Tampered` naming `what` when it fails authentication."""
    if len(blob) < OVERHEAD:
        raise Tampered(f"{what}: {len(blob)} bytes is shorter than a sealed segment")
    nonce, body = blob[:NONCE], blob[NONCE:]
    try:
        if suite is Suite.INTERNATIONAL:
            return (aead or AESGCM(key)).decrypt(nonce, body, aad)
        tag, text = bytes(body[-TAG:]), body[:-TAG]
        decryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
        decryptor.authenticate_additional_data(aad)
        return decryptor.update(text) + decryptor.finalize()
    except InvalidTag:
        raise Tampered(f"{what}: authentication failed (altered, moved or cut)") from None


@dataclass(slots=True, frozen=True)
class Header:
    """What an object says about itself; the same fields are kept in its key record."""

    suite: Suite
    segment: int
    object_id: bytes

    def pack(self) -> bytes:
        return HEADER.pack(MAGIC, int(self.suite), self.segment, self.object_id)

    @staticmethod
    def parse(raw: bytes) -> Header | None:
        """The header at the start of `raw`, or None when `raw` is not a sealed object."""
        if len(raw) < HEADER.size or not raw.startswith(MAGIC):
            return None
        _, suite, segment, object_id = HEADER.unpack_from(raw)
        return Header(Suite(suite), segment, object_id)


@dataclass(slots=True, frozen=True)
class Sealer:
    """Seals and opens the segments and tails of one object under its data key. The cipher
    and the associated data's fixed part are made once: an object has thousands of segments."""

    header: Header
    key: str
    data_key: bytes
    _aead: AESGCM | None = field(init=False, repr=False, compare=False)
    _bound: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        international = self.header.suite is Suite.INTERNATIONAL
        object.__setattr__(self, "_aead", AESGCM(self.data_key) if international else None)
        name = self.key.encode()
        object.__setattr__(self, "_bound", self.header.pack() + struct.pack(">H", len(name)) + name)

    @property
    def step(self) -> int:
        """Stored size of a full segment."""
        return self.header.segment + OVERHEAD

    def _aad(self, kind: bytes, index: int, final: bool) -> bytes:
        return kind + self._bound + struct.pack(">QB", index, final)

    def _seal(self, data: bytes | bytearray | memoryview, aad: bytes) -> bytes:
        return seal(self.header.suite, self.data_key, data, aad, aead=self._aead)

    def _open(self, blob: bytes | memoryview, aad: bytes, *, what: str) -> bytes:
        return unseal(self.header.suite, self.data_key, blob, aad, what=what, aead=self._aead)

    def seal_segment(
        self, index: int, data: bytes | bytearray | memoryview, *, final: bool
    ) -> bytes:
        return self._seal(data, self._aad(b"seg", index, final))

    def seal_segments(
        self, first: int, pieces: Sequence[bytes | bytearray | memoryview]
    ) -> bytearray:
        """Whole segments `pieces` (each exactly a segment long), from index `first`, sealed
        (none final) one after another into one buffer: no copy per segment."""
        step = self.step
        out = bytearray(len(pieces) * step)
        view = memoryview(out)
        nonces = os.urandom(NONCE * len(pieces))
        for n, piece in enumerate(pieces):
            aad = self._aad(b"seg", first + n, False)
            at = n * step
            if self._aead is None:
                view[at : at + step] = self._seal(piece, aad)
            else:
                nonce = nonces[n * NONCE : (n + 1) * NONCE]
                view[at : at + NONCE] = nonce
                self._aead.encrypt_into(nonce, piece, aad, view[at + NONCE : at + step])
        return out

    def open_segment(self, index: int, blob: bytes | memoryview, *, final: bool) -> bytes:
        return self._open(blob, self._aad(b"seg", index, final), what=f"segment {index}")

    def open_segments(self, first: int, blob: bytes | memoryview) -> bytearray:
        """The plaintext of the whole, non-final segments in `blob` (a multiple of `step`),
        from index `first`, opened one after another into one buffer (no copy per segment);
        `Tampered` for the first that fails, before any is returned."""
        step, segment, view = self.step, self.header.segment, memoryview(blob)
        count = len(view) // step
        out = bytearray(count * segment)
        into = memoryview(out)
        for n in range(count):
            sealed = view[n * step : (n + 1) * step]
            if self._aead is None:
                into[n * segment : (n + 1) * segment] = self.open_segment(
                    first + n, sealed, final=False
                )
                continue
            try:
                self._aead.decrypt_into(
                    sealed[:NONCE],
                    sealed[NONCE:],
                    self._aad(b"seg", first + n, False),
                    into[n * segment : (n + 1) * segment],
                )
            except InvalidTag:
                raise Tampered(
                    f"segment {first + n}: authentication failed (altered, moved or cut)"
                ) from None
        return out

    def seal_tail(self, index: int, data: bytes) -> bytes:
        """The not yet full segment `index` of an upload, kept aside sealed until it fills."""
        return self._seal(data, self._aad(b"tail", index, False))

    def open_tail(self, index: int, blob: bytes) -> bytes:
        return self._open(blob, self._aad(b"tail", index, False), what=f"tail {index}")

    def seal_runs(self, table: bytes) -> bytes:
        """The run table of a joined object (`sealjoin`), sealed under its own data key."""
        return self._seal(table, self._aad(b"runs", 0, True))

    def open_runs(self, blob: bytes) -> bytes:
        return self._open(blob, self._aad(b"runs", 0, True), what="run table")


def plain_size(stored: int, *, segment: int) -> int:
    """Plaintext size of a finished sealed object of `stored` bytes; `Tampered` when the
    length cannot end in a final segment (cut at a segment boundary, or inside the header)."""
    body = stored - HEADER.size
    step = segment + OVERHEAD
    last = body % step if body >= 0 else -1
    if last < OVERHEAD:
        raise Tampered(f"a sealed object of {stored} bytes lacks its final segment")
    return (body // step) * segment + last - OVERHEAD
