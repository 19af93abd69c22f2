"""Moving bytes between the store and a job's work folder, and cleaning up after dead runs.

ffmpeg needs a seekable local file (an MP4's index may sit at its end, the continuity check and
each profile read it again), so a job first copies the original from the store into its work
folder under `DATA_DIR/tmp/jobs/<job id>/source`, for every backend alike. Outputs go back into
the store through the ordinary `create/append/finish` path, hashed (BLAKE3, SHA-256) on the way.

A worker may die at any point. Each upload target it opens is noted on the job first (`stage`),
so the next run aborts those targets and deletes finished objects that no derivative record
claims: a killed run leaves no partial output behind, and the retry writes to the same keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from avidence.storage import errors as store_errors
from avidence.storage.base import Store, Target
from avidence.storage.digests import MultiDigest
from avidence.transcode.errors import ToolError

from . import records

CHUNK = 8 * 1024 * 1024
SPACE_MARGIN = 64 * 1024 * 1024  # keep this much free beyond the copy itself
DIGESTS = ("blake3", "sha256")


async def fetch(store: Store, key: str, dest: Path, *, size: int) -> None:
    """Copy a stored object into `dest`; ToolError (retried later) when the disk is too full."""
    free = (await asyncio.to_thread(shutil.disk_usage, dest.parent)).free
    if free < size + SPACE_MARGIN:
        raise ToolError(
            f"not enough free space for a working copy: {size} bytes needed, {free} free "
            f"in {dest.parent.parent}"
        )
    stream = await store.read(key)
    with dest.open("wb") as out:
        async for chunk in stream:
            await asyncio.to_thread(out.write, chunk)


async def _chunks(path: Path, digest: MultiDigest) -> AsyncIterator[bytes]:
    with path.open("rb") as source:
        while block := await asyncio.to_thread(source.read, CHUNK):
            await digest.update_async(block)
            yield block


async def put(
    store: Store,
    path: Path,
    key: str,
    *,
    staged: Callable[[Target], Awaitable[None]],
) -> tuple[int, dict[str, str]]:
    """Store a finished output file as object `key`; (size, digests). `staged` is awaited with
    the new upload target before any byte is sent, so a crash can be cleaned up."""
    target = await store.create(key)  # AlreadyExists: see `put_replacing`
    await staged(target)
    digest = MultiDigest(DIGESTS)
    length = (await asyncio.to_thread(path.stat)).st_size
    size = await store.append(target, offset=0, chunks=_chunks(path, digest), expect=length)
    await store.finish(target, size=size)
    return size, digest.hexdigests()


async def put_replacing(
    store: Store,
    engine: AsyncEngine,
    path: Path,
    key: str,
    *,
    staged: Callable[[Target], Awaitable[None]],
) -> tuple[int, dict[str, str]]:
    """`put`, first removing an unrecorded object at `key` (written by a run that lost the job
    after the successor's clean-up); a recorded one is never replaced."""
    try:
        return await put(store, path, key, staged=staged)
    except store_errors.AlreadyExists:
        if not await remove_leftovers(store, engine, staged=[], keys=[key]):
            raise
    return await put(store, path, key, staged=staged)


async def remove_leftovers(
    store: Store,
    engine: AsyncEngine,
    *,
    staged: Iterable[dict[str, str]],
    keys: Iterable[str],
) -> list[str]:
    """Abort staged targets and delete objects at `keys` (or staged keys) that no derivative
    record claims; return the keys deleted. Idempotent."""
    entries = list(staged)
    for entry in entries:
        with contextlib.suppress(store_errors.NotFound):
            await store.abort(Target(entry["key"], entry.get("handle", "")))
    candidates = sorted({*keys, *(e["key"] for e in entries)})
    recorded = await records.recorded_keys(engine, candidates)
    deleted = []
    for key in candidates:
        if key in recorded:
            continue
        try:
            await store.delete(key)
        except store_errors.NotFound:
            continue
        deleted.append(key)
    return deleted


def fresh_folder(path: Path) -> Path:
    """An empty work folder (whatever a dead run left there is removed first)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
