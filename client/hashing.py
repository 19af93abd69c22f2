"""Whole-file BLAKE3 and SHA-256, streamed in a worker thread beside the upload, and in the same
pass the Upload-Checksum digest of every chunk the senders will send.

The whole-file digests are declared to the server and later compared with its evidence record,
so they are computed from the local file independently of the bytes being sent: if the two ever
disagree the server quarantines the upload instead of accepting it. The per-chunk digests ride
along because the pass reads every byte anyway: a sender then finds its chunk's checksum ready
instead of reading and hashing the chunk once more. Both hash libraries release the GIL, so the
thread runs beside the event loop that streams the uploads.
"""

from __future__ import annotations

import asyncio
import bisect
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from avidence.storage.digests import Hasher, MultiDigest, new_hasher

from .errors import FileChanged

BLOCK = 4 * 1024 * 1024
ALGORITHMS = ("blake3", "sha256")


class ChunkDigests:
    """Digests of a fixed set of disjoint byte ranges (each part's chunks), filled in by the
    hashing pass as it goes by; asked for by the senders.

    A sender asking for a range the pass has not reached waits when the pass is near (it runs
    far faster than the network), and otherwise gets None and hashes the range itself, as it
    does for any range off the grid (a resume from an offset another chunk size left)."""

    def __init__(self, algorithm: str, ranges: Iterable[tuple[int, int]], *, near: int) -> None:
        self.algorithm = algorithm
        self._length = dict(ranges)  # start -> length
        self._starts = sorted(self._length)
        self._near = near
        self._lock = threading.Lock()
        self._done: dict[int, bytes] = {}
        self._waiting: dict[int, list[asyncio.Future[bytes | None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._position = 0  # how far the pass got
        self._ended = False
        # the pass's state: the next range to start, and the range being hashed
        self._next = 0
        self._current: tuple[int, int, Hasher] | None = None

    async def get(self, start: int, length: int) -> bytes | None:
        """The digest of `length` bytes at `start`, or None: hash them yourself."""
        with self._lock:
            if self._length.get(start) != length:
                return None
            found = self._done.get(start)
            if found is not None or self._ended or start - self._position > self._near:
                return found
            self._loop = asyncio.get_running_loop()
            waiter: asyncio.Future[bytes | None] = self._loop.create_future()
            self._waiting.setdefault(start, []).append(waiter)
        return await waiter

    # -- the hashing thread ---------------------------------------------------------------

    def feed(self, position: int, block: memoryview) -> None:
        """Hash the bytes of `block` (which starts at `position`) into the ranges they fall in."""
        view, pos = block, position
        while view:
            if self._current is None:
                if self._next >= len(self._starts):
                    break
                start = self._starts[self._next]
                if start >= pos + len(view):
                    break
                if start < pos:  # the pass began past it: leave it to the sender
                    self._next = bisect.bisect_left(self._starts, pos)
                    continue
                view, pos = view[start - pos :], start
                self._current = (start, start + self._length[start], new_hasher(self.algorithm))
                self._next += 1
            start, end, hasher = self._current
            take = min(len(view), end - pos)
            hasher.update(view[:take])
            view, pos = view[take:], pos + take
            if pos == end:
                self._current = None
                self._settle(start, hasher.digest())
        with self._lock:
            self._position = position + len(block)

    def end(self) -> None:
        """The pass stopped (done, failed or cancelled): nobody should wait for it any more."""
        with self._lock:
            self._ended = True
            waiting, self._waiting = self._waiting, {}
        for waiters in waiting.values():
            self._wake(waiters, None)

    def _settle(self, start: int, digest: bytes) -> None:
        with self._lock:
            self._done[start] = digest
            waiters = self._waiting.pop(start, [])
        self._wake(waiters, digest)

    def _wake(self, waiters: list[asyncio.Future[bytes | None]], value: bytes | None) -> None:
        if waiters and self._loop is not None and not self._loop.is_closed():
            for waiter in waiters:
                self._loop.call_soon_threadsafe(_resolve, waiter, value)


def _resolve(waiter: asyncio.Future[bytes | None], value: bytes | None) -> None:
    if not waiter.done():
        waiter.set_result(value)


@dataclass(slots=True)
class FileHasher:
    """Hash one file once; `done` counts bytes hashed, for progress; `cancel` stops early."""

    path: str
    size: int
    chunks: ChunkDigests | None = None
    done: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self._stop.set()

    def _run(self) -> dict[str, str]:
        digest = MultiDigest(ALGORITHMS)
        buffer = memoryview(bytearray(BLOCK))  # one buffer for the whole pass: no page churn
        try:
            with open(self.path, "rb", buffering=0) as file:
                while self.done < self.size:
                    if self._stop.is_set():
                        raise asyncio.CancelledError()
                    view = buffer[: min(BLOCK, self.size - self.done)]
                    got = file.readinto(view)
                    if not got:
                        raise FileChanged(f"{self.path}: shorter than expected while hashing")
                    block = view[:got]
                    digest.update(block)
                    if self.chunks is not None:
                        self.chunks.feed(self.done, block)
                    self.done += got
        finally:
            if self.chunks is not None:
                self.chunks.end()
        return digest.hexdigests()

    async def run(self) -> dict[str, str]:
        """The hex digests keyed by algorithm ("blake3", "sha256")."""
        try:
            return await asyncio.to_thread(self._run)
        finally:
            self._stop.set()  # a cancelled await leaves the thread to stop at its next block
