"""Upload benchmark: avidence against boto3 straight into S3 and against @tus/server, same box.

    .venv/bin/python bench/upload.py [--size 1GiB] [--memory-size 4GiB]
                                     [--concurrent 16x256MiB] [--repeat 3] [--quick]

Everything runs on 127.0.0.1: one SeaweedFS (the S3 server), avidence over S3 and over a local
folder, and @tus/server (Node) over @tus/s3-store and @tus/file-store (`make node-deps`
first; a missing peer is skipped with the reason). It prints MB/s (decimal, 10^6 bytes/s) and
ratios measured in this same run; it asserts nothing about absolute times. The targets at the
end are the project's goals, reported as met or missed. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import blake3
import clients
from measure import (
    CpuMeter,
    DataFiles,
    MiB,
    PeakSampler,
    human,
    mb_per_s,
    parse_count_size,
    parse_size,
    rss_bytes,
    wait_quiet,
)
from results import Result, report
from servers import ROOT, AvidenceServer, NodePeer, SeaweedServer, seaweed_pid, start_seaweed

CASE = "BENCH-1"


@dataclass
class Run:
    """How to do one upload of a target and which processes to account to it."""

    result: Result
    once: Callable[[int], None]  # the argument is the repetition number
    server_pid: int | None


# -- the run ----------------------------------------------------------------------------------


QUIET_WAIT = 30.0  # set from --quiet-wait


def measure_once(run: Run, *, weed: int | None, rep: int, idle_rss: int | None = None) -> None:
    """Time one upload; CPU of server, SeaweedFS and this process; the server's RSS growth
    (peak minus `idle_rss`, or minus the RSS at the run's start)."""
    res = run.result
    quiet = wait_quiet(max_wait=QUIET_WAIT) if QUIET_WAIT > 0 else 0.0
    meter = CpuMeter({"server": run.server_pid, "weed": weed, "client": os.getpid()})
    sampler = PeakSampler(run.server_pid) if run.server_pid else None
    try:
        if sampler:
            sampler.__enter__()
        meter.start()
        try:
            run.once(rep)
        finally:
            meter.stop()
            if sampler:
                sampler.__exit__(None, None, None)
    except Exception as exc:  # a failed upload is a result, not the end of the benchmark
        message = f"{type(exc).__name__}: {exc}"
        res.errors.append(message)
        print(f"    FAILED {res.target} / {res.client}: {message[:500]}")
        return
    res.seconds.append(meter.wall)
    cores = {n: meter.share(n) for n in ("server", "weed", "client")}
    if cores["server"] is not None:
        res.server_cores.append(cores["server"])
    if cores["weed"] is not None:
        res.weed_cores.append(cores["weed"])
    res.client_cores.append(cores["client"] or 0.0)
    res.other_cores.append(meter.others())
    growth = ""
    if sampler:
        base = sampler.start_rss if idle_rss is None else idle_rss
        res.rss_growth.append(sampler.peak - base)
        growth = (
            f", server RSS +{(sampler.peak - base) / MiB:.0f} MiB (peak {sampler.peak / MiB:.0f})"
        )
    print(
        f"    {res.target:<22} {res.client:<24} {meter.wall:6.2f}s "
        f"{mb_per_s(res.size, meter.wall):7.1f} MB/s  cores: server {_f(cores['server'])}, "
        f"weed {_f(cores['weed'])}, client {_f(cores['client'])}, others {meter.others():.2f} "
        f"(before: {quiet:.2f}){growth}"
    )


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main_runs(
    args: argparse.Namespace, tmp: Path, files: DataFiles, seaweed: SeaweedServer
) -> list[Result]:
    """Single uploads of `--size` to every target, repeated round-robin."""
    size = args.size
    path = files.get(size)
    digest = blake3.blake3(max_threads=blake3.blake3.AUTO).update_mmap(path).hexdigest()
    meta = {"case": CASE, "filename": "x.bin", "blake3": digest}
    chunk = f"tuspy {human(clients.TUSPY_CHUNK)} chunks"
    runs: list[Run] = []
    started: list[AvidenceServer | NodePeer] = []
    results: list[Result] = []
    try:
        boto = Result("boto3", "boto3 -> S3 (direct)", "upload_file defaults", size)
        seaweed.client().create_bucket(Bucket="boto3-bench")
        runs.append(
            Run(
                boto,
                lambda rep: clients.boto3_upload(
                    seaweed, bucket="boto3-bench", key=f"x-{rep}.bin", path=path
                ),
                None,
            )
        )

        av_s3 = AvidenceServer.s3(tmp / "avidence-s3", seaweed, "avidence-bench")
        av_local = AvidenceServer(tmp / "avidence-local")
        for server, where in ((av_s3, "S3"), (av_local, "local")):
            server.start()
            started.append(server)
            auth = {"Authorization": f"Bearer {server.token}"}
            target = f"avidence -> {where}"
            runs.append(
                Run(
                    Result(f"av_{where.lower()}_tuspy", target, chunk, size),
                    clients.tuspy_round(server.url, auth, path, meta),
                    server.pid,
                )
            )
            runs.append(
                Run(
                    Result(f"av_{where.lower()}_stream", target, "aiohttp, one PATCH", size),
                    clients.stream_round(server.url, auth, path, size, meta),
                    server.pid,
                )
            )
            runs.append(
                Run(
                    Result(
                        f"av_{where.lower()}_concat",
                        target,
                        f"aiohttp, {args.parts} partials+concat",
                        size,
                    ),
                    _concat(server.url, auth, path, size, args.parts, meta),
                    server.pid,
                )
            )

        # The peers get both generic tus clients avidence gets: tuspy and one streamed PATCH.
        reason = NodePeer.unavailable()
        for store, where in (("s3", "S3"), ("file", "file")):
            target = f"@tus/server -> {where}"
            tuspy_res = Result(f"node_{store}_tuspy", target, chunk, size)
            stream_res = Result(f"node_{store}_stream", target, "aiohttp, one PATCH", size)
            if reason is None:
                peer = NodePeer(
                    tmp / f"tus-node-{store}", store, seaweed=seaweed, bucket="tus-node-bench"
                )
                try:
                    peer.start()
                except Exception as exc:  # report and go on without this peer
                    reason = f"did not start: {exc}"
                else:
                    started.append(peer)
                    runs.append(
                        Run(tuspy_res, clients.tuspy_round(peer.url, {}, path, meta), peer.pid)
                    )
                    runs.append(
                        Run(
                            stream_res,
                            clients.stream_round(peer.url, {}, path, size, meta),
                            peer.pid,
                        )
                    )
            if reason is not None:
                for res in (tuspy_res, stream_res):
                    res.skipped = reason
                    print(f"  skipping {res.target} ({res.client}): {res.skipped}")
                    results.append(res)

        weed = seaweed_pid(seaweed)
        for rep in range(args.repeat):
            print(f"  round {rep + 1}/{args.repeat}")
            for run in runs:
                measure_once(run, weed=weed, rep=rep)
                if run.result.key.startswith("node_file_"):
                    _empty(tmp / "tus-node-file" / "files")  # the peer's own files only
    finally:
        for process in reversed(started):
            process.stop()
    return [run.result for run in runs] + results


def _concat(
    url: str, auth: dict[str, str], path: Path, size: int, parts: int, meta: dict[str, str]
) -> Callable[[int], None]:
    async def go() -> None:
        started = time.perf_counter()
        async with clients.new_session() as session:
            _, sent = await clients.concat_upload(
                session, url=url, headers=auth, path=path, length=size, parts=parts, metadata=meta
            )
        joined = time.perf_counter() - started - sent
        print(f"     {parts} partials sent in {sent:.2f}s, final POST (join, verify) {joined:.2f}s")

    return lambda rep: asyncio.run(go())


def _empty(folder: Path) -> None:
    if folder.is_dir():
        for item in folder.iterdir():
            if item.is_file():
                item.unlink()


def _digest(path: Path, length: int) -> str:
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    if length == path.stat().st_size:
        return str(hasher.update_mmap(path).hexdigest())
    with path.open("rb") as source:
        left = length
        while left > 0:  # bounded by `length`
            block = source.read(min(16 * MiB, left))
            if not block:
                raise RuntimeError(f"{path} is shorter than {length}")
            hasher.update(block)
            left -= len(block)
    return str(hasher.hexdigest())


def memory_run(
    args: argparse.Namespace, tmp: Path, files: DataFiles, seaweed: SeaweedServer
) -> Result:
    """One `--memory-size` upload as a single PATCH into a fresh avidence (S3); RSS growth is
    the peak minus the RSS of the idle server just after start."""
    size = args.memory_size
    path = files.get(size)
    meta = {"case": CASE, "filename": "big.bin", "blake3": _digest(path, size)}
    res = Result("memory", "avidence -> S3", f"aiohttp, one PATCH of {human(size)}", size)
    server = AvidenceServer.s3(tmp / "avidence-mem", seaweed, "avidence-bench-mem")
    try:
        server.start()
        time.sleep(1.0)  # let start-up settle before taking the idle RSS
        idle = rss_bytes(server.pid)
        print(f"    fresh server idle RSS {idle / MiB:.0f} MiB")
        auth = {"Authorization": f"Bearer {server.token}"}
        run = Run(res, clients.stream_round(server.url, auth, path, size, meta), server.pid)
        measure_once(run, weed=seaweed_pid(seaweed), rep=0, idle_rss=idle)
    finally:
        server.stop()
    return res


def concurrent_run(
    args: argparse.Namespace, tmp: Path, files: DataFiles, seaweed: SeaweedServer
) -> tuple[Result, int]:
    """`count` single-PATCH uploads of `each` bytes at once into a fresh avidence (S3);
    returns the result (aggregate bytes / wall time) and the number of failed uploads."""
    count, each = args.concurrent
    path = files.at_least(each)
    meta = {"case": CASE, "filename": "c.bin", "blake3": _digest(path, each)}
    res = Result(
        "concurrent", "avidence -> S3", f"aiohttp, {count} x {human(each)} at once", count * each
    )
    failures: list[str] = []
    server = AvidenceServer.s3(tmp / "avidence-conc", seaweed, "avidence-bench-conc")

    async def go() -> None:
        auth = {"Authorization": f"Bearer {server.token}"}
        async with clients.new_session(connections=count + 4) as session:
            outcomes = await asyncio.gather(
                *(
                    clients.stream_upload(
                        session, url=server.url, headers=auth, path=path, length=each, metadata=meta
                    )
                    for _ in range(count)
                ),
                return_exceptions=True,
            )
        failures.extend(
            f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)
        )

    try:
        server.start()
        time.sleep(1.0)
        idle = rss_bytes(server.pid)
        print(f"    fresh server idle RSS {idle / MiB:.0f} MiB")
        run = Run(res, lambda rep: asyncio.run(go()), server.pid)
        measure_once(run, weed=seaweed_pid(seaweed), rep=0, idle_rss=idle)
    finally:
        server.stop()
    for failure in failures[:5]:
        print(f"    upload failed: {failure[:300]}")
    res.errors.extend(failures)
    if failures:  # aggregate speed counts only the uploads that succeeded
        res.size = (count - len(failures)) * each
    return res, len(failures)


