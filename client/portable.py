"""The few file-system calls whose behaviour differs between Linux (Kylin, UOS) and Windows.

Recorder PCs run either. Windows has no `os.pread`, no `O_CLOEXEC` or `O_DIRECTORY`, opens
files in text mode unless told `O_BINARY` (which would corrupt every digest), cannot open a
folder to fsync it, and `os.rename` there refuses an existing target. Each difference is decided
here, by `os.name` at call time, so a test can exercise both branches on one machine.
"""

from __future__ import annotations

import os
from pathlib import Path


def windows() -> bool:
    return os.name == "nt"


def open_read(path: str | Path) -> int:
    """A read-only descriptor, binary on Windows, not inherited by child processes."""
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0)
    if not windows():
        flags |= os.O_CLOEXEC
    return os.open(path, flags)


def pread(fd: int, size: int, offset: int) -> bytes:
    """`size` bytes at `offset`. Windows has no pread: seek and read, which is safe because
    every descriptor here is opened by, and read from, one caller at a time."""
    if windows() or not hasattr(os, "pread"):
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, size)
    return os.pread(fd, size, offset)


def sync_folder(path: Path) -> None:
    """Make a rename inside `path` durable. POSIX needs the folder fsynced; Windows cannot
    open a folder, and NTFS journals the rename itself."""
    if windows():
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move(source: Path, target: Path) -> None:
    """Rename, replacing an existing target on both systems (Windows' rename refuses one)."""
    os.replace(source, target)
