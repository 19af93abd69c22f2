"""Running planned commands: outputs, progress, readable failures, encoder trial and fallback."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from avidence.transcode import profiles
from avidence.transcode.encoders import trial
from avidence.transcode.errors import MediaError
from avidence.transcode.plan import SOURCE, Command, OutputFile, plan
from avidence.transcode.probe import probe
from avidence.transcode.run import Progress, ProgressParser, execute
from avidence.transcode.tools import classify, readable, version


def test_progress_blocks_give_percent_and_speed() -> None:
    parser = ProgressParser(duration=10.0)
    lines = ["frame=30", "out_time_us=2500000", "speed=2.5x", "progress=continue"]
    results = [parser.feed(line) for line in lines]
    assert results[:3] == [None, None, None]
    assert results[3] == Progress(out_time=2.5, percent=25.0, speed=2.5, done=False)
    early = [parser.feed(x) for x in ("out_time_us=N/A", "speed=N/A", "progress=continue")]
    assert early[-1] == Progress(out_time=0.0, percent=0.0, speed=None, done=False)
    end = [parser.feed(x) for x in ("out_time_us=9990000", "speed=3x", "progress=end")]
    assert end[-1] == Progress(out_time=9.99, percent=100.0, speed=3.0, done=True)
    assert ProgressParser(None).feed("progress=continue") == Progress(0.0, None, None)


def test_stderr_becomes_one_readable_line() -> None:
    lines = [
        "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d0c3c0a0c0] moov atom not found",
        "source: Invalid data found when processing input",
    ]
    assert readable(lines) == "moov atom not found; Invalid data found when processing input"
    assert classify(1, lines, tool="ffmpeg", what="x").transient is False
    assert classify(-9, lines, tool="ffmpeg", what="encoding").reason == (
        "ffmpeg was killed by SIGKILL while encoding"
    )
    full = classify(1, ["out.mp4: No space left on device"], tool="ffmpeg", what="x")
    assert full.transient is True


async def _workdir(tmp_path: Path, original: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copyfile(original, work / SOURCE)
    return work


async def test_avi_plan_runs_with_progress_to_h264_aac(avi_clip: Path, tmp_path: Path) -> None:
    work = await _workdir(tmp_path, avi_clip)
    info = await probe(work / SOURCE)
    [command] = plan(info, profiles.BUILT_IN["mp4-h264"])
    seen: list[Progress] = []

    async def record(progress: Progress) -> None:
        seen.append(progress)

    await execute(command, cwd=work, on_progress=record)
    percents = [p.percent for p in seen if p.percent is not None]
    assert percents == sorted(percents) and percents[-1] == 100.0 and seen[-1].done
    argv = ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(work / "mp4-h264.mp4")]
    out = await asyncio.to_thread(subprocess.run, argv, check=True, capture_output=True)
    codecs = [s["codec_name"] for s in json.loads(out.stdout)["streams"]]
    assert codecs == ["h264", "aac"]
    kept = await asyncio.to_thread((work / SOURCE).read_bytes)
    assert kept == await asyncio.to_thread(avi_clip.read_bytes), "the input is never modified"


async def test_failed_command_raises_media_error_naming_the_output(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / SOURCE).write_bytes(b"\x00" * 1000)
    argv = ("ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-i", SOURCE, "out.mp4")
    command = Command(argv, (OutputFile("out.mp4", "video/mp4", "playable", 0),), 1.0)
    with pytest.raises(MediaError, match=r"^ffmpeg failed while making out\.mp4: .*Invalid data"):
        await execute(command, cwd=work)


async def test_hardware_encoders_fall_back_to_libx264_with_the_reason() -> None:
    assert await trial("libx264") is None
    configured = profiles.build({"mp4-h264": {"encoder": "h264_nvenc"}})
    usable, notes = await profiles.with_working_encoders(configured)
    # No NVIDIA GPU in the test machine: the trial fails and says why.
    assert usable["mp4-h264"].encoder == "libx264"
    [note] = notes
    assert note.startswith("profile mp4-h264: using libx264 instead of h264_nvenc: trial encode")
    assert usable["poster"] == configured["poster"]


async def test_ffmpeg_version_is_the_bare_version() -> None:
    text = await version("ffmpeg")
    assert text[0].isdigit() and " " not in text
