"""Times on pages, in the zone people read them in: one function every page calls.

A court record in Beijing is read in Beijing time, so pages (the viewer, the upload page, the
desk, printable lists) show times in the configured `display_timezone` with the zone named,
while APIs, receipts and the audit log keep UTC (ISO 8601 with `Z`) and never change. Chinese
pages write dates as people write them (2026年12月6日 11:17:07), English pages as ISO dates.
Every shown time is also a `<time datetime="...Z">` element, so a script (the viewer's) can add
the reader's own clock zone and a machine can read the exact instant.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .markup import escape

# Names people know for the zones they live in; other zones are named by their IANA name.
_ZH_NAMES = {
    "Asia/Shanghai": "北京时间",
    "Asia/Chongqing": "北京时间",
    "Asia/Harbin": "北京时间",
    "Asia/Chungking": "北京时间",
    "PRC": "北京时间",
    "Asia/Hong_Kong": "香港时间",
    "Asia/Macau": "澳门时间",
    "UTC": "协调世界时",
    "Etc/UTC": "协调世界时",
}


class UnknownZone(ValueError):
    """`display_timezone` names no zone this machine's time zone database knows."""


def zone(name: str) -> tzinfo:
    """The zone called `name` (an IANA name such as `Asia/Shanghai`); "" is the server's own."""
    if not name:
        return local_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UnknownZone(
            f"display_timezone: {name!r} is not a time zone name (try Asia/Shanghai or UTC)"
        ) from None


def local_zone() -> tzinfo:
    """The server's local zone by its IANA name when the system says it (`TZ`, the
    `/etc/localtime` link, `/etc/timezone`), else the fixed offset the clock runs at now."""
    for name in (os.environ.get("TZ", "").lstrip(":"), _linked_zone(), _timezone_file()):
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return datetime.now(UTC).astimezone().tzinfo or UTC


def _linked_zone() -> str:
    try:
        target = str(Path("/etc/localtime").resolve())
    except OSError:
        return ""
    _, found, name = target.partition("/zoneinfo/")
    return name if found else ""


def _timezone_file() -> str:
    try:
        return Path("/etc/timezone").read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def zone_name(place: tzinfo) -> str:
    """The IANA name of a zone ("" for a bare offset)."""
    return str(getattr(place, "key", "") or "")


def _offset(delta: timedelta | None) -> str:
    minutes = int((delta or timedelta(0)).total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")


def place_name(place: tzinfo, *, lang: str) -> str:
    """The zone's name for people, without its offset: "北京时间", "Asia/Shanghai", or ""."""
    name = zone_name(place)
    return _ZH_NAMES.get(name, name) if lang == "zh" else name


def zone_label(moment: datetime, *, lang: str, place: tzinfo) -> str:
    """How the zone is named beside a time: "北京时间，UTC+8" or "Asia/Shanghai, UTC+8"."""
    local = moment.astimezone(place)
    offset = _offset(local.utcoffset())
    name = place_name(place, lang=lang) or local.tzname() or ""
    if not name or name == offset:
        return offset
    return f"{name}，{offset}" if lang == "zh" else f"{name}, {offset}"


def show(moment: datetime, *, lang: str, place: tzinfo) -> str:
    """A time for people: "2026年12月6日 11:17:07（北京时间，UTC+8）" in Chinese,
    "2026-12-06 11:17:07 (Asia/Shanghai, UTC+8)" in English."""
    local = moment.astimezone(place)
    label = zone_label(moment, lang=lang, place=place)
    if lang == "zh":
        return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M:%S}（{label}）"
    return f"{local:%Y-%m-%d %H:%M:%S} ({label})"


def iso_utc(moment: datetime) -> str:
    """The instant as APIs, receipts and the audit log write it: ISO 8601 UTC with `Z`."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def time_html(moment: datetime, *, lang: str, place: tzinfo) -> str:
    """`show` as a `<time>` element carrying the UTC instant and the zone shown."""
    return (
        f'<time datetime="{escape(iso_utc(moment))}" data-zone="{escape(zone_name(place))}">'
        f"{escape(show(moment, lang=lang, place=place))}</time>"
    )


def parse(text: str) -> datetime | None:
    """An ISO 8601 time from a record (custody steps carry strings), as aware UTC; None if not."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
