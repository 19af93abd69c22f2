"""Times on pages: in the configured zone, named, in the form Chinese and English readers write;
APIs keep UTC. `display_timezone` is validated at start-up like every other setting."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from avidence.server import config
from avidence.server.localtime import iso_utc, local_zone, parse, show, time_html, zone

MOMENT = datetime(2026, 12, 6, 3, 17, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "lang", "shown"),
    [
        ("Asia/Shanghai", "zh", "2026年12月6日 11:17:07（北京时间，UTC+8）"),
        ("Asia/Shanghai", "en", "2026-12-06 11:17:07 (Asia/Shanghai, UTC+8)"),
        ("UTC", "en", "2026-12-06 03:17:07 (UTC, UTC+0)"),
        ("America/New_York", "zh", "2026年12月5日 22:17:07（America/New_York，UTC-5）"),
        ("Asia/Kolkata", "en", "2026-12-06 08:47:07 (Asia/Kolkata, UTC+5:30)"),
    ],
)
def test_show_names_the_zone_in_the_readers_form(name: str, lang: str, shown: str) -> None:
    assert show(MOMENT, lang=lang, place=ZoneInfo(name)) == shown


def test_summer_time_changes_the_named_offset() -> None:
    july = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert show(july, lang="en", place=ZoneInfo("Europe/Berlin")).endswith("(Europe/Berlin, UTC+2)")
    assert show(MOMENT, lang="en", place=ZoneInfo("Europe/Berlin")).endswith(
        "(Europe/Berlin, UTC+1)"
    )


def test_time_element_carries_the_utc_instant_and_the_zone() -> None:
    html = time_html(MOMENT, lang="zh", place=ZoneInfo("Asia/Shanghai"))
    assert html == (
        '<time datetime="2026-12-06T03:17:07Z" data-zone="Asia/Shanghai">'
        "2026年12月6日 11:17:07（北京时间，UTC+8）</time>"
    )
    assert iso_utc(MOMENT.astimezone(ZoneInfo("Asia/Shanghai"))) == "2026-12-06T03:17:07Z"
    assert parse("2026-12-06T03:17:07Z") == MOMENT
    assert parse("yesterday") is None


def test_default_zone_is_the_servers_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    assert zone("") == ZoneInfo("Asia/Shanghai") == local_zone()
    monkeypatch.setenv("TZ", "Not/AZone")
    assert local_zone() is not None  # falls through to the system's zone, never fails
    settings = config.load(env={})
    assert settings.display_timezone == ""
    assert settings.display_zone is not None


def test_display_timezone_is_validated(tmp_path: Path) -> None:
    settings = config.load(env={"AVIDENCE_DISPLAY_TIMEZONE": "Asia/Shanghai"})
    assert settings.display_zone == ZoneInfo("Asia/Shanghai")
    with pytest.raises(config.ConfigError, match="display_timezone: 'Beijing' is not a time zone"):
        config.load(env={"AVIDENCE_DISPLAY_TIMEZONE": "Beijing"})
    with pytest.raises(config.ConfigError, match="display_timezone"):
        config.load(env={"AVIDENCE_DISPLAY_TIMEZONE": "../../etc/passwd"})
