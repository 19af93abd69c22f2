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


def _fps(rate: str | None) -> str:
    if not rate:
        return ""
    try:
        value = float(Fraction(rate))
    except (ValueError, ZeroDivisionError):
        return ""
    return f"{value:.3g} fps" if value > 0 else ""


def media_format(probe: dict[str, Any] | None) -> str:
    """The container, then each video and audio stream: "mpegts · h264 1280x720 25 fps"."""
    if not probe:
        return ""
    parts = [str(probe.get("container") or "?")]
    for stream in probe.get("streams", []):
        kind = stream.get("kind")
        if kind == "video" and not stream.get("still"):
            size = f"{stream['width']}x{stream['height']}" if stream.get("width") else ""
            words = (stream.get("codec"), size, _fps(stream.get("frame_rate")))
            parts.append(" ".join(w for w in words if w))
        elif kind == "audio":
            channels = f"{stream['channels']}ch" if stream.get("channels") else ""
            parts.append(" ".join(p for p in (stream.get("codec"), channels) if p))
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
