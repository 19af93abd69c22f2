"""Media facts in the viewer read as people name formats: `MP4 · H.264 640×360 25 帧/秒 · AAC
单声道`, not ffprobe's `mov,mp4,m4a,3gp,3g2,mj2 · h264 640x360 25 fps · aac 1ch`."""

from __future__ import annotations

from typing import Any

import pytest

from avidence.server.tickets.mediafacts import codec_name, container_name, media_format


def probe(container: str, *streams: dict[str, Any]) -> dict[str, Any]:
    return {"container": container, "streams": list(streams)}


VIDEO = {"kind": "video", "codec": "h264", "width": 640, "height": 360, "frame_rate": "25/1"}
MONO = {"kind": "audio", "codec": "aac", "channels": 1}


def test_issue_example_in_both_languages() -> None:
    iso = probe("mov,mp4,m4a,3gp,3g2,mj2", VIDEO, MONO)
    assert (
        media_format(iso, lang="zh", filename="a.mp4")
        == "MP4 · H.264 640×360 25 帧/秒 · AAC 单声道"
    )
    assert media_format(iso, lang="en", filename="a.mp4") == "MP4 · H.264 640×360 25 fps · AAC mono"


@pytest.mark.parametrize(
    ("container", "filename", "name"),
    [
        ("mov,mp4,m4a,3gp,3g2,mj2", "interview.MOV", "MOV"),
        ("mov,mp4,m4a,3gp,3g2,mj2", "call.m4a", "M4A"),
        ("mov,mp4,m4a,3gp,3g2,mj2", "no-extension", "MP4"),
        ("mpegts", "cam.ts", "MPEG-TS"),
        ("matroska,webm", "x.mkv", "MKV"),
        ("matroska,webm", "x.webm", "WebM"),
        ("asf", "old.wmv", "WMV"),
        ("avi", "x.avi", "AVI"),
        ("wav", "x.wav", "WAV"),
        ("something_new", "x.bin", "SOMETHING_NEW"),
    ],
)
def test_container_names(container: str, filename: str, name: str) -> None:
    assert container_name(container, filename) == name


@pytest.mark.parametrize(
    ("codec", "name"),
    [
        ("hevc", "H.265"),
        ("mpeg2video", "MPEG-2"),
        ("pcm_s16le", "PCM"),
        ("pcm_alaw", "G.711 A-law"),
        ("adpcm_ima_wav", "ADPCM"),
        ("mp2", "MP2"),
    ],
)
def test_codec_names(codec: str, name: str) -> None:
    assert codec_name(codec) == name


def test_channels_and_rates_in_words() -> None:
    stereo = {"kind": "audio", "codec": "mp2", "channels": 2}
    six = {"kind": "audio", "codec": "ac3", "channels": 6}
    four = {"kind": "audio", "codec": "pcm_s16le", "channels": 4}
    ntsc = {**VIDEO, "frame_rate": "30000/1001"}
    found = media_format(probe("mpegts", ntsc, stereo, six, four), lang="zh")
    assert found == (
        "MPEG-TS · H.264 640×360 29.97 帧/秒 · MP2 立体声 · AC-3 5.1 声道 · PCM 4 声道"
    )
    assert media_format(probe("mpegts", stereo, four), lang="en") == (
        "MPEG-TS · MP2 stereo · PCM 4 channels"
    )
    assert media_format(None, lang="en") == ""
