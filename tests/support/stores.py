"""Every storage backend behind one fixture, so one conformance suite runs against all of them.

`store` is parametrized over the backends ("local", "s3", "s3-streamed"); a test taking it
runs once per backend, the S3 ones against a real SeaweedFS. SeaweedFS is requested lazily, only
for the S3 parameters, so `-k local` runs start no server.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from avidence.storage.base import Store
from avidence.storage.local import LocalStore

# "s3-streamed": S3 with parts sent while their request arrives (aws-chunked, CRC-32 trailer),
# what "auto" picks for https endpoints; the fixture's SeaweedFS is plain http, where "s3" signs.
BACKENDS = ["local", "s3", "s3-streamed"]
S3_PART_SIZE = 5 * 1024 * 1024  # the S3 minimum, so "larger than a part" stays cheap


@pytest_asyncio.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An opened, empty store of each backend, closed after the test."""
    backend: Store
    if request.param == "local":
        backend = LocalStore(tmp_path / "store")
    else:
        from avidence.storage.s3 import S3Store  # only the s3 runs need boto3 and SeaweedFS

        seaweed = request.getfixturevalue("s3_env")
        bucket: str = request.getfixturevalue("s3_bucket")
        backend = S3Store(
            endpoint_url=seaweed.endpoint,
            bucket=bucket,
            part_size=S3_PART_SIZE,
            part_checksum="trailer" if request.param == "s3-streamed" else "signed",
        )
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


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
