"""Measure what one `avidence-server serve` process needs on this machine, for sizing.

Starts a server on 127.0.0.1 (local store and SQLite in a temporary folder unless other
`--serve-arg`s say otherwise), reads its resident memory idle, then sends CONCURRENCY uploads of
SIZE bytes each at once (one streamed PATCH each, as `avidence upload` or tus-js-client send
large chunks) while sampling memory, and prints the idle and peak RSS and the server's CPU
seconds per GiB received. Linux only (/proc). Example:

    .venv/bin/python deploy/tools/sizing.py --concurrency 8 --size-mib 512
    .venv/bin/python deploy/tools/sizing.py --digests blake3,sha256,sm3
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

MiB = 1024 * 1024
GiB = 1024 * MiB
BIN = Path(sys.executable).parent
TICKS = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def body(size: int, block: bytes) -> AsyncIterator[bytes]:
    sent = 0
    while sent < size:
        chunk = block[: min(len(block), size - sent)]
        sent += len(chunk)
        yield chunk


async def upload(session: aiohttp.ClientSession, url: str, token: str, size: int) -> None:
    meta = "case " + base64.b64encode(b"SIZING").decode()
    headers = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    async with session.post(
        f"{url}/files/",
        headers={**headers, "Upload-Length": str(size), "Upload-Metadata": meta},
    ) as r:
        r.raise_for_status()
        location = r.headers["Location"]
    block = os.urandom(MiB)
    async with session.patch(
        location,
        data=body(size, block),
        headers={
            **headers,
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
            "Content-Length": str(size),
        },
    ) as r:
        if r.status != 204:
            raise RuntimeError(f"PATCH answered {r.status}: {await r.text()}")


async def sample_peak(pid: int, stop: asyncio.Event) -> int:
    peak = 0
    while not stop.is_set():
        peak = max(peak, rss_bytes(pid))
        await asyncio.sleep(0.05)
    return peak


async def measure(url: str, token: str, pid: int, *, concurrency: int, size: int) -> None:
    await asyncio.sleep(2)
    idle = rss_bytes(pid)
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_peak(pid, stop))
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=3600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(upload(session, url, token, size) for _ in range(concurrency)))
    cpu1, t1 = cpu_seconds(pid), time.perf_counter()
    stop.set()
    peak = await sampler
    total = concurrency * size
    print(f"server RSS idle:                 {idle / MiB:7.1f} MiB")
    print(f"server RSS peak, {concurrency} uploads:     {peak / MiB:7.1f} MiB")
    print(f"  per concurrent upload:         {(peak - idle) / concurrency / MiB:7.1f} MiB")
    print(f"received:                        {total / GiB:7.2f} GiB in {t1 - t0:.1f} s")
    print(f"  throughput:                    {total / (t1 - t0) / MiB:7.1f} MiB/s")
    print(f"server CPU per GiB received:     {(cpu1 - cpu0) / (total / GiB):7.2f} s")
    print(f"cores busy at that rate:         {(cpu1 - cpu0) / (t1 - t0):7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--size-mib", type=int, default=512, help="bytes per upload, MiB")
    parser.add_argument("--digests", default="blake3,sha256")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra serve option")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="avidence-sizing-"))
    port = free_port()
    env = {**os.environ, "AVIDENCE_DIGESTS": args.digests, "AVIDENCE_LOG_LEVEL": "WARNING"}
    server = BIN / "avidence-server"
    try:
        token = subprocess.run(
            [str(server), "token", "create", "--data-dir", str(data), "--role", "uploader",
             "--name", "sizing"],
            check=True, capture_output=True, text=True, env=env,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        banner = data / "banner"
        proc = subprocess.Popen(
            [str(server), "serve", "--data-dir", str(data), "--port", str(port),
             "--banner-file", str(banner), *args.serve_arg],
            env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while not banner.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("server did not start")
                time.sleep(0.05)
            print(f"digests {args.digests}; {args.concurrency} x {args.size_mib} MiB uploads")
            asyncio.run(
                measure(
                    f"http://127.0.0.1:{port}",
                    token,
                    proc.pid,
                    concurrency=args.concurrency,
                    size=args.size_mib * MiB,
                )
            )
        finally:
            proc.terminate()
            proc.wait(30)
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
