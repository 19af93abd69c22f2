"""Transcode benchmark: the job system against the same ffmpeg command run by hand, same box.

    .venv/bin/python bench/transcode.py [--seconds 60] [--repeat 2] [--items 4]
                                        [--item-seconds 20] [--append docs/benchmarks.md]

A noisy 720p MPEG-2 TS (testsrc2 + `noise=alls=20:allf=t+u`, MP2 audio: close to what an
interrogation-room recorder writes) goes through the worker as evidence: the `mp4-h264` derive
job copies it out of a local store, runs the planned ffmpeg command, hashes and stores the MP4
and records it. The same command line (taken from the plan) is run directly with ffmpeg on a
local copy. Runs alternate, and the median of each is compared: the overhead ratio (target
<= 1.05x) and speed in multiples of real time. Then `--items` clips are queued at once and run
by one worker slot and by two, to show what a second concurrent job buys on this machine.
Ratios are measured in this same run; nothing is asserted about absolute times.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from avidence.server import config, tokens
from avidence.server.catalog.db import Catalog
from avidence.server.catalog.schema import uploads
from avidence.server.evidence import records as evidence_db
from avidence.server.jobs import queue, runner
from avidence.server.jobs.worker import Worker
from avidence.storage.digests import MultiDigest
from avidence.storage.local import LocalStore
from avidence.transcode import profiles
from avidence.transcode.plan import SOURCE, plan
from avidence.transcode.probe import probe
from avidence.transcode.tools import version

TARGET_OVERHEAD = 1.05


def make_clip(path: Path, seconds: int) -> Path:
    lavfi = ["-f", "lavfi", "-t", str(seconds)]
    argv = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    argv += [*lavfi, "-i", "testsrc2=size=1280x720:rate=30"]
    argv += [*lavfi, "-i", "sine=frequency=440:sample_rate=48000"]
    argv += ["-vf", "noise=alls=20:allf=t+u", "-c:v", "mpeg2video", "-b:v", "8M", "-c:a", "mp2"]
    subprocess.run([*argv, str(path)], check=True)
    return path


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (ffmpeg runs as a child either way)."""
    mine = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + kids.ru_utime + kids.ru_stime


