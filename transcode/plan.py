"""From a probe and a profile to exact ffmpeg command lines: the decisions, with no side effects.

Rules, in the order they matter for evidence:

* never touch more than needed: a stream browsers already play (H.264 8-bit 4:2:0 within the
  height cap; AAC or MP3 audio) is copied bit for bit (`-c:v copy`), so an H.264/AAC MP4 is only
  remuxed; everything else is encoded;
* keep every angle and every voice: one output per video stream, each carrying every audio
  track; audio-only originals become an M4A;
* keep the timeline: `-fps_mode vfr` never duplicates frames, so a cut in the recording stays a
  visible cut in the copy instead of being papered over with repeated pictures.

Commands name their input `source` and their outputs by profile, relative to the folder they run
in; the argument list is what gets recorded as provenance, so it is exactly what runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .encoders import encoder_args
from .probe import MediaInfo, StreamInfo
from .profiles import Profile

SOURCE = "source"
_BROWSER_PIX_FMTS = ("yuv420p", "yuvj420p")
_BROWSER_AUDIO = ("aac", "mp3")
_PROGRESS = ("-progress", "pipe:1", "-nostats")
_HEAD = ("ffmpeg", "-hide_banner", "-nostdin", "-y", "-loglevel", "error")


@dataclass(slots=True, frozen=True)
class OutputFile:
    """One file a command writes, and what it is for."""

    name: str
    content_type: str
    role: str  # "playable", "playlist", "segment", "poster", "sprite"
    angle: int  # position among the original's video streams (0 for audio-only)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class Command:
    """One ffmpeg run: its argument list, what it writes, and how long its input plays."""

    argv: tuple[str, ...]
    outputs: tuple[OutputFile, ...]
    duration: float | None  # seconds of media the run goes through, for progress
    copies_video: bool = False  # true when no video stream is re-encoded


def video_copyable(stream: StreamInfo, profile: Profile) -> bool:
    """H.264 that every browser decodes and that needs no scaling."""
    return (
        stream.codec == "h264"
        and stream.pix_fmt in _BROWSER_PIX_FMTS
        and (stream.height or 0) <= profile.max_height
    )


def audio_copyable(stream: StreamInfo) -> bool:
    return stream.codec in _BROWSER_AUDIO


def _suffix(angle: int) -> str:
    return f"-{angle}" if angle else ""


def _duration(info: MediaInfo, stream: StreamInfo | None) -> float | None:
    if stream is not None and stream.duration:
        return stream.duration
    return info.duration


def _scale(height: int) -> str:
    # Width follows the aspect ratio, rounded to even; height capped and made even for 4:2:0.
    return f"scale=-2:'min({height},trunc(ih/2)*2)'"


def _video_args(stream: StreamInfo, profile: Profile) -> tuple[list[str], list[str]]:
    """(arguments before `-i`, arguments for the video output stream)."""
    if video_copyable(stream, profile):
        return [], ["-c:v", "copy"]
    enc = encoder_args(
        profile.encoder, preset=profile.preset, crf=profile.crf, device=profile.device
    )
    chain = ["yadif=deint=interlaced"] if profile.deinterlace else []
    chain += [_scale(profile.max_height), *enc.pixel_filters]
    return list(enc.before_input), ["-vf", ",".join(chain), *enc.codec, "-fps_mode", "vfr"]


def _audio_args(audios: list[StreamInfo], profile: Profile) -> list[str]:
    args: list[str] = []
    for n, stream in enumerate(audios):
        if audio_copyable(stream):
            args += [f"-c:a:{n}", "copy"]
        else:
            args += [f"-c:a:{n}", "aac", f"-b:a:{n}", profile.audio_bitrate]
    return args


def _av_command(
    info: MediaInfo, profile: Profile, video: StreamInfo | None, angle: int
) -> tuple[list[str], list[str], bool]:
    """(input options, stream maps and codecs, video copied) shared by mp4 and hls."""
    before: list[str] = []
    body: list[str] = []
    vargs: list[str] = []
    copied = True
    if video is not None:
        before, vargs = _video_args(video, profile)
        copied = vargs[-1] == "copy"
        body += ["-map", f"0:{video.index}"]
    for audio in info.audios:
        body += ["-map", f"0:{audio.index}"]
    body += vargs
    body += _audio_args(info.audios, profile)
    body += ["-max_muxing_queue_size", "4096"]
    return before, body, copied


def _mp4(info: MediaInfo, profile: Profile) -> list[Command]:
    angles: list[StreamInfo | None] = list(info.videos) or [None]
    commands = []
    for angle, video in enumerate(angles):
        before, body, copied = _av_command(info, profile, video, angle)
        ext, ctype = (".mp4", "video/mp4") if video is not None else (".m4a", "audio/mp4")
        name = f"{profile.name}{_suffix(angle)}{ext}"
        argv = (*_HEAD, *before, "-i", SOURCE, *body, "-movflags", "+faststart", *_PROGRESS, name)
        output = OutputFile(name, ctype, "playable", angle)
        commands.append(Command(argv, (output,), _duration(info, video), copied))
    return commands


def _hls(info: MediaInfo, profile: Profile) -> list[Command]:
    angles: list[StreamInfo | None] = list(info.videos) or [None]
    commands = []
    for angle, video in enumerate(angles):
        before, body, copied = _av_command(info, profile, video, angle)
        base = f"{profile.name}{_suffix(angle)}"
        hls = ["-f", "hls", "-hls_time", str(profile.segment_seconds)]
        hls += ["-hls_playlist_type", "vod", "-hls_segment_type", "fmp4"]
        hls += ["-hls_flags", "single_file"]
        argv = (*_HEAD, *before, "-i", SOURCE, *body, *hls, *_PROGRESS, f"{base}.m3u8")
        outputs = (
            OutputFile(f"{base}.m3u8", "application/vnd.apple.mpegurl", "playlist", angle),
            OutputFile(f"{base}.m4s", "video/mp4", "segment", angle),
        )
        commands.append(Command(argv, outputs, _duration(info, video), copied))
    return commands


def _poster(info: MediaInfo, profile: Profile) -> list[Command]:
    commands = []
    for angle, video in enumerate(info.videos):
        length = _duration(info, video) or 0.0
        at = min(length * profile.poster_at, 10.0, max(length - 0.5, 0.0))
        name = f"{profile.name}{_suffix(angle)}.jpg"
        argv = (
            *_HEAD,
            "-ss",
            f"{at:.3f}",
            "-i",
            SOURCE,
            "-map",
            f"0:{video.index}",
            "-frames:v",
            "1",
            "-vf",
            _scale(profile.max_height),
            "-q:v",
            "3",
            "-update",
            "1",
            name,
        )
        details = {"at": round(at, 3)}
        commands.append(
            Command(argv, (OutputFile(name, "image/jpeg", "poster", angle, details),), None)
        )
    return commands


def _sprite(info: MediaInfo, profile: Profile) -> list[Command]:
    commands = []
    tiles = profile.columns * profile.rows
    for angle, video in enumerate(info.videos):
        length = _duration(info, video) or 0.0
        interval = max(length / tiles, 1.0)
        name = f"{profile.name}{_suffix(angle)}.jpg"
        # The first keyframe after each interval (an fps filter drops a lone keyframe).
        pick = f"select='isnan(prev_selected_t)+gte(t-prev_selected_t\\,{interval:.3f})'"
        chain = f"{pick},scale={profile.tile_width}:-2,tile={profile.columns}x{profile.rows}"
        argv = (
            *_HEAD,
            "-skip_frame",
            "nokey",  # decode keyframes only: a preview grid needs no more
            "-i",
            SOURCE,
            "-map",
            f"0:{video.index}",
            "-vf",
            chain,
            "-fps_mode",
            "vfr",
            "-frames:v",
            "1",
            "-q:v",
            "4",
            "-update",
            "1",
            *_PROGRESS,
            name,
        )
        details = {
            "interval": round(interval, 3),
            "columns": profile.columns,
            "rows": profile.rows,
            "tile_width": profile.tile_width,
        }
        output = OutputFile(name, "image/jpeg", "sprite", angle, details)
        commands.append(Command(argv, (output,), None))
    return commands


_PLANNERS = {"mp4": _mp4, "hls": _hls, "poster": _poster, "sprite": _sprite}


def applies(info: MediaInfo, profile: Profile) -> bool:
    """Whether the profile makes anything of this original (a poster needs a picture)."""
    if profile.kind in ("poster", "sprite"):
        return bool(info.videos)
    return info.playable_media


def plan(info: MediaInfo, profile: Profile) -> list[Command]:
    """The commands that make `profile`'s derivatives of an original probed as `info`."""
    if not applies(info, profile):
        return []
    return _PLANNERS[profile.kind](info, profile)
