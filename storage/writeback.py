"""Starting the disk write of freshly appended bytes early, so the fsync that ends a PATCH is short.

A PATCH is answered only after `fsync`, and an fsync of 64 MiB that the kernel has not begun
writing waits for all of it. Linux's `sync_file_range(SYNC_FILE_RANGE_WRITE)` queues the
write-out of a range without waiting for it: called every few MiB while a body arrives, the
disk works beside the network, and the closing fsync finds most pages already clean. It changes
no durability promise (fsync still decides when a PATCH is answered); where the call does not
exist (not Linux) `WriteBehind` does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from collections.abc import Callable

_log = logging.getLogger("avidence.storage.writeback")

# Bytes written before their write-out is queued: large enough that the call is rare, small
# enough that the disk starts early in a 64 MiB PATCH.
STEP = 8 * 1024 * 1024
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>


def _load() -> Callable[[int, int, int], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the process's own symbols, libc's among them
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int

    def queue(fd: int, offset: int, length: int) -> None:
        if function(fd, offset, length, _SYNC_FILE_RANGE_WRITE) != 0:
            # Only a hint: a filesystem that refuses it (EINVAL, ESPIPE) still has fsync.
            _log.debug("sync_file_range failed errno=%d", ctypes.get_errno())

    return queue


_queue = _load()


class WriteBehind:
    """Tracks one descriptor's written bytes and queues their write-out every STEP bytes."""

    __slots__ = ("fd", "queued")

    def __init__(self, fd: int, pos: int) -> None:
        self.fd, self.queued = fd, pos

    def written(self, pos: int) -> None:
        """Bytes up to `pos` are written (not yet synced): queue them once STEP have gathered."""
        if _queue is not None and pos - self.queued >= STEP:
            _queue(self.fd, self.queued, pos - self.queued)
            self.queued = pos

    def reset(self, pos: int) -> None:
        """The file was cut back or synced to `pos`."""
        self.queued = pos
