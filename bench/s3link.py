"""Uploads into object storage at the far end of a slower link: parts sent whole and signed
against parts streamed while their PATCH arrives, with boto3 straight to S3 as the yardstick.

    .venv/bin/python bench/s3link.py [--size 512MiB] [--repeat 2]
                                     [--s3-link 40MB/s,80MB/s,10ms] [--link 60MB/s,60MB/s,5ms]
                                     [--data-cache DIR]

Everything runs on 127.0.0.1. `--s3-link FLOW,LINK,RTT` puts a pacing proxy in front of
SeaweedFS for every S3 client (boto3 and both avidence servers): FLOW bytes/s per connection,
LINK bytes/s in all, answers held back RTT. `--link` does the same between the uploader and
avidence (none: loopback). One avidence server signs parts (`s3_part_checksum = signed`, sent
once whole), the other streams them (`trailer`: aws-chunked with a CRC-32 trailer, sent while
they arrive), which is what `auto` picks for https endpoints. Clients: tuspy with 64 MiB
chunks, one aiohttp PATCH of the whole file, and the avidence client with one stream (64 MiB
PATCHes, each checksummed). It prints MB/s and the ratios; it asserts
nothing. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import blake3
import clients
from measure import CpuMeter, DataFiles, human, mb_per_s, parse_size, wait_quiet
from servers import AvidenceServer, SeaweedServer, seaweed_pid, start_seaweed

from client import Link, client_env, command, parse_link

from support.proxy import FaultProxy, fault_proxy


@dataclasses.dataclass
class Row:
    target: str
    client: str
    upload: Callable[[int], None]
    pid: int | None
    speeds: list[float] = dataclasses.field(default_factory=list)
    server_cpu: list[float] = dataclasses.field(default_factory=list)

    @property
    def best(self) -> float:
        return max(self.speeds, default=0.0)

    @property
    def median(self) -> float:
        return statistics.median(self.speeds) if self.speeds else 0.0


def proxied(proxy: FaultProxy, seaweed: SeaweedServer) -> SeaweedServer:
    """The same SeaweedFS as its clients see it through `proxy`."""
    return dataclasses.replace(seaweed, s3_port=proxy.port)


def pace(link: Link) -> dict[str, float]:
    return {"rate": link.flow, "link_rate": link.total, "answer_delay": link.rtt}


def run(args: argparse.Namespace) -> list[Row]:
    size = args.size
    with (
        tempfile.TemporaryDirectory(prefix="avidence-s3link-") as folder,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(folder)
        path = DataFiles(args.data_cache or tmp / "data").get(size)
        digest = blake3.blake3(max_threads=blake3.blake3.AUTO).update_mmap(path).hexdigest()
        meta = {"case": "BENCH-1", "filename": "x.bin", "blake3": digest}
        seaweed = start_seaweed(tmp / "seaweed")
        stack.callback(seaweed.stop)
        remote = proxied(
            stack.enter_context(fault_proxy(seaweed.s3_port, **pace(args.s3_link))), seaweed
        )
        seaweed.client().create_bucket(Bucket="boto3-bench")
        rows = [
            Row(
                "boto3 -> S3 (direct)",
                "upload_file defaults",
                lambda rep: clients.boto3_upload(
                    remote, bucket="boto3-bench", key=f"x-{rep}.bin", path=path
                ),
                None,
            )
        ]
        for mode in ("signed", "trailer"):
            server = AvidenceServer.s3(tmp / f"avidence-{mode}", remote, f"avidence-{mode}")
            server.env["AVIDENCE_S3_PART_CHECKSUM"] = mode
            server.start()
            stack.callback(server.stop)
            base = server.url.removesuffix("/files/")
            if args.link is not None:
                base = stack.enter_context(fault_proxy(server.port, **pace(args.link))).url
            url = base + "/files/"
            auth = {"Authorization": f"Bearer {server.token}"}
            target = f"avidence -> S3, parts {'streamed' if mode == 'trailer' else 'signed'}"
            rows.append(
                Row(
                    target,
                    f"tuspy {human(clients.TUSPY_CHUNK)} chunks",
                    clients.tuspy_round(url, auth, path, meta),
                    server.pid,
                )
            )
            rows.append(
                Row(
                    target,
                    "aiohttp, one PATCH",
                    clients.stream_round(url, auth, path, size, meta),
                    server.pid,
                )
            )
            rows.append(
                Row(
                    target,
                    "avidence -p1 (checksummed)",
                    _avidence(base, server.token, path, tmp),
                    server.pid,
                )
            )
        weed = seaweed_pid(seaweed)
        for rep in range(args.repeat):
            print(f"  round {rep + 1}/{args.repeat}")
            for row in rows:
                wait_quiet(max_wait=args.quiet_wait)
                meter = CpuMeter({"server": row.pid, "weed": weed})
                meter.start()
                row.upload(rep)
                meter.stop()
                row.speeds.append(mb_per_s(size, meter.wall))
                assert meter.used is not None
                row.server_cpu.append(meter.used["server"] / (size / 1e9))
                print(
                    f"    {row.target:<30} {row.client:<22} {meter.wall:6.2f}s "
                    f"{row.speeds[-1]:7.1f} MB/s  others {meter.others():.2f}"
                )
    return rows


def _avidence(base: str, token: str, path: Path, tmp: Path) -> Callable[[int], None]:
    """Our own client, one stream: 64 MiB PATCHes, each with its Upload-Checksum."""

    def once(rep: int) -> None:
        state = Path(tempfile.mkdtemp(prefix="state-", dir=tmp))
        argv = command("avidence -p1", url=base, token=token, path=path, state=state)
        subprocess.run(argv, check=True, env=client_env(tmp), capture_output=True, timeout=3600)

    return once


def report(rows: list[Row], args: argparse.Namespace) -> None:
    boto = rows[0]
    signed = {row.client: row for row in rows if "signed" in row.target}
    print()
    near = args.link.label if args.link else "loopback"
    print(f"S3 link {args.s3_link.label}; uploader link {near}")
    print()
    print(
        "| target | client | MB/s best | MB/s median | x boto3 median | x signed median "
        "| CPU-s/GB server |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        base = signed.get(row.client)
        versus = (
            f"{row.median / base.median:.2f}" if base and base is not row and base.median else "-"
        )
        ratio = f"{row.median / boto.median:.2f}" if boto.median else "-"
        cpu = f"{statistics.median(row.server_cpu):.1f}" if row.pid else "-"
        print(
            f"| {row.target} | {row.client} | {row.best:.0f} | {row.median:.0f} | {ratio} "
            f"| {versus} | {cpu} |"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size", type=parse_size, default=parse_size("512MiB"))
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--s3-link", type=parse_link, default=parse_link("40MB/s,80MB/s,10ms"))
    parser.add_argument("--link", type=parse_link, default=None, help="uploader to avidence")
    parser.add_argument("--data-cache", type=Path, default=None)
    parser.add_argument("--quiet-wait", type=float, default=15.0)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    when = time.strftime("%Y-%m-%d")
    print(f"uploads of {human(args.size)}, {args.repeat} round(s), {os.cpu_count()} cores, {when}")
    report(run(args), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
