"""Streaming benchmark: ticket media (`/t/<token>/media/...`) against what an operator would
otherwise deploy in front of the same bytes, in the same run.

    .venv/bin/python bench/stream.py [--store s3|local] [--size 1GiB] [--seeks 100] \
        [--repeat 3] [--append-docs]

Everything runs on 127.0.0.1. The object is uploaded once through avidence (tus), a ticket is
issued with `avidence-server ticket create`, and a view is started as the viewer page does.

- `--store s3`: one SeaweedFS and `avidence-server serve --storage s3`; the peers are nginx
  proxying a presigned URL of the same object (one worker process, as the server is one
  process) and boto3 `get_object` straight from SeaweedFS (no proxy hop at all).
- `--store local`: `avidence-server serve` on its local folder; the peer is nginx serving the
  same stored file with `sendfile on`, and beside it a bare aiohttp `FileResponse` of the file
  (bench/aiohttppeer.py): the floor of the framework, with no checks at all.

Per path: sequential (the whole object read in 1 MiB pieces), seeks (`--seeks` random 1 MiB
ranges, the same offsets for every path, one request each on a kept-alive connection, as a
player seeking; median and p95), and the serving process's CPU seconds per GB read (avidence's
server process, nginx's worker; boto3 has no server). Paths alternate so caches favour none. It
prints MB/s (10^6 bytes/s), latencies and ratios and asserts nothing about absolute times.
`--append-docs` appends the result and the command to docs/benchmarks.md.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttppeer import FilePeer, start_file_peer
from measure import DataFiles, MiB, cpu_seconds, human, mb_per_s, parse_size
from nginxpeer import Nginx, s3_proxy, start_nginx, static_root
from servers import BIN, ROOT, AvidenceServer, free_port, start_seaweed

CHUNK = MiB
BUCKET = "bench-stream"
TUS = {"Tus-Resumable": "1.0.0"}


@dataclass
class Numbers:
    sequential: list[float]  # seconds per full read
    seeks: list[float]  # seconds per 1 MiB ranged read
    cpu: list[float] = field(default_factory=list)  # serving process CPU s per full read

    def mbps(self, size: int) -> float:
        return mb_per_s(size, statistics.median(self.sequential))

    def seek_ms(self, quantile: float = 0.5) -> float:
        ordered = sorted(self.seeks)
        return 1000 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]

    def cpu_per_gb(self, size: int) -> float | None:
        return statistics.median(self.cpu) * 1e9 / size if self.cpu else None


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


async def http_sequential(session: aiohttp.ClientSession, url: str, size: int) -> float:
    started, received = time.perf_counter(), 0
    async with session.get(url) as answer:
        assert answer.status == 200, await answer.text()
        while chunk := await answer.content.read(CHUNK):
            received += len(chunk)
    assert received == size, received
    return time.perf_counter() - started


async def http_seek(session: aiohttp.ClientSession, url: str, offset: int) -> float:
    started = time.perf_counter()
    async with session.get(
        url, headers={"Range": f"bytes={offset}-{offset + CHUNK - 1}"}
    ) as answer:
        assert answer.status == 206, await answer.text()
        assert len(await answer.read()) == CHUNK
    return time.perf_counter() - started


@dataclass
class Path_:
    """One way to read the object: over HTTP from `url` (served by process `pid`), or boto3."""

    name: str
    url: str | None = None
    pid: int | None = None
    boto: Any = None
    key: str = ""

    async def sequential(self, session: aiohttp.ClientSession, size: int) -> tuple[float, float]:
        """(seconds, serving CPU seconds) of one full read."""
        before = cpu_seconds(self.pid) if self.pid else 0.0
        if self.boto is not None:
            took = await asyncio.to_thread(boto3_sequential, self.boto, self.key, size)
        else:
            assert self.url is not None
            took = await http_sequential(session, self.url, size)
        return took, (cpu_seconds(self.pid) - before) if self.pid else 0.0

    async def seek(self, session: aiohttp.ClientSession, offset: int) -> float:
        if self.boto is not None:
            return await asyncio.to_thread(boto3_seek, self.boto, self.key, offset)
        assert self.url is not None
        return await http_seek(session, self.url, offset)


async def start_view(session: aiohttp.ClientSession, link: str, evidence_id: str) -> str:
    """The media URL of a started view, as the viewer page gets it."""
    async with session.post(f"{link}/views", json={"evidence": evidence_id}) as answer:
        assert answer.status == 201, await answer.text()
        grant = (await answer.json())["view"]
    return f"{link}/media/{evidence_id}?view={grant}"


async def measure(
    paths: list[Path_], *, size: int, offsets: list[int], repeat: int
) -> dict[str, Numbers]:
    """Alternate the paths, after one unmeasured read each, so caches favour none."""
    results = {p.name: Numbers([], []) for p in paths}
    timeout = aiohttp.ClientTimeout(total=1800)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for path in paths:
            await path.sequential(session, size)
        for _ in range(repeat):
            for path in paths:
                took, cpu = await path.sequential(session, size)
                results[path.name].sequential.append(took)
                if path.pid:
                    results[path.name].cpu.append(cpu)
        for offset in offsets:
            for path in paths:
                results[path.name].seeks.append(await path.seek(session, offset))
    return results


# -- report ------------------------------------------------------------------------------------


def report(size: int, results: dict[str, Numbers], seeks: int, yardstick: str) -> str:
    names = list(results)
    ours = results[names[0]]

    def cpu(n: Numbers) -> str:
        value = n.cpu_per_gb(size)
        return f"{value:.2f} s" if value is not None else "-"

    rows = [
        ("sequential read", [f"{n.mbps(size):.0f} MB/s" for n in results.values()]),
        ("1 MiB seek, median", [f"{n.seek_ms():.1f} ms" for n in results.values()]),
        ("1 MiB seek, p95", [f"{n.seek_ms(0.95):.1f} ms" for n in results.values()]),
        ("serving CPU per GB", [cpu(n) for n in results.values()]),
    ]
    lines = [
        f"| {human(size)} object, {seeks} seeks | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        *[f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows],
        "",
    ]
    for name in names[1:]:
        peer = results[name]
        lines.append(
            f"- against {name}: sequential {ours.mbps(size) / peer.mbps(size):.2f}x, "
            f"median seek {ours.seek_ms() / peer.seek_ms():.2f}x (lower is faster)"
        )
    for name in [yardstick, *(n for n in names[1:] if n != yardstick)]:
        ours_cpu, peer_cpu = ours.cpu_per_gb(size), results[name].cpu_per_gb(size)
        if ours_cpu is not None and peer_cpu:
            lines.append(f"- CPU per GB served against {name}: {ours_cpu / peer_cpu:.2f}x")
    return "\n".join(lines)


def append_docs(text: str, command: str) -> None:
    docs = ROOT / "docs" / "benchmarks.md"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    section = (
        f"\n## Streaming through a ticket against nginx (bench/stream.py)\n\n"
        f"Measured {stamp} on {platform.node() or 'this box'} ({os.cpu_count()} cores, load "
        f"average {os.getloadavg()[0]:.1f} at the end: other work shared the cores), everything "
        "on 127.0.0.1, one client:\n\n"
        f"```sh\n{command}\n```\n\n{text}\n\n"
        "The media path is aiohttp -> ticket and grant checks (SQLite) -> `Store.read` -> the "
        "socket, chunk by chunk; nginx forwards or sends the file with no checks at all.\n"
    )
    with docs.open("a", encoding="utf-8") as out:  # append only: other sections are not ours
        out.write(section)
    print(f"appended to {docs}")


async def _prepare(server: AvidenceServer, path: Path, size: int) -> tuple[str, str, str]:
    """(evidence id, storage key, ticket link) of the object uploaded through avidence."""
    evidence_id, key = await upload(server, path, size)
    return evidence_id, key, ticket_link(server, evidence_id)


def run(store: str, size: int, offsets: list[int], repeat: int) -> dict[str, Numbers]:
    with tempfile.TemporaryDirectory(prefix="avidence-stream-") as folder:
        tmp = Path(folder)
        seaweed = start_seaweed(tmp / "seaweed") if store == "s3" else None
        server = (
            AvidenceServer.s3(tmp / "avidence", seaweed, BUCKET)
            if seaweed is not None
            else AvidenceServer(data_dir=tmp / "avidence")
        )
        # nginx and boto3 read the very object the ticket serves: it must be stored as
        # uploaded (bench/sealed_http.py compares sealed with plain through the ticket).
        server.env["AVIDENCE_ENCRYPTION"] = "off"
        # One view reads the object several times over: room for every round of the run.
        server.env["AVIDENCE_VIEW_BYTES_MULTIPLE"] = "100"
        nginx: Nginx | None = None
        floor: FilePeer | None = None
        client: Any = None
        try:
            server.start()
            data = DataFiles(tmp / "files").get(size)
            print(f"uploading {human(size)} through avidence ({store}) ...")
            evidence_id, key, link = asyncio.run(_prepare(server, data, size))
            data.unlink()
            print(f"ticket {link}")

            async def view() -> str:
                async with aiohttp.ClientSession() as session:
                    return await start_view(session, link, evidence_id)

            paths = [Path_("avidence ticket", url=asyncio.run(view()), pid=server.pid)]
            if seaweed is not None:
                client = seaweed.client()
                presigned = client.generate_presigned_url(
                    "get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=7200
                )
                nginx = start_nginx(tmp / "nginx", s3_proxy(seaweed.endpoint))
                query = presigned.split(seaweed.endpoint, 1)[1]
                paths.append(Path_("nginx -> S3", url=nginx.url + query, pid=nginx.worker_pid()))
                paths.append(Path_("boto3 direct", boto=client, key=key))
            else:
                root = server.data_dir / "store" / "objects"
                nginx = start_nginx(tmp / "nginx", static_root(root))
                paths.append(
                    Path_("nginx sendfile", url=f"{nginx.url}/{key}", pid=nginx.worker_pid())
                )
                floor = start_file_peer(root, free_port())
                paths.append(
                    Path_("bare aiohttp", url=f"{floor.url}/{key}", pid=floor.proc.pid)
                )
            print("measuring, paths alternately ...")
            return asyncio.run(measure(paths, size=size, offsets=offsets, repeat=repeat))
        finally:
            if client is not None:
                client.close()
            if nginx is not None:
                nginx.stop()
            if floor is not None:
                floor.stop()
            server.stop()
            if seaweed is not None:
                seaweed.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["s3", "local"], default="s3")
    parser.add_argument("--size", type=parse_size, default=parse_size("1GiB"))
    parser.add_argument("--seeks", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--append-docs", action="store_true")
    args = parser.parse_args()
    command = ".venv/bin/python bench/stream.py " + " ".join(sys.argv[1:])
    rng = random.Random(args.seed)
    offsets = [rng.randrange(0, args.size - CHUNK) for _ in range(args.seeks)]
    results = run(args.store, args.size, offsets, args.repeat)
    yardstick = "nginx -> S3" if args.store == "s3" else "nginx sendfile"
    text = report(args.size, results, args.seeks, yardstick)
    print()
    print(text)
    if args.append_docs:
        append_docs(text, command)


if __name__ == "__main__":
    main()
