"""The local file: its identity, change detection, and reading byte ranges off the event loop.

A recording is identified by absolute path, size, mtime and a BLAKE3 of its first and last MiB:
cheap to compute on a 100 GB file, and enough to tell "the same recording, resume it" from
"a new recording under the same name, start over". The same identity, re-checked while sending,
catches a file that is still being written.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import blake3

from avidence.storage.digests import new_hasher

from .errors import FileChanged, InputError
from .portable import open_read, pread

MiB = 1024 * 1024
BLOCK = MiB
ENDS = MiB


@dataclass(slots=True, frozen=True)
class FileIdentity:
    path: str  # absolute
    size: int
    mtime_ns: int
    ends: str  # BLAKE3 of the first and last MiB

    @property
    def key(self) -> str:
        """The name of this file's resume state: any change to the identity is a new upload."""
        text = f"{self.path}\0{self.size}\0{self.mtime_ns}\0{self.ends}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def _ends_hash(fd: int, size: int) -> str:
    hasher = blake3.blake3()
    hasher.update(pread(fd, min(ENDS, size), 0))
    if size > ENDS:
        hasher.update(pread(fd, ENDS, max(ENDS, size - ENDS)))
    return hasher.hexdigest()


def identify(path: Path) -> FileIdentity:
    """Stat and fingerprint a regular, readable file, or raise InputError saying why not."""
    absolute = path.expanduser().absolute()
    try:
        fd = open_read(absolute)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file") from None
    except PermissionError:
        raise InputError(f"{path}: not readable (permission denied)") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{path}: not a regular file")
        try:
            ends = _ends_hash(fd, info.st_size)
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror})") from None
        return FileIdentity(str(absolute), info.st_size, info.st_mtime_ns, ends)
    finally:
        os.close(fd)


def check_stat(identity: FileIdentity) -> None:
    """Raise FileChanged when size or mtime moved: cheap enough to run after every chunk."""
    try:
        info = os.stat(identity.path)
    except OSError as exc:
        raise FileChanged(f"{identity.path}: vanished while uploading ({exc.strerror})") from None
    if info.st_size != identity.size or info.st_mtime_ns != identity.mtime_ns:
        raise FileChanged(
            f"{identity.path} changed while uploading (size {identity.size} -> {info.st_size}); "
            "it is still being written: upload it once the recording is finished"
        )


def check_unchanged(identity: FileIdentity) -> None:
    """The full check (stat and the head/tail hash), before declaring the upload finished."""
    check_stat(identity)
    fd = open_read(identity.path)
    try:
        if _ends_hash(fd, identity.size) != identity.ends:
            raise FileChanged(f"{identity.path}: its first or last MiB changed while uploading")
    finally:
        os.close(fd)


async def read_range(path: str, *, start: int, length: int) -> AsyncIterator[bytes]:
    """Yield `length` bytes from `start` in 1 MiB blocks, each read in a worker thread, so a
    64 MiB chunk is streamed, never held whole in memory."""
    fd = await asyncio.to_thread(open_read, path)
    try:
        position, end = start, start + length
        while position < end:
            block = await asyncio.to_thread(pread, fd, min(BLOCK, end - position), position)
            if not block:
                raise FileChanged(f"{path}: shorter than expected (truncated while uploading?)")
            position += len(block)
            yield block
    finally:
        os.close(fd)


def _digest_range(path: str, start: int, length: int, algorithm: str) -> bytes:
    hasher = new_hasher(algorithm)
    fd = open_read(path)
    try:
        position, end = start, start + length
        while position < end:
            block = pread(fd, min(8 * BLOCK, end - position), position)
            if not block:
                raise FileChanged(f"{path}: shorter than expected (truncated while uploading?)")
            hasher.update(block)
            position += len(block)
    finally:
        os.close(fd)
    return hasher.digest()


async def digest_range(path: str, *, start: int, length: int, algorithm: str) -> bytes:
    """The Upload-Checksum digest of a chunk. The header precedes the body, so the chunk is
    read once here (in a thread) and streamed again from the page cache by `read_range`."""
    return await asyncio.to_thread(_digest_range, path, start, length, algorithm)
