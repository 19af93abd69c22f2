"""What an original is, as ffprobe sees it: container, duration, streams, codecs, start times.

The probe is taken once per original and kept with the evidence record, so a case handler can see
what a recorder wrote (an MPEG-2 TS with MP2 audio, two camera angles, a clock that starts at
10 h) without downloading it, and so the planner can decide between a remux and a re-encode.
`MediaInfo` is a plain record that round-trips through JSON for the catalog.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

import ffmpeg

from .errors import MediaError, ToolError
from .tools import readable

# Demuxers that hold one picture, not a recording: probed, never transcoded.
_TEXT_FORMATS = ("tty",)
_STILL_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "gif", "tiff_pipe")


@dataclass(slots=True, frozen=True)
class StreamInfo:
    """One elementary stream; fields a stream kind does not have are None."""

    index: int
    kind: str  # "video", "audio", "subtitle", "data", "attachment"
    codec: str
    profile: str | None = None
    pix_fmt: str | None = None
    width: int | None = None
    height: int | None = None
    frame_rate: str | None = None  # exact, as ffprobe gives it ("30000/1001")
    field_order: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    channel_layout: str | None = None
    start_time: float | None = None
    duration: float | None = None
    bit_rate: int | None = None
    frames: int | None = None
    language: str | None = None
    still: bool = False  # a cover picture or a single image, not a moving picture

    @property
    def fps(self) -> float | None:
        """Frames per second as a number, None when ffprobe did not know it."""
        if not self.frame_rate:
            return None
        try:
            value = Fraction(self.frame_rate)
        except (ValueError, ZeroDivisionError):
            return None
        return float(value) if value > 0 else None


@dataclass(slots=True, frozen=True)
class MediaInfo:
    """The whole probe: the container and its streams in file order."""

    container: str
    container_long: str
    duration: float | None
    start_time: float | None
    bit_rate: int | None
    size: int | None
    streams: tuple[StreamInfo, ...]

    @property
    def videos(self) -> list[StreamInfo]:
        """Moving-picture streams (camera angles), cover pictures left out."""
        return [s for s in self.streams if s.kind == "video" and not s.still]

    @property
    def audios(self) -> list[StreamInfo]:
        return [s for s in self.streams if s.kind == "audio"]

    @property
    def playable_media(self) -> bool:
        """True when there is sound or a moving picture to make playable."""
        return bool(self.videos or self.audios)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MediaInfo:
        known = {f.name for f in fields(StreamInfo)}
        streams = tuple(
            StreamInfo(**{k: v for k, v in s.items() if k in known}) for s in data["streams"]
        )
        return cls(
            container=str(data.get("container", "unknown")),
            container_long=str(data.get("container_long", "")),
            duration=data.get("duration"),
            start_time=data.get("start_time"),
            bit_rate=data.get("bit_rate"),
            size=data.get("size"),
            streams=streams,
        )


def _number(value: Any, kind: type[int] | type[float]) -> Any:
    if value in (None, "", "N/A"):
        return None
    try:
        return kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        return None


def _stream(raw: dict[str, Any], container: str) -> StreamInfo:
    kind = str(raw.get("codec_type", "data"))
    disposition = raw.get("disposition") or {}
    rate = raw.get("avg_frame_rate") or raw.get("r_frame_rate")
    if rate in ("0/0", "0/1"):
        rate = raw.get("r_frame_rate")
    frames = _number(raw.get("nb_frames"), int)
    still = kind == "video" and (
        bool(disposition.get("attached_pic") or disposition.get("still_image"))
        or container in _STILL_FORMATS
    )
    return StreamInfo(
        index=int(raw["index"]),
        kind=kind,
        codec=str(raw.get("codec_name", "unknown")),
        profile=raw.get("profile"),
        pix_fmt=raw.get("pix_fmt"),
        width=_number(raw.get("width"), int),
        height=_number(raw.get("height"), int),
        frame_rate=rate if kind == "video" and rate not in (None, "0/0") else None,
        field_order=raw.get("field_order"),
        sample_rate=_number(raw.get("sample_rate"), int),
        channels=_number(raw.get("channels"), int),
        channel_layout=raw.get("channel_layout"),
        start_time=_number(raw.get("start_time"), float),
        duration=_number(raw.get("duration"), float),
        bit_rate=_number(raw.get("bit_rate"), int),
        frames=frames,
        language=(raw.get("tags") or {}).get("language"),
        still=still,
    )


def parse(document: dict[str, Any]) -> MediaInfo:
    """A MediaInfo from ffprobe's `-show_format -show_streams` JSON."""
    fmt = document.get("format") or {}
    container = str(fmt.get("format_name", "unknown"))
    streams = tuple(_stream(s, container) for s in document.get("streams") or [])
    return MediaInfo(
        container=container,
        container_long=str(fmt.get("format_long_name", "")),
        duration=_number(fmt.get("duration"), float),
        start_time=_number(fmt.get("start_time"), float),
        bit_rate=_number(fmt.get("bit_rate"), int),
        size=_number(fmt.get("size"), int),
        streams=streams,
    )


async def probe(path: Path | str, *, ffprobe: str = "ffprobe") -> MediaInfo:
    """Probe a local file or an http(s) URL (read with ranged requests, not downloaded).
    MediaError (with ffprobe's own words) when it is not media."""

    def run() -> Any:
        return ffmpeg.probe(str(path), cmd=ffprobe, v="error")

    try:
        document = await asyncio.to_thread(run)
    except ffmpeg.Error as exc:
        stderr = (exc.stderr or b"").decode("utf-8", "replace").splitlines()
        reason = readable(stderr, source=str(path) if isinstance(path, Path) else "source")
        raise MediaError(f"not a readable media file: {reason}") from None
    except FileNotFoundError:
        raise ToolError(f"{ffprobe} is not installed or not on PATH") from None
    info = parse(document)
    if info.container in _TEXT_FORMATS:  # chosen by a .txt/.ans name, not by the content
        raise MediaError("not a readable media file: a text file, not audio or video")
    if not info.streams:
        raise MediaError(f"not a readable media file: no streams in {info.container} container")
    return info
