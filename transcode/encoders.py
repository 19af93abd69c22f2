"""H.264 encoders: the arguments each one needs, and a trial run to see if it works here.

libx264 works everywhere and is the default. A hardware encoder (NVENC, VAAPI, Quick Sync) may
be named in a profile, but whether it works depends on the machine's driver and device, which no
setting can promise; so a worker runs a one-second trial encode at start-up and, when it fails,
uses libx264 and says why, instead of failing every job.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from .tools import readable, spawn, stop, tail

FALLBACK = "libx264"
ENCODERS = ("libx264", "h264_nvenc", "h264_vaapi", "h264_qsv")
TRIAL_TIMEOUT = 30.0


@dataclass(slots=True, frozen=True)
class EncoderArgs:
    """Where an encoder's arguments go in an ffmpeg command line."""

    before_input: tuple[str, ...]  # device set-up, before `-i`
    pixel_filters: tuple[str, ...]  # end of the video filter chain (format, upload)
    codec: tuple[str, ...]  # `-c:v NAME` and its quality options


def encoder_args(encoder: str, *, preset: str, crf: int, device: str) -> EncoderArgs:
    """Arguments for `encoder` at a comparable quality (CRF 23 ~ CQ 23 ~ QP 23)."""
    if encoder == "h264_nvenc":
        return EncoderArgs(
            (), ("format=yuv420p",), ("-c:v", "h264_nvenc", "-preset", "p4", "-cq", str(crf))
        )
    if encoder == "h264_vaapi":
        return EncoderArgs(
            ("-vaapi_device", device),
            ("format=nv12", "hwupload"),
            ("-c:v", "h264_vaapi", "-qp", str(crf)),
        )
    if encoder == "h264_qsv":
        return EncoderArgs((), ("format=nv12",), ("-c:v", "h264_qsv", "-global_quality", str(crf)))
    if encoder != FALLBACK:
        raise ValueError(f"unknown encoder {encoder!r}")
    return EncoderArgs(
        (),
        ("format=yuv420p",),
        ("-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-profile:v", "high"),
    )


async def trial(encoder: str, *, device: str = "", ffmpeg: str = "ffmpeg") -> str | None:
    """Encode one second of a test pattern; None when it works, else the reason in one line."""
    args = encoder_args(encoder, preset="veryfast", crf=23, device=device)
    argv = [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        *args.before_input,
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=30",
        "-t",
        "1",
        "-vf",
        ",".join(args.pixel_filters),
        *args.codec,
        "-f",
        "null",
        "-",
    ]
    process = await spawn(argv)
    stderr: deque[str] = deque(maxlen=20)
    try:
        await asyncio.wait_for(
            asyncio.gather(tail(process.stderr, stderr), process.wait()), TRIAL_TIMEOUT
        )
    except TimeoutError:
        await stop(process)
        return f"trial encode with {encoder} did not finish in {TRIAL_TIMEOUT:.0f} s"
    finally:
        await stop(process)
    if process.returncode != 0:
        return f"trial encode with {encoder} failed: {readable(stderr)}"
    return None
