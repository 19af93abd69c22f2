"""Soak/load: many uploaders and viewers at once against one `avidence-server serve`, for a
bounded time, on 127.0.0.1.

    .venv/bin/python bench/load.py [--seconds 60] [--uploaders 64] [--viewers 32]
                                   [--size 4MiB] [--chunk 1MiB] [--database URL] [--json FILE]

Each uploader loops: create an upload declaring the file's BLAKE3, PATCH it in `--chunk`
pieces, then read the evidence record back and compare its BLAKE3 (a mismatch counts as
corrupted). Each viewer starts a counted view through a ticket, then loops over random 256 KiB
ranges of a seeded 16 MiB recording, comparing every byte. The server's RSS is sampled every
second. It prints throughput, p50/p99 latency per request kind, errors by status (5xx apart),
lost or corrupted uploads, and RSS over time; it asserts nothing about absolute times.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import blake3
from measure import MiB, parse_size, rss_bytes
from servers import AvidenceServer

OCTET = "application/offset+octet-stream"
SEED_SIZE = 16 * MiB
RANGE = 256 * 1024
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=120)


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[str] = field(default_factory=Counter)
    uploaded_bytes: int = 0
    viewed_bytes: int = 0
    uploads_done: int = 0
    uploads_corrupted: int = 0
    ranges_corrupted: int = 0
    client_errors: Counter[str] = field(default_factory=Counter)

    def record(self, kind: str, started: float, status: int) -> None:
        self.latencies[kind].append(time.monotonic() - started)
        self.statuses[f"{kind} {status}"] += 1


def _metadata(**fields: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())


async def _upload(
    session: aiohttp.ClientSession, base: str, token: str, data: bytes, chunk: int, tally: Tally
) -> str | None:
    """One whole upload; the evidence id, or None when a step failed (already tallied)."""
    auth = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    digest = blake3.blake3(data).hexdigest()
    started = time.monotonic()
    headers = {
        **auth,
        "Upload-Length": str(len(data)),
        "Upload-Metadata": _metadata(case="LOAD-1", filename="load.bin", blake3=digest),
    }
    async with session.post(f"{base}/files/", headers=headers) as r:
        tally.record("create", started, r.status)
        if r.status != 201:
            return None
        url = base + "/files/" + r.headers["Location"].rsplit("/", 1)[1]
    evidence = None
    for offset in range(0, len(data), chunk):
        started = time.monotonic()
        headers = {**auth, "Upload-Offset": str(offset), "Content-Type": OCTET}
        async with session.patch(url, data=data[offset : offset + chunk], headers=headers) as r:
            await r.read()
            tally.record("patch", started, r.status)
            if r.status != 204:
                return None
            tally.uploaded_bytes += min(chunk, len(data) - offset)
            evidence = r.headers.get("Avidence-Evidence-Id")
    if evidence is None:
        return None
    started = time.monotonic()
    async with session.get(f"{base}/api/evidence/{evidence}", headers=auth) as r:
        tally.record("record", started, r.status)
        record = await r.json() if r.status == 200 else {}
    if record.get("blake3") != digest:
        tally.uploads_corrupted += 1
    tally.uploads_done += 1
    return str(evidence)


async def uploader(
    base: str, token: str, *, size: int, chunk: int, deadline: float, tally: Tally
) -> None:
    data = os.urandom(size)
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
        while time.monotonic() < deadline:
            try:
                await _upload(session, base, token, data, chunk, tally)
            except (aiohttp.ClientError, TimeoutError) as exc:
                tally.client_errors[type(exc).__name__] += 1
                await asyncio.sleep(0.5)


async def viewer(
    base: str, link: str, evidence: str, seed: bytes, *, deadline: float, tally: Tally
) -> None:
    rng = random.Random()
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
        started = time.monotonic()
        async with session.post(f"{base}/t/{link}/views", json={"evidence": evidence}) as r:
            tally.record("view", started, r.status)
            if r.status != 201:
                return
            grant = (await r.json())["view"]
        media = f"{base}/t/{link}/media/{evidence}?view={grant}"
        while time.monotonic() < deadline:
            start = rng.randrange(0, SEED_SIZE - RANGE)
            started = time.monotonic()
            try:
                headers = {"Range": f"bytes={start}-{start + RANGE - 1}"}
                async with session.get(media, headers=headers) as r:
                    body = await r.read()
                    tally.record("range", started, r.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                tally.client_errors[type(exc).__name__] += 1
                await asyncio.sleep(0.5)
                continue
            if r.status == 206:
                tally.viewed_bytes += len(body)
                if body != seed[start : start + RANGE]:
                    tally.ranges_corrupted += 1
            elif r.status == 429:
                await asyncio.sleep(float(r.headers.get("Retry-After", "1")))


async def _seed(base: str, token: str, viewers: int, tally: Tally) -> tuple[bytes, str, list[str]]:
    """The recording viewers watch, and a ticket link for each viewer (a ticket is one
    recipient's, and is rate-limited as such)."""
    seed = os.urandom(SEED_SIZE)
    links = []
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
        evidence = await _upload(session, base, token, seed, 4 * MiB, tally)
        assert evidence is not None, "the seed upload failed"
        for n in range(viewers):
            body = {"evidence": [evidence], "recipient": f"viewer {n} (judge)", "expires": "1d"}
            async with session.post(
                f"{base}/api/tickets", json=body, headers={"Authorization": f"Bearer {token}"}
            ) as r:
                assert r.status == 201, await r.text()
                links.append(str((await r.json())["token"]))
    return seed, evidence, links


async def sample_rss(
    pid: int, *, every: float, until: float, samples: list[tuple[float, int]]
) -> None:
    began = time.monotonic()
    while time.monotonic() < until:
        samples.append((time.monotonic() - began, rss_bytes(pid)))
        await asyncio.sleep(every)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="avidence-load-"))
    env = {**os.environ, "AVIDENCE_EMBEDDED_WORKER": "false", "AVIDENCE_SCRUB_INTERVAL": "0"}
    if args.database:
        env["AVIDENCE_DATABASE"] = args.database
    server = AvidenceServer(data_dir=work / "data", env=env)
    server.start()
    tally = Tally()
    rss: list[tuple[float, int]] = []
    base = f"http://127.0.0.1:{server.port}"
    try:
        seed, evidence, links = await _seed(base, server.token, args.viewers, tally)
        tally = Tally()  # the seed is set-up, not load
        began = time.monotonic()
        deadline = began + args.seconds
        tasks = [
            uploader(
                base, server.token, size=args.size, chunk=args.chunk, deadline=deadline, tally=tally
            )
            for _ in range(args.uploaders)
        ] + [viewer(base, link, evidence, seed, deadline=deadline, tally=tally) for link in links]
        sampler = sample_rss(server.pid, every=1.0, until=deadline, samples=rss)
        # Bounded: requests still running past the deadline get the request timeout, no more.
        await asyncio.wait_for(
            asyncio.gather(sampler, *tasks), timeout=args.seconds + REQUEST_TIMEOUT.total + 30
        )
        elapsed = time.monotonic() - began
        alive = server.proc is not None and server.proc.poll() is None
    finally:
        server.stop()
    server_errors = sum(n for key, n in tally.statuses.items() if key.split()[-1].startswith("5"))
    return {
        "seconds": round(elapsed, 1),
        "uploaders": args.uploaders,
        "viewers": args.viewers,
        "upload_size": args.size,
        "chunk": args.chunk,
        "catalog": "postgresql" if args.database else "sqlite",
        "uploads_done": tally.uploads_done,
        "upload_MBps": round(tally.uploaded_bytes / elapsed / 1e6, 1),
        "view_MBps": round(tally.viewed_bytes / elapsed / 1e6, 1),
        "latency_ms": {
            kind: {
                "n": len(values),
                "p50": round(_pct(values, 0.50), 1),
                "p99": round(_pct(values, 0.99), 1),
                "mean": round(statistics.fmean(values) * 1000, 1),
            }
            for kind, values in sorted(tally.latencies.items())
        },
        "statuses": dict(sorted(tally.statuses.items())),
        "server_5xx": server_errors,
        "client_errors": dict(tally.client_errors),
        "uploads_corrupted": tally.uploads_corrupted,
        "ranges_corrupted": tally.ranges_corrupted,
        "server_alive_at_end": alive,
        "rss_MiB_over_time": " ".join(
            f"{t:.0f}s:{b / MiB:.0f}" for t, b in rss[:: max(1, len(rss) // 12)]
        ),
        "rss_MiB_max": round(max((b for _, b in rss), default=0) / MiB),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--uploaders", type=int, default=64)
    parser.add_argument("--viewers", type=int, default=32)
    parser.add_argument("--size", type=parse_size, default=4 * MiB, help="bytes per upload")
    parser.add_argument("--chunk", type=parse_size, default=MiB, help="bytes per PATCH")
    parser.add_argument("--database", default="", help="catalog URL (default: SQLite)")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args()
    if not 1 <= args.seconds <= 600:
        sys.exit("--seconds: between 1 and 600")
    result = asyncio.run(run(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
