"""Media analysis of a large recording: reading the original in place against copying it out
first (what the worker did before), with ffprobe run by hand on the file as the floor.

    .venv/bin/python bench/jobs.py [--size 4GiB] [--store local|s3|sealed|both|all]

A recording of about `--size` (MPEG-2 in MPEG-TS, as interrogation-room recorders write) is made
once with ffmpeg, stored in a local store and in SeaweedFS, then analysed three ways, each the
probe and the continuity scan the worker runs:

- by hand: ffprobe on the file itself (the floor: no store in between);
- in place: `jobs.source.located` (a link to the local file, a presigned URL on S3, a private
  endpoint on 127.0.0.1 decrypting a sealed store's object as the tools read it);
- working copy: `jobs.outputs.fetch` into a folder first, as before.

It prints wall seconds and bytes written to the worker's disk for each, and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from measure import human, parse_size
from servers import s3_env, start_seaweed

from avidence.server.jobs import outputs, source
from avidence.storage.base import Store
from avidence.storage.local import LocalStore
from avidence.storage.s3 import S3Store
from avidence.transcode import continuity
from avidence.transcode.plan import SOURCE
from avidence.transcode.probe import probe

from support.stores import sealed_over

BITRATE = 40_000_000  # bits/s: a high-quality SD/HD recorder stream


def make_recording(path: Path, size: int) -> None:
    """MPEG-2 video + MP2 audio in MPEG-TS at a fixed bit rate, long enough to reach `size`."""
    seconds = max(int(size * 8 / BITRATE), 5)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
         f"testsrc2=size=1280x720:rate=25:duration={seconds}", "-f", "lavfi", "-i",
         f"sine=frequency=440:duration={seconds}", "-c:v", "mpeg2video", "-b:v",
         str(BITRATE), "-minrate", str(BITRATE), "-maxrate", str(BITRATE), "-bufsize",
         str(BITRATE), "-c:a", "mp2", "-f", "mpegts", str(path)],
        check=True,
        timeout=3600,
    )  # fmt: skip


def written_bytes() -> int:
    """Bytes this process caused to be written to storage so far (/proc/self/io)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


async def analyse(target: Path | str) -> None:
    info = await probe(target)
    await continuity.check(target, info)


async def timed(call: Callable[[], Awaitable[Any]]) -> tuple[float, int]:
    os.sync()
    before, started = written_bytes(), time.perf_counter()
    await call()
    os.sync()
    return time.perf_counter() - started, written_bytes() - before


async def measure(store: Store, key: str, original: Path, size: int, work: Path) -> dict[str, Any]:
    async def by_hand() -> None:
        await analyse(original)

    async def in_place() -> None:
        folder = work / "in-place"
        folder.mkdir()
        try:
            async with source.located(store, key, folder, size=size) as found:
                await analyse(found.url or Path(found.input))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    async def copied() -> None:
        folder = work / "copy"
        folder.mkdir()
        try:
            await outputs.fetch(store, key, folder / SOURCE, size=size)
            await analyse(folder / SOURCE)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    return {
        "by hand (ffprobe on the file)": await timed(by_hand),
        "in place": await timed(in_place),
        "working copy (before)": await timed(copied),
    }


async def store_object(store: Store, path: Path, key: str) -> None:
    target = await store.create(key)

    async def blocks() -> AsyncIterator[bytes]:
        with path.open("rb") as src:
            while block := await asyncio.to_thread(src.read, 16 * 1024 * 1024):
                yield block

    size = await store.append(target, offset=0, chunks=blocks())
    await store.finish(target, size=size)


def report(name: str, results: dict[str, Any]) -> None:
    print(f"\n{name}:")
    print("| path | seconds | bytes written to the worker's disk |")
    print("|---|---:|---:|")
    for what, (seconds, written) in results.items():
        print(f"| {what} | {seconds:.1f} | {human(written)} |")
    place, copy = results["in place"], results["working copy (before)"]
    hand = results["by hand (ffprobe on the file)"]
    print(f"- in place / working copy: {place[0] / copy[0]:.2f}x the time")
    print(f"- in place / by hand: {place[0] / hand[0]:.2f}x the time")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("4GiB"))
    parser.add_argument(
        "--store", choices=["local", "s3", "sealed", "both", "all"], default="both",
        help="both: local and S3; all: also a sealed local store (AES-256-GCM)",
    )  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="avidence-jobs-") as folder:
        tmp = Path(folder)
        recording = tmp / "recording.ts"
        began = time.perf_counter()
        make_recording(recording, args.size)
        size = recording.stat().st_size
        print(f"recording: {human(size)} made in {time.perf_counter() - began:.0f} s")
        key = "evidence/bench/recording.ts"
        if args.store in ("sealed", "all"):
            async with sealed_over(LocalStore(tmp / "sealed"), tmp) as sealed:
                await store_object(sealed.store, recording, key)
                report("sealed local store", await measure(sealed.store, key, recording, size, tmp))
        if args.store in ("local", "both", "all"):
            local = LocalStore(tmp / "store")
            await local.open()
            try:
                await store_object(local, recording, key)
                report("local store", await measure(local, key, recording, size, tmp))
            finally:
                await local.close()
        if args.store in ("s3", "both", "all"):
            seaweed = start_seaweed(tmp / "seaweed")
            env = s3_env(seaweed)
            os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
            s3 = S3Store(bucket="bench-jobs", endpoint_url=seaweed.endpoint)
            try:
                await s3.open()
                await store_object(s3, recording, key)
                report("S3 (SeaweedFS)", await measure(s3, key, recording, size, tmp))
            finally:
                await s3.close()
                seaweed.stop()


if __name__ == "__main__":
    asyncio.run(main())
