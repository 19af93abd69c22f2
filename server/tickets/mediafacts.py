"""What the viewer says about a recording's media: format, duration and continuity.

A judge checking an interrogation recording wants to know, before pressing play, how long it
is and whether the server found cuts in it. The probe and the continuity report come from the
analysis job (`server/jobs`); until it ran (or when it failed) the rows say nothing rather than
guess. Values are returned as escaped HTML fragments for `pages._card`.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from ..markup import escape as _e
from . import i18n

MAX_LISTED = 5  # jumps listed on the page per kind; the counts stay exact


def clock(seconds: float) -> str:
    """h:mm:ss (or m:ss) for a position or a duration."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def duration(probe: dict[str, Any] | None, metadata: dict[str, str]) -> str:
    """The probed duration, else one the uploader declared in metadata, else ''."""
    raw: Any = probe.get("duration") if probe else None
    if raw is None:
        raw = metadata.get("duration", "")
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        return ""
    return clock(seconds) if seconds >= 0 else ""


# ffprobe's demuxer names -> the names people know. The ISO family ("mov,mp4,m4a,3gp,3g2,mj2")
# is one demuxer for several formats: the file's extension says which one it is.
_CONTAINERS = {
    "mpegts": "MPEG-TS",
    "mpeg": "MPEG-PS",
    "matroska,webm": "MKV",
    "avi": "AVI",
    "asf": "ASF",
    "flv": "FLV",
    "wav": "WAV",
    "mp3": "MP3",
    "ogg": "Ogg",
    "flac": "FLAC",
    "aac": "AAC",
    "amr": "AMR",
    "h264": "H.264",
    "hevc": "H.265",
    "mjpeg": "Motion JPEG",
    "dv": "DV",
    "mxf": "MXF",
    "rm": "RealMedia",
}
_ISO_FAMILY = "mov,mp4,m4a,3gp,3g2,mj2"
_ISO_EXTENSIONS = {"mov": "MOV", "m4a": "M4A", "m4v": "MP4", "3gp": "3GP", "3g2": "3G2"}
_BY_EXTENSION = {"webm": "WebM", "wmv": "WMV", "wma": "WMA", "mts": "MPEG-TS", "m2ts": "MPEG-TS"}
_CODECS = {
    "h264": "H.264",
    "hevc": "H.265",
    "mpeg2video": "MPEG-2",
    "mpeg1video": "MPEG-1",
    "mpeg4": "MPEG-4",
    "mjpeg": "Motion JPEG",
    "vp8": "VP8",
    "vp9": "VP9",
    "av1": "AV1",
    "wmv3": "WMV9",
    "vc1": "VC-1",
    "aac": "AAC",
    "mp3": "MP3",
    "mp2": "MP2",
    "ac3": "AC-3",
    "eac3": "E-AC-3",
    "opus": "Opus",
    "vorbis": "Vorbis",
    "flac": "FLAC",
    "alac": "ALAC",
    "amr_nb": "AMR-NB",
    "amr_wb": "AMR-WB",
    "pcm_alaw": "G.711 A-law",
    "pcm_mulaw": "G.711 μ-law",
    "g722": "G.722",
    "g723_1": "G.723.1",
    "g729": "G.729",
    "wmav2": "WMA",
}
_LAYOUTS = {1: "mono", 2: "stereo", 6: "surround51", 8: "surround71"}


def container_name(container: str, filename: str = "") -> str:
    """The format by the name people know: "MP4", "MOV", "MPEG-TS", "MKV"."""
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if container == _ISO_FAMILY:
        return _ISO_EXTENSIONS.get(extension, "MP4")
    if extension in _BY_EXTENSION and container in ("asf", "matroska,webm", "mpegts"):
        return _BY_EXTENSION[extension]
    return _CONTAINERS.get(container, container.split(",")[0].upper() or "?")


def codec_name(codec: str) -> str:
    """ "h264" -> "H.264", "pcm_s16le" -> "PCM", unknown ones upper-cased."""
    if codec.startswith("pcm_") and codec not in _CODECS:
        return "PCM"
    if codec.startswith("adpcm_"):
        return "ADPCM"
    return _CODECS.get(codec, codec.upper())


def _fps(rate: str | None, lang: str) -> str:
    if not rate:
        return ""
    try:
        value = float(Fraction(rate))
    except (ValueError, ZeroDivisionError):
        return ""
    return i18n.text(lang, "fps", n=f"{value:.4g}") if value > 0 else ""


def _channels(count: int | None, lang: str) -> str:
    if not count:
        return ""
    key = _LAYOUTS.get(count)
    return i18n.text(lang, key) if key else i18n.text(lang, "channels", n=count)


def media_format(probe: dict[str, Any] | None, *, lang: str, filename: str = "") -> str:
    """The container, then each video and audio stream, in words people know:
    "MP4 · H.264 640×360 25 帧/秒 · AAC 单声道" (zh), "MP4 · H.264 640×360 25 fps · AAC mono"."""
    if not probe:
        return ""
    parts = [container_name(str(probe.get("container") or "?"), filename)]
    for stream in probe.get("streams", []):
        kind = stream.get("kind")
        codec = codec_name(str(stream.get("codec") or ""))
        if kind == "video" and not stream.get("still"):
            size = f"{stream['width']}×{stream['height']}" if stream.get("width") else ""
            words = (codec, size, _fps(stream.get("frame_rate"), lang))
            parts.append(" ".join(w for w in words if w))
        elif kind == "audio":
            parts.append(" ".join(p for p in (codec, _channels(stream.get("channels"), lang)) if p))
    return _e(" · ".join(parts))


def _jumps(lang: str, key: str, jumps: list[dict[str, Any]], count: int) -> str:
    shown = ", ".join(
        i18n.text(lang, "jump_at", at=clock(j["at"]), length=f"{abs(j['length']):.1f}")
        for j in jumps[:MAX_LISTED]
    )
    more = i18n.text(lang, "jump_more", n=count - MAX_LISTED) if count > MAX_LISTED else ""
    return f"<li>{_e(i18n.text(lang, key, n=count))}: {_e(shown)}{_e(more)}</li>"


def continuity(report: dict[str, Any] | None, lang: str) -> str:
    """The continuity verdict and where the gaps, drops and backward jumps are."""
    if not report:
        return ""
    counts = report.get("counts") or {}
    listed = [
        ("gaps", "continuity_gaps"),
        ("discontinuities", "continuity_backward"),
        ("dropped", "continuity_dropped"),
    ]
    items = "".join(
        _jumps(lang, key, jumps, int(counts.get(name, len(jumps))))
        for name, key in listed
        if (jumps := report.get(name) or [])
    )
    if report.get("ok"):
        verdict = f'<span class="ok">{_e(i18n.text(lang, "continuity_ok"))}</span>'
    else:
        verdict = f'<span class="bad">{_e(i18n.text(lang, "continuity_bad"))}</span>'
    return f'{verdict}<ul class="jumps">{items}</ul>' if items else verdict