async def direct(clip: Path, work: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of the planned mp4-h264 command run by hand on a local copy."""
    await asyncio.to_thread(shutil.rmtree, work, True)
    await asyncio.to_thread(os.makedirs, work)
    await asyncio.to_thread(shutil.copyfile, clip, work / SOURCE)
    [command] = plan(await probe(work / SOURCE), profiles.BUILT_IN["mp4-h264"])
    started, cpu = time.perf_counter(), cpu_seconds()
    await asyncio.to_thread(
        subprocess.run, list(command.argv), cwd=work, check=True, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - started, cpu_seconds() - cpu


class Box:
    """A catalog, a local store and an uploader token in a scratch data dir."""

    def __init__(self, root: Path) -> None:
        self.settings = config.load(
            env={}, data_dir=root, transcode_profiles="mp4-h264", job_backoff=0
        )
        self.catalog = Catalog(self.settings.database_url)
        self.store = LocalStore(self.settings.store_root)
        self.uploader = ""

    async def open(self) -> None:
        await self.catalog.migrate()
        await self.store.open()
        principal, _ = await tokens.create(self.catalog.engine, role="uploader", name="bench")
        self.uploader = principal.token_id

    async def close(self) -> None:
        await self.store.close()
        await self.catalog.close()

    async def evidence(self, clip: Path) -> str:
        """Store `clip` as an original and create its evidence record (analysis queued)."""
        upload_id = secrets.token_hex(16)
        key = f"originals/{upload_id}"
        digest = MultiDigest(("blake3", "sha256"))
        target = await self.store.create(key)
        size = await self.store.append(target, offset=0, chunks=_chunks(clip, digest))
        await self.store.finish(target, size=size)
        now = datetime.now(UTC)
        digests = digest.hexdigests()
        record = evidence_db.Evidence(
            id="ev_" + secrets.token_hex(12),
            upload_id=upload_id,
            case_id="BENCH-1",
            item="",
            filename=clip.name,
            filetype="video/mp2t",
            size=size,
            blake3=digests["blake3"],
            sha256=digests["sha256"],
            sm3=None,
            uploader=self.uploader,
            store="local",
            storage_key=key,
            metadata={},
            received_at=now,
        )
        async with self.catalog.engine.begin() as conn:
            await conn.execute(
                uploads.insert().values(
                    id=upload_id,
                    state="done",
                    length=size,
                    offset=size,
                    metadata={},
                    concat="",
                    store="local",
                    storage_key=key,
                    store_handle="",
                    uploader=self.uploader,
                    evidence_id=record.id,
                    created_at=now,
                    updated_at=now,
                )
            )
            await evidence_db.insert(conn, record)
            await queue.enqueue(conn, record.id)
        return record.id

    async def run(self, ids: list[str], *, slots: int) -> list[queue.Job]:
        """Run a worker until every job of `ids` is done; return those jobs."""
        worker = Worker(self.settings, catalog=self.catalog, store=self.store, concurrency=slots)
        await worker.start()
        try:
            while True:
                found = [
                    j for i in ids for j in await queue.listing(self.catalog.engine, evidence_id=i)
                ]
                if len(found) == 2 * len(ids) and all(j.state == "done" for j in found):
                    return found
                if any(j.state == "failed" for j in found):
                    raise RuntimeError(f"a job failed: {[j.error for j in found]}")
                await asyncio.sleep(0.5)  # the job's own times are measured, not this loop's
        finally:
            await worker.stop()


async def _chunks(path: Path, digest: MultiDigest) -> AsyncIterator[bytes]:
    with path.open("rb") as source:
        while block := source.read(8 * 1024 * 1024):
            digest.update(block)
            yield block


def _seconds(job: queue.Job) -> float:
    assert job.started_at is not None and job.finished_at is not None
    return (job.finished_at - job.started_at).total_seconds()


class FfmpegClock:
    """Times every ffmpeg run the worker makes (the runner's `execute`, wrapped)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._execute = runner.execute

    async def __call__(self, *args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        try:
            await self._execute(*args, **kwargs)
        finally:
            self.seconds.append(time.perf_counter() - started)


async def overhead(clip: Path, scratch: Path, *, seconds: int, repeat: int) -> dict[str, float]:
    """Medians of the derive job and of the direct command, alternating which runs first.

    Three views of the cost. Wall time against the direct run is what a user waits, but on a
    shared machine other work can slow one run and not the other. Inside the derive job the
    ffmpeg run is timed too: job time / ffmpeg time is the job system's own overhead (copy-out,
    clean-up, hashing, storing, recording), measured under the same conditions. CPU seconds
    (this process and its children) count the work itself, whatever else runs."""
    box = Box(scratch / "job-data")
    await box.open()
    clock = FfmpegClock()
    runner.execute = clock  # type: ignore[assignment]
    walls: dict[str, list[float]] = {"job": [], "direct": [], "whole": [], "inner": []}
    cpus: dict[str, list[float]] = {"job": [], "direct": []}

    async def by_hand() -> None:
        wall, cpu = await direct(clip, scratch / "direct")
        walls["direct"].append(wall)
        cpus["direct"].append(cpu)

    async def via_jobs() -> None:
        evidence_id = await box.evidence(clip)
        started, cpu = time.perf_counter(), cpu_seconds()
        jobs = await box.run([evidence_id], slots=1)
        walls["whole"].append(time.perf_counter() - started)
        cpus["job"].append(cpu_seconds() - cpu)  # includes the analysis and this loop
        [derive] = [j for j in jobs if j.kind == "derive"]
        walls["job"].append(_seconds(derive))
        walls["inner"].append(clock.seconds[-1])

    try:
        for n in range(repeat):
            for step in (by_hand, via_jobs) if n % 2 == 0 else (via_jobs, by_hand):
                await step()
            print(
                f"  run {n + 1}: direct {walls['direct'][-1]:.2f} s ({cpus['direct'][-1]:.1f} "
                f"CPU s); derive job {walls['job'][-1]:.2f} s, its ffmpeg "
                f"{walls['inner'][-1]:.2f} s; analyse+derive {walls['whole'][-1]:.2f} s "
                f"({cpus['job'][-1]:.1f} CPU s)",
                flush=True,
            )
    finally:
        runner.execute = clock._execute
        await box.close()
    med = {k: statistics.median(v) for k, v in walls.items()}
    inner = statistics.median(j / i for j, i in zip(walls["job"], walls["inner"], strict=True))
    cpu_job, cpu_hand = (statistics.median(cpus[k]) for k in ("job", "direct"))
    return {
        "job": med["job"],
        "direct": med["direct"],
        "whole": med["whole"],
        "inner": med["inner"],
        "ratio": med["job"] / med["direct"],
        "inner_ratio": inner,
        "cpu_job": cpu_job,
        "cpu_direct": cpu_hand,
        "cpu_ratio": cpu_job / cpu_hand,
        "seconds": seconds,
    }


async def scaling(clip: Path, scratch: Path, *, items: int) -> dict[int, float]:
    """Wall seconds to analyse and transcode `items` clips with one and with two slots."""
    results = {}
    for slots in (1, 2):
        box = Box(scratch / f"scale-{slots}")
        await box.open()
        try:
            ids = [await box.evidence(clip) for _ in range(items)]
            started = time.perf_counter()
            await box.run(ids, slots=slots)
            results[slots] = time.perf_counter() - started
            print(f"  {slots} slot(s): {items} clips in {results[slots]:.2f} s", flush=True)
        finally:
            await box.close()
    return results


def report(over: dict[str, float], scale: dict[int, float], args: argparse.Namespace) -> str:
    met = "met" if over["inner_ratio"] <= TARGET_OVERHEAD else "missed"
    seconds = over["seconds"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return "\n".join(
        [
            "## Transcoding: job system vs ffmpeg by hand",
            "",
            f"`{' '.join(['.venv/bin/python', 'bench/transcode.py', *sys.argv[1:]])}` on "
            f"{os.cpu_count()} cores, ffmpeg {args.ffmpeg_version}; load average {load} at the "
            "end (other work shared the machine: wall times are noisy, read the ratios).",
            "",
            f"{seconds} s noisy 720p30 MPEG-2 TS + MP2 -> `mp4-h264` (libx264 veryfast CRF 23, "
            f"AAC, faststart), median of {args.repeat}, runs alternating:",
            "",
            "| path | seconds | x realtime |",
            "|---|---|---|",
            f"| ffmpeg by hand (same command line) | {over['direct']:.2f} | "
            f"{seconds / over['direct']:.2f}x |",
            f"| derive job (copy out, ffmpeg, hash, store, record) | {over['job']:.2f} | "
            f"{seconds / over['job']:.2f}x |",
            f"| ... of which its ffmpeg run | {over['inner']:.2f} | "
            f"{seconds / over['inner']:.2f}x |",
            f"| analyse (probe + continuity) then derive, queued to done | "
            f"{over['whole']:.2f} | {seconds / over['whole']:.2f}x |",
            "",
            f"Overhead of the job system, derive job / its own ffmpeg run: "
            f"**{over['inner_ratio']:.3f}x** (target <= {TARGET_OVERHEAD}x: {met}). "
            f"Derive job / ffmpeg by hand, wall: {over['ratio']:.3f}x. CPU seconds, analysis "
            f"included: {over['cpu_job']:.1f} vs {over['cpu_direct']:.1f} = "
            f"{over['cpu_ratio']:.3f}x.",
            "",
            f"{args.items} clips of {args.item_seconds} s queued at once (analysis + mp4-h264 "
            "each): "
            f"1 slot {scale[1]:.2f} s, 2 slots {scale[2]:.2f} s, "
            f"speed-up {scale[1] / scale[2]:.2f}x (libx264 already uses every core; a second "
            "concurrent job can only fill the gaps: copy-out, probe, continuity, hashing).",
            "",
        ]
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="length of the overhead clip")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--items", type=int, default=4, help="clips for one slot vs two")
    parser.add_argument("--item-seconds", type=int, default=20)
    parser.add_argument("--append", type=Path, default=None, help="append the report here")
    args = parser.parse_args()
    args.ffmpeg_version = await version("ffmpeg")
    with tempfile.TemporaryDirectory(prefix="avidence-bench-") as tmp:
        scratch = Path(tmp)
        print(f"making a {args.seconds} s noisy 720p MPEG-2 clip ...", flush=True)
        clip = make_clip(scratch / "recorder.ts", args.seconds)
        print("overhead (direct vs derive job):", flush=True)
        over = await overhead(clip, scratch, seconds=args.seconds, repeat=args.repeat)
        short = make_clip(scratch / "short.ts", args.item_seconds)
        print("one worker slot vs two:", flush=True)
        scale = await scaling(short, scratch, items=args.items)
    text = report(over, scale, args)
    print()
    print(text)
    if args.append is not None:
        with args.append.open("a", encoding="utf-8") as out:
            out.write("\n" + text)


if __name__ == "__main__":
    asyncio.run(main())
