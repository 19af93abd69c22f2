"""Where ffprobe and ffmpeg read an original: in place, never copied out when the store allows.

A 100 GB interrogation recording copied into a working folder before anything is probed needs
100 GB of worker disk and a full read and write first. Instead: on the local store the working
folder gets a link named `source` to the published (read-only) object file; on S3 the tools
read a short-lived presigned URL with ranged HTTP requests. A store that offers neither (the
sealed store, whose objects are ciphertext) is read the same way through a private endpoint
on 127.0.0.1 for the life of the job (`loopback.py`): the decrypted original is never written
to worker disk. Either way the commands recorded as provenance name the input `source`: the
original identified by the derivative's `source_blake3`, not a URL that carries a signature
and expires.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from avidence.storage.base import LocalFiles, Presigner, Store
from avidence.transcode.plan import SOURCE

from . import loopback

# A transcode of a long recording can run for hours; S3 allows a presigned URL up to 7 days.
URL_LIFETIME = 24 * 3600

How = Literal["in place", "ranged HTTP", "loopback HTTP"]


@dataclass(slots=True, frozen=True)
class Source:
    """What the tools are given for `source`: a path in the working folder, or a URL."""

    input: str
    how: How

    @property
    def url(self) -> str | None:
        """The URL standing for `source` in a command line, when read over HTTP."""
        return None if self.how == "in place" else self.input


@asynccontextmanager
async def located(store: Store, key: str, work: Path, *, size: int) -> AsyncIterator[Source]:
    """The original readable as `source` for tools run in `work`, inside the block.
    `NotFound` before any tool runs when the store can tell the object is missing."""
    if isinstance(store, LocalFiles):
        path = await store.file_of(key)
        await asyncio.to_thread((work / SOURCE).symlink_to, path)
        yield Source(str(work / SOURCE), "in place")
    elif isinstance(store, Presigner):
        yield Source(await store.presign_get(key, expires_in=URL_LIFETIME), "ranged HTTP")
    else:
        await store.stat(key)
        async with loopback.serving(store, key, size=size) as url:
            yield Source(url, "loopback HTTP")
