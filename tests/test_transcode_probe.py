"""ffprobe's view of originals: containers, streams, start times; readable refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from avidence.transcode.errors import MediaError
from avidence.transcode.probe import MediaInfo, probe


async def test_recorder_ts_probe_names_container_codecs_rate_and_start(
    small_ts_clip: Path,
) -> None:
    info = await probe(small_ts_clip)
    assert info.container == "mpegts"
    assert info.duration == pytest.approx(3.0, abs=0.2)
    assert info.start_time is not None and info.start_time > 0  # TS clocks do not start at 0
    [video] = info.videos
    [audio] = info.audios
    assert (video.codec, video.width, video.height, video.frame_rate) == (
        "mpeg2video",
        320,
        240,
        "25/1",
    )
    assert video.fps == 25.0 and video.start_time is not None
    assert (audio.codec, audio.sample_rate, audio.channels) == ("mp2", 48000, 1)


async def test_avi_two_angles_and_round_trip_through_json(
    avi_clip: Path, two_angle_clip: Path
) -> None:
    avi = await probe(avi_clip)
    assert avi.container == "avi"
    assert [(s.kind, s.codec) for s in avi.streams] == [("video", "mjpeg"), ("audio", "pcm_s16le")]
    angles = await probe(two_angle_clip)
    assert [s.index for s in angles.videos] == [0, 1] and len(angles.audios) == 1
    assert MediaInfo.from_json(angles.to_json()) == angles


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("text_file", "a text file, not audio or video"),
        ("truncated_clip", "moov atom not found"),
    ],
)
async def test_non_media_raises_media_error_with_ffprobes_reason(
    request: pytest.FixtureRequest, fixture: str, reason: str
) -> None:
    path: Path = request.getfixturevalue(fixture)
    with pytest.raises(MediaError) as info:
        await probe(path)
    assert reason in info.value.reason
    assert str(path) not in info.value.reason, "no local paths in a reason shown to users"
    assert "\n" not in info.value.reason and not info.value.transient


async def test_missing_ffprobe_is_a_transient_tool_error(small_ts_clip: Path) -> None:
    with pytest.raises(Exception) as info:
        await probe(small_ts_clip, ffprobe="/nonexistent/ffprobe")
    assert getattr(info.value, "transient", False) is True
