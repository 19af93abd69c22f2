"""Test media made by ffmpeg on the spot, never downloaded."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly; a failure fails the test with ffmpeg's message."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is missing: `make test` installs Debian's ffmpeg")
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
        check=True,
        timeout=120,
    )


def _lavfi(*sources: str, seconds: float) -> list[str]:
    args: list[str] = []
    for source in sources:
        args += ["-t", str(seconds), "-f", "lavfi", "-i", source]
    return args


def make_clip(path: Path, *, seconds: int = 10, size: str = "1280x720") -> Path:
    """An MPEG-2 TS with MP2 audio, like an interrogation-room recorder writes."""
    ffmpeg(
        *_lavfi(f"testsrc2=size={size}:rate=30", "sine=frequency=440:sample_rate=48000",
                seconds=seconds),
        "-c:v", "mpeg2video", "-b:v", "8M", "-c:a", "mp2", str(path),
    )  # fmt: skip
    return path


@pytest.fixture(scope="session")
def ts_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10 s 720p MPEG-2 TS recording (about 10 MB)."""
    return make_clip(tmp_path_factory.mktemp("media") / "interrogation.ts")


def make_mp4(path: Path, *, seconds: int = 6, size: str = "640x360") -> Path:
    """An H.264/AAC MP4 with the index up front (faststart): what every browser plays."""
    ffmpeg(
        *_lavfi(f"testsrc2=size={size}:rate=25", "sine=frequency=440", seconds=seconds),
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-movflags", "+faststart", str(path),
    )  # fmt: skip
    return path


@pytest.fixture(scope="session")
def mp4_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6 s 360p H.264/AAC MP4 (a few hundred KB), browser-playable."""
    return make_mp4(tmp_path_factory.mktemp("media") / "interview.mp4")


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media-more")


@pytest.fixture(scope="session")
def small_ts_clip(media_dir: Path) -> Path:
    """A 3 s 320x240 MPEG-2 TS with MP2 audio: the recorder case, quick to transcode."""
    path = media_dir / "small.ts"
    src = _lavfi("testsrc2=size=320x240:rate=25", "sine=frequency=440:sample_rate=48000", seconds=3)
    ffmpeg(*src, "-c:v", "mpeg2video", "-b:v", "2M", "-c:a", "mp2", str(path))
    return path


@pytest.fixture(scope="session")
def avi_clip(media_dir: Path) -> Path:
    """A 3 s MJPEG AVI with PCM audio, as CCTV exports often are."""
    path = media_dir / "cctv.avi"
    src = _lavfi("testsrc2=size=640x360:rate=25", "sine=frequency=300:sample_rate=44100", seconds=3)
    ffmpeg(*src, "-c:v", "mjpeg", "-q:v", "6", "-c:a", "pcm_s16le", str(path))
    return path


@pytest.fixture(scope="session")
def phone_mp4(media_dir: Path) -> Path:
    """A 3 s H.264/AAC MP4 (index at the end): browser-playable already, so only remuxed."""
    path = media_dir / "phone.mp4"
    src = _lavfi("testsrc2=size=640x360:rate=30", "sine=frequency=500:sample_rate=48000", seconds=3)
    ffmpeg(
        *src,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        str(path),
    )
    return path


@pytest.fixture(scope="session")
def two_angle_clip(media_dir: Path) -> Path:
    """A 3 s MPEG-2 TS with two video streams (two camera angles) and one audio track."""
    path = media_dir / "angles.ts"
    src = _lavfi(
        "testsrc2=size=320x240:rate=25",
        "smptebars=size=320x240:rate=25",
        "sine=frequency=440:sample_rate=48000",
        seconds=3,
    )
    ffmpeg(
        *src,
        "-map",
        "0:v",
        "-map",
        "1:v",
        "-map",
        "2:a",
        "-c:v",
        "mpeg2video",
        "-c:a",
        "mp2",
        str(path),
    )
    return path


GAP_AT = 3.0
GAP_SECONDS = 5.0


@pytest.fixture(scope="session")
def gap_clip(media_dir: Path) -> Path:
    """6 s of recording with a 5 s hole in its timestamps after 3 s (a cut in the recording)."""
    path = media_dir / "cut.ts"
    shift = f"PTS+gte(T,{GAP_AT})*{GAP_SECONDS}/TB"
    src = _lavfi("testsrc2=size=320x240:rate=30", "sine=frequency=440:sample_rate=48000", seconds=6)
    ffmpeg(
        *src,
        "-vf",
        f"setpts='{shift}'",
        "-af",
        f"asetpts='{shift}'",
        "-fps_mode",
        "passthrough",
        "-c:v",
        "mpeg2video",
        "-c:a",
        "mp2",
        str(path),
    )
    return path


@pytest.fixture(scope="session")
def truncated_clip(phone_mp4: Path, media_dir: Path) -> Path:
    """The first half of an MP4 whose index (moov) is at the end: unreadable as media."""
    path = media_dir / "truncated.mp4"
    data = phone_mp4.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture(scope="session")
def text_file(media_dir: Path) -> Path:
    """Not media at all: a statement typed into a text file."""
    path = media_dir / "statement.txt"
    path.write_text("Statement of the witness, taken on 3 March.\n" * 20, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def noisy_clip(media_dir: Path) -> Path:
    """6 s of noisy 720p MPEG-2 (like a real camera): slow enough to kill a worker mid-job."""
    path = media_dir / "noisy.ts"
    src = _lavfi(
        "testsrc2=size=1280x720:rate=30", "sine=frequency=440:sample_rate=48000", seconds=6
    )
    ffmpeg(
        *src,
        "-vf",
        "noise=alls=20:allf=t+u",
        "-c:v",
        "mpeg2video",
        "-b:v",
        "8M",
        "-c:a",
        "mp2",
        str(path),
    )
    return path
