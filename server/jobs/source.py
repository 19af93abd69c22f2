"""Where ffprobe and ffmpeg read an original: in place, never copied out when the store allows.

A 100 GB interrogation recording copied into a working folder before anything is probed needs
100 GB of worker disk and a full read and write first. Instead: on the local store the working
folder gets a link named `source` to the published (read-only) object file; on S3 the tools
read a short-lived presigned URL with ranged HTTP requests. Only a store that offers neither
(a store wrapper that must transform the bytes) is copied out as before. Either way the
commands recorded as provenance name the input `source`: the original identified by the
derivative's `source_blake3`, not a URL that carries a signature and expires.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from avidence.storage.base import LocalFiles, Presigner, Store
from avidence.transcode.plan import SOURCE

from . import outputs

# A transcode of a long recording can run for hours; S3 allows a presigned URL up to 7 days.
URL_LIFETIME = 24 * 3600

How = Literal["in place", "ranged HTTP", "working copy"]


@dataclass(slots=True, frozen=True)
class Source:
    """What the tools are given for `source`: a path in the working folder, or a URL."""

    input: str
    how: How

    @property
    def url(self) -> str | None:
        """The URL standing for `source` in a command line, when read over HTTP."""
        return self.input if self.how == "ranged HTTP" else None


async def locate(store: Store, key: str, work: Path, *, size: int) -> Source:
    """Make the original readable as `source` for tools run in `work`."""
    if isinstance(store, LocalFiles):
        path = await store.file_of(key)
        await asyncio.to_thread((work / SOURCE).symlink_to, path)
        return Source(str(work / SOURCE), "in place")
    if isinstance(store, Presigner):
        return Source(await store.presign_get(key, expires_in=URL_LIFETIME), "ranged HTTP")
    await outputs.fetch(store, key, work / SOURCE, size=size)
    return Source(str(work / SOURCE), "working copy")
