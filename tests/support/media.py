"""Test media made by ffmpeg on the spot, never downloaded."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def make_clip(path: Path, *, seconds: int = 10, size: str = "1280x720") -> Path:
    """An MPEG-2 TS with MP2 audio, like an interrogation-room recorder writes."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is missing: `make test` installs Debian's ffmpeg")
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={size}:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            str(seconds),
            "-c:v",
            "mpeg2video",
            "-b:v",
            "8M",
            "-c:a",
            "mp2",
            str(path),
        ],
        check=True,
        timeout=120,
    )
    return path


@pytest.fixture(scope="session")
def ts_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10 s 720p MPEG-2 TS recording (about 10 MB)."""
    return make_clip(tmp_path_factory.mktemp("media") / "interrogation.ts")
