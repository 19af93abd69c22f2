"""Streaming benchmark: ticket media (`/t/<token>/media/...`) against boto3 `get_object` straight
from the same SeaweedFS, on the same object, in the same run.

    .venv/bin/python bench/stream.py [--size 1GiB] [--seeks 100] [--repeat 3] [--append-docs]

Everything runs on 127.0.0.1: one SeaweedFS and one `avidence-server serve --storage s3`. The
object is uploaded once through avidence (tus), a ticket is issued with `avidence-server ticket
create`, and a view is started as the viewer page does. Then:

- sequential: the whole object read in 1 MiB pieces, through the ticket vs boto3;
- seeks: `--seeks` random 1 MiB ranges (the same offsets for both), one request each on a
  kept-alive connection, as a player seeking; median and p95 latency.

It prints MB/s (10^6 bytes/s), latencies and ratios measured in this run and asserts nothing
about absolute times. `--append-docs` appends the result and the command to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from measure import DataFiles, MiB, human, mb_per_s, parse_size
from servers import BIN, ROOT, AvidenceServer, SeaweedServer, start_seaweed

CHUNK = MiB
BUCKET = "bench-stream"
TUS = {"Tus-Resumable": "1.0.0"}


@dataclass
class Numbers:
    sequential: list[float]  # seconds per full read
    seeks: list[float]  # seconds per 1 MiB ranged read

    def mbps(self, size: int) -> float:
        return mb_per_s(size, statistics.median(self.sequential))

    def seek_ms(self, quantile: float = 0.5) -> float:
        ordered = sorted(self.seeks)
        return 1000 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]


# -- set-up ------------------------------------------------------------------------------------


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    fd = os.open(path, os.O_RDONLY)
    try:
        offset = 0
        while block := await asyncio.to_thread(os.pread, fd, 4 * MiB, offset):
            offset += len(block)
            yield block
    finally:
        os.close(fd)


async def upload(server: AvidenceServer, path: Path, size: int) -> tuple[str, str]:
    """Upload the `size` bytes of `path` through avidence; return (evidence id, storage key)."""
    auth = {"Authorization": f"Bearer {server.token}"}
    create = {**auth, **TUS, "Upload-Length": str(size), "Upload-Metadata": "case QkVOQ0g="}
    timeout = aiohttp.ClientTimeout(total=1800)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(server.url, headers=create) as answer:
            assert answer.status == 201, await answer.text()
            location = answer.headers["Location"]
        patch = {
            **auth,
            **TUS,
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
            "Content-Length": str(size),
        }
        evidence_id = ""
        async with session.patch(location, headers=patch, data=_file_chunks(path)) as answer:
            assert answer.status == 204, await answer.text()
            evidence_id = answer.headers.get("Avidence-Evidence-Id", "")
        for _ in range(3000):  # bounded wait for verification (300 s)
            if evidence_id:
                break
            await asyncio.sleep(0.1)
            async with session.head(location, headers={**auth, **TUS}) as answer:
                evidence_id = answer.headers.get("Avidence-Evidence-Id", "")
        assert evidence_id, "the upload did not become evidence"
        base = server.url.removesuffix("/files/")
        async with session.get(f"{base}/api/evidence/{evidence_id}", headers=auth) as answer:
            record = await answer.json()
    return evidence_id, str(record["storage_key"])


def ticket_link(server: AvidenceServer, evidence_id: str) -> str:
    out = subprocess.run(
        [
            str(BIN / "avidence-server"),
            "ticket",
            "create",
            "--data-dir",
            str(server.data_dir),
            "--evidence",
            evidence_id,
            "--recipient",
            "bench (judge)",
            "--expires",
            "2h",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        env={**server.env, "AVIDENCE_PORT": str(server.port)},
    )
    return out.stdout.strip().splitlines()[-1]


# -- measuring ---------------------------------------------------------------------------------


def boto3_sequential(client: Any, key: str, size: int) -> float:
    started, received = time.perf_counter(), 0
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"]
    for chunk in body.iter_chunks(CHUNK):
        received += len(chunk)
    assert received == size, received
    return time.perf_counter() - started


def boto3_seek(client: Any, key: str, offset: int) -> float:
    started = time.perf_counter()
    answer = client.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={offset}-{offset + CHUNK - 1}")
    assert len(answer["Body"].read()) == CHUNK
    return time.perf_counter() - started


async def ticket_sequential(session: aiohttp.ClientSession, url: str, size: int) -> float:
    started, received = time.perf_counter(), 0
    async with session.get(url) as answer:
        assert answer.status == 200, await answer.text()
        while chunk := await answer.content.read(CHUNK):
            received += len(chunk)
    assert received == size, received
    return time.perf_counter() - started


async def ticket_seek(session: aiohttp.ClientSession, url: str, offset: int) -> float:
    started = time.perf_counter()
    async with session.get(
        url, headers={"Range": f"bytes={offset}-{offset + CHUNK - 1}"}
    ) as answer:
        assert answer.status == 206, await answer.text()
        assert len(await answer.read()) == CHUNK
    return time.perf_counter() - started


async def measure(
    seaweed: SeaweedServer,
    key: str,
    link: str,
    evidence_id: str,
    *,
    size: int,
    offsets: list[int],
    repeat: int,
) -> tuple[Numbers, Numbers]:
    """Alternate the two paths, after one unmeasured read each, so caches favour neither."""
    ours, boto = Numbers([], []), Numbers([], [])
    client = seaweed.client()
    timeout = aiohttp.ClientTimeout(total=1800)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(f"{link}/views", json={"evidence": evidence_id}) as answer:
                assert answer.status == 201, await answer.text()
                grant = (await answer.json())["view"]
            url = f"{link}/media/{evidence_id}?view={grant}"
            await asyncio.to_thread(boto3_sequential, client, key, size)
            await ticket_sequential(session, url, size)
            for _ in range(repeat):
                boto.sequential.append(await asyncio.to_thread(boto3_sequential, client, key, size))
                ours.sequential.append(await ticket_sequential(session, url, size))
            for offset in offsets:
                boto.seeks.append(await asyncio.to_thread(boto3_seek, client, key, offset))
                ours.seeks.append(await ticket_seek(session, url, offset))
    finally:
        client.close()
    return ours, boto


# -- report ------------------------------------------------------------------------------------


def report(size: int, ours: Numbers, boto: Numbers, seeks: int) -> str:
    rows = [
        ("sequential read", f"{ours.mbps(size):.0f} MB/s", f"{boto.mbps(size):.0f} MB/s"),
        ("1 MiB seek, median", f"{ours.seek_ms():.1f} ms", f"{boto.seek_ms():.1f} ms"),
        ("1 MiB seek, p95", f"{ours.seek_ms(0.95):.1f} ms", f"{boto.seek_ms(0.95):.1f} ms"),
    ]
    lines = [
        f"| {human(size)} object, {seeks} seeks | ticket media (avidence) | boto3 get_object |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        f"- sequential ratio (avidence / boto3): {ours.mbps(size) / boto.mbps(size):.2f}x",
        f"- median seek ratio (avidence / boto3): {ours.seek_ms() / boto.seek_ms():.2f}x "
        "(lower is faster)",
    ]
    return "\n".join(lines)


def append_docs(text: str, command: str) -> None:
    docs = ROOT / "docs" / "benchmarks.md"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    section = (
        f"\n## Streaming through a ticket (bench/stream.py)\n\n"
        f"Measured {stamp} on {platform.node() or 'this box'} ({os.cpu_count()} cores, load "
        f"average {os.getloadavg()[0]:.1f} at the end: other work shared the cores), SeaweedFS "
        "and `avidence-server serve --storage s3` on 127.0.0.1, one client:\n\n"
        f"```sh\n{command}\n```\n\n{text}\n\n"
        "The media path is aiohttp -> ticket and grant checks (SQLite) -> `Store.read` (an S3 "
        "HEAD then a ranged GET) -> the socket, chunk by chunk; a seek costs those extra round "
        "trips, a sequential read the extra copy through the server.\n"
    )
    with docs.open("a", encoding="utf-8") as out:  # append only: other sections are not ours
        out.write(section)
    print(f"appended to {docs}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("1GiB"))
    parser.add_argument("--seeks", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--append-docs", action="store_true")
    args = parser.parse_args()
    command = ".venv/bin/python bench/stream.py " + " ".join(sys.argv[1:])
    rng = random.Random(args.seed)
    offsets = [rng.randrange(0, args.size - CHUNK) for _ in range(args.seeks)]
    with tempfile.TemporaryDirectory(prefix="avidence-stream-") as folder:
        tmp = Path(folder)
        seaweed = start_seaweed(tmp / "seaweed")
        server = AvidenceServer.s3(tmp / "avidence", seaweed, BUCKET)
        # boto3 reads the very object the ticket serves: it must be stored as uploaded
        # (bench/sealed_http.py compares sealed with plain through the ticket).
        server.env["AVIDENCE_ENCRYPTION"] = "off"
        try:
            server.start()
            path = DataFiles(tmp / "files").get(args.size)
            print(f"uploading {human(args.size)} through avidence ...")
            evidence_id, key = asyncio.run(upload(server, path, args.size))
            path.unlink()
            link = ticket_link(server, evidence_id)
            print(f"ticket {link}")
            print("measuring: ticket media and boto3 get_object, alternately ...")
            ours, boto = asyncio.run(
                measure(
                    seaweed,
                    key,
                    link,
                    evidence_id,
                    size=args.size,
                    offsets=offsets,
                    repeat=args.repeat,
                )
            )
        finally:
            server.stop()
            seaweed.stop()
    text = report(args.size, ours, boto, args.seeks)
    print()
    print(text)
    if args.append_docs:
        append_docs(text, command)


if __name__ == "__main__":
    main()
