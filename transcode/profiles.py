"""Profiles: what a derivative should be, independent of any particular original.

Four kinds: `mp4` (H.264 + AAC in a faststart MP4, every audio track, one file per camera angle),
`hls` (the same streams as one fragmented-MP4 file with a VOD playlist), `poster` (a JPEG frame
per angle) and `sprite` (a grid of small frames for seek previews). Built-in profiles carry the
kind's defaults; a deployment overrides them, or adds its own, in `[profiles.NAME]` sections of
the config file. Validation happens here, once, so a typo stops the worker at start-up with one
line instead of failing every job later.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from .encoders import ENCODERS, FALLBACK, trial

KINDS = ("mp4", "hls", "poster", "sprite")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")


class ProfileError(ValueError):
    """A profile setting that cannot work; the message names the profile and the setting."""


@dataclass(slots=True, frozen=True)
class Profile:
    """One derivative recipe. Fields a kind does not use are ignored by it."""

    name: str
    kind: str
    encoder: str = "libx264"  # or h264_nvenc, h264_vaapi, h264_qsv (checked by a trial encode)
    preset: str = "veryfast"  # libx264 preset; hardware encoders use their own defaults
    crf: int = 23  # quality: libx264 CRF, NVENC CQ, VAAPI QP, QSV global quality
    max_height: int = 1080  # taller pictures are scaled down, smaller ones are kept
    audio_bitrate: str = "128k"
    deinterlace: bool = True  # only frames flagged interlaced are touched
    device: str = "/dev/dri/renderD128"  # VAAPI render node
    segment_seconds: int = 6  # hls
    poster_at: float = 0.1  # poster: fraction of the duration (capped at 10 s)
    columns: int = 10  # sprite grid
    rows: int = 10
    tile_width: int = 160

    def __post_init__(self) -> None:
        where = f"profiles.{self.name}"
        if not _NAME.match(self.name):
            raise ProfileError(f"{where}: a profile name is lowercase letters, digits and '-'")
        if self.kind not in KINDS:
            raise ProfileError(f"{where}.kind: {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.encoder not in ENCODERS:
            raise ProfileError(
                f"{where}.encoder: {self.encoder!r} is not one of {', '.join(ENCODERS)}"
            )
        if not 0 <= self.crf <= 51:
            raise ProfileError(f"{where}.crf: must be between 0 and 51")
        if not 64 <= self.max_height <= 4320:
            raise ProfileError(f"{where}.max_height: must be between 64 and 4320")
        if not 0 <= self.poster_at <= 1:
            raise ProfileError(f"{where}.poster_at: a fraction of the duration, 0 to 1")
        for name in ("segment_seconds", "columns", "rows", "tile_width"):
            if getattr(self, name) <= 0:
                raise ProfileError(f"{where}.{name}: must be positive")
        if not re.match(r"^\d+k?$", self.audio_bitrate):
            raise ProfileError(f"{where}.audio_bitrate: like 128k")


BUILT_IN: dict[str, Profile] = {
    "mp4-h264": Profile(name="mp4-h264", kind="mp4"),
    "hls": Profile(name="hls", kind="hls"),
    "poster": Profile(name="poster", kind="poster", max_height=720),
    "sprite": Profile(name="sprite", kind="sprite"),
}
ENABLED_BY_DEFAULT = ("mp4-h264", "poster")

# Field name -> annotation text ("int", "str", ...): annotations are strings in this module.
_TYPES: dict[str, str] = {f.name: str(f.type) for f in fields(Profile)}


def _coerce(profile: str, key: str, value: Any) -> Any:
    kind = {"int": int, "float": float, "bool": bool, "str": str}[_TYPES[key]]
    if kind is bool and not isinstance(value, bool):
        raise ProfileError(f"profiles.{profile}.{key}: expected true or false")
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    if kind is bool:
        return value
    raise ProfileError(f"profiles.{profile}.{key}: expected {kind.__name__}, got {value!r}")


def build(sections: Mapping[str, Any] | None = None) -> dict[str, Profile]:
    """The built-in profiles with the config file's `[profiles.NAME]` sections applied."""
    profiles = dict(BUILT_IN)
    for name, section in (sections or {}).items():
        if not isinstance(section, Mapping):
            raise ProfileError(f"profiles.{name}: expected a table of settings")
        values: dict[str, Any] = {}
        for key, value in section.items():
            field = key.replace("-", "_")
            if field not in _TYPES or field == "name":
                raise ProfileError(f"profiles.{name}: unknown setting {key!r}")
            values[field] = _coerce(name, field, value)
        base = profiles.get(name)
        if base is None:
            if "kind" not in values:
                raise ProfileError(f"profiles.{name}.kind: required for a new profile")
            profiles[name] = Profile(name=name, **values)
        else:
            profiles[name] = replace(base, **values)
    return profiles


def select(profiles: Mapping[str, Profile], names: Iterable[str]) -> list[Profile]:
    """The enabled profiles, in the order given; ProfileError for an unknown name."""
    chosen = []
    for name in names:
        if name not in profiles:
            raise ProfileError(
                f"transcode_profiles: no profile {name!r}; known: {', '.join(sorted(profiles))}"
            )
        chosen.append(profiles[name])
    return chosen


async def with_working_encoders(
    profiles: Mapping[str, Profile], *, ffmpeg: str = "ffmpeg"
) -> tuple[dict[str, Profile], list[str]]:
    """The profiles, each hardware encoder that fails its trial replaced by libx264; and, for
    each replacement, one line saying why (for the worker's start-up log)."""
    verdicts: dict[tuple[str, str], str | None] = {}
    result: dict[str, Profile] = {}
    notes: list[str] = []
    for name, profile in profiles.items():
        if profile.encoder == FALLBACK or profile.kind not in ("mp4", "hls"):
            result[name] = profile
            continue
        key = (profile.encoder, profile.device)
        if key not in verdicts:
            verdicts[key] = await trial(profile.encoder, device=profile.device, ffmpeg=ffmpeg)
        reason = verdicts[key]
        if reason is None:
            result[name] = profile
        else:
            result[name] = replace(profile, encoder=FALLBACK)
            notes.append(f"profile {name}: using {FALLBACK} instead of {profile.encoder}: {reason}")
    return result, notes
