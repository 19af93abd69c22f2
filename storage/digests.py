"""Content digests of evidence, computed once per chunk while bytes stream past.

BLAKE3 is always on (fast, the primary integrity value); SHA-256 is the value courts and other
agencies already know; SM3 is the national standard hash and comes from hashlib's OpenSSL.
Large chunks are hashed in a worker thread (both blake3 and hashlib release the GIL), so hashing
never stalls the event loop that serves other requests.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping
from typing import Protocol

import blake3

ALGORITHMS = ("blake3", "sha256", "sm3")
DEFAULT_ALGORITHMS = ("blake3", "sha256")
# Below this size a thread hop costs more than the hashing it would move off the loop.
THREAD_THRESHOLD = 256 * 1024


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...
    def hexdigest(self) -> str: ...
    def digest(self) -> bytes: ...


def new_hasher(algorithm: str) -> Hasher:
    """A fresh hasher for any supported algorithm, including sha1/md5 for tus checksums."""
    if algorithm == "blake3":
        return blake3.blake3()
    if algorithm in ("sha256", "sha1", "md5"):
        return hashlib.new(algorithm)
    if algorithm == "sm3":
        try:
            return hashlib.new("sm3")
        except ValueError as exc:  # OpenSSL built without SM3
            raise ValueError("SM3 is not available in this Python's OpenSSL") from exc
    raise ValueError(f"unknown digest algorithm {algorithm!r}; choose from {', '.join(ALGORITHMS)}")


def normalize(algorithms: Iterable[str]) -> tuple[str, ...]:
    """BLAKE3 first, then the selected others in a stable order, no duplicates."""
    chosen = {a.strip().lower() for a in algorithms if a.strip()}
    chosen.add("blake3")
    unknown = chosen - set(ALGORITHMS)
    if unknown:
        raise ValueError(f"unknown digest algorithm(s): {', '.join(sorted(unknown))}")
    return tuple(a for a in ALGORITHMS if a in chosen)


class MultiDigest:
    """Several digests of one byte stream, fed once per chunk."""

    __slots__ = ("_hashers", "algorithms", "length")

    def __init__(self, algorithms: Iterable[str] = DEFAULT_ALGORITHMS) -> None:
        self.algorithms = normalize(algorithms)
        self._hashers = {a: new_hasher(a) for a in self.algorithms}
        self.length = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Feed a chunk on the calling thread."""
        view = memoryview(data)
        for hasher in self._hashers.values():
            hasher.update(view)
        self.length += len(view)

    async def update_async(self, data: bytes | bytearray | memoryview) -> None:
        """Feed a chunk, in a worker thread when it is large enough to matter.

        The caller must not mutate `data` until this returns, and must not feed the same
        digest from two tasks at once (chunk order is the digest)."""
        if len(data) >= THREAD_THRESHOLD:
            await asyncio.to_thread(self.update, data)
        else:
            self.update(data)

    def hexdigests(self) -> dict[str, str]:
        """Current digests as lowercase hex, keyed by algorithm; feeding may continue."""
        return {a: h.hexdigest() for a, h in self._hashers.items()}


def single(algorithm: str, data: bytes | memoryview) -> bytes:
    """Raw digest of one buffer (tus Upload-Checksum values)."""
    hasher = new_hasher(algorithm)
    hasher.update(data)
    return hasher.digest()


def matches(declared: Mapping[str, str], computed: Mapping[str, str]) -> list[str]:
    """Algorithms whose declared value differs from the computed one (case-insensitive hex);
    algorithms not computed are ignored by the caller's choice."""
    return [
        a
        for a, value in declared.items()
        if a in computed and value.strip().lower() != computed[a].lower()
    ]
