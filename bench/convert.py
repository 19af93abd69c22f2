"""`encrypt-existing` against a plain copy of the same objects, in the same run.

    .venv/bin/python bench/convert.py [--objects 8x32MiB] [--seeks 40] [--backends local,s3]

For each backend (the local folder, and S3 on a SeaweedFS started here on 127.0.0.1) the same
plain objects are stored twice. The baseline copies each one the plain way (read it, hash it
with BLAKE3 + SHA-256, write it as a new object): what any copy-and-verify migration costs.
The conversion seals each one in place (`storage.sealconvert`: read, seal into a copy beside
it, read the copy back, open and hash it, store the key record, swap). It prints MB/s of
plaintext and their ratio, and the 1 MiB seek latency on a plain object read straight from the
backend against through the sealed store (what a server with `encryption = "on"` pays for a
not yet converted object). It asserts nothing. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import blake3
from measure import human, mb_per_s, parse_count_size
from servers import ROOT, seaweed_stores

sys.path.insert(0, str(ROOT / "tests"))

from avidence.storage.base import Store
from avidence.storage.digests import MultiDigest
from avidence.storage.local import LocalStore
from avidence.storage.sealconvert import Converter, Outcome

from support.stores import sealed_over

MiB = 1024 * 1024


async def _one(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 4 * MiB):
        yield data[i : i + 4 * MiB]


async def put(store: Store, key: str, chunks: AsyncIterator[bytes]) -> None:
    target = await store.create(key)
    offset = await store.append(target, offset=0, chunks=chunks)
    await store.finish(target, size=offset)


async def plain_copy(store: Store, key: str) -> None:
    digest = MultiDigest(["blake3", "sha256"])

    async def hashed() -> AsyncIterator[bytes]:
        async for chunk in await store.read(key):
            await digest.update_async(chunk)
            yield chunk

    await put(store, f"{key}.copy", hashed())


async def seek_ms(
    read: Callable[[int], Awaitable[AsyncIterator[bytes]]], offsets: list[int]
) -> float:
    took = []
    for start in offsets:
        began = time.perf_counter()
        async for _ in await read(start):
            pass
        took.append(time.perf_counter() - began)
    return statistics.median(took) * 1000


async def run_backend(
    name: str, make: Callable[[Path], Store], count: int, size: int, tmp: Path, seeks: int
) -> None:
    data = [os.urandom(size) for _ in range(count)]
    expect = [
        {"blake3": blake3.blake3(d).hexdigest(), "sha256": hashlib.sha256(d).hexdigest()}
        for d in data
    ]
    offsets = [random.Random(5).randrange(0, size - MiB) for _ in range(seeks)]
    folder = tmp / name.split()[0]
    folder.mkdir()
    async with sealed_over(make(folder), folder) as sealed:
        inner, store = sealed.inner, sealed.store
        keys = [f"originals/{uuid.uuid4().hex}" for _ in data]
        for key, body in zip(keys, data, strict=True):
            await put(inner, key, _one(body))
        first = keys[0]
        direct = await seek_ms(lambda s: inner.read(first, start=s, length=MiB), offsets)
        through = await seek_ms(lambda s: store.read(first, start=s, length=MiB), offsets)

        began = time.perf_counter()
        for key in keys:
            await plain_copy(inner, key)
        copy_s = time.perf_counter() - began

        converter = Converter(store)
        began = time.perf_counter()
        for key, want in zip(keys, expect, strict=True):
            done = await converter.convert(key, expect=want, size=size)
            assert done.outcome is Outcome.SEALED, done
        convert_s = time.perf_counter() - began
    total = count * size
    copy_rate, convert_rate = mb_per_s(total, copy_s), mb_per_s(total, convert_s)
    print(f"\n{name}: {count} objects of {human(size)}")
    print(f"  plain copy + hash   {copy_rate:8.0f} MB/s")
    print(f"  encrypt-existing    {convert_rate:8.0f} MB/s   {convert_rate / copy_rate:.2f}x")
    print(f"  1 MiB seek on a plain object: backend {direct:.2f} ms, through the sealed "
          f"store {through:.2f} ms   {through / direct:.2f}x")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", default="8x32MiB")
    parser.add_argument("--seeks", type=int, default=40)
    parser.add_argument("--backends", default="local,s3")
    args = parser.parse_args()
    count, size = parse_count_size(args.objects)
    with tempfile.TemporaryDirectory(prefix="bench-convert-") as tmp_name:
        tmp = Path(tmp_name)
        backends = args.backends.split(",")
        if "local" in backends:
            await run_backend(
                "local", lambda p: LocalStore(p / "store"), count, size, tmp, args.seeks
            )
        if "s3" in backends:
            with seaweed_stores(tmp / "seaweed") as s3:
                await run_backend("s3 (SeaweedFS)", s3, count, size, tmp, args.seeks)


if __name__ == "__main__":
    asyncio.run(main())
