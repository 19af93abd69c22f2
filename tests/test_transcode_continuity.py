"""Continuity: cuts, dropped frames and backward jumps found in packet timestamps, located."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from avidence.transcode import continuity
from avidence.transcode.continuity import Analyser, parse_line
from avidence.transcode.probe import probe

from support.media import GAP_AT, GAP_SECONDS


def analyse(times: list[float | None], fps: float | None = 25.0) -> continuity.Continuity:
    analyser = Analyser(stream=0, declared_fps=fps)
    for n, time in enumerate(times):
        analyser.feed(n, time, n * 1000)
    return analyser.result()


def frames(start: float, count: int, fps: float = 25.0) -> list[float | None]:
    return [round(start + i / fps, 6) for i in range(count)]


def test_continuous_recording_is_ok() -> None:
    report = analyse(frames(10.0, 500))
    assert report.ok and report.packets == 500 and report.missing_frames == 0
    assert report.frame_interval == pytest.approx(0.04)
    assert report.span == pytest.approx(20.0)


def test_a_cut_is_a_gap_with_its_position() -> None:
    report = analyse(frames(10.0, 250) + frames(10.0 + 10 + 5, 250))  # 5 s missing after 10 s
    assert not report.ok
    [gap] = report.gaps
    assert gap.at == pytest.approx(10.0) and gap.length == pytest.approx(5.0)
    assert (gap.packet, gap.pos, gap.frames) == (250, 250_000, 125)
    assert gap.time == pytest.approx(25.0)
    assert report.counts["gaps"] == 1 and report.dropped == []


def test_a_few_missing_frames_are_dropped_frames_not_a_cut() -> None:
    times = frames(0.0, 100)
    del times[50:53]  # three frames missing, 0.12 s
    report = analyse(times)
    assert report.ok and report.gaps == []
    [drop] = report.dropped
    assert drop.frames == 3 and drop.at == pytest.approx(2.0)
    assert report.missing_frames == 3


def test_backward_jump_is_a_discontinuity() -> None:
    report = analyse(frames(100.0, 100) + frames(50.0, 100))
    assert not report.ok
    [jump] = report.discontinuities
    assert jump.length == pytest.approx(-(100 + 99 / 25 - 50)) and jump.packet == 100
    assert jump.frames == 0


def test_untimed_and_duplicate_packets_are_counted() -> None:
    times = frames(0.0, 50)
    times[10] = None
    times.insert(20, times[19])
    report = analyse(times)
    assert report.ok and report.counts["untimed"] == 1 and report.counts["duplicates"] == 1


def test_interval_is_measured_when_the_declared_rate_is_wrong() -> None:
    report = analyse(frames(0.0, 400, fps=12.5), fps=25.0)  # a camera that halves its rate
    assert report.ok and report.frame_interval == pytest.approx(0.08)


def test_events_listed_are_capped_but_counted() -> None:
    times: list[float | None] = []
    for cut in range(continuity.MAX_LISTED + 5):
        times += frames(cut * 10.0, 25)  # 1 s of frames every 10 s
    report = analyse(times)
    assert len(report.gaps) == continuity.MAX_LISTED
    assert report.counts["gaps"] == continuity.MAX_LISTED + 5 - 1


def test_packet_lines_parse_dts_first() -> None:
    assert parse_line("pts_time=1.433333|dts_time=1.400000|pos=564|") == (1.4, 564)
    assert parse_line("pts_time=2.000000|dts_time=N/A|pos=N/A") == (2.0, None)
    assert parse_line("pts_time=N/A|dts_time=N/A|pos=10") == (None, 10)
    assert parse_line("") is None


async def test_recording_with_a_cut_is_found_near_the_cut(gap_clip: Path) -> None:
    report = await continuity.check(gap_clip, await probe(gap_clip))
    assert report is not None and not report.ok
    [gap] = report.gaps
    assert gap.at == pytest.approx(GAP_AT, abs=0.1)
    assert gap.length == pytest.approx(GAP_SECONDS, abs=0.1)
    assert report.declared_fps == 30.0 and report.packets == 180


async def test_continuous_recording_and_audio_only(small_ts_clip: Path, tmp_path: Path) -> None:
    report = await continuity.check(small_ts_clip, await probe(small_ts_clip))
    assert report is not None and report.ok and report.packets == 75
    wav = tmp_path / "voice.wav"
    argv = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine", "-t", "1", str(wav)]
    await asyncio.to_thread(subprocess.run, argv, check=True)
    assert await continuity.check(wav, await probe(wav)) is None
