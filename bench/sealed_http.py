"""Encryption at rest through the server: a sealed and a plain `avidence-server` side by side.

    .venv/bin/python bench/sealed_http.py [--size 512MiB] [--seeks 50] [--repeat 2]
                                          [--storage local|s3]

Two servers run on 127.0.0.1 in the same run, one with `encryption = on` (AES-256-GCM) and one
with `encryption = off`, on the local folder or on one SeaweedFS (`--storage s3`). The same file
is uploaded to each (one tus PATCH of the whole file, taking turns, `--repeat` times), then read
through a ticket as a viewer does: the whole recording once, and `--seeks` random 1 MiB ranges
(the same offsets for both). It prints MB/s, latencies and the sealed/plain ratios; it asserts
nothing. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from measure import DataFiles, MiB, human, mb_per_s, parse_size
from servers import AvidenceServer, start_seaweed
from stream import CHUNK, http_seek, http_sequential, ticket_link, upload


async def view(
    link: str, evidence_id: str, size: int, offsets: list[int]
) -> tuple[float, list[float]]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1800)) as session:
        async with session.post(f"{link}/views", json={"evidence": evidence_id}) as answer:
            assert answer.status == 201, await answer.text()
            grant = (await answer.json())["view"]
        url = f"{link}/media/{evidence_id}?view={grant}"
        await http_seek(session, url, 0)  # connection and caches warm for both alike
        sequential = await http_sequential(session, url, size)
        seeks = [await http_seek(session, url, offset) for offset in offsets]
    return sequential, seeks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("512MiB"))
    parser.add_argument("--seeks", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--storage", choices=("local", "s3"), default="local")
    args = parser.parse_args()
    rng = random.Random(21)
    offsets = [rng.randrange(0, args.size - CHUNK) for _ in range(args.seeks)]
    with tempfile.TemporaryDirectory(prefix="avidence-sealed-") as folder:
        tmp = Path(folder)
        seaweed = start_seaweed(tmp / "seaweed") if args.storage == "s3" else None
        servers: dict[str, AvidenceServer] = {}
        for mode in ("off", "on"):
            if seaweed is not None:
                server = AvidenceServer.s3(tmp / f"avidence-{mode}", seaweed, f"bench-{mode}")
            else:
                server = AvidenceServer(tmp / f"avidence-{mode}")
            server.env["AVIDENCE_ENCRYPTION"] = mode
            servers[mode] = server
        uploads: dict[str, list[float]] = {mode: [] for mode in servers}
        reads: dict[str, tuple[float, list[float]]] = {}
        try:
            for server in servers.values():
                server.start()
            path = DataFiles(tmp / "files").get(args.size)
            evidence: dict[str, str] = {}
            for _ in range(args.repeat):
                for mode, server in servers.items():  # taking turns: drift hits both alike
                    began = time.perf_counter()
                    evidence[mode], _ = asyncio.run(upload(server, path, args.size))
                    uploads[mode].append(mb_per_s(args.size, time.perf_counter() - began))
            for mode, server in servers.items():
                link = ticket_link(server, evidence[mode])
                reads[mode] = asyncio.run(view(link, evidence[mode], args.size, offsets))
        finally:
            for server in servers.values():
                server.stop()
            if seaweed is not None:
                seaweed.stop()
    plain, sealed = "off", "on"
    up = {m: max(v) for m, v in uploads.items()}
    seq = {m: mb_per_s(args.size, reads[m][0]) for m in reads}
    p50 = {m: 1000 * statistics.median(reads[m][1]) for m in reads}
    p95 = {m: 1000 * statistics.quantiles(reads[m][1], n=20)[18] for m in reads}
    print(f"\n{args.storage}: {human(args.size)}, best upload of {args.repeat}, {args.seeks} seeks")
    print("| | plain | sealed (AES-256-GCM) | sealed / plain |")
    print("|---|---|---|---|")
    print(f"| upload (one PATCH) | {up[plain]:.0f} MB/s | {up[sealed]:.0f} MB/s | "
          f"{up[sealed] / up[plain]:.2f}x |")  # fmt: skip
    print(f"| ticket stream | {seq[plain]:.0f} MB/s | {seq[sealed]:.0f} MB/s | "
          f"{seq[sealed] / seq[plain]:.2f}x |")  # fmt: skip
    print(f"| 1 MiB seek, median | {p50[plain]:.1f} ms | {p50[sealed]:.1f} ms | "
          f"{p50[sealed] / p50[plain]:.2f}x |")  # fmt: skip
    print(f"| 1 MiB seek, p95 | {p95[plain]:.1f} ms | {p95[sealed]:.1f} ms | "
          f"{p95[sealed] / p95[plain]:.2f}x |")  # fmt: skip
    print(f"(sizes in {MiB} byte MiB; MB/s is 10^6 bytes/s)")


if __name__ == "__main__":
    main()
