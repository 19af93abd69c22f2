"""Every storage backend behind one fixture, so one conformance suite runs against all of them.

`store` is parametrized over the backends ("local", "s3", "s3-streamed"); a test taking it
runs once per backend, the S3 ones against a real SeaweedFS. SeaweedFS is requested lazily, only
for the S3 parameters, so `-k local` runs start no server.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from avidence.server.catalog.db import Catalog
from avidence.storage.base import Store
from avidence.storage.local import LocalStore
from avidence.storage.sealed import BATCH, SealedStore, seal
from avidence.storage.sealformat import Suite

# "s3-streamed": S3 with parts sent while their request arrives (aws-chunked, CRC-32 trailer),
# what "auto" picks for https endpoints; the fixture's SeaweedFS is plain http, where "s3" signs.
BACKENDS = ["local", "s3", "s3-streamed"]
S3_PART_SIZE = 5 * 1024 * 1024  # the S3 minimum, so "larger than a part" stays cheap


SEALED = ["sealed-local", "sealed-s3"]  # the same backends under `storage.sealed`


def _backend(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> Store:
    if kind == "local":
        return LocalStore(tmp_path / "store")
    from avidence.storage.s3 import S3Store  # only the s3 runs need boto3 and SeaweedFS

    seaweed = request.getfixturevalue("s3_env")
    bucket: str = request.getfixturevalue("s3_bucket")
    return S3Store(
        endpoint_url=seaweed.endpoint,
        bucket=bucket,
        part_size=S3_PART_SIZE,
        part_checksum="trailer" if kind == "s3-streamed" else "signed",
    )


@dataclass
class Sealed:
    """A sealed store, the backend under it (to look at what is really stored) and the
    catalog holding its data keys."""

    store: SealedStore
    inner: Store
    catalog: Catalog
    kek_dir: Path


@contextlib.asynccontextmanager
async def sealed_over(
    inner: Store, tmp_path: Path, *, suite: Suite = Suite.INTERNATIONAL, batch: int = BATCH
) -> AsyncIterator[Sealed]:
    """`inner` sealed with a KEK file in `tmp_path` and data keys in a SQLite catalog there."""
    from avidence.server.keys.datakeys import CatalogKeyRing
    from avidence.server.keys.kek import FileKeks, write_new

    folder = tmp_path / "keks"
    catalog = Catalog(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    await catalog.migrate()
    keks = FileKeks(folder, write_new(folder, suite))
    sealed = seal(inner, ring=CatalogKeyRing(catalog.engine), kek=keks, suite=suite, batch=batch)
    await sealed.open()
    try:
        yield Sealed(sealed, inner, catalog, folder)
    finally:
        await sealed.close()
        await catalog.close()


@contextlib.asynccontextmanager
async def opened(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> AsyncIterator[Store]:
    """An opened, empty store of kind `kind` (one of BACKENDS or SEALED), closed after."""
    if kind in SEALED:
        inner = _backend(request, tmp_path, kind.removeprefix("sealed-"))
        async with sealed_over(inner, tmp_path) as value:
            yield value.store
        return
    backend = _backend(request, tmp_path, kind)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


@pytest_asyncio.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An opened, empty store of each backend, closed after the test."""
    async with opened(request, tmp_path, request.param) as backend:
        yield backend


@pytest_asyncio.fixture(params=SEALED)
async def sealed(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Sealed]:
    """A sealed store over the local folder and over S3 (SeaweedFS)."""
    kind = request.param.removeprefix("sealed-")
    async with sealed_over(_backend(request, tmp_path, kind), tmp_path) as value:
        yield value


async def collect(stream: AsyncIterable[bytes]) -> bytes:
    """All bytes of a stream (test data only: this buffers)."""
    out = bytearray()
    async for chunk in stream:
        out += chunk
    return bytes(out)


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    """`data` as an async stream of `size`-byte chunks (the last one shorter)."""
    for i in range(0, len(data), size):
        yield data[i : i + size]