# -- command line -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--size",
        type=parse_size,
        default=None,
        help="single-upload size (default 1GiB, 256MiB with --quick)",
    )
    parser.add_argument(
        "--memory-size",
        type=parse_size,
        default=parse_size("4GiB"),
        help="size of the one upload whose server RSS is measured (4GiB)",
    )
    parser.add_argument(
        "--concurrent",
        type=parse_count_size,
        default=parse_count_size("16x256MiB"),
        help="COUNTxSIZE uploads at once (16x256MiB)",
    )
    parser.add_argument(
        "--parts", type=int, default=4, help="partial uploads in the concatenation client (4)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="rounds of single uploads; best and median are reported (3, 1 with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="256MiB, one round, no memory or concurrency run (smoke test)",
    )
    parser.add_argument(
        "--data-cache",
        type=Path,
        default=None,
        help="keep the random test files here and reuse them next time",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="before each run wait up to this many seconds for the machine to "
        "be idle (< 0.3 cores busy); 0 disables (30)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.size is None:
        args.size = parse_size("256MiB" if args.quick else "1GiB")
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1 or args.parts < 1:
        parser.error("--repeat and --parts must be at least 1")
    return args


def describe_machine() -> dict[str, object]:
    node = os.popen("node --version 2>/dev/null").read().strip() or "absent"
    return {
        "cores": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "python": sys.version.split()[0],
        "node": node,
        "kernel": os.uname().release,
        "commit": os.popen(f"git -C {ROOT} rev-parse --short HEAD 2>/dev/null").read().strip(),
        "uncommitted_files": len(
            os.popen(f"git -C {ROOT} status --porcelain 2>/dev/null").read().splitlines()
        ),
    }


def main(argv: list[str] | None = None) -> int:
    global QUIET_WAIT
    args = parse_args(argv)
    QUIET_WAIT = args.quiet_wait
    machine = describe_machine()
    print(f"machine: {machine}")
    print(
        f"single uploads of {human(args.size)}, {args.repeat} round(s); tuspy chunks "
        f"{human(clients.TUSPY_CHUNK)}; concatenation with {args.parts} partials"
    )
    results: list[Result] = []
    failures: int | None = None
    with tempfile.TemporaryDirectory(prefix="avidence-bench-") as folder:
        tmp = Path(folder)
        files = DataFiles(args.data_cache or tmp / "data")
        seaweed: SeaweedServer | None = None
        try:
            seaweed = start_seaweed(tmp / "seaweed")
            print(f"SeaweedFS S3 at {seaweed.endpoint}")
            results += main_runs(args, tmp, files, seaweed)
            if not args.quick:
                print(f"  memory: one {human(args.memory_size)} upload")
                results.append(memory_run(args, tmp, files, seaweed))
                count, each = args.concurrent
                print(f"  concurrency: {count} x {human(each)}")
                conc, failures = concurrent_run(args, tmp, files, seaweed)
                results.append(conc)
        except Exception:
            traceback.print_exc()
            if seaweed is not None:
                print(f"SeaweedFS log tail:\n{seaweed.log_tail()}")
            return 1
        finally:
            if seaweed is not None:
                seaweed.stop()
    checks = report(results, failures)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine,
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "results": [asdict(r) | {"best": r.best, "median": r.median} for r in results],
                    "checks": checks,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
