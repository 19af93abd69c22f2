"""Whole-file BLAKE3 and SHA-256, streamed in a worker thread beside the upload.

These are the digests declared to the server and later compared with its evidence record, so
they are computed from the local file independently of the bytes being sent: if the two ever
disagree the server quarantines the upload instead of accepting it. Both hash libraries release
the GIL, so the thread runs beside the event loop that streams the partial uploads.
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass, field

from avidence.storage.digests import MultiDigest

from .errors import FileChanged

BLOCK = 4 * 1024 * 1024
ALGORITHMS = ("blake3", "sha256")


@dataclass(slots=True)
class FileHasher:
    """Hash one file once; `done` counts bytes hashed, for progress; `cancel` stops early."""

    path: str
    size: int
    done: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self._stop.set()

    def _run(self) -> dict[str, str]:
        digest = MultiDigest(ALGORITHMS)
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            while self.done < self.size:
                if self._stop.is_set():
                    raise asyncio.CancelledError()
                block = os.pread(fd, min(BLOCK, self.size - self.done), self.done)
                if not block:
                    raise FileChanged(f"{self.path}: shorter than expected while hashing")
                digest.update(block)
                self.done += len(block)
        finally:
            os.close(fd)
        return digest.hexdigests()

    async def run(self) -> dict[str, str]:
        """The hex digests keyed by algorithm ("blake3", "sha256")."""
        try:
            return await asyncio.to_thread(self._run)
        finally:
            self._stop.set()  # a cancelled await leaves the thread to stop at its next block
