"""Envelope encryption at rest: the sealed store against the plain one, in the same run.

    .venv/bin/python bench/sealed.py [--size 256MiB] [--seeks 50] [--repeat 2]
                                     [--backends local,s3]

For each backend (the local folder, and S3 on a SeaweedFS started here on 127.0.0.1) the same
bytes go through the plain store, the sealed store with AES-256-GCM (`international`) and with
SM4-GCM (`gm`):

- upload: appends of 64 MiB requests in 256 KiB chunks, each chunk hashed with BLAKE3 and
  SHA-256 on the way as the upload session does, then finish;
- seeks: `--seeks` random 1 MiB ranges (the same offsets for each), latency median and p95;
- stream: the whole object read once.

Stores are driven in-process through the `Store` contract, so the ratio is the cost of sealing
and of the key lookups, not of HTTP. It prints MB/s, latencies and ratios against the plain
store; it asserts nothing. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from measure import human, mb_per_s, parse_size
from servers import ROOT, seaweed_stores

sys.path.insert(0, str(ROOT / "tests"))

from avidence.storage.base import Store
from avidence.storage.digests import MultiDigest
from avidence.storage.local import LocalStore
from avidence.storage.sealformat import Suite

from support.stores import sealed_over

MiB = 1024 * 1024
REQUEST = 64 * MiB
CHUNK = 256 * 1024


async def _chunks(data: memoryview) -> AsyncIterator[bytes]:
    for i in range(0, len(data), CHUNK):
        yield bytes(data[i : i + CHUNK])


async def upload(store: Store, key: str, data: bytes) -> float:
    view = memoryview(data)
    digest = MultiDigest(["blake3", "sha256"])

    async def hashed(part: memoryview) -> AsyncIterator[bytes]:
        async for chunk in _chunks(part):
            await asyncio.to_thread(digest.update, chunk)
            yield chunk

    began = time.perf_counter()
    target = await store.create(key)
    offset = 0
    while offset < len(data):
        part = view[offset : offset + REQUEST]
        offset = await store.append(target, offset=offset, chunks=hashed(part), expect=len(part))
    await store.finish(target, size=len(data))
    return time.perf_counter() - began


async def seeks(store: Store, key: str, size: int, offsets: list[int]) -> list[float]:
    took = []
    for start in offsets:
        began = time.perf_counter()
        got = 0
        async for chunk in await store.read(key, start=start, length=MiB):
            got += len(chunk)
        took.append(time.perf_counter() - began)
        assert got == min(MiB, size - start)
    return took


async def stream(store: Store, key: str) -> float:
    began = time.perf_counter()
    async for _ in await store.read(key):
        pass
    return time.perf_counter() - began


class Plain(AbstractAsyncContextManager[Store]):
    def __init__(self, store: Store) -> None:
        self.store = store

    async def __aenter__(self) -> Store:
        await self.store.open()
        return self.store

    async def __aexit__(self, *exc: object) -> None:
        await self.store.close()


class SealedCtx(AbstractAsyncContextManager[Store]):
    def __init__(self, inner: Store, folder: Path, suite: Suite) -> None:
        self.manager = sealed_over(inner, folder, suite=suite)

    async def __aenter__(self) -> Store:
        return (await self.manager.__aenter__()).store

    async def __aexit__(self, *exc: object) -> None:
        await self.manager.__aexit__(None, None, None)


async def run_backend(
    name: str,
    make: Callable[[Path], Store],
    data: bytes,
    offsets: list[int],
    tmp: Path,
    repeat: int,
) -> None:
    variants: dict[str, Callable[[Path], AbstractAsyncContextManager[Store]]] = {
        "plain": lambda p: Plain(make(p)),
        "AES-256-GCM": lambda p: SealedCtx(make(p), p, Suite.INTERNATIONAL),
        "SM4-GCM": lambda p: SealedCtx(make(p), p, Suite.GM),
    }
    rows: dict[str, tuple[float, float, float, float]] = {}
    for round_ in range(repeat):  # variants take turns, so drift hits them alike; best kept
        for label, variant in variants.items():
            folder = tmp / f"{name}-{label}-{round_}"
            folder.mkdir()
            async with variant(folder) as store:
                key = f"bench/{uuid.uuid4().hex}/original.bin"
                up = await upload(store, key, data)
                lat = await seeks(store, key, len(data), offsets)
                full = await stream(store, key)
            p95 = statistics.quantiles(lat, n=20)[18]
            now = (mb_per_s(len(data), up), statistics.median(lat) * 1000, p95 * 1000,
                   mb_per_s(len(data), full))  # fmt: skip
            old = rows.get(label, now)
            rows[label] = (max(old[0], now[0]), min(old[1], now[1]), min(old[2], now[2]),
                           max(old[3], now[3]))  # fmt: skip
    base = rows["plain"]
    print(f"\n{name}: {human(len(data))}, {len(offsets)} seeks of 1 MiB, best of {repeat}")
    print(f"{'store':<12} {'upload MB/s':>12} {'x':>6} {'seek ms p50':>12} {'x':>6} "
          f"{'p95':>7} {'stream MB/s':>12} {'x':>6}")  # fmt: skip
    for label, (up, p50, p95, full) in rows.items():
        print(
            f"{label:<12} {up:>12.0f} {up / base[0]:>6.2f} {p50:>12.2f} {p50 / base[1]:>6.2f} "
            f"{p95:>7.2f} {full:>12.0f} {full / base[3]:>6.2f}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="256MiB")
    parser.add_argument("--seeks", type=int, default=50)
    parser.add_argument("--backends", default="local,s3")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    size = parse_size(args.size)
    data = os.urandom(size)
    rng = random.Random(21)
    offsets = [rng.randrange(0, size - MiB) for _ in range(args.seeks)]
    with tempfile.TemporaryDirectory(prefix="bench-sealed-") as tmp_name:
        tmp = Path(tmp_name)
        backends = args.backends.split(",")
        if "local" in backends:
            await run_backend(
                "local", lambda p: LocalStore(p / "store"), data, offsets, tmp, args.repeat
            )
        if "s3" in backends:
            with seaweed_stores(tmp / "seaweed") as s3:
                await run_backend("s3 (SeaweedFS)", s3, data, offsets, tmp, args.repeat)


if __name__ == "__main__":
    asyncio.run(main())
